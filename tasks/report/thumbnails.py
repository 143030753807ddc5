"""Images of the dataset as small inline PNGs, drawn as the model receives them: the dataset's common size, mapped
to 0-255 with the dataset's usual value range (so an image on the wrong scale shows black or white here too).

The drawer returns data for the templates (a data URI, a caption, a reason), never markup.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from tasks.data.datasets import Dataset
from tasks.gate.pixel_stats import min_max, pixel_scale, value_range
from tasks.report.plots import histogram_png

SAMPLE_CLASSES, SAMPLES_PER_CLASS = 30, 8  # the per-class grid: enough to spot a wrong class, small enough to load
HISTOGRAM_IMAGES = 2000  # images per split sampled for the pixel-value histogram


class ImageDrawer:
    """Draws images of one dataset, found by their id (path) or by split and index."""

    def __init__(self, data: Dataset):
        self.data = data
        self.where = {str(i): ("train", n) for n, i in enumerate(data.ids_train)}
        self.where |= {str(i): ("test", n) for n, i in enumerate(data.ids_test)}
        self.reasons = {str(path): reason for _, _, path, reason in data.skipped}
        scales = np.concatenate([pixel_scale(*min_max(x)) for x in (data.x_train, data.x_test)])
        self.low, self.high = value_range(scales)

    def image(self, split: str, index: int) -> str:
        """One image of a split as a PNG data URI."""
        return png_uri(self._eight_bit(self.data.split(split)[0][index][None]))

    def figure(self, path: str, caption: str | None = None, note: str | None = None, alt: str | None = None) -> dict:
        """An image by its id, for the ``figure`` macro: its picture with a caption (its path unless given) and
        a ``note`` in small print, or the reason it has no picture (an unreadable file, a link not followed)."""
        found = self.where.get(path)
        return {"src": self.image(*found) if found else None, "alt": alt or path, "caption": caption or path,
                "note": note, "reason": None if found else self.reasons.get(path)}

    def classes(self) -> dict:
        """The first training images of each class as one strip per class (None: the class has none)."""
        strips = []
        x, y = self.data.x_train, self.data.y_train
        for label, name in enumerate(self.data.class_names[:SAMPLE_CLASSES]):
            picked = x[np.flatnonzero(y == label)[:SAMPLES_PER_CLASS]]
            strips.append({"name": name, "src": png_uri(self._eight_bit(picked)) if len(picked) else None})
        return {"strips": strips, "per_class": SAMPLES_PER_CLASS,
                "more": max(0, len(self.data.class_names) - SAMPLE_CLASSES)}

    def histogram(self) -> str:
        """Base64 PNG of the pixel values of up to HISTOGRAM_IMAGES images per split."""
        samples = {}
        for split in ("train", "test"):
            x = self.data.split(split)[0]
            sample = x[np.linspace(0, len(x) - 1, min(len(x), HISTOGRAM_IMAGES)).astype(int)].ravel()
            samples[split] = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
        return histogram_png(samples, self.data.x_train.dtype)

    def _eight_bit(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, c) images side by side as one 8-bit (h, n*w, c) strip, mapped with the usual range."""
        with np.errstate(over="ignore", invalid="ignore"):  # infinite pixels: drawn white, as clipped
            finite = np.nan_to_num(images.astype(np.float32), nan=self.low)
            scaled = (finite - self.low) * (255 / (self.high - self.low))
        strip = np.concatenate(list(np.clip(scaled, 0, 255).astype(np.uint8)), axis=1)
        return strip[..., :3]


def png_uri(pixels: np.ndarray) -> str:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
