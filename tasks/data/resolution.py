"""The working resolution: the size images are decoded to and trained at when the user names none.

The rule: take the most common original size; if its longest side is above ``WORKING_SIDE`` pixels, scale it
down to that longest side, keeping its aspect ratio. An ablation compares changes against a baseline, and
normalisation, capacity, learning rate and regularisation show their effects at 128 pixels as they do at 500:
what changes with resolution is the cost, which grows with the pixel count (a folder of 500x375 photos trained
at its native size took 9-14 GB per training process and 145 s for one epoch of 800 images on 2 cores; at
128x96 it is 15 times fewer pixels). 128 is the size of the small Imagenette variant and twice CIFAR's side:
detail enough for photos, cheap enough for a grid. Users who need more pass ``--image-size``, or ablate the
resolution itself with the ``resolution`` axis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

WORKING_SIDE = 128  # longest side of the working resolution, in pixels (see the module docstring)


def working_size(sizes: Iterable[tuple[int, int]], requested: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) to decode and train at: ``requested`` if given, else the most common of ``sizes`` with
    its longest side capped at ``WORKING_SIDE``, aspect ratio kept."""
    if requested:
        return tuple(requested)
    height, width = Counter(tuple(size) for size in sizes).most_common(1)[0][0]
    return capped(height, width)


def capped(height: int, width: int, side: int = WORKING_SIDE) -> tuple[int, int]:
    """``height`` x ``width`` scaled down so its longest side is at most ``side`` (never scaled up)."""
    longest = max(height, width)
    if longest <= side:
        return int(height), int(width)
    scale = side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def describe_originals(shapes: np.ndarray) -> str:
    """The original sizes in a few words, width x height as people say it: "500x375" when all share one, else
    the most common one and the range, "500x375 (most common; 75x100 to 1024x768)"."""
    if not len(shapes):
        return "no images"
    sizes = Counter((int(h), int(w)) for h, w in np.asarray(shapes)[:, :2])
    (height, width), _ = sizes.most_common(1)[0]
    if len(sizes) == 1:
        return f"{width}x{height}"
    smallest = min(sizes, key=lambda s: s[0] * s[1])
    largest = max(sizes, key=lambda s: s[0] * s[1])
    return (f"{width}x{height} (most common of {len(sizes)} sizes; {smallest[1]}x{smallest[0]} to "
            f"{largest[1]}x{largest[0]})")


def resolution_fact(data, requested: tuple[int, int] | None) -> str:
    """The line the report and the log show: "trained at 128x96 (...) from originals of 500x375 (...)", and how
    to change it. ``data`` is a `store.Dataset`."""
    height, width = data.x_train.shape[1:3]
    shapes = np.concatenate([data.shapes_train, data.shapes_test])
    common = Counter((int(h), int(w)) for h, w in shapes[:, :2]).most_common(1)[0][0] if len(shapes) else (0, 0)
    reason = (" (as --image-size asked)" if requested else
              f" (the working resolution: longest side capped at {WORKING_SIDE})" if max(common) > WORKING_SIDE
              else "")
    return (f"trained at {width}x{height}{reason} from originals of {describe_originals(shapes)}; --image-size "
            "sets another size, the resolution axis ablates it")
