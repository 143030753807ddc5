"""The same ablation grid two ways: a plain sequential loop of model.fit calls, as the source article does, and
the pipeline (`ablate run --fresh`: gate, slot pool of training processes, report).

Default grid: the four built-in axes, 3 seeds, digits, 10 epochs (27 cells). Prints both wall times, their
ratio, the pipeline's orchestration overhead (its wall time minus the slowest slot's summed training time), and
the time of the same command run again (every cell reused from the cache). With ``--executor dask`` the
pipeline trains on a local Dask cluster instead of the slot pool.
The loop runs in one fresh process that imports Keras once, like a user's script; its cells train with the same
config, seed and callbacks as the pipeline's (`tasks.training.train.train_cell`, nothing written to disk).

Usage: python benchmarks/bench_grid.py [--epochs 10] [--seeds 3] [--executor local|dask]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOP = """
import json, sys, time
started = time.perf_counter()
from tasks.data.datasets import load_dataset
from tasks.data.store import save_cache
from tasks.training.grid import expand_grid
from tasks.training.train import init_process, train_cell
epochs, seeds, cache = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
path = str(save_cache(load_dataset("digits"), __import__("pathlib").Path(cache)))
init_process(0)
fitting = time.perf_counter()
records = [train_cell(cell.to_dict(), path) for cell in expand_grid(seeds=seeds, epochs=epochs)]
print(json.dumps({"cells": len(records), "fit": time.perf_counter() - fitting,
                  "wall": time.perf_counter() - started,
                  "failed": sum(r["status"] == "failed" for r in records)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; grid: 4 axes, {args.seeds} seeds, digits, {args.epochs} epochs")
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as scratch:
        try:
            loop = run_loop(args, Path(scratch))
            pipeline, split = run_pipeline(args, Path(scratch), fresh=True)
            rerun, _ = run_pipeline(args, Path(scratch), fresh=False)
        finally:  # the pipeline's commands started the local Prefect server in the scratch folder: stop it
            subprocess.run([str(Path(sys.executable).with_name("ablate")), "server", "stop", "--out",
                            str(Path(scratch) / "reports")], capture_output=True)
    print(f"sequential loop: {loop['wall']:.1f} s wall for {loop['cells']} cells "
          f"({loop['fit']:.1f} s in model.fit calls, the rest imports and loading; {loop['failed']} failed)")
    print(f"pipeline:        {pipeline:.1f} s wall (ablate run --fresh --executor {args.executor})")
    print(f"    {split}")
    slowest = re.search(r"slowest slot ([\d.]+) s", split)
    overhead = f"{pipeline - float(slowest.group(1)):.1f} s" if slowest else "n/a"
    print(f"ratio loop / pipeline: {loop['wall'] / pipeline:.2f}x; orchestration overhead (pipeline wall minus the "
          f"slowest slot's training): {overhead}")
    print(f"re-run of the finished grid: {rerun:.1f} s wall, {100 * rerun / pipeline:.0f}% of the first run")
    return 0


def run_loop(args: argparse.Namespace, scratch: Path) -> dict:
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", LOOP, str(args.epochs), str(args.seeds), str(scratch / "loop")],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"the loop failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_pipeline(args: argparse.Namespace, scratch: Path, fresh: bool) -> tuple[float, str]:
    ablate = Path(sys.executable).with_name("ablate")
    command = [str(ablate), "run", "--epochs", str(args.epochs), "--seeds", str(args.seeds), "--executor",
               args.executor, "--out", str(scratch / "reports")] + (["--fresh"] if fresh else [])
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"the pipeline failed:\n{result.stderr[-2000:]}")
    split = next((line for line in result.stdout.splitlines() if line.startswith("time:")), "")
    return wall, split


if __name__ == "__main__":
    raise SystemExit(main())
