"""Near copies: the same picture twice, after a colour shift, a small translation, a crop and rescale, JPEG
re-encoding or a horizontal flip. Each image's near copy in its own split, and each test image's near copy in
the training split, with a distance.

Equal perceptual hashes find only copies whose hash survived the edit; real datasets leak through copies that
were cropped, shifted or colour-corrected (Barz & Denzler, "Do We Train on Test Data?", 2020: 3.3% of CIFAR-10's
test images have a near duplicate in its training set). The search works in two stages, each choice measured
with `benchmarks/bench_leakage.py` (the numbers are in docs/gate.md#near-copies-and-leakage):

1. **Candidates.** Every image becomes a 16x16 thumbnail (block means of each of its first three channels) and
   a 6x6 descriptor of it, each channel centred and scaled to unit length, so a change of brightness or colour
   (an offset and a gain per channel) leaves it unchanged. A translated copy is not close to its original this
   way, so each query image is also described shifted by 2 thumbnail pixels in every direction, and mirrored:
   18 variants (11 within one split, where each pair is looked up from both ends). An inverted file (k-means
   cells over the reference descriptors; each variant searches the 4 cells nearest it) keeps this from
   comparing every pair. The four best distinct candidates go on.
2. **Verification.** Each candidate is aligned with the query at the best shift near the one the search found
   (mirrored if a mirrored variant won), slightly blurred, and compared at 16x16, then, if still within
   SEARCH_LIMIT, at 32x32 and 10% larger and smaller (a cropped copy is a magnified one). The similarity is the
   sum over channels of the centred channels' dot products, divided by the product of the two images' norms;
   the distance is one minus that. The closest candidate is a copy when it is at most RATIO of the runner-up's
   distance: where many pictures are alike (digits of one class, forms of one layout), the nearest is no closer
   than the next, and neither is a copy. Nor is it a copy beyond SCALE_SHARE of the training images' median
   distance to their nearest other image: in a small sample of simple pictures the runner-up is far, and the
   ratio test alone would pass two different ones. The gate's checks then keep the copies within their
   ``max_distance``.

Pure numpy on the cores (threads; numpy releases the GIL); the gate's statistics step calls `near_copy_columns`
once per dataset and keeps the result with the statistics (bump STATS_VERSION in `tasks.gate.pixel_stats` when
this search changes).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from tasks.gate.cores import worker_threads
from tasks.gate.image_alignment import aligned, zoomed
from tasks.gate.vector_index import VectorIndex

THUMB = 16  # thumbnail side: every image is compared at this size, whatever its own
GRID = 6  # candidate descriptor: 6x6 block means per channel
SHIFT = 2  # query variants: shifted by -2, 0 and +2 thumbnail pixels each way (an eighth of the side)
SEARCH_LIMIT = 0.1  # distances kept in the statistics (at 16x16 and at 32x32); the suite's threshold chooses
MAX_DISTANCE = 0.04  # the default threshold of the gate's checks (tasks/gate/gate_suite.toml), measured
CHUNK = 4096  # images per block of work at most: bounded memory for any dataset size ...
BLOCK_VALUES = 1 << 24  # ... and at most this many pixel values a block (64 MB as float32) for large images
ZOOMS = (0.9, 1.0, 1 / 0.9)  # the finer look also tries the candidate 10% smaller and larger: crops rescaled
CANDIDATES = 4  # candidates verified per image: the copy and the pictures it must stand out from
RATIO = 0.2  # a copy is at most this share of the runner-up's distance (0.5 flagged 243 of 1,797 digits)
SCALE_SHARE = 0.25  # ... and of the training images' median distance to their nearest other image


def near_copy_columns(data) -> pd.DataFrame:
    """The near-copy columns of the gate's statistics table, one row per decoded image (``split``, ``path``):
    each image's near copy in its split and (test images) in the training split, by path, with the distance;
    None and NaN where there is none. ``data``: a `tasks.data.store.Dataset`."""
    found = near_copies({"train": data.x_train, "test": data.x_test})
    ids = {"train": data.ids_train.astype(str), "test": data.ids_test.astype(str)}
    parts = []
    for split, table in found.items():
        part = pd.DataFrame({"split": split, "path": ids[split]})
        for column, other in (("in_split", split), ("in_other_split", "train")):
            if column in table:
                index = table[column].to_numpy()
                part[f"near_copy_{column}"] = np.where(index >= 0, ids[other][np.maximum(index, 0)], None) \
                    if len(ids[other]) else None
                part[f"near_copy_{column}_distance"] = table[f"{column}_distance"].to_numpy()
            else:
                part[f"near_copy_{column}"], part[f"near_copy_{column}_distance"] = None, np.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def near_copies(splits: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    """For each split: a table with one row per image (index order) and its nearest copy in its own split
    (``in_split``, ``in_split_distance``) and, for every split after the first, in the first split
    (``in_other_split``, ``in_other_split_distance``). A copy is named by its index in its split; -1 and NaN
    where there is none (none close, or none that stands out from the next-nearest pictures)."""
    names = list(splits)
    described = {name: Described(x) for name, x in splits.items()}
    out, limit = {}, np.inf
    for position, name in enumerate(names):
        table = pd.DataFrame(index=range(len(splits[name])))
        found, distance, nearest = _nearest(described[name], described[name], same=True)
        if not position and np.isfinite(nearest).any():
            limit = SCALE_SHARE * float(np.nanmedian(nearest))
        table["in_split"], table["in_split_distance"] = _mutual(*_within(found, distance, limit))
        if position:
            twins = out[names[0]]["in_split"].to_numpy()
            found, distance, _ = _nearest(described[name], described[names[0]], same=False, twins=twins)
            table["in_other_split"], table["in_other_split_distance"] = _within(found, distance, limit)
        out[name] = table
    return out


def _within(found: np.ndarray, distance: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Only the copies at most ``limit`` away."""
    keep = distance <= limit
    return np.where(keep, found, -1), np.where(keep, distance, np.nan)


