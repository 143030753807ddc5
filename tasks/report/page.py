"""The run's report: one self-contained HTML page whose first screen is the verdict.

This module computes what each section shows, as plain values and formatted strings; `templates/report.html`
and its partials say how it looks. Plots are PNGs embedded as base64 data URIs and the style is inline, so the
file can be mailed or archived alone; the only links are relative ones to files beside it (results.csv,
history.csv, the Data Docs).
"""

from __future__ import annotations

import math

import pandas as pd

from tasks.data.datasets import Dataset
from tasks.gate.expectations import GateResult
from tasks.report.aggregate import HELPS, HURTS, Verdict, axes_in, axis_rows, interval_words, rule_words
from tasks.report.comparison import comparison_view
from tasks.report.explain import gate_links
from tasks.report.gate_section import gate_view
from tasks.report.leakage import leak_view
from tasks.report.plots import curves_png, effects_png
from tasks.report.recommend import cli_flags, settings_block
from tasks.report.render import render
from tasks.report.sequential import BROKEN, FUTILE, SPENT
from tasks.report.statistics import MAX_SEEDS
from tasks.report.thumbnails import ImageDrawer
from tasks.training.grid import BASELINE_AXIS, baseline_value

DASH = "\u2013"  # an empty cell: no value to show


def render_report(run: dict, gate: GateResult | None, summary: pd.DataFrame | None, verdict: Verdict | None,
                  curves: dict | None, results: pd.DataFrame | None, data: Dataset | None = None,
                  diagnoses: dict | None = None, predictions: dict | None = None) -> str:
    """The whole page. ``run`` holds the run's facts: id, dataset, parameters, timings, error. ``diagnoses``:
    what each variant's curves show (`tasks.report.diagnose`); ``predictions``: each cell's class per validation
    image (`tasks.report.comparison`)."""
    drawer = ImageDrawer(data) if data is not None else None  # one value range for every thumbnail
    trained = summary is not None and results is not None
    compare = trained and verdict is not None and predictions and data is not None
    resolution = (run.get("data") or {}).get("resolution")  # "trained at 128x96 from originals of ...": first screen
    return render(
        "report.html", run={"dataset": run["dataset"], "run_id": run["run_id"], "started": run.get("started", "")},
        verdict=(verdict_view(gate, verdict, summary) | {"resolution": resolution} | protocol_words(run)
                 | {"leak": leak_view(gate, summary, predictions, data)} if verdict is not None else None),
        stopped=stopped_view(run, gate) | {"resolution": resolution} if verdict is None else None,
        facts=[(name, str(value)) for name, value in (run.get("data") or {}).items()],
        gate=gate_view(gate, drawer, run.get("data_docs_link")) if gate is not None else None,
        axes=[axis_view(axis, summary, curves or {}, diagnoses or {}) for axis in axes_in(summary)] if trained else [],
        comparison=comparison_view(verdict, summary, predictions, data, drawer) if compare else None,
        runs=runs_view(results) if trained else None,
        about=run_view(run))


def verdict_view(gate: GateResult | None, verdict: Verdict, summary: pd.DataFrame | None) -> dict:
    """The first screen after training: headline, key facts, every effect in words, and what they rest on."""
    failed = {c.name for c in gate.failed} if gate else set()
    control = None
    if verdict.control is not None:
        expected = "as it should" if verdict.control["effect"] not in (HELPS, HURTS) else "which it should not"
        control = {"effect": effect_line(verdict.control), "expected": expected}
    return {"headline": verdict.headline, "tone": "" if verdict.helps else "flat",
            "facts": key_facts(gate, verdict, summary),
            "helps": [effect_line(r) for r in verdict.helps], "hurts": [effect_line(r) for r in verdict.hurts],
            "broken": [broken_line(r) for r in verdict.broken],
            "unclear": ", ".join(unclear_words(r) for r in verdict.unclear), "control": control,
            "links": gate_links(failed, summary), "notes": verdict.notes, "caveats": verdict.caveats,
            "comparisons": int(summary["p_value"].notna().sum()) if summary is not None and "p_value" in summary
            else 0, "rounds": rounds_words(verdict.plan, summary),
            "recommendation": recommendation_view(verdict.recommendation)}


def broken_line(row: dict) -> dict:
    """A variant that broke on every seed: what broke, and what the rule says of it all the same."""
    stopped = " (no more seeds after its first round)" if row.get("stopped") == BROKEN else ""
    return {"variant": row["variant"], "axis": row["axis"].replace("_", " "), "reason": row["broken"],
            "stopped": stopped, "effect": effect_line(row)}


def rounds_words(plan: tuple[int, ...] | None, summary: pd.DataFrame | None) -> dict | None:
    """With --seeds auto: the looks, and how many training runs the seeds in rounds took against fixed seeds."""
    if plan is None or summary is None:
        return None
    return {"looks": ", ".join(map(str, plan)), "cells": int(summary["cells"].sum()),
            "fixed": int(len(summary) * plan[-1]), "most": plan[-1]}


