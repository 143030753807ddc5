"""Calibration of the verdict on the real training path: how often it claims a difference where there is none,
and whether it names differences that are really there.

Trains cells with the project's own `train_cell` (Keras, the built-in CNN, a slice of digits, a few epochs), on
every core, and judges them with the report's own `summarise` (the one decision rule, `tasks/report/statistics`):

- null runs: each run is a baseline and ``--nulls`` changes that do nothing (the baseline's config trained
  again from its own random stream, as the A/A control is) over ``--seeds`` seeds; printed: the share of runs
  with any "helps" or "hurts" (goal: at most 5%);
- planted effects: one run of the baseline and three changes known to matter (a far too high learning rate,
  raw 0-255 pixels into plain SGD, far too little capacity); printed: how many the verdict names (goal: all).

With ``--seeds auto`` the same, judged in rounds (`tasks/report/sequential`) as ``ablate run --seeds auto``
does, up to ``--max-seeds``: printed, the false-claim rate (goal: at most 5%, as with fixed seeds), the planted
effects named, and the training runs the rounds used against ``--max-seeds`` fixed seeds on the same cells, with
the decisions of both (goal: the same decisions, fewer runs). Every seed up to ``--max-seeds`` is trained once,
and the rounds are replayed on those records with `tasks.report.rounds.next_round`, reading only the cells each
round would have trained: a cell's result depends on its config and seed alone, so this is what training round
by round gives, and both designs are judged on the very same cells.

    python benchmarks/bench_calibration.py                # 30 null runs x 3 configs x 5 seeds: ~17 min on 2 cores
    python benchmarks/bench_calibration.py --seeds auto --max-seeds 8   # rounds: 30 null runs x 3 configs x 8
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
from tasks.report.diagnose import broken_variants  # noqa: E402
from tasks.report.rounds import next_round  # noqa: E402
from tasks.training.devices import cpu_count  # noqa: E402
from tasks.training.grid import BASELINE, BASELINE_AXIS, Cell, looks  # noqa: E402

CLASSES = 10  # digits

PLANTED = {
    "learning rate 1.0": {"learning_rate": 1.0},
    "raw 0-255 into SGD": {"normalization": "raw", "optimizer": "sgd", "learning_rate": 0.1},
    "a 20th of the capacity": {"width": 0.05},
}


def _train(job: tuple[dict, str]) -> dict:
    from tasks.training.train import train_cell

    cell, dataset = job
    record = train_cell(cell, dataset)
    return {k: v for k, v in record.items() if k != "test_predictions"}  # the history: for broken variants


def _start() -> None:
    from tasks.training.train import init_process

    init_process(1)


def train_all(cells: list[Cell], dataset: str, processes: int) -> list[dict]:
    jobs = [(cell.to_dict(), dataset) for cell in cells]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_start) as pool:
        return list(pool.map(_train, jobs, chunksize=4))


def null_cells(runs: int, nulls: int, seeds: int, base, first: int = 0) -> list[tuple[int, Cell]]:
    """Per run: the baseline and ``nulls`` independent copies of it, on seeds no other run uses (runs are numbered
    from ``first``, so a second batch is independent of the first)."""
    cells = []
    for run in range(first, first + runs):
        for seed in range(run * seeds, (run + 1) * seeds):
            cells.append((run, Cell(BASELINE_AXIS, BASELINE_AXIS, replace(base, seed=seed))))
            cells += [(run, Cell("null", f"no-op {copy}", replace(base, seed=seed, run_copy=copy)))
                      for copy in range(1, nulls + 1)]
    return cells


def claims(records: list[dict], plan: tuple[int, ...] | None = None) -> list[str]:
    """The variants the verdict names: helps, hurts, or broken (a no-op named broken is a false claim too)."""
    summary = judge(records, plan)
    return summary[summary["effect"].isin([HELPS, HURTS]) | (summary["broken"] != "")]["variant"].tolist()


def judge(records: list[dict], plan: tuple[int, ...] | None):
    return summarise(results_table(records), plan, broken_variants(records, CLASSES))


def details(records: list[dict], plan: tuple[int, ...] | None = None) -> list[dict]:
    return [{"variant": r["variant"], "effect": r["effect"], "delta_points": round(r["delta"] * 100, 1),
             "p": round(r["p_adjusted"] if plan is None else r["p_value"], 4), "seeds": int(r["pairs"])}
            | {"broken": r["broken"]} | ({"stopped": r["stopped"]} if plan else {})
            for r in judge(records, plan).to_dict("records") if r["axis"] != BASELINE_AXIS]


def in_rounds(records: list[dict], plan: tuple[int, ...]) -> list[dict]:
    """The records the rounds would have trained: replayed from every seed's record, round by round."""
    by_cell = {(r["axis"], r["variant"], r["seed"]): r for r in records}
    variants = list(dict.fromkeys((r["axis"], r["variant"]) for r in records))
    configs = [(axis, variant, replace(BASELINE)) for axis, variant in variants]  # the config is not read
    used: list[dict] = []
    while cells := next_round(configs, used, plan, CLASSES):
        used += [by_cell[(c.axis, c.variant, c.config.seed)] for c in cells]
    return used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="null runs (default: 30)")
    parser.add_argument("--nulls", type=int, default=2, help="changes that do nothing, per run (default: 2)")
    parser.add_argument("--first-run", type=int, default=0,
                        help="number the null runs from here: another batch, on seeds the first did not use")
    parser.add_argument("--seeds", default="5", help="seeds per variant, or 'auto': in rounds (default: 5)")
    parser.add_argument("--max-seeds", type=int, default=8, help="with --seeds auto: the most seeds (default: 8)")
    parser.add_argument("--limit", type=int, default=300, help="digits images per split (default: 300)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per cell (default: 3)")
    parser.add_argument("--processes", type=int, default=cpu_count(), help="training processes (default: cores)")
    args = parser.parse_args()
    plan = looks(args.max_seeds) if args.seeds == "auto" else None
    seeds = plan[-1] if plan else int(args.seeds)
    base = replace(BASELINE, max_epochs=args.epochs, early_stopping=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        dataset = str(save_cache(load_dataset("digits", limit=args.limit), Path(tmp)))
        planted = [Cell(BASELINE_AXIS, BASELINE_AXIS, replace(base, seed=s)) for s in range(seeds)]
        planted += [Cell("planted", name, replace(base, seed=s, **change))
                    for name, change in PLANTED.items() for s in range(seeds)]
        nulls = null_cells(args.runs, args.nulls, seeds, base, args.first_run)
        records = train_all(planted + [cell for _, cell in nulls], dataset, args.processes)
    planted_records, null_records = records[:len(planted)], records[len(planted):]
    by_run: dict[int, list[dict]] = {}
    for (run, _), record in zip(nulls, null_records):
        by_run.setdefault(run, []).append(record | {"seed": record["seed"] - run * seeds})
    seconds = time.perf_counter() - started
    if plan is None:
        report_fixed(args, seeds, claims(planted_records), planted_records, by_run)
    else:
        report_rounds(args, plan, planted_records, by_run)
    print(json.dumps({"measure": "time", "cells": len(records), "seconds": round(seconds, 1),
                      "processes": args.processes, "limit": args.limit, "epochs": args.epochs}))
    return 0


def report_fixed(args, seeds: int, named: list[str], planted_records: list[dict], by_run: dict) -> None:
    false = {run: claims(rs) for run, rs in by_run.items()}
    print(json.dumps({"measure": "null runs", "runs": args.runs, "comparisons_per_run": args.nulls,
                      "seeds": seeds, "runs_with_a_false_claim": sum(bool(c) for c in false.values()),
                      "false_claim_rate": round(sum(bool(c) for c in false.values()) / args.runs, 3),
                      "goal": "at most 0.05"}))
    print(json.dumps({"measure": "planted effects", "named": len(named), "of": len(PLANTED),
                      "details": details(planted_records), "goal": "all"}))


def report_rounds(args, plan: tuple[int, ...], planted_records: list[dict], by_run: dict) -> None:
    false_rounds = false_fixed = used_nulls = 0
    for run, records in by_run.items():
        used = in_rounds(records, plan)
        used_nulls += len(used)
        false_rounds += bool(claims(used, plan))
        false_fixed += bool(claims(records))
        if claims(used, plan):  # what was claimed, to tell chance from a fault
            print(json.dumps({"measure": "a false claim in rounds", "run": run,
                              "details": [d for d in details(used, plan) if d["variant"] in claims(used, plan)]}))
    print(json.dumps({"measure": "null runs, seeds in rounds", "runs": args.runs, "comparisons_per_run": args.nulls,
                      "looks": list(plan), "runs_with_a_false_claim": false_rounds,
                      "false_claim_rate": round(false_rounds / args.runs, 3), "goal": "at most 0.05",
                      "training_runs": used_nulls, "with_fixed_seeds": sum(len(rs) for rs in by_run.values()),
                      "false_claim_rate_with_fixed_seeds": round(false_fixed / args.runs, 3)}))
    used = in_rounds(planted_records, plan)
    named, named_fixed = claims(used, plan), claims(planted_records)
    print(json.dumps({"measure": "planted effects, seeds in rounds", "named": len(named), "of": len(PLANTED),
                      "named_with_fixed_seeds": len(named_fixed),
                      "same_decisions": sorted(named) == sorted(named_fixed),
                      "training_runs": len(used), "with_fixed_seeds": len(planted_records),
                      "details": details(used, plan), "goal": "all, with fewer runs"}))


if __name__ == "__main__":
    sys.exit(main())
