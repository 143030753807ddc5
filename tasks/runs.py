"""Run folders: a new one per run (so no run overwrites another's report), atomic writes, and an index page."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from html import escape
from pathlib import Path


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


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file and rename, so a crash never leaves half a report where a whole one was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_runs_index(reports_dir: Path) -> Path:
    """``reports_dir/index.html``: every run folder with its dataset, status and headline, newest first."""
    rows = []
    for summary_path in sorted(reports_dir.glob("*/summary.json"), reverse=True):
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            continue  # a run still being written, or a foreign file: leave it out rather than fail
        name = summary_path.parent.name
        rows.append(f"<tr><td><a href='{escape(name)}/index.html'>{escape(name)}</a></td>"
                    f"<td>{escape(str(summary.get('dataset', '')))}</td><td>{escape(str(summary.get('status', '')))}"
                    f"</td><td>{escape(str(summary.get('headline', '')))}</td></tr>")
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Ablation runs</title></head>"
            "<body style='font:15px system-ui,sans-serif;margin:2em'><h1>Ablation runs</h1><table cellpadding=6>"
            "<tr><th>run</th><th>dataset</th><th>status</th><th>verdict</th></tr>" + "".join(rows) + "</table></body></html>")
    return write_atomic(reports_dir / "index.html", page)


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
