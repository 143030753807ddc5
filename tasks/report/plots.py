"""Every chart the reports show, drawn with matplotlib's headless backend and returned as base64 PNG data for
``src='data:image/png;base64,...'``: the pages stay single files.

Each function takes plain numbers and names (no pandas, no HTML) and returns the encoded PNG, or None when
there is nothing to draw. Inside `kept_in(folder)` each chart is kept there by a digest of its inputs (and of
this module's source): a report drawn again from the same results, as a re-run of a finished grid is, neither
draws nor imports matplotlib (~2 s of such a run on 2 cores).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import hashlib
import io
import math
from datetime import datetime
from pathlib import Path

import numpy as np

from tasks.files import write_atomic

_KEPT_IN: contextvars.ContextVar[Path | None] = contextvars.ContextVar("charts kept in", default=None)

EFFECT_COLOURS = {"helps": "#17692c", "hurts": "#a22"}  # the page's .helps and .hurts colours; others grey


@contextlib.contextmanager
def kept_in(folder: Path):
    """Keep the charts drawn inside this block in ``folder``, and reuse those kept there."""
    token = _KEPT_IN.set(Path(folder))
    try:
        yield
    finally:
        _KEPT_IN.reset(token)


def _kept(draw):
    @functools.wraps(draw)
    def chart(*args):
        folder = _KEPT_IN.get()
        if folder is None:
            return draw(*args)
        digest = hashlib.sha256(f"{draw.__name__}|{_SOURCE}".encode())
        _digest(args, digest)
        kept = folder / f"{draw.__name__}-{digest.hexdigest()[:24]}.txt"
        if kept.exists():
            text = kept.read_text()
            return text or None  # empty: there was nothing to draw
        png = draw(*args)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(kept, png or "")
        return png
    return chart


def _digest(value, digest) -> None:
    """Feed a chart's inputs into ``digest``: arrays by dtype, shape and bytes, containers item by item."""
    if isinstance(value, np.ndarray):
        digest.update(f"a{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(f"d{len(value)}".encode())
        for key, item in value.items():
            _digest(key, digest)
            _digest(item, digest)
    elif isinstance(value, (list, tuple)):
        digest.update(f"l{len(value)}".encode())
        for item in value:
            _digest(item, digest)
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written by a flow, often on a server
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> str:
    """The figure as base64 PNG data (closed afterwards), for ``src='data:image/png;base64,...'``."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


@_kept
def curves_png(curves: list[tuple[str, dict]]) -> str | None:
    """Accuracy and loss per epoch, one colour per (label, curve): validation solid with the band its seeds span,
    training dashed (means over seeds, as `tasks.report.aggregate.mean_curves` gives them)."""
    if not curves:
        return None
    fig, panels = pyplot().subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for i, (label, curve) in enumerate(curves):
        for panel, metric in zip(panels, ("accuracy", "loss")):
            epochs = np.arange(1, len(curve[f"val_{metric}"]) + 1)
            panel.plot(epochs, curve[f"val_{metric}"], color=f"C{i}", label=label)
            panel.fill_between(epochs, curve[f"val_{metric}_low"], curve[f"val_{metric}_high"], color=f"C{i}",
                               alpha=0.15, linewidth=0)
            panel.plot(epochs, curve[metric], color=f"C{i}", linestyle="--", alpha=0.6)
    for panel, metric in zip(panels, ("accuracy", "loss")):
        panel.set(xlabel="epoch", ylabel=metric, title=f"{metric}: validation (band: seeds), training dashed")
        panel.xaxis.get_major_locator().set_params(integer=True)
        panel.grid(alpha=0.3)
    panels[0].legend(fontsize=8, loc="lower right")
    return figure_png(fig)


@_kept
def effects_png(rows: list[dict]) -> str | None:
    """Each variant's paired difference from the baseline (``delta``) with its interval at the level the
    decision rule tested it at, against zero."""
    if not rows:
        return None
    fig, ax = pyplot().subplots(figsize=(7.5, 0.55 * len(rows) + 1.1), dpi=100)
    for y, row in enumerate(rows):
        colour = EFFECT_COLOURS.get(row["effect"], "#556")
        low, high = row["ci_low"], row["ci_high"]
        if not math.isnan(low):
            ax.plot([low * 100, high * 100], [y, y], color=colour, linewidth=2)
        ax.plot(row["delta"] * 100, y, "o", color=colour)
    ax.axvline(0, color="#889", linewidth=1)
    ax.set_yticks(range(len(rows)), [r["variant"] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="change in test accuracy vs baseline (points, CI at the tested level)")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


@_kept
def confusion_png(base: np.ndarray, best: np.ndarray, names: list[str], variant: str) -> str:
    """The baseline's and a variant's confusion matrices side by side: rates shaded, off-diagonal counts in red."""
    fig, panels = pyplot().subplots(1, 2, figsize=(10, 4.6), dpi=100)
    for panel, matrix, title in zip(panels, (base, best), ("baseline", variant)):
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        panel.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        panel.set(title=f"{title}: {accuracy:.1%} correct", xlabel="predicted", ylabel="true")
        ticks = range(len(names))
        panel.set_xticks(ticks, [n[:12] for n in names], rotation=90, fontsize=7)
        panel.set_yticks(ticks, [n[:12] for n in names], fontsize=7)
        for (i, j), count in np.ndenumerate(matrix):
            if count and i != j:
                panel.text(j, i, str(count), ha="center", va="center", fontsize=6, color="#a22")
    return figure_png(fig)


@_kept
def histogram_png(samples: dict[str, np.ndarray], dtype: np.dtype) -> str:
    """Pixel values per split (a sample of each), on a log scale; one bin per value for uint8 data."""
    fig, ax = pyplot().subplots(figsize=(7.5, 2.8), dpi=100)
    for i, (split, sample) in enumerate(samples.items()):
        if not len(sample):
            continue
        # Counted here and drawn as steps: `ax.hist` over millions of values took ~0.9 s of every report.
        if dtype == np.uint8:
            shares, edges = np.bincount(sample, minlength=256) / len(sample), np.arange(257) - 0.5
        else:
            shares, edges = np.histogram(sample, bins=100, density=True)
        ax.stairs(shares, edges, color=f"C{i}", label=split)
    ax.set_yscale("log")
    ax.set(xlabel=f"pixel value ({dtype})", ylabel="share of pixels (log)", title="pixel values per split")
    ax.legend(fontsize=8)
    return figure_png(fig)


@_kept
def trend_png(deployment: str, when: list[datetime], base: list[float], best: list[float]) -> str:
    """One deployment's baseline and best accuracy (percent) over its runs."""
    fig, ax = pyplot().subplots(figsize=(7.5, 2.8), dpi=100)
    ax.plot(when, base, "o-", label="baseline")
    ax.plot(when, best, "s--", label="best change (the baseline when none helps)")
    ax.set(ylabel="test accuracy (%)", title=f"deployment {deployment}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return figure_png(fig)


_SOURCE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # an edited chart is drawn again
