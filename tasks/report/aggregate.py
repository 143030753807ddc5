"""Turn per-cell records into per-variant statistics and a verdict: which change helps, by how much, how sure.

Effects are paired: a variant and the baseline trained with the same seed share initial weights and data
order, so their difference on that seed isolates the change. Whether an effect is called "helps" or "hurts" is
the one decision rule of `statistics` (a paired test, Holm-adjusted over the run's comparisons), never the
mean alone.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tasks.errors import NOT_APPLICABLE
from tasks.report import sequential, statistics
from tasks.training.grid import AA_AXIS, AXES, BASELINE_AXIS, CONFIRM_AXIS, baseline_value

RESULT_COLUMNS = ["axis", "variant", "seed", "status", "test_accuracy", "val_accuracy_at_best", "best_epoch",
                  "final_val_accuracy", "final_train_accuracy", "epochs", "seconds", "worker", "cached", "error"]
METRIC = "test_accuracy"  # what the verdict compares: scored once per cell, at the epoch validation chose
SCORED = ("ok", "diverged")  # a diverged run still measured an accuracy: evidence that the change hurts
HELPS, HURTS, UNCLEAR, NO_CONFIDENCE = "helps", "hurts", "no clear difference", "one seed: no confidence"


def results_table(records: list[dict]) -> pd.DataFrame:
    """One row per cell with the columns of results.csv first, then the cell's config."""
    table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("history", "test_predictions")} for r in records])
    config_columns = [c for c in table.columns if c not in RESULT_COLUMNS + ["error_detail"]]
    return table.reindex(columns=RESULT_COLUMNS + config_columns + ["error_detail"])


def history_table(records: list[dict]) -> pd.DataFrame:
    """history.csv: one row per cell and epoch (tidy), with the cell's axis, variant and seed."""
    rows = [{"axis": r["axis"], "variant": r["variant"], "seed": r["seed"], "epoch": epoch + 1,
             **{key: r["history"][key][epoch] for key in r["history"]}}
            for r in records for epoch in range(len(r["history"].get("val_accuracy", [])))]
    return pd.DataFrame(rows, columns=["axis", "variant", "seed", "epoch", "accuracy", "val_accuracy", "loss",
                                       "val_loss"])


