"""Deterministic stratified sampling: a held-out split and a capped subset that keep each class's share."""

from __future__ import annotations

import numpy as np


def _class_ranks(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's position within its class in a seeded random order, and the size of its class."""
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    _, inverse, counts = np.unique(labels[shuffled], return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_shuffled = np.empty(len(labels), dtype=np.int64)
    rank_shuffled[order] = np.arange(len(labels)) - starts[inverse[order]]
    rank = np.empty_like(rank_shuffled)
    rank[shuffled] = rank_shuffled
    size = np.empty_like(rank_shuffled)
    size[shuffled] = counts[inverse]
    return rank, size


def holdout_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for round(fraction * n_c) items of each class c (so a class of one image stays in training)."""
    rank, size = _class_ranks(labels, seed)
    return (rank + 0.5) / size < fraction


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` items in proportion to class sizes; every class is in it when n >= #classes."""
    rank, size = _class_ranks(labels, seed)
    return np.sort(np.argsort(rank / size, kind="stable")[:n])
