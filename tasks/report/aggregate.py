"""Turn per-cell records into per-variant statistics and a verdict: which change helps, by how much, how sure.

Effects are paired: a variant and the baseline trained with the same seed share initial weights and data
order, so their difference on that seed isolates the change. An effect is called "helps" or "hurts" only when
the 95% t-interval of the mean paired difference excludes zero, never from the mean alone.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.errors import NOT_APPLICABLE
from tasks.training.grid import AA_AXIS, AXES, BASELINE_AXIS, baseline_value

RESULT_COLUMNS = ["axis", "variant", "seed", "status", "best_val_accuracy", "final_val_accuracy",
                  "final_train_accuracy", "epochs", "seconds", "worker", "cached", "error"]
SCORED = ("ok", "diverged")  # a diverged run still measured an accuracy: evidence that the change hurts
HELPS, HURTS, UNCLEAR, NO_CONFIDENCE = "helps", "hurts", "no clear difference", "one seed: no confidence"


def results_table(records: list[dict]) -> pd.DataFrame:
    """One row per cell with the columns of results.csv first, then the cell's config."""
    table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("history", "val_predictions")} for r in records])
    config_columns = [c for c in table.columns if c not in RESULT_COLUMNS + ["error_detail"]]
    return table.reindex(columns=RESULT_COLUMNS + config_columns + ["error_detail"])


