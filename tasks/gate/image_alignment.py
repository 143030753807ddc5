"""Two images compared once aligned, for the near-copy search's verification (`tasks.gate.near_copies`): both
thumbnails blurred a little, the best shift within a pixel of the one the search chose, one of them mirrored or
magnified where that is the edit being undone. The similarity is the sum over channels of the centred channels'
dot products over the overlap, divided by the product of the two images' norms there: 1 for a copy whose
colours were shifted (an offset and a gain per channel), lower the more the pictures differ.
"""

from __future__ import annotations

import functools

import numpy as np


def aligned(a: np.ndarray, b: np.ndarray, flips: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best similarity of each blurred thumbnail pair within one pixel of its ``chosen`` (dx, dy), and that
    shift: the sum over channels of the centred channels' dot products over the overlap, divided by the
    product of the two images' norms there."""
    a, b = _blurred(a), _blurred(b)
    a[flips] = a[flips][..., ::-1]
    best = np.full(len(a), -1.0)
    where = chosen.copy()
    for ddx in (-1, 0, 1):
        for ddy in (-1, 0, 1):
            shifts = chosen + (ddx, ddy)
            for dx, dy in np.unique(shifts, axis=0):
                rows = np.flatnonzero((shifts[:, 0] == dx) & (shifts[:, 1] == dy))
                value = _overlap_similarity(a[rows], b[rows], dx, dy)
                better = value > best[rows]
                best[rows[better]], where[rows[better]] = value[better], (dx, dy)
    return best, where


def zoomed(thumbs: np.ndarray, zoom: float) -> np.ndarray:
    """Thumbnails magnified by ``zoom`` about their centre (bilinear; below 1, shrunk with the border repeated)."""
    if zoom == 1:
        return thumbs
    matrix = _zoom_matrix(thumbs.shape[-1], zoom)
    return matrix @ thumbs @ matrix.T


@functools.lru_cache(maxsize=8)
def _zoom_matrix(size: int, zoom: float) -> np.ndarray:
    """(size, size) weights: output pixel i samples the input at (i + 0.5 - size / 2) / zoom + size / 2 - 0.5."""
    source = np.clip((np.arange(size) + 0.5 - size / 2) / zoom + size / 2 - 0.5, 0, size - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size - 1)
    weights = np.zeros((size, size), np.float32)
    np.add.at(weights, (np.arange(size), low), 1 - (source - low))
    np.add.at(weights, (np.arange(size), high), source - low)
    return weights


def _blurred(thumbs: np.ndarray) -> np.ndarray:
    """Thumbnails blurred by the binomial [1, 4, 6, 4, 1] / 16 each way (a Gaussian of one pixel; edges
    repeated). Measured against no blur and lighter ones, it keeps cropped and recoloured copies close while
    different pictures stay apart (docs/gate.md)."""
    blur = _blur_matrix(thumbs.shape[-1])
    return (blur @ thumbs @ blur.T).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _blur_matrix(size: int) -> np.ndarray:
    """(size, size) weights of the binomial blur, edge pixels repeated."""
    weights = np.zeros((size, size), np.float32)
    for pixel in range(size):
        for offset, tap in zip(range(-2, 3), (1, 4, 6, 4, 1)):
            weights[pixel, min(max(pixel + offset, 0), size - 1)] += tap / 16
    return weights


def _overlap_similarity(a: np.ndarray, b: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Similarity of ``a`` to ``b`` where ``a``'s content sits (dx, dy) pixels from ``b``'s: a's pixel
    (y + dy, x + dx) is compared with b's (y, x) over the overlap."""
    size = a.shape[-1]
    ya, yb = slice(max(0, dy), size + min(0, dy)), slice(max(0, -dy), size + min(0, -dy))
    xa, xb = slice(max(0, dx), size + min(0, dx)), slice(max(0, -dx), size + min(0, -dx))
    pa = a[:, :, ya, xa].reshape(len(a), a.shape[1], -1)
    pb = b[:, :, yb, xb].reshape(len(b), b.shape[1], -1)
    pa = pa - pa.mean(axis=2, keepdims=True)
    pb = pb - pb.mean(axis=2, keepdims=True)
    dot = np.einsum("ncp,ncp->n", pa, pb)
    norms = np.sqrt(np.einsum("ncp,ncp->n", pa, pa) * np.einsum("ncp,ncp->n", pb, pb))
    return np.where(norms > 0, dot / np.maximum(norms, 1e-12), -1.0)
