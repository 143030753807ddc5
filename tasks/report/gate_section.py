"""The report's data-quality section: problems first with thumbnails of the offending images, then the passed
checks, a pixel-value histogram per split and sample images per class.

Images are drawn as the model receives them (the dataset's common size, mapped to 0-255 with the dataset's
usual value range), so an image on the wrong scale shows black or white here too. Every string that comes from
the data (paths, class names) is escaped.
"""

from __future__ import annotations

import base64
import io
from html import escape

import numpy as np
from PIL import Image

from tasks.data.datasets import Dataset
from tasks.gate.checks import CRITICAL
from tasks.gate.expectations import MAX_NAMED, CheckResult, GateResult
from tasks.gate.pixel_stats import min_max, pixel_scale, value_range
from tasks.report.plots import figure_png, pyplot

THUMBNAILS = 8  # offending images drawn per check
SAMPLE_CLASSES, SAMPLES_PER_CLASS = 30, 8  # the per-class grid: enough to spot a wrong class, small enough to load
HISTOGRAM_IMAGES = 2000  # images per split sampled for the pixel-value histogram


def gate_section(gate: GateResult, data: Dataset | None, docs_link: str | None,
                 drawer: ImageDrawer | None = None) -> str:
    status_css = {"pass": "pass", "warn": "warning"}.get(gate.status, "critical")
    suite = gate.suite or {}
    links = [f"<a href='{escape(docs_link)}'>Great Expectations Data Docs</a>"] if docs_link else []
    links.append("<a href='gate.json'>gate.json</a>")
    head = (f"<h2>Data-quality gate</h2><p>Gate: <b class={status_css}>{escape(gate.status)}</b> over "
            f"{gate.images} images, suite {escape(str(suite.get('name', '')))} v{escape(str(suite.get('version', '')))}"
            f" &middot; {' &middot; '.join(links)}</p>")
    drawer = drawer or (ImageDrawer(data) if data is not None else None)
    problems = sorted(gate.failed, key=lambda c: c.severity != CRITICAL)
    blocks = [_problem_html(check, drawer) for check in problems]
    passed = "".join(f"<tr><td>{escape(c.title)}</td><td class=muted>{escape(c.severity)}</td>"
                     f"<td>{escape(c.observed)}</td></tr>" for c in gate.checks if c.success)
    parts = [head, *blocks]
    if passed:
        parts.append(f"<details><summary>{sum(c.success for c in gate.checks)} checks passed</summary><table>"
                     f"<tr><th>check</th><th>severity</th><th>observed</th></tr>{passed}</table></details>")
    if drawer is not None:
        parts += [drawer.histogram_html(), drawer.classes_html()]
    return "\n".join(parts)


def _problem_html(check: CheckResult, drawer: ImageDrawer | None) -> str:
    more = check.offending_count - min(len(check.offending), THUMBNAILS)
    shown = check.offending[:THUMBNAILS]
    figures = "".join(drawer.figure(path) if drawer else f"<li>{escape(path)}</li>" for path in shown)
    items = f"<div class=thumbs>{figures}</div>" if drawer else f"<ul>{figures}</ul>"
    tail = (f"<p class=muted>and {more} more (the first {MAX_NAMED} in gate.json, all in the Data Docs)</p>"
            if more > 0 else "")
    return (f"<div class='check {check.severity}-box'><h3>{escape(check.title)} <small class={check.severity}>"
            f"{check.severity}</small></h3><p><b>{escape(check.observed)}</b>. {escape(check.explain)}</p>"
            f"{items if shown else ''}{tail}</div>")