def recommendation_view(advice) -> dict | None:
    """The first screen's last word: the configuration to use, as a grid file block and as options, its gain."""
    if advice is None:
        return None
    gain = advice.gain
    measured = None
    if gain is not None:
        how = (f"on {int(gain['pairs'])} fresh seeds, apart from the ones that chose it" if advice.confirmed
               else f"on the {int(gain['pairs'])} seeds of the one-factor pass")
        measured = {"delta": f"{gain['delta'] * 100:+.1f}", "interval": interval_words(gain), "how": how,
                    "effect": gain["effect"], "test": rule_words(gain)}
    return {"changes": advice.changes, "gain": measured, "warning": advice.warning, "note": advice.note,
            "block": settings_block(advice.config, advice.baseline), "flags": cli_flags(advice.config, advice.baseline),
            "comparisons": [confirmation_line(row) for row in advice.comparisons]}


def confirmation_line(row: dict) -> str:
    """"combined: a + b against baseline: +3.1 points (98.3% CI +1.2 to +5.0, paired t-test, adjusted p = 0.004)"."""
    test = rule_words(row)
    return (f"{row['variant']} against {row['against']}: {row['effect']}, {row['delta'] * 100:+.1f} points "
            f"({interval_words(row)}{f', {test}' if test else ''}, {int(row['pairs'])} seeds)")


def protocol_words(run: dict) -> dict:
    """The validation share and what varies between seeds, as the first screen's footnote says them."""
    parameters = run.get("parameters") or {}
    warnings = list(run.get("warnings") or [])
    share, own = parameters.get("val_fraction"), parameters.get("own_validation")
    fixed = parameters.get("fixed_split", False)
    if own:
        return {"warnings": warnings, "protocol": f"the dataset's own validation split, {own} images",
                "varies": " (not the validation split: the dataset's own)"}
    return {"warnings": warnings, "protocol": f"{share:.0%} of it, stratified" if share else "a stratified share",
            "varies": " and the validation share (--fixed-split keeps one)" if not fixed else
                      " (not the validation share: --fixed-split)"}


def key_facts(gate: GateResult | None, verdict: Verdict, summary: pd.DataFrame | None) -> list[dict]:
    """The first screen's three numbers: the gate's status, the baseline's accuracy, the best change's gain."""
    facts = [{"label": "data-quality gate", "value": gate.status if gate else "not run", "interval": None}]
    base = summary[summary["axis"] == BASELINE_AXIS].to_dict("records") if summary is not None else []
    if base:
        facts.append({"label": "baseline test accuracy"} | mean_ci(base[0], "test"))
    if verdict.helps:
        best = verdict.helps[0]
        facts.append({"label": f"best change: {best['variant']}", "value": f"{best['delta'] * 100:+.1f} points",
                      "interval": f"[{best['ci_low'] * 100:+.1f}, {best['ci_high'] * 100:+.1f}]"})
    else:
        facts.append({"label": "best change", "value": "none clearly better than the baseline", "interval": None})
    return facts


def stopped_view(run: dict, gate: GateResult | None) -> dict:
    """The first screen when nothing was trained: the gate stopped the run, or only the gate was asked for."""
    problems = sorted(gate.failed if gate else [], key=lambda c: c.severity != "critical")
    status = gate.status if gate else "not run"
    return {"failed_run": run["status"] == "gate failed", "error": run.get("error", ""), "problems": problems,
            "tone": {"pass": "", "warn": "flat"}.get(status, "fail"),
            "headline": {"pass": "The data passed every check.", "warn": "The data passed, with warnings."}.get(
                status, "The data failed critical checks: fix them before training.")}


def effect_line(row: dict) -> dict:
    """One change in words: its name, its axis, the word for its effect, the gain, the interval and the test."""
    test = rule_words(row)
    return {"variant": row["variant"], "axis": row["axis"].replace("_", " "),
            "word": "helps" if row["effect"] == HELPS else "hurts" if row["effect"] == HURTS else row["effect"],
            "delta": f"{row['delta'] * 100:+.1f}", "interval": interval_words(row),
            "test": f", {test}" if test else "", "pairs": int(row["pairs"]), "wins": wins_words(row)}


def wins_words(row: dict) -> str:
    """", beats the baseline on 100% of seeds [44, 100]": P(variant > baseline) on a paired seed, with its
    Wilson interval ("" without a pair)."""
    share = row.get("beats", math.nan)
    if share is None or math.isnan(share):
        return ""
    return (f", beats the baseline on {share:.0%} of seeds [{row['beats_low'] * 100:.0f}, "
            f"{row['beats_high'] * 100:.0f}]")


def unclear_words(row: dict) -> str:
    """"dropout 0.5 (+0.3 points; ~40 seeds would tell at 80% power)"; in rounds, where it stopped too
    ("stopped at 5 seeds: ...")."""
    if math.isnan(row.get("delta", math.nan)):
        return str(row["variant"])
    needed = row.get("seeds_needed")
    tell = (f"~{int(needed)} seeds would tell at 80% power" if needed and not math.isnan(needed)
            else f"over {MAX_SEEDS} seeds would be needed to tell" if row.get("pairs", 0) > 1 and row["delta"]
            else "")
    stopped = {FUTILE: f"stopped at {int(row['pairs'])} seeds", SPENT: f"all {int(row['pairs'])} seeds used"}.get(
        row.get("stopped"), "")
    said = ": ".join(part for part in (stopped, tell) if part)
    return f"{row['variant']} ({row['delta'] * 100:+.1f} points{f'; {said}' if said else ''})"