def summarise(results: pd.DataFrame, plan: tuple[int, ...] | None = None,
              broken: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Per variant: seeds scored; mean and spread of test accuracy (and of validation accuracy at the chosen
    epoch) with intervals inside 0-1; and against the baseline, the paired difference on shared seeds judged by
    the run's one decision rule (`statistics`): a paired test, Holm-adjusted over every comparison of the run,
    its interval at the level Holm tested it at, the share of seeds on which the variant won, and the seeds 80%
    power would need.

    ``plan``: the looks of a run with seeds in rounds (`sequential.looks`); each comparison is then judged by the
    group-sequential form of the rule (`sequential.settle`) at the look that decided it, or its last, and says
    where it stands ("stopped": decided, futile, broken, budget spent). ``broken``: the variants broken on every
    seed (`diagnose.broken_variants`), named so whatever the test says. The confirmation of the recommended
    configuration (CONFIRM_AXIS) is not one of these comparisons: see `recommend`."""
    results = results[results["axis"] != CONFIRM_AXIS]
    broken = broken or {}
    scored = results[results["status"].isin(SCORED)]
    baseline = scored[scored["axis"] == BASELINE_AXIS].set_index("seed")[METRIC]
    rows, differences = [], {}
    for (axis, variant), group in results.groupby(["axis", "variant"], sort=False):
        ok = group[group["status"].isin(SCORED)]
        row = {"axis": axis, "variant": variant, "cells": len(group), "scored": len(ok),
               "failed": int((group["status"] == "failed").sum()),
               "diverged": int((group["status"] == "diverged").sum()),
               "mean_seconds": float(ok["seconds"].mean()) if len(ok) else math.nan,
               "broken": broken.get((axis, variant), "")}
        for which, column in (("test", METRIC), ("val", "val_accuracy_at_best")):
            row |= mean_interval(ok[column].dropna().to_numpy(), which)
        if axis != BASELINE_AXIS:
            # per seed 0, 1, ... as far as this variant has tried, NaN where either side has no score
            mine = ok.set_index("seed")[METRIC]
            differences[len(rows)] = (mine - baseline).reindex(range(int(group["seed"].max()) + 1)).to_numpy()
        rows.append(row)
    judged = _judge_fixed(differences) if plan is None else _judge_sequential(differences, plan, rows)
    for i, verdict_row in judged.items():
        rows[i] |= verdict_row
        if (results[(results["axis"] == rows[i]["axis"]) & (results["variant"] == rows[i]["variant"])]["status"]
                == NOT_APPLICABLE).all():
            rows[i]["effect"] = NOT_APPLICABLE
    return pd.DataFrame(rows)


def _judge_fixed(differences: dict[int, np.ndarray]) -> dict[int, dict]:
    """Every comparison on all its seeds, Holm-adjusted over the run."""
    paired = {i: d[~np.isnan(d)] for i, d in differences.items()}
    tests = {i: statistics.paired_p(d) for i, d in paired.items()}
    judged = statistics.holm([tests[i][1] for i in paired])
    return {i: _facts(paired[i], *tests[i]) | judge(paired[i], adjusted < statistics.ALPHA, level, adjusted)
            for i, (adjusted, level) in zip(paired, judged)}


def _judge_sequential(differences: dict[int, np.ndarray], plan: tuple[int, ...], rows: list[dict]
                      ) -> dict[int, dict]:
    """Every comparison at the look that decided it (or its last), by the group-sequential rule."""
    order = list(differences)
    broken = frozenset(k for k, i in enumerate(order) if rows[i]["broken"])
    standings = sequential.settle([differences[i] for i in order], plan, broken)
    judged = {}
    for i, standing in zip(order, standings):
        decision = standing.decision
        if decision is None:  # never scored on a shared seed
            judged[i] = _facts(np.array([]), "", math.nan) | judge(np.array([]), False, math.nan)
            continue
        paired = sequential.scored(differences[i][:plan[decision.look]])
        judged[i] = (_facts(paired, *statistics.paired_p(paired))
                     | judge(paired, decision.rejected, decision.level)
                     | {"stopped": standing.state, "look": decision.look + 1, "looks": len(plan),
                        "seeds_tried": len(differences[i])})
    return judged


def _facts(paired: np.ndarray, test: str, p_value: float) -> dict:
    return {"pairs": len(paired), "delta": float(paired.mean()) if len(paired) else math.nan, "test": test,
            "p_value": p_value}


def judge(paired: np.ndarray, claimed: bool, level: float, adjusted: float = math.nan) -> dict:
    """The decision rule's verdict on one comparison's paired differences: whether its test rejected (Holm's
    step-down, or the group-sequential boundary), the level it was tested at, and its Holm-adjusted p-value (NaN
    in rounds, where the boundary of each look plays that part)."""
    n = len(paired)
    share, share_low, share_high = statistics.beats(paired)
    row = {"p_adjusted": adjusted, "level": level, "beats": share, "beats_low": share_low,
           "beats_high": share_high, "seeds_needed": None}
    if n == 0:
        return row | {"ci_low": math.nan, "ci_high": math.nan, "effect": "not scored"}
    if n == 1:
        return row | {"ci_low": math.nan, "ci_high": math.nan, "effect": NO_CONFIDENCE}
    low, high = statistics.t_interval(paired, level)
    effect = (HELPS if paired.mean() > 0 else HURTS) if claimed else UNCLEAR
    if not claimed:
        row["seeds_needed"] = statistics.seeds_for_power(float(paired.mean()), float(paired.std(ddof=1)), level)
    return row | {"ci_low": low, "ci_high": high, "effect": effect}


def interval_words(row) -> str:
    """The interval of a change's gain in points, at the level the rule tested it at ("99.4% CI +1.2 to
    +3.0"); "no interval" without one."""
    if math.isnan(row["ci_low"]):
        return "no interval"
    confidence = f"{(1 - row['level']) * 100:.1f}".removesuffix(".0")
    return f"{confidence}% CI {row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f}"


def rule_words(row) -> str:
    """The test behind a change's label, with its Holm-adjusted p-value, or in rounds its p-value against the
    boundary of the look that decided it ("" where none ran)."""
    if not row.get("test"):
        return ""
    if not _in_rounds(row):
        return f"{row['test']}, adjusted p = {row['p_adjusted']:.2g}"
    return (f"{row['test']} at round {int(row['look'])} of {int(row['looks'])}, p = {row['p_value']:.2g} "
            f"against its boundary {row['level']:.2g}")


def _in_rounds(row) -> bool:
    look = row.get("look")
    return look is not None and not (isinstance(look, float) and math.isnan(look))


def mean_interval(values: np.ndarray, name: str, confidence: float = 0.95) -> dict:
    """``mean_<name>``, ``std_<name>`` and a 95% interval of the mean accuracy that stays inside 0-1 (NaN with
    fewer than two values)."""
    n = len(values)
    low, high = statistics.accuracy_interval(values, confidence)
    return {f"mean_{name}": float(values.mean()) if n else math.nan,
            f"std_{name}": float(values.std(ddof=1)) if n > 1 else math.nan,
            f"{name}_ci_low": low, f"{name}_ci_high": high}


@dataclass(frozen=True)
class Verdict:
    headline: str
    helps: list[dict]  # summary rows, largest gain first
    hurts: list[dict]
    unclear: list[dict]
    notes: list[str]
    control: dict | None = None  # the A/A control's row (--aa), kept out of the changes
    caveats: list[str] = field(default_factory=list)  # said up front, under the headline
    broken: list[dict] = field(default_factory=list)  # broken on every seed: named apart, whatever the test says
    plan: tuple[int, ...] | None = None  # the looks of a run in rounds (--seeds auto)
    recommendation: object = None  # `recommend.Recommendation`, set by the report once it is known


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


def verdict(summary: pd.DataFrame, plan: tuple[int, ...] | None = None) -> Verdict:
    """Rank the changes by mean paired gain and say, in words, what the intervals support."""
    changes = summary[~summary["axis"].isin([BASELINE_AXIS, AA_AXIS])]
    changes = changes.sort_values("delta", ascending=False, na_position="last")
    broken = changes[changes["broken"].fillna("") != ""] if "broken" in changes else changes.iloc[:0]
    changes = changes.drop(broken.index)
    pick = lambda label: changes[changes["effect"] == label].to_dict("records")  # noqa: E731
    helps, hurts = pick(HELPS), pick(HURTS)
    unclear = pick(UNCLEAR) + pick(NO_CONFIDENCE)
    notes, caveats = [], []
    untestable = [row for row in changes.to_dict("records") if row.get("test") == "exact sign-flip"
                  and statistics.smallest_sign_flip_p(int(row["pairs"])) >= row["level"]]
    if untestable:
        level = min(row["level"] for row in untestable)
        caveats.append(f"With {int(untestable[0]['pairs'])} seeds no claim is possible for "
                     f"{', '.join(r['variant'] for r in untestable)}: the exact test these seeds allow cannot go "
                     f"below p = {statistics.smallest_sign_flip_p(int(untestable[0]['pairs'])):.2g}, above the "
                     f"adjusted level {level:.2g}; {statistics.seeds_to_reach(level)} seeds would be needed.")
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
        headline = (f"{_describe(best)} helps most: +{best['delta'] * 100:.1f} points of test accuracy "
                    f"over the baseline ({interval_words(best)}, {int(best['pairs'])} seeds).")
    elif not len(changes) and len(broken):
        headline = f"No change beats the baseline: {', '.join(broken['variant'])} broke on every seed."
    elif len(changes) and changes["delta"].notna().any():
        top = changes.iloc[0]
        headline = (f"No change clearly beats the baseline. The largest mean difference, {top['delta'] * 100:+.1f} "
                    f"points from {_describe(top)}, is within the noise between seeds.")
    else:
        headline = "No change could be compared with the baseline."
    return Verdict(headline, helps, hurts, unclear, notes, control, caveats, broken.to_dict("records"), plan)


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
