"""The report's "best change against the baseline" section: confusion matrices over the shared seeds and the
test images the change fixed (the baseline wrong, the change right, on the same seed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tasks.data.datasets import Dataset
from tasks.report.aggregate import Verdict
from tasks.report.plots import confusion_png
from tasks.report.thumbnails import ImageDrawer
from tasks.training.grid import AA_AXIS, BASELINE_AXIS

MAX_MATRIX_CLASSES = 20  # beyond this a matrix's labels are unreadable; the top confusions are listed instead
FIXED_IMAGES = 16

Predictions = dict[tuple[str, str, int], list[int]]  # (axis, variant, seed) -> class per test image


def best_change(verdict: Verdict, summary: pd.DataFrame) -> dict | None:
    """The change that helps most, else the one with the highest mean (said to be within the noise)."""
    if verdict.helps:
        return verdict.helps[0]
    changes = summary[~summary["axis"].isin([BASELINE_AXIS, AA_AXIS])].dropna(subset=["delta"])
    return changes.sort_values("delta", ascending=False).iloc[0].to_dict() if len(changes) else None


def comparison_view(verdict: Verdict, summary: pd.DataFrame, predictions: Predictions, data: Dataset,
                    drawer: ImageDrawer | None = None) -> dict | None:
    """The best change against the baseline on the test images, over the seeds both trained; None when
    there is no change, or no predictions to compare."""
    best = best_change(verdict, summary)
    if best is None:
        return None
    labelled = np.flatnonzero((data.y_test >= 0) & (data.y_test < len(data.class_names)))
    truth = data.y_test[labelled]
    seeds = sorted(seed for (axis, variant, seed) in predictions
                   if (axis, variant) == (best["axis"], best["variant"])
                   and (BASELINE_AXIS, BASELINE_AXIS, seed) in predictions)
    pairs = [(np.asarray(predictions[(BASELINE_AXIS, BASELINE_AXIS, s)]),
              np.asarray(predictions[(best["axis"], best["variant"], s)])) for s in seeds]
    pairs = [(b, v) for b, v in pairs if len(b) == len(v) == len(truth)]
    if not pairs:
        return None
    names, variant = data.class_names, best["variant"]
    base_matrix = sum(_confusion(truth, b, len(names)) for b, _ in pairs)
    best_matrix = sum(_confusion(truth, v, len(names)) for _, v in pairs)
    wide = len(names) > MAX_MATRIX_CLASSES
    return {"variant": variant, "seeds": len(pairs), "clearly_helps": best in verdict.helps,
            "matrices_png": None if wide else confusion_png(base_matrix, best_matrix, names, variant),
            "confusions": _top_confusions(base_matrix, best_matrix, names) if wide else None,
            "fixed": _fixed(truth, labelled, pairs[0], seeds[0], drawer or ImageDrawer(data))}


def _confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (truth, np.clip(predicted, 0, classes - 1)), 1)
    return matrix


def _top_confusions(base: np.ndarray, best: np.ndarray, names: list[str]) -> list[dict]:
    """The baseline's ten most frequent confusions (true, predicted) and their counts for both."""
    off = base - np.diag(np.diag(base))
    worst = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:10], off.shape))[0]
    return [{"true": names[i], "predicted": names[j], "baseline": int(base[i, j]), "variant": int(best[i, j])}
            for i, j in worst if base[i, j]]


def _fixed(truth, labelled, pair, seed: int, drawer: ImageDrawer) -> dict:
    """On one seed: the images the change gets right and the baseline got wrong (up to FIXED_IMAGES drawn,
    with the baseline's answer), and how many it broke."""
    base, best = pair
    fixed = np.flatnonzero((base != truth) & (best == truth))
    names = drawer.data.class_names
    said = lambda i: names[min(base[i], len(names) - 1)]  # noqa: E731
    ids = drawer.data.ids_test
    figures = [drawer.figure(str(ids[labelled[i]]), caption=names[truth[i]], note=f"baseline said {said(i)}",
                             alt=f"a {names[truth[i]]} the baseline took for {said(i)}")
               for i in fixed[:FIXED_IMAGES]]
    return {"seed": seed, "count": len(fixed), "broken": int(np.sum((base == truth) & (best != truth))),
            "figures": figures}


def predictions_of(records: list[dict]) -> Predictions:
    return {(r["axis"], r["variant"], int(r["seed"])): r["test_predictions"] for r in records
            if r.get("test_predictions") and not (isinstance(r.get("test_accuracy"), float)
                                                   and math.isnan(r["test_accuracy"]))}