def history_table(records: list[dict]) -> pd.DataFrame:
    """history.csv: one row per cell and epoch (tidy), with the cell's axis, variant and seed."""
    rows = [{"axis": r["axis"], "variant": r["variant"], "seed": r["seed"], "epoch": epoch + 1,
             **{key: r["history"][key][epoch] for key in r["history"]}}
            for r in records for epoch in range(len(r["history"].get("val_accuracy", [])))]
    return pd.DataFrame(rows, columns=["axis", "variant", "seed", "epoch", "accuracy", "val_accuracy", "loss",
                                       "val_loss"])


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant: seeds scored; mean, sd and 95% t-interval of best and final val accuracy; and against the
    baseline, the paired difference on shared seeds with its interval, a paired test and the effect label."""
    scored = results[results["status"].isin(SCORED)]
    baseline = scored[scored["axis"] == BASELINE_AXIS].set_index("seed")["best_val_accuracy"]
    rows = []
    for (axis, variant), group in results.groupby(["axis", "variant"], sort=False):
        ok = group[group["status"].isin(SCORED)]
        row = {"axis": axis, "variant": variant, "cells": len(group), "scored": len(ok),
               "failed": int((group["status"] == "failed").sum()),
               "diverged": int((group["status"] == "diverged").sum()),
               "mean_seconds": float(ok["seconds"].mean()) if len(ok) else math.nan}
        for which in ("best", "final"):
            row |= mean_interval(ok[f"{which}_val_accuracy"].dropna().to_numpy(), which)
        if axis != BASELINE_AXIS:
            paired = ok.set_index("seed")["best_val_accuracy"] - baseline
            row |= paired_effect(paired.dropna().to_numpy())
            if (group["status"] == NOT_APPLICABLE).all():
                row["effect"] = NOT_APPLICABLE
        rows.append(row)
    return pd.DataFrame(rows)


def mean_interval(values: np.ndarray, name: str, confidence: float = 0.95) -> dict:
    """``mean_<name>``, ``std_<name>`` and the t-interval of the mean (NaN with fewer than two values)."""
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    half = _t_half_width(std, n, confidence) if n > 1 else math.nan
    return {f"mean_{name}": mean, f"std_{name}": std, f"{name}_ci_low": mean - half, f"{name}_ci_high": mean + half}


def _t_half_width(std: float, n: int, confidence: float) -> float:
    from scipy import stats as scipy_stats  # ~1.5 s to import: only where an interval is computed

    return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


EXACT_UP_TO = 12  # pairs: 2^12 = 4096 sign patterns enumerate in a millisecond; beyond, the t-test


def paired_test(differences: np.ndarray) -> tuple[str, float]:
    """Two-sided p-value that the mean paired difference is zero: exact sign-flip permutation test for up to
    EXACT_UP_TO pairs (no normality assumed, which few seeds cannot check), the paired t-test beyond."""
    n = len(differences)
    if n <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # every +/- pattern
        flipped = np.abs((signs * differences).mean(axis=1))
        return "exact permutation", float(np.mean(flipped >= abs(differences.mean()) - 1e-12))
    from scipy import stats as scipy_stats

    return "paired t-test", float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


def paired_effect(differences: np.ndarray, confidence: float = 0.95) -> dict:
    """Mean paired difference, its t-interval, a paired test, and the label the interval supports."""
    n = len(differences)
    if n == 0:
        return {"pairs": 0, "delta": math.nan, "ci_low": math.nan, "ci_high": math.nan, "effect": "not scored",
                "test": "", "p_value": math.nan}
    mean = float(differences.mean())
    if n == 1:
        return {"pairs": 1, "delta": mean, "ci_low": math.nan, "ci_high": math.nan, "effect": NO_CONFIDENCE,
                "test": "", "p_value": math.nan}
    half = _t_half_width(float(differences.std(ddof=1)), n, confidence)
    low, high = mean - half, mean + half
    effect = HELPS if low > 0 else HURTS if high < 0 else UNCLEAR
    test, p_value = paired_test(differences)
    return {"pairs": n, "delta": mean, "ci_low": low, "ci_high": high, "effect": effect, "test": test,
            "p_value": p_value}


@dataclass(frozen=True)
class Verdict:
    headline: str
    helps: list[dict]  # summary rows, largest gain first
    hurts: list[dict]
    unclear: list[dict]
    notes: list[str]
    control: dict | None = None  # the A/A control's row (--aa), kept out of the changes


def nothing_compared(records: list[dict]) -> str | None:
    """Why no change could be compared with the baseline, in one sentence (the first screen's headline and the
    CLI's last line); None when the baseline has a scored run."""
    base = [r for r in records if r["axis"] == BASELINE_AXIS]
    if not records or any(r["status"] in SCORED for r in base):
        return None
    everything = not any(r["status"] in SCORED for r in records)
    reason = Counter(r.get("error") or r["status"] for r in (records if everything else base)).most_common(1)[0][0]
    who = "every training run failed" if everything else "the baseline failed on every seed"
    advice = ""
    if "out of memory" in reason.lower() or "SIGKILL" in reason:
        advice = ("; it ran out of memory: try a smaller --image-size (64, say) or fewer training processes "
                  "(--processes 1)")
    return f"Nothing could be compared: {who} ({reason.rstrip('.')}){advice}."


def verdict(summary: pd.DataFrame) -> Verdict:
    """Rank the changes by mean paired gain and say, in words, what the intervals support."""
    changes = summary[~summary["axis"].isin([BASELINE_AXIS, AA_AXIS])]
    changes = changes.sort_values("delta", ascending=False, na_position="last")
    pick = lambda label: changes[changes["effect"] == label].to_dict("records")  # noqa: E731
    helps, hurts = pick(HELPS), pick(HURTS)
    unclear = pick(UNCLEAR) + pick(NO_CONFIDENCE)
    notes = []
    if len(changes) and (changes["effect"] == NO_CONFIDENCE).all():
        notes.append("Each variant ran with one seed, so no confidence can be given: run with --seeds 3 or more.")
    control = next(iter(summary[summary["axis"] == AA_AXIS].to_dict("records")), None)
    if control is not None and control["effect"] in (HELPS, HURTS):
        notes.append("The A/A control, the baseline trained twice, shows a clear difference from itself: the "
                     "noise between seeds is larger than the intervals allow for, so read every verdict here with "
                     "caution and add seeds.")
    skipped = changes[changes["effect"] == NOT_APPLICABLE]["variant"].tolist()
    if skipped:
        notes.append(f"Not applicable to this model (its builder takes no option for them): {', '.join(skipped)}.")
    failed = int(summary["failed"].sum())
    if failed:
        notes.append(f"{failed} training run(s) failed and are left out; see the table of all runs.")
    if helps:
        best = helps[0]
        headline = (f"{_describe(best)} helps most: +{best['delta'] * 100:.1f} points of best validation accuracy "
                    f"over the baseline (95% CI {best['ci_low'] * 100:+.1f} to {best['ci_high'] * 100:+.1f}).")
    elif len(changes) and changes["delta"].notna().any():
        top = changes.iloc[0]
        headline = (f"No change clearly beats the baseline. The largest mean difference, {top['delta'] * 100:+.1f} "
                    f"points from {_describe(top)}, is within the noise between seeds.")
    else:
        headline = "No change could be compared with the baseline."
    return Verdict(headline, helps, hurts, unclear, notes, control)


def _describe(row) -> str:
    return f"{row['variant']} ({row['axis'].replace('_', ' ')})"


CURVE_KEYS = ("accuracy", "val_accuracy", "loss", "val_loss")


def mean_curves(records: list[dict]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per (axis, variant) and per epoch over seeds: the mean of train and validation accuracy and loss, and the
    band the seeds span ("<key>_low", "<key>_high"). Early-stopped runs are padded with NaN, not zero."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if record["status"] in SCORED:
            runs.setdefault((record["axis"], record["variant"]), []).append(record["history"])
    curves = {}
    for variant, histories in runs.items():
        entry = {}
        for key in CURVE_KEYS:
            padded = _pad([h.get(key, []) for h in histories])
            with warnings.catch_warnings():  # an epoch where every seed has NaN stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                entry |= {key: np.nanmean(padded, axis=0), f"{key}_low": np.nanmin(padded, axis=0),
                          f"{key}_high": np.nanmax(padded, axis=0)}
        curves[variant] = entry
    return curves


def _pad(runs: list[list[float]]) -> np.ndarray:
    length = max((len(run) for run in runs), default=0)
    padded = np.full((len(runs), length), np.nan)
    for i, run in enumerate(runs):
        padded[i, :len(run)] = run
    return padded


def axis_rows(summary: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The baseline and the variants of one axis, in the axis's declared order with the baseline in its place
    (a grid file's axis: the baseline first, then the file's order)."""
    rows = summary[(summary["axis"] == axis) | (summary["axis"] == BASELINE_AXIS)].copy()
    order = {name: i for i, name in enumerate(AXES.get(axis, {}))}
    position = [order.get(variant, len(order) + i) for i, variant in enumerate(rows["variant"])]
    rows["order"] = [order.get(baseline_value(axis), -1) if axis_name == BASELINE_AXIS else at
                     for axis_name, at in zip(rows["axis"], position)]
    return rows.sort_values("order", kind="stable").drop(columns="order")


def axes_in(summary: pd.DataFrame) -> list[str]:
    """The axes a summary holds, built-in ones in their usual order, then a grid file's, then the factorial."""
    present = [axis for axis in dict.fromkeys(summary["axis"]) if axis not in (BASELINE_AXIS, AA_AXIS)]
    return sorted(present, key=lambda axis: (list(AXES).index(axis) if axis in AXES else len(AXES)))


def training_times(records: list[dict], slots: int, wall: float) -> dict[str, float]:
    """Wall time of the fan-out, time spent inside training processes, and the busiest slot's share of it.

    A slot is a training process of the slot pool or a Dask worker, as the records' ``worker`` names it."""
    per_slot: dict[str, float] = {}
    for record in records:
        per_slot[record["worker"]] = per_slot.get(record["worker"], 0.0) + record["seconds"]
    return {"training (wall)": wall, "training (inside processes, summed)": sum(per_slot.values()),
            "training (slowest slot)": max(per_slot.values(), default=0.0), "slots": float(slots)}