def _mutual(found: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within one split, a copy is a copy both ways: where image a found b, b gets a too, unless b found a
    closer copy of its own."""
    found, distance = found.copy(), distance.copy()
    queries = np.flatnonzero(found >= 0)
    for a in queries[np.argsort(-distance[queries], kind="stable")]:  # the closest last, so it wins
        b = found[a]
        if not distance[b] <= distance[a]:  # NaN (none found) or farther
            found[b], distance[b] = a, distance[a]
    return found, distance


class Described:
    """One split's images as the search needs them: the thumbnails, the candidate descriptors and which images
    have any structure (a constant image is its own check, and a copy of nothing)."""

    def __init__(self, x: np.ndarray):
        self.x = x
        if not len(x):
            self.thumbs = np.zeros((0, 1, THUMB, THUMB), np.float32)
            self.descriptors, self.informative = np.zeros((0, GRID * GRID), np.float32), np.zeros(0, bool)
            return
        self.thumbs = np.concatenate([_thumbnails(x[rows]) for rows in _blocks(len(x), _per_block(x))])
        self.descriptors, self.informative = _describe(self.thumbs, 0, 0, flip=False)


def _in_parallel(work, blocks) -> None:
    """``work(block)`` for every block, on one thread per core with one BLAS thread each: numpy releases the
    GIL in its loops and products, so the cores share the blocks instead of BLAS sharing each small product."""
    with worker_threads() as pool:
        list(pool.map(work, blocks))


def _per_block(x: np.ndarray) -> int:
    """Images of ``x`` per block: CHUNK, fewer where they are large (a photo at 128x96 is 12 CIFAR images)."""
    return int(np.clip(BLOCK_VALUES // max(1, math.prod(x.shape[1:])), 1, CHUNK))


def _blocks(n: int, size: int = CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _thumbnails(x: np.ndarray, side: int = THUMB) -> np.ndarray:
    """(n, channels, side, side) float32 block means of each image's first three channels (or its only one);
    non-finite values count as 0."""
    n, height, width, channels = x.shape
    keep = 3 if channels >= 3 else 1
    planes = x[..., :keep].astype(np.float32)
    if x.dtype.kind == "f":
        planes[~np.isfinite(planes)] = 0.0
    planes = planes.transpose(0, 3, 1, 2).reshape(n * keep, height, width)
    across = planes.reshape(-1, width) @ _averaging_matrix(width, side).T
    return (_averaging_matrix(height, side) @ across.reshape(n * keep, height, side)).reshape(n, keep, side, side)


@functools.lru_cache(maxsize=8)
def _averaging_matrix(size: int, blocks: int) -> np.ndarray:
    """(blocks, size) weights that average each of ``blocks`` equal spans of ``size`` pixels (spans may overlap
    fractional pixels, so an image smaller than the thumbnail is sampled up)."""
    edges = np.linspace(0, size, blocks + 1)
    pixel = np.arange(size)
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def _shifted_means(size: int, cells: int, shift: int, flip: bool) -> np.ndarray:
    """(cells, size) weights: block means of a thumbnail side shifted by ``shift`` pixels (edge pixels repeated,
    as a translated copy's border is), optionally mirrored."""
    base = _averaging_matrix(size, cells)
    source = np.clip(np.arange(size) + shift, 0, size - 1)
    weights = np.zeros_like(base)
    for pixel in range(size):
        weights[:, source[pixel]] += base[:, pixel]
    return weights[:, ::-1] if flip else weights


def _describe(thumbs: np.ndarray, dx: int, dy: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length candidate descriptors of the thumbnails seen shifted by (dx, dy) (and mirrored), and which
    images have structure at all. Each channel is centred and scaled to unit length, but never by more than
    four times the image's strongest channel: a flat channel (a grey or single-colour picture) is not noise
    blown up."""
    n, channels = thumbs.shape[:2]
    across = _shifted_means(THUMB, GRID, dx, flip)
    down = _shifted_means(THUMB, GRID, dy, False)
    cells = (down @ thumbs.reshape(n * channels, THUMB, THUMB) @ across.T).reshape(n, channels, GRID * GRID)
    return _unit_channels(cells, 4.0)


def _unit_channels(values: np.ndarray, most: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, channels, k) values centred per channel, each scaled toward unit length (at most ``most`` times the
    strongest channel's factor), flattened and scaled to unit length; and which rows had any spread."""
    centred = values - values.mean(axis=2, keepdims=True)
    norms = np.sqrt(np.square(centred).sum(axis=2, keepdims=True))
    strongest = norms.max(axis=1, keepdims=True)
    informative = strongest[:, 0, 0] > 1e-3 * max(1.0, float(np.abs(values).max(initial=0.0)))
    scaled = centred / np.maximum(norms, strongest / most + 1e-12)
    flat = scaled.reshape(len(values), -1)
    flat /= np.maximum(np.sqrt(np.square(flat).sum(axis=1, keepdims=True)), 1e-12)
    return flat.astype(np.float32), informative


VARIANTS = [(dx, dy, flip) for flip in (False, True) for dx in (-SHIFT, 0, SHIFT) for dy in (-SHIFT, 0, SHIFT)]
# Within one split each pair is looked up from both ends, so half the variants do: a copy b = a shifted by s is
# found from a by s or from b by -s; b = a mirrored, then shifted by (dx, dy), from a by (dx, dy) or from b by
# (dx, -dy). These 11 hold one of each (`_mutual` then gives both images the pair).
HALF = [(dx, dy, flip) for dx, dy, flip in VARIANTS
        if (flip and dy >= 0) or (not flip and (dx > 0 or (dx == 0 and dy >= 0)))]


def _nearest(queries: Described, reference: Described, same: bool,
             twins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query image's near copy in ``reference`` (its index, -1 if none), the distance, and the distance to
    its nearest reference image, copy or not (NaN for an image without structure). ``same``: the two are one
    split (an image is not its own copy). ``twins``: each reference image's own near copy in its split (-1 if
    none), so that two copies of one picture are not taken for two different pictures.

    The CANDIDATES best candidates are verified. The closest is a copy when it is within SEARCH_LIMIT and
    clearly closer than the next (at most RATIO of its distance): where many pictures are alike (digits of one
    class, documents of one layout, single soft spots), the nearest is no closer than the next, and neither is
    a copy (Lowe's ratio test).
    """
    n = len(queries.thumbs)
    found, distance, nearest = np.full(n, -1, np.int64), np.full(n, np.nan), np.full(n, np.nan)
    if not n or not reference.informative.sum() or (same and n < 2):
        return found, distance, nearest
    index = VectorIndex(reference.descriptors, reference.informative)
    picks = np.full((n, CANDIDATES), -1, np.int64)  # reference image of each candidate, best first
    variants = np.zeros((n, CANDIDATES), np.int64)  # the variant that found it

    looked_up = [VARIANTS.index(v) for v in (HALF if same else VARIANTS)]

    def search(rows: slice) -> None:  # every variant of a block at once: fewer, larger products
        described = [_describe(queries.thumbs[rows], *VARIANTS[v]) for v in looked_up]
        ids = np.arange(rows.start, rows.stop)
        sim, ref = index.nearest(np.concatenate([d for d, _ in described]), np.tile(ids, len(looked_up)) if same
                                 else None)
        count, per = len(ids), sim.shape[1]
        usable = np.repeat(np.stack([u for _, u in described])[..., None], per, axis=2)
        sim = np.where(usable, sim.reshape(len(looked_up), count, per), -np.inf).transpose(1, 0, 2).reshape(count, -1)
        ref = ref.reshape(len(looked_up), count, per).transpose(1, 0, 2).reshape(count, -1)
        variant = np.repeat(looked_up, per)
        order = np.argsort(-sim, axis=1, kind="stable")
        ranked, ranked_sim = np.take_along_axis(ref, order, 1), np.take_along_axis(sim, order, 1)
        ranked = np.where(np.isfinite(ranked_sim), ranked, -1)
        for slot in range(CANDIDATES):  # the best remaining reference image not picked yet, with its variant
            column = (ranked >= 0).argmax(axis=1)
            chosen = ranked[np.arange(count), column]
            picks[rows, slot] = chosen
            variants[rows, slot] = variant[order[np.arange(count), column]]
            ranked = np.where(ranked == chosen[:, None], -1, ranked)

    _in_parallel(search, _blocks(n, CHUNK // len(VARIANTS) * 4))
    candidates = np.flatnonzero((picks[:, 0] >= 0) & queries.informative)
    measured = np.full((n, CANDIDATES), np.nan)

    def verify(rows: slice) -> None:
        chosen = candidates[rows]
        for slot in range(CANDIDATES):
            some = chosen[picks[chosen, slot] >= 0]
            if len(some):
                measured[some, slot] = _verify(queries, some, reference, picks[some, slot],
                                               [VARIANTS[v] for v in variants[some, slot]])

    _in_parallel(verify, _blocks(len(candidates), min(_per_block(queries.x), _per_block(reference.x))))
    ranked = np.argsort(np.where(np.isnan(measured), np.inf, measured), axis=1, kind="stable")
    nearest = np.take_along_axis(measured, ranked[:, :1], 1)[:, 0]
    copy = np.take_along_axis(picks, ranked[:, :1], 1)[:, 0]
    near = nearest.copy()
    others = np.take_along_axis(measured, ranked[:, 1:], 1)
    if twins is not None:  # a candidate that is the match's own copy is one picture twice, not another picture
        other_ids = np.take_along_axis(picks, ranked[:, 1:], 1)
        same_picture = (other_ids >= 0) & ((twins[np.maximum(other_ids, 0)] == copy[:, None])
                                           | (twins[np.maximum(copy, 0)][:, None] == other_ids))
        others = np.where(same_picture, np.nan, others)
    runner_up = np.nanmin(np.where(others > SEARCH_LIMIT, np.nan, others), axis=1, initial=np.inf)
    runner_up[~np.isfinite(runner_up)] = np.nan  # none within reach: nothing to tell the match from
    close = (near <= SEARCH_LIMIT) & _stands_out(near, runner_up)  # NaN: not close
    found[close] = copy[close]
    distance[close] = np.round(near[close], 4)
    return found, distance, nearest


def _stands_out(near: np.ndarray, runner_up: np.ndarray) -> np.ndarray:
    """Whether each match is clearly closer than the runner-up (NaN: none within reach), by the factor RATIO."""
    return np.isnan(runner_up) | (near <= RATIO * runner_up)


def _verify(queries: Described, rows: np.ndarray, reference: Described, copies: np.ndarray,
            variants: list[tuple[int, int, bool]]) -> np.ndarray:
    """The distance of each query image (``rows``) to its candidate (``copies``), in two steps: at 16x16 within
    one pixel of the shift the candidates chose, then, for the pairs within SEARCH_LIMIT there, at 32x32 within
    one pixel of twice the best 16x16 shift (different pictures that are alike at 16 pixels, a pentagon and a
    square on one background, part there). The query is mirrored if a mirrored variant won. Beyond SEARCH_LIMIT
    at 16x16 the distance is the 16x16 one: not a copy, but how far the nearest picture is."""
    flips = np.array([flip for _, _, flip in variants], bool)
    chosen = np.array([(dx, dy) for dx, dy, _ in variants], np.int64).reshape(-1, 2)
    similarity, shift = aligned(queries.thumbs[rows], reference.thumbs[copies], flips, chosen)
    distance = 1 - similarity
    closer = np.flatnonzero(distance <= SEARCH_LIMIT)
    if len(closer):
        a = _thumbnails(queries.x[rows[closer]], 2 * THUMB)
        b = _thumbnails(reference.x[copies[closer]], 2 * THUMB)
        fine = np.max([aligned(a, zoomed(b, zoom), flips[closer], 2 * shift[closer])[0] for zoom in ZOOMS], axis=0)
        distance[closer] = 1 - fine
    return distance