def axis_view(axis: str, summary: pd.DataFrame, curves: dict, diagnoses: dict) -> dict:
    """One axis: a row per variant (the baseline in its place), the diagnoses, the effects and curves charts."""
    rows, found = [], []
    for row in axis_rows(summary, axis).to_dict("records"):
        is_base = row["axis"] == BASELINE_AXIS
        name = row_name(axis, row)
        found += [{"name": name, "sentence": d.sentence} for d in diagnoses.get((row["axis"], row["variant"]), [])]
        rows.append({"name": name, "seeds": f"{row['scored']}/{row['cells']}", "accuracy": mean_ci(row, "test"),
                     "sd": pct(row["std_test"]), "val": mean_ci(row, "val"),
                     "delta": "" if is_base else delta_cell(row),
                     "p": None if is_base or not row.get("test") else p_words(row),
                     "test": row.get("test") or "", "effect": None if is_base else row["effect"],
                     "effect_class": "" if is_base else row["effect"].split()[0],
                     "seconds": seconds(row.get("mean_seconds"))})
    effects = [r for r in axis_rows(summary, axis).to_dict("records")
               if r["axis"] != BASELINE_AXIS and not math.isnan(r.get("delta", math.nan))]
    in_rounds = "look" in summary and summary["look"].notna().any()
    return {"name": axis, "title": axis.replace("_", " ").capitalize(), "rows": rows, "diagnoses": found,
            "p_label": "p against its round's boundary" if in_rounds else "adjusted p",
            "effects_png": effects_png(effects), "curves_png": curves_png(axis_curves(axis, summary, curves))}


def axis_curves(axis: str, summary: pd.DataFrame, curves: dict) -> list[tuple[str, dict]]:
    """The learning curves an axis's chart plots, named and ordered as the axis's table: the baseline in its
    place. `tasks.report.charts_ahead` draws the same chart from the same inputs while the cells train."""
    return [(row_name(axis, row), curves[(row["axis"], row["variant"])])
            for row in axis_rows(summary, axis).to_dict("records") if (row["axis"], row["variant"]) in curves]


def row_name(axis: str, row: dict) -> str:
    """A variant's name in its axis's table and legend; the baseline's says which value of the axis it has."""
    if row["axis"] != BASELINE_AXIS:
        return row["variant"]
    base_value = baseline_value(axis)  # "divide by 255"; None on a grid file's own axes
    return f"{base_value} (baseline)" if base_value else "baseline"


def p_words(row: dict) -> str:
    """The axis table's p: Holm-adjusted, or in rounds the p-value against the boundary it was tested at."""
    look = row.get("look")
    if look is None or math.isnan(look):
        return f"{row['p_adjusted']:.2g}"
    return f"{row['p_value']:.2g} vs {row['level']:.2g} (round {int(look)})"


def mean_ci(row: dict, which: str) -> dict:
    """A mean accuracy and its 95% interval, as the ``value`` and ``interval`` a template shows."""
    low, high = row[f"{which}_ci_low"], row[f"{which}_ci_high"]
    return {"value": pct(row[f"mean_{which}"]),
            "interval": None if math.isnan(low) else f"[{low * 100:.1f}, {high * 100:.1f}]"}


def delta_cell(row: dict) -> str:
    if math.isnan(row["delta"]):
        return DASH
    interval = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low'] * 100:+.1f}, {row['ci_high'] * 100:+.1f}]"
    return f"{row['delta'] * 100:+.1f}{interval}"


def pct(value: float | None) -> str:
    return DASH if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.1f}"


def runs_view(results: pd.DataFrame) -> list[dict]:
    """Every training run, failures with their reasons."""
    return [{"axis": r["axis"], "variant": r["variant"], "seed": r["seed"],
             "status": f"{r['status']}{' (cached)' if r.get('cached') is True else ''}",
             "test": pct(r["test_accuracy"]), "val": pct(r["val_accuracy_at_best"]),
             "epoch": r["best_epoch"],
             "train": pct(r["final_train_accuracy"]), "epochs": r["epochs"], "seconds": f"{r['seconds']:.1f}",
             "error": str(r["error"] or "")}
            for r in results.fillna({"error": ""}).to_dict("records")]


def run_view(run: dict) -> dict:
    """Where and on what it ran, its Prefect flow run, when, its parameters, how long each stage took."""
    facts = {"started": run.get("started", ""), "Prefect flow run": run.get("flow_run_id", "")}
    facts |= run.get("environment") or {}
    timings = [(name, f"{value:.1f}" if name == "slots" else f"{value:.1f} s")
               for name, value in (run.get("timings") or {}).items()]
    return {"facts": [(name, str(value)) for name, value in facts.items() if value],
            "parameters": ", ".join(f"{k}={v}" for k, v in (run.get("parameters") or {}).items()),
            "timings": timings}
