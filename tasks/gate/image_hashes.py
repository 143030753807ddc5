"""A 64-bit hash of each image's exact bytes, for the gate's exact-copy checks (`tasks.gate.profile`); whole-array
numpy over a chunk of images, which `tasks.gate.pixel_stats` calls per chunk. Edited copies (re-encoded,
shifted, cropped, recoloured, mirrored) are the near-copy search's (`tasks.gate.near_copies`), which replaced a
perceptual hash here: equal hashes found only the copies whose hash survived the edit.
"""

from __future__ import annotations

import numpy as np

_HASH_KEYS = np.random.default_rng(20261128).integers(0, 2**62, 1 << 16, dtype=np.uint64) * 2 + 1  # odd multipliers


def content_hash(x: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each image's bytes: a sum of its 64-bit words times fixed random odd keys (mod 2^64).

    Identical images hash alike; two different ones collide with probability about 2^-64 per pair (about 1e-10
    over all pairs of 60,000 images), and it is ~10x faster than hashlib over small images. numpy's integer
    matrix-vector product wraps around like the sum of products and needs no temporary.
    """
    raw = x.reshape(len(x), -1).view(np.uint8)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((len(raw), pad), np.uint8)], axis=1)
    words = raw.view(np.uint64)
    keys = _HASH_KEYS[np.arange(words.shape[1]) % len(_HASH_KEYS)]
    return words @ keys + np.uint64(words.shape[1])
