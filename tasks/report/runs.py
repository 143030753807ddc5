"""Run folders: a new one per run (so no run overwrites another's report), the facts each run records, and the index
of runs."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from tasks.files import write_atomic


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
        base = summary[summary["axis"] == "baseline"]["mean_best"]
        record["baseline_accuracy"] = _number(base.iloc[0]) if len(base) else None
    if outcome is not None and outcome.helps:
        best = outcome.helps[0]
        record["best"] = {k: best[k] if isinstance(best[k], str) else _number(best[k])
                          for k in ("axis", "variant", "delta", "ci_low", "ci_high", "mean_best")}
    return record


def _number(value) -> float | None:
    value = float(value)
    return None if value != value else value  # NaN is not JSON


def write_runs_index(reports_dir: Path) -> Path:
    """``reports_dir/index.html``: every run in the store, newest first (date, dataset, gate status, baseline
    accuracy, best change and gain, link), and for each scheduled deployment with two or more finished runs a
    chart of its baseline and best accuracy over time."""
    runs = []
    for summary_path in sorted(reports_dir.glob("*/summary.json"), reverse=True):
        try:
            runs.append((summary_path.parent.name, json.loads(summary_path.read_text())))
        except (OSError, ValueError):
            continue  # a run still being written, or a foreign file: leave it out rather than fail
    rows = "".join(_index_row(name, summary) for name, summary in runs)
    charts = "".join(_trend_chart(deployment, series) for deployment, series in _scheduled(runs).items())
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'><title>Ablation runs</title><style>"
            "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#1d232a}"
            "table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #e3e3ea;text-align:left;"
            "vertical-align:top}th{background:#f5f6f9}td.num{text-align:right}img{max-width:100%}"
            ".scroll{overflow-x:auto}</style></head><body><h1>Ablation runs</h1>" + charts +
            "<div class=scroll><table><tr><th>run</th><th>started</th><th>dataset</th><th>gate</th><th>baseline</th>"
            "<th>best change</th><th>verdict</th></tr>" + rows + "</table></div></body></html>")
    return write_atomic(reports_dir / "index.html", page)


def _index_row(name: str, summary: dict) -> str:
    base = summary.get("baseline_accuracy")
    best = summary.get("best")
    gain = (f"{escape(str(best['variant']))}: {best['delta'] * 100:+.1f} points" if best and best.get("delta")
            is not None else "")
    cells = [f"<a href='{escape(name)}/index.html'>{escape(name)}</a>", escape(str(summary.get("started", ""))),
             escape(str(summary.get("dataset", ""))), escape(str(summary.get("gate") or summary.get("status", ""))),
             f"{base * 100:.1f}%" if isinstance(base, (int, float)) else "", gain,
             escape(str(summary.get("headline", "")))]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _scheduled(runs: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Finished runs of each Prefect deployment, oldest first; deployments with fewer than two are left out."""
    series: dict[str, list[dict]] = {}
    for _, summary in reversed(runs):
        if summary.get("deployment") and summary.get("baseline_accuracy") is not None:
            series.setdefault(summary["deployment"], []).append(summary)
    return {name: points for name, points in series.items() if len(points) >= 2}


def _trend_chart(deployment: str, points: list[dict]) -> str:
    from tasks.report.plots import figure_png, pyplot

    when = [datetime.strptime(p["started"], "%Y-%m-%d %H:%M UTC") for p in points]
    base = [p["baseline_accuracy"] * 100 for p in points]
    best = [(p["best"]["mean_best"] if p.get("best") else p["baseline_accuracy"]) * 100 for p in points]
    fig, ax = pyplot().subplots(figsize=(7.5, 2.8), dpi=100)
    ax.plot(when, base, "o-", label="baseline")
    ax.plot(when, best, "s--", label="best change (the baseline when none helps)")
    ax.set(ylabel="best val accuracy (%)", title=f"deployment {deployment}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return (f"<h2>{escape(deployment)}</h2><img alt='baseline and best accuracy of {escape(deployment)} over time' "
            f"src='data:image/png;base64,{figure_png(fig)}'>")


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
            "test images": data["test_images"], "image shape": data["image_shape"], "pixel dtype": data["dtype"],
            "classes": f"{len(classes)}: " + ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else ""),
        } | ({"files not read": data["files_not_read"]} if data.get("files_not_read") else {}),
    }
