"""The first screen's leakage block: each variant's test accuracy on every test image and on those with no copy in
the training split, from the cells' predictions, so a reader sees how much of each accuracy and each gain the
leaked images carry."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.data.datasets import Dataset
from tasks.gate.expectations import GateResult
from tasks.report.comparison import Predictions
from tasks.training.grid import BASELINE_AXIS


def leak_view(gate: GateResult | None, summary: pd.DataFrame | None, predictions: Predictions | None,
              data: Dataset | None) -> dict | None:
    """None when the gate found no leaked test image among the scored ones, or nothing was trained."""
    if not gate or not gate.leaked or summary is None or not predictions or data is None:
        return None
    labelled = np.flatnonzero((data.y_test >= 0) & (data.y_test < len(data.class_names)))
    truth = data.y_test[labelled]
    clean = ~np.isin(data.ids_test[labelled].astype(str), [row["image"] for row in gate.leaked])
    if clean.all() or not clean.any():
        return None
    right = {key: np.asarray(classes) == truth for key, classes in predictions.items() if len(classes) == len(truth)}
    base = {seed: hits for (axis, _, seed), hits in right.items() if axis == BASELINE_AXIS}
    rows = []
    for row in summary.to_dict("records"):
        seeds = {seed: hits for (axis, variant, seed), hits in right.items()
                 if (axis, variant) == (row["axis"], row["variant"])}
        if not seeds:
            continue
        shared = [seed for seed in seeds if seed in base]
        is_base = row["axis"] == BASELINE_AXIS
        rows.append({
            "name": "baseline" if is_base else f"{row['variant']} ({row['axis'].replace('_', ' ')})",
            "all": _pct(np.mean([hits.mean() for hits in seeds.values()])),
            "clean": _pct(np.mean([hits[clean].mean() for hits in seeds.values()])),
            "gain_all": None if is_base or not shared else _points([seeds[s].mean() - base[s].mean() for s in shared]),
            "gain_clean": None if is_base or not shared else _points([seeds[s][clean].mean() - base[s][clean].mean()
                                                                      for s in shared])})
    leaked = int((~clean).sum())
    return {"leaked": leaked, "scored": len(truth), "share": f"{leaked / len(truth):.1%}", "clean": int(clean.sum()),
            "rows": rows}


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _points(differences: list[float]) -> str:
    return f"{np.mean(differences) * 100:+.1f}"