class ImageDrawer:
    """Draws images of one dataset as small inline PNGs, found by their id (path)."""

    def __init__(self, data: Dataset):
        self.data = data
        self.where = {str(i): ("train", n) for n, i in enumerate(data.ids_train)}
        self.where |= {str(i): ("test", n) for n, i in enumerate(data.ids_test)}
        self.reasons = {str(path): reason for _, _, path, reason in data.skipped}
        scales = np.concatenate([pixel_scale(*min_max(x)) for x in (data.x_train, data.x_test)])
        self.low, self.high = value_range(scales)

    def image(self, split: str, index: int, caption: str, alt: str = "") -> str:
        """One image of a split, drawn as the model sees it, as a figure; ``caption`` is HTML, ``alt`` text."""
        image = self.data.split(split)[0][index]
        return (f"<figure><img alt='{escape(alt)}' src='{_png(self._eight_bit(image[None]))}'>"
                f"<figcaption>{caption}</figcaption></figure>")

    def figure(self, path: str) -> str:
        if path not in self.where:  # an unreadable file or a class: no pixels to draw
            reason = self.reasons.get(path)
            return (f"<figure class=nopixels><figcaption>{escape(path)}</figcaption>"
                    f"{f'<small>{escape(reason)}</small>' if reason else ''}</figure>")
        return self.image(*self.where[path], escape(path), alt=path)

    def classes_html(self) -> str:
        rows = []
        x, y = self.data.x_train, self.data.y_train
        for label, name in enumerate(self.data.class_names[:SAMPLE_CLASSES]):
            picked = x[np.flatnonzero(y == label)[:SAMPLES_PER_CLASS]]
            strip = (f"<img class=strip alt='samples of {escape(name)}' src='{_png(self._eight_bit(picked))}'>"
                     if len(picked) else "<span class=muted>no training images</span>")
            rows.append(f"<tr><th>{escape(name)}</th><td>{strip}</td></tr>")
        more = len(self.data.class_names) - SAMPLE_CLASSES
        tail = f"<p class=muted>and {more} more classes</p>" if more > 0 else ""
        return (f"<h3>Training images per class</h3><p class=muted>The first {SAMPLES_PER_CLASS} of each class: "
                f"a wrong or mixed class usually shows at a glance.</p><table class=samples>{''.join(rows)}</table>"
                + tail)

    def histogram_html(self) -> str:
        fig, ax = pyplot().subplots(figsize=(7.5, 2.8), dpi=100)
        for i, split in enumerate(("train", "test")):
            x = self.data.split(split)[0]
            sample = x[np.linspace(0, len(x) - 1, min(len(x), HISTOGRAM_IMAGES)).astype(int)].ravel()
            sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
            if not len(sample):
                continue
            bins = np.arange(257) - 0.5 if x.dtype == np.uint8 else 100
            ax.hist(sample, bins=bins, histtype="step", density=True, color=f"C{i}", label=split, log=True)
        ax.set(xlabel=f"pixel value ({self.data.x_train.dtype})", ylabel="share of pixels (log)",
               title="pixel values per split")
        ax.legend(fontsize=8)
        encoded = figure_png(fig)
        return (f"<h3>Pixel values</h3><img alt='pixel-value histogram per split' "
                f"src='data:image/png;base64,{encoded}'>")

    def _eight_bit(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, c) images side by side as one 8-bit (h, n*w, c) strip, mapped with the usual range."""
        with np.errstate(over="ignore", invalid="ignore"):  # infinite pixels: drawn white, as clipped
            finite = np.nan_to_num(images.astype(np.float32), nan=self.low)
            scaled = (finite - self.low) * (255 / (self.high - self.low))
        strip = np.concatenate(list(np.clip(scaled, 0, 255).astype(np.uint8)), axis=1)
        return strip[..., :3]


def _png(pixels: np.ndarray) -> str:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def gate_markdown(gate: GateResult) -> str:
    """The gate's outcome for Prefect's UI (a markdown artifact): status, then each failing check and examples."""
    lines = [f"### Data-quality gate: {gate.status}", "",
             f"{gate.images} images, {len(gate.checks)} checks, {len(gate.failed)} not passed.", ""]
    for check in sorted(gate.failed, key=lambda c: c.severity != CRITICAL):
        examples = f" (e.g. {', '.join(f'`{p}`' for p in check.offending[:3])})" if check.offending else ""
        lines.append(f"- **{check.title}** ({check.severity}): {check.observed}{examples}")
    return "\n".join(lines)
