"""An inverted file over unit vectors, for the near-copy search (`tasks.gate.near_copies`): k-means cells, each
query searching the few cells nearest it, so a query meets a few hundred vectors instead of all of them. Pure
numpy; the cells are for the search, not a clustering anyone reads, so a few rounds on a sample build them.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK = 4096  # vectors per product when assigning cells: bounded memory


class VectorIndex:
    """An inverted file over unit vectors: k-means cells, each query searching the PROBES cells nearest it."""

    PROBES = 4

    def __init__(self, vectors: np.ndarray, usable: np.ndarray, seed: int = 0):
        self.ids = np.flatnonzero(usable)
        self.vectors = vectors[self.ids]
        cells = int(np.clip(round(math.sqrt(len(self.ids))), 1, 1024))
        self.centroids = _kmeans(self.vectors, cells, np.random.default_rng(seed))
        cell = _argmax_dot(self.vectors, self.centroids)
        order = np.argsort(cell, kind="stable")
        self.members = np.split(order, np.searchsorted(cell[order], np.arange(1, len(self.centroids))))

    def nearest(self, queries: np.ndarray, own: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The two most similar reference vectors to each query among its cells': similarities and reference
        ids, (n, 2) each, best first (-inf and -1 where there are fewer). ``own``: each query's own id, never
        its own match."""
        n = len(queries)
        best, where = np.full((n, 2), -np.inf, np.float32), np.full((n, 2), -1, np.int64)
        probes = min(self.PROBES, len(self.centroids))
        scores = queries @ self.centroids.T
        nearest_cells = np.argpartition(-scores, probes - 1, axis=1)[:, :probes] if probes < scores.shape[1] \
            else np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        flat_cells = nearest_cells.reshape(-1)
        flat_rows = np.repeat(np.arange(n), probes)
        order = np.argsort(flat_cells, kind="stable")
        bounds = np.searchsorted(flat_cells[order], np.arange(len(self.centroids) + 1))
        for cell, members in enumerate(self.members):
            rows = flat_rows[order[bounds[cell]:bounds[cell + 1]]]
            if not len(rows) or not len(members):
                continue
            sims = queries[rows] @ self.vectors[members].T
            if own is not None:
                sims[own[rows][:, None] == self.ids[members][None, :]] = -np.inf
            if len(members) > 2:
                top = np.argpartition(-sims, 1, axis=1)[:, :2]
            else:
                top = np.broadcast_to(np.arange(len(members)), (len(rows), len(members)))
            values = np.concatenate([best[rows], np.take_along_axis(sims, top, 1)], axis=1)
            ids = np.concatenate([where[rows], self.ids[members[top]]], axis=1)
            keep = np.argsort(-values, axis=1, kind="stable")[:, :2]
            best[rows], where[rows] = np.take_along_axis(values, keep, 1), np.take_along_axis(ids, keep, 1)
        return best, where


def _argmax_dot(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The most similar centroid of each vector."""
    return np.concatenate([(vectors[start:start + BLOCK] @ centroids.T).argmax(axis=1)
                           for start in range(0, len(vectors), BLOCK)]) if len(vectors) else np.zeros(0, np.int64)


def _kmeans(vectors: np.ndarray, cells: int, rng: np.random.Generator, rounds: int = 6,
            sample: int = 20_000) -> np.ndarray:
    """Spherical k-means (unit centroids, cosine assignment) on a sample of the vectors: cells for the index,
    not a clustering anyone reads, so a few rounds on a sample are enough."""
    if len(vectors) > sample:
        vectors = vectors[rng.choice(len(vectors), sample, replace=False)]
    centroids = vectors[rng.choice(len(vectors), cells, replace=False)].copy()
    for _ in range(rounds):
        cell = _argmax_dot(vectors, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, cell, vectors)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        centroids = np.where(empty[:, None], centroids, sums / np.maximum(norms, 1e-12))
    return centroids.astype(np.float32)
