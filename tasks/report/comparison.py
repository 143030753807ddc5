"""The report's "best change against the baseline" section: confusion matrices over the shared seeds and the
validation images the change fixed (the baseline wrong, the change right, on the same seed)."""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

from tasks.data.datasets import Dataset
from tasks.report.aggregate import Verdict
from tasks.report.gate_section import ImageDrawer
from tasks.report.plots import figure_png, pyplot
from tasks.training.grid import AA_AXIS, BASELINE_AXIS

MAX_MATRIX_CLASSES = 20  # beyond this a matrix's labels are unreadable; the top confusions are listed instead
FIXED_IMAGES = 16

Predictions = dict[tuple[str, str, int], list[int]]  # (axis, variant, seed) -> class per validation image


def best_change(verdict: Verdict, summary: pd.DataFrame) -> dict | None:
    """The change that helps most, else the one with the highest mean (said to be within the noise)."""
    if verdict.helps:
        return verdict.helps[0]
    changes = summary[~summary["axis"].isin([BASELINE_AXIS, AA_AXIS])].dropna(subset=["delta"])
    return changes.sort_values("delta", ascending=False).iloc[0].to_dict() if len(changes) else None


def comparison_section(verdict: Verdict, summary: pd.DataFrame, predictions: Predictions, data: Dataset,
                       drawer: ImageDrawer | None = None) -> str:
    best = best_change(verdict, summary)
    if best is None:
        return ""
    labelled = np.flatnonzero((data.y_test >= 0) & (data.y_test < len(data.class_names)))
    truth = data.y_test[labelled]
    seeds = sorted(seed for (axis, variant, seed) in predictions
                   if (axis, variant) == (best["axis"], best["variant"])
                   and (BASELINE_AXIS, BASELINE_AXIS, seed) in predictions)
    pairs = [(np.asarray(predictions[(BASELINE_AXIS, BASELINE_AXIS, s)]),
              np.asarray(predictions[(best["axis"], best["variant"], s)])) for s in seeds]
    pairs = [(b, v) for b, v in pairs if len(b) == len(v) == len(truth)]
    if not pairs:
        return ""
    name = escape(best["variant"])
    clear = "" if best in verdict.helps else " (no change clearly helps: this is the largest mean difference)"
    classes = len(data.class_names)
    base_matrix = sum(_confusion(truth, b, classes) for b, _ in pairs)
    best_matrix = sum(_confusion(truth, v, classes) for _, v in pairs)
    parts = [f"<h2>Best change against the baseline: {name}</h2><p class=muted>On the validation images, "
             f"summed over {len(pairs)} shared seed(s){clear}.</p>"]
    parts.append(_matrices_html(base_matrix, best_matrix, data.class_names, best["variant"]))
    parts.append(_fixed_html(truth, labelled, pairs[0], seeds[0], drawer or ImageDrawer(data), best["variant"]))
    return "\n".join(parts)


def _confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (truth, np.clip(predicted, 0, classes - 1)), 1)
    return matrix


def _matrices_html(base: np.ndarray, best: np.ndarray, names: list[str], variant: str) -> str:
    accuracy = lambda m: np.trace(m) / max(m.sum(), 1)  # noqa: E731
    if len(names) > MAX_MATRIX_CLASSES:
        return _top_confusions_html(base, best, names, variant)
    fig, panels = pyplot().subplots(1, 2, figsize=(10, 4.6), dpi=100)
    for panel, matrix, title in zip(panels, (base, best), ("baseline", variant)):
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        panel.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        panel.set(title=f"{title}: {accuracy(matrix):.1%} correct", xlabel="predicted", ylabel="true")
        ticks = range(len(names))
        panel.set_xticks(ticks, [n[:12] for n in names], rotation=90, fontsize=7)
        panel.set_yticks(ticks, [n[:12] for n in names], fontsize=7)
        for (i, j), count in np.ndenumerate(matrix):
            if count and i != j:
                panel.text(j, i, str(count), ha="center", va="center", fontsize=6, color="#a22")
    return (f"<img alt='confusion matrices of the baseline and {escape(variant)}' "
            f"src='data:image/png;base64,{figure_png(fig)}'>")


def _top_confusions_html(base: np.ndarray, best: np.ndarray, names: list[str], variant: str) -> str:
    off = base - np.diag(np.diag(base))
    worst = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:10], off.shape))[0]
    rows = "".join(f"<tr><td>{escape(names[i])}</td><td>{escape(names[j])}</td><td class=num>{base[i, j]}</td>"
                   f"<td class=num>{best[i, j]}</td></tr>" for i, j in worst if base[i, j])
    return (f"<h3>Most frequent confusions</h3><table><tr><th>true</th><th>predicted</th><th>baseline</th>"
            f"<th>{escape(variant)}</th></tr>{rows}</table>")


def _fixed_html(truth, labelled, pair, seed: int, drawer: ImageDrawer, variant: str) -> str:
    base, best = pair
    fixed = np.flatnonzero((base != truth) & (best == truth))
    broken = int(np.sum((base == truth) & (best != truth)))
    names = drawer.data.class_names
    figures = "".join(
        drawer.image("test", int(labelled[i]), f"{escape(names[truth[i]])}<br><small>baseline said "
                                               f"{escape(names[min(base[i], len(names) - 1)])}</small>",
                     alt=f"a {names[truth[i]]} the baseline took for {names[min(base[i], len(names) - 1)]}")
        for i in fixed[:FIXED_IMAGES])
    summary = (f"On seed {seed}, {escape(variant)} gets {len(fixed)} validation image(s) right that the baseline "
               f"got wrong, and {broken} wrong that the baseline got right.")
    shown = f" The first {min(len(fixed), FIXED_IMAGES)}, with the baseline's answer:" if len(fixed) else ""
    return f"<h3>Images the change fixed</h3><p>{summary}{shown}</p><div class=thumbs>{figures}</div>"


def predictions_of(records: list[dict]) -> Predictions:
    return {(r["axis"], r["variant"], int(r["seed"])): r["val_predictions"] for r in records
            if r.get("val_predictions") and not (isinstance(r.get("best_val_accuracy"), float)
                                                  and math.isnan(r["best_val_accuracy"]))}
