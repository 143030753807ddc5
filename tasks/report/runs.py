"""Run folders: a new one per run (so no run overwrites another's report), the facts each run records, and the index
of runs."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from tasks.files import write_atomic
from tasks.report.plots import trend_png
from tasks.report.render import render
from tasks.training.grid_file import settings_of


def new_run_dir(reports_dir: Path, dataset: str) -> Path:
    """Create ``reports_dir/<UTC time>-<dataset>[-n]``; the name sorts by time and never collides."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(dataset).stem if dataset != "digits" else dataset).strip("-")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    reports_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        run_dir = reports_dir / (f"{stamp}-{slug or 'dataset'}" + (f"-{n}" if n > 1 else ""))
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run folder in {reports_dir}")


def run_summary(run: dict, gate_status: str | None, summary=None, outcome=None) -> dict:
    """summary.json: what the index of runs shows of a run (and what a scheduler or CI can read)."""
    record = {"dataset": run["dataset"], "status": run["status"], "started": run.get("started", ""),
              "headline": outcome.headline if outcome else run.get("error") or run["status"],
              "gate": gate_status, "flow_run_id": run.get("flow_run_id"), "deployment": run.get("deployment"),
              "baseline_accuracy": None, "best": None, "timings": run.get("timings")}
    if summary is not None:
        base = summary[summary["axis"] == "baseline"]["mean_test"]
        record["baseline_accuracy"] = _number(base.iloc[0]) if len(base) else None
    if outcome is not None and outcome.recommendation is not None:
        advice = outcome.recommendation
        record["recommendation"] = {"changes": advice.changes, "confirmed": advice.confirmed,
                                    "warning": advice.warning or None,
                                    "settings": settings_of(advice.config, advice.baseline),
                                    "delta": _number(advice.gain["delta"]) if advice.gain else None,
                                    "ci_low": _number(advice.gain["ci_low"]) if advice.gain else None,
                                    "ci_high": _number(advice.gain["ci_high"]) if advice.gain else None}
        record["broken"] = {row["variant"]: row["broken"] for row in outcome.broken}
    if outcome is not None and outcome.helps:
        best = outcome.helps[0]
        record["best"] = {k: best[k] if isinstance(best[k], str) else _number(best[k])
                          for k in ("axis", "variant", "delta", "ci_low", "ci_high", "level", "p_adjusted", "test",
                                    "beats", "mean_test")}
    return record


def _number(value) -> float | None:
    value = float(value)
    return None if value != value else value  # NaN is not JSON


def write_runs_index(reports_dir: Path) -> Path:
    """``reports_dir/index.html``: every run in the store, newest first (date, dataset, gate status, baseline
    accuracy, best change and gain, link), and for each scheduled deployment with two or more finished runs a
    chart of its baseline and best accuracy over time (`templates/runs_index.html`)."""
    runs = []
    for summary_path in sorted(reports_dir.glob("*/summary.json"), reverse=True):
        try:
            runs.append((summary_path.parent.name, json.loads(summary_path.read_text())))
        except (OSError, ValueError):
            continue  # a run still being written, or a foreign file: leave it out rather than fail
    charts = [{"deployment": deployment, "png": _trend(deployment, series)}
              for deployment, series in _scheduled(runs).items()]
    page = render("runs_index.html", runs=[_index_row(name, summary) for name, summary in runs], charts=charts)
    return write_atomic(reports_dir / "index.html", page)


def _index_row(name: str, summary: dict) -> dict:
    base, best = summary.get("baseline_accuracy"), summary.get("best")
    return {"name": name, "started": str(summary.get("started", "")), "dataset": str(summary.get("dataset", "")),
            "gate": str(summary.get("gate") or summary.get("status", "")),
            "baseline": f"{base * 100:.1f}%" if isinstance(base, (int, float)) else "",
            "gain": (f"{best['variant']}: {best['delta'] * 100:+.1f} points"
                     if best and best.get("delta") is not None else ""),
            "headline": str(summary.get("headline", ""))}


def _scheduled(runs: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Finished runs of each Prefect deployment, oldest first; deployments with fewer than two are left out."""
    series: dict[str, list[dict]] = {}
    for _, summary in reversed(runs):
        if summary.get("deployment") and summary.get("baseline_accuracy") is not None:
            series.setdefault(summary["deployment"], []).append(summary)
    return {name: points for name, points in series.items() if len(points) >= 2}


def _trend(deployment: str, points: list[dict]) -> str:
    when = [datetime.strptime(p["started"], "%Y-%m-%d %H:%M UTC") for p in points]
    base = [p["baseline_accuracy"] * 100 for p in points]
    # runs from before the test split was scored once carry their best variant's "mean_best" (validation)
    best = [(p["best"].get("mean_test", p["best"].get("mean_best")) if p.get("best") else p["baseline_accuracy"])
            * 100 for p in points]
    return trend_png(deployment, when, base, best)


def run_record(run_dir: Path, data: dict, parameters: dict) -> dict:
    """The facts about a run that its report and summary show."""
    classes = data["class_names"]
    return {
        "run_id": run_dir.name,
        "cache_path": data["cache_path"],
        "dataset": data["name"],
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "status": "running",
        "parameters": parameters,
        "class_count": len(classes),
        "timings": {"loading": data["seconds"]},
        "data": {
            "source": data["source"], "fingerprint": data["fingerprint"], "training images": data["train_images"],
            "test images": data["test_images"], "image shape": data["image_shape"],
            "resolution": data.get("resolution", ""), "pixel dtype": data["dtype"],
            "classes": f"{len(classes)}: " + ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else ""),
        } | ({"files not read": data["files_not_read"]} if data.get("files_not_read") else {}),
    }
