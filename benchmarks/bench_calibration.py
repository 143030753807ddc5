"""Calibration of the verdict on the real training path: how often it claims a difference where there is none,
and whether it names differences that are really there.

Trains cells with the project's own `train_cell` (Keras, the built-in CNN, a slice of digits, a few epochs), on
every core, and judges them with the report's own `summarise` (the one decision rule, `tasks/report/statistics`):

- null runs: each run is a baseline and ``--nulls`` changes that do nothing (the baseline's config trained
  again from its own random stream, as the A/A control is) over ``--seeds`` seeds; printed: the share of runs
  with any "helps" or "hurts" (goal: at most 5%);
- planted effects: one run of the baseline and three changes known to matter (a far too high learning rate,
  raw 0-255 pixels into plain SGD, far too little capacity); printed: how many the verdict names (goal: all).

    python benchmarks/bench_calibration.py                # 30 null runs x 3 configs x 5 seeds: ~17 min on 2 cores
    python benchmarks/bench_calibration.py --runs 200 --limit 1000 --epochs 5   # bigger, on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tasks.data.datasets import load_dataset  # noqa: E402
from tasks.data.store import save_cache  # noqa: E402
from tasks.report.aggregate import HELPS, HURTS, results_table, summarise  # noqa: E402
from tasks.training.devices import cpu_count  # noqa: E402
from tasks.training.grid import BASELINE, BASELINE_AXIS, Cell  # noqa: E402

PLANTED = {
    "learning rate 1.0": {"learning_rate": 1.0},
    "raw 0-255 into SGD": {"normalization": "raw", "optimizer": "sgd", "learning_rate": 0.1},
    "a 20th of the capacity": {"width": 0.05},
}


def _train(job: tuple[dict, str]) -> dict:
    from tasks.training.train import train_cell

    cell, dataset = job
    record = train_cell(cell, dataset)
    return {k: v for k, v in record.items() if k not in ("history", "test_predictions")} | {"history": {}}


def _start() -> None:
    from tasks.training.train import init_process

    init_process(1)


def train_all(cells: list[Cell], dataset: str, processes: int) -> list[dict]:
    jobs = [(cell.to_dict(), dataset) for cell in cells]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_start) as pool:
        return list(pool.map(_train, jobs, chunksize=4))


def null_cells(runs: int, nulls: int, seeds: int, base) -> list[tuple[int, Cell]]:
    """Per run: the baseline and ``nulls`` independent copies of it, on seeds no other run uses."""
    cells = []
    for run in range(runs):
        for seed in range(run * seeds, (run + 1) * seeds):
            cells.append((run, Cell(BASELINE_AXIS, BASELINE_AXIS, replace(base, seed=seed))))
            cells += [(run, Cell("null", f"no-op {copy}", replace(base, seed=seed, run_copy=copy)))
                      for copy in range(1, nulls + 1)]
    return cells


def claims(records: list[dict]) -> list[str]:
    summary = summarise(results_table(records))
    return summary[summary["effect"].isin([HELPS, HURTS])]["variant"].tolist()


def details(records: list[dict]) -> list[dict]:
    summary = summarise(results_table(records))
    return [{"variant": r["variant"], "effect": r["effect"], "delta_points": round(r["delta"] * 100, 1),
             "adjusted_p": round(r["p_adjusted"], 4)} for r in summary.to_dict("records") if r["axis"] != BASELINE_AXIS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="null runs (default: 30)")
    parser.add_argument("--nulls", type=int, default=2, help="changes that do nothing, per run (default: 2)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per variant (default: 5)")
    parser.add_argument("--limit", type=int, default=300, help="digits images per split (default: 300)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per cell (default: 3)")
    parser.add_argument("--processes", type=int, default=cpu_count(), help="training processes (default: cores)")
    args = parser.parse_args()
    base = replace(BASELINE, max_epochs=args.epochs, early_stopping=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        dataset = str(save_cache(load_dataset("digits", limit=args.limit), Path(tmp)))
        planted = [Cell(BASELINE_AXIS, BASELINE_AXIS, replace(base, seed=s)) for s in range(args.seeds)]
        planted += [Cell("planted", name, replace(base, seed=s, **change))
                    for name, change in PLANTED.items() for s in range(args.seeds)]
        nulls = null_cells(args.runs, args.nulls, args.seeds, base)
        records = train_all(planted + [cell for _, cell in nulls], dataset, args.processes)
    planted_records, null_records = records[:len(planted)], records[len(planted):]
    named = claims(planted_records)
    by_run: dict[int, list[dict]] = {}
    for (run, _), record in zip(nulls, null_records):
        by_run.setdefault(run, []).append(record | {"seed": record["seed"] - run * args.seeds})
    false = {run: claims(rs) for run, rs in by_run.items()}
    seconds = time.perf_counter() - started
    print(json.dumps({"measure": "null runs", "runs": args.runs, "comparisons_per_run": args.nulls,
                      "seeds": args.seeds, "runs_with_a_false_claim": sum(bool(c) for c in false.values()),
                      "false_claim_rate": round(sum(bool(c) for c in false.values()) / args.runs, 3),
                      "goal": "at most 0.05"}))
    print(json.dumps({"measure": "planted effects", "named": len(named), "of": len(PLANTED),
                      "details": details(planted_records), "goal": "all"}))
    print(json.dumps({"measure": "time", "cells": len(records), "seconds": round(seconds, 1),
                      "processes": args.processes, "limit": args.limit, "epochs": args.epochs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
