"""Fixed costs of short commands: what each command imports, the local Prefect server, a warm gate, a re-run.

Prints, on data it generates itself (each line says its goal):

1. Imports (`python -X importtime`): wall time of `ablate --help`, `ablate grid` and a warm `ablate validate`,
   and which heavy packages each imports (Great Expectations, matplotlib, scipy, Keras, TensorFlow, Dask,
   scikit-learn, Prefect). Goal: each heavy package only on the paths that use it.
2. The first command: `ablate validate digits`, on Prefect's temporary server (`--ephemeral`, the way every
   command ran before the local server) and starting the local server: on an empty reports folder (the first
   command ever: the server creates its database), then twice after a reboot (the server's process stopped, its
   database and the caches kept). Goal: the cold local server within 3 s of the temporary one.
3. `ablate validate` on 60,000 CIFAR-sized JPEGs (50,000 train, 10,000 test): cold once, then warm three times
   (server running, dataset, statistics and gate result cached). Goal: every warm run at most 5 s wall.
4. The default grid (`ablate run`: digits, the four built-in axes, 3 seeds, 10 epochs) in a reports folder whose
   local server runs, as for a user's second command: its orchestration overhead (wall minus the slowest training
   slot), goal at most 10% of the wall; then the same command again (every cell reused), goal at most 5% of the
   first run.

Usage: python benchmarks/bench_startup.py [--images 60000] [--folder PATH] [--skip-grid | --grid-only]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gate import write_jpeg_folder  # noqa: E402

HEAVY = ("great_expectations", "matplotlib", "scipy", "keras", "tensorflow", "dask", "distributed", "sklearn",
         "prefect")
ABLATE = [sys.executable, "-m", "flows.cli"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--folder", type=Path, default=None, help="reuse (or create) the JPEG folder here")
    parser.add_argument("--skip-grid", action="store_true", help="leave out the default grid (about 3 minutes)")
    parser.add_argument("--grid-only", action="store_true", help="the default grid alone (part 4)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ABLATE_EPHEMERAL")}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        scratch = Path(scratch)
        try:
            if args.grid_only:
                bench_grid(scratch / "grid", env)
                return 0
            bench_cold_server(scratch, env)
            folder = args.folder or scratch / "jpegs"
            if not (folder / "train").is_dir():
                started = time.perf_counter()
                write_jpeg_folder(folder, args.images)
                print(f"wrote {args.images:,} JPEGs in {time.perf_counter() - started:.1f} s (not timed below)")
            bench_warm_validate(folder, scratch / "cifar", env)
            bench_imports(scratch / "cifar", folder, env)
            if not args.skip_grid:
                bench_grid(scratch / "grid", env)
        finally:
            for out in scratch.glob("*"):
                subprocess.run([*ABLATE, "server", "stop", "--out", str(out)], capture_output=True, env=env)
    return 0


def timed(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: the gate's verdict, not a failure of the command
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, result


def split_of(result: subprocess.CompletedProcess) -> str:
    return next((line[len("time: "):] for line in result.stdout.splitlines() if line.startswith("time: ")), "")


def bench_cold_server(scratch: Path, env: dict) -> None:
    validate = [*ABLATE, "validate", "digits", "--out"]
    ephemeral, _ = timed([*validate, str(scratch / "ephemeral"), "--ephemeral"], env)
    local, _ = timed([*validate, str(scratch / "cold")], env)
    print(f"first command ever, empty reports folder (ablate validate digits): temporary server {ephemeral:.1f} s, "
          f"starting the local server (and its new database) {local:.1f} s: {local - ephemeral:+.1f} s")
    for run in (1, 2):  # after a reboot: the server's process is gone, its database and the caches are not
        timed([*ABLATE, "server", "stop", "--out", str(scratch / "cold")], env)
        cold, _ = timed([*validate, str(scratch / "cold")], env)
        ephemeral, _ = timed([*validate, str(scratch / "ephemeral"), "--ephemeral"], env)
        print(f"first command after a reboot, run {run}: temporary server {ephemeral:.1f} s, the local server "
              f"started again {cold:.1f} s: {cold - ephemeral:+.1f} s (goal at most +3 s)")
    again, _ = timed([*validate, str(scratch / "cold")], env)
    print(f"    the same command again, local server running and gate cached: {again:.1f} s")


def bench_warm_validate(folder: Path, out: Path, env: dict) -> None:
    command = [*ABLATE, "validate", str(folder), "--out", str(out)]
    wall, result = timed(command, env)
    print(f"ablate validate, {count_files(folder):,} JPEGs, cold (starts the server, decodes, validates): "
          f"{wall:.1f} s\n    {split_of(result)}")
    for run in range(1, 4):
        wall, result = timed(command, env)
        print(f"ablate validate, warm run {run}: {wall:.1f} s wall (goal at most 5 s), exit {result.returncode}"
              f"\n    {split_of(result)}")


def bench_imports(out: Path, folder: Path, env: dict) -> None:
    for label, args in (("ablate --help", ["--help"]),
                        ("ablate grid", ["grid", "--grid", "examples/ablation.toml", "--out", str(out)]),
                        ("ablate validate (warm)", ["validate", str(folder), "--out", str(out)])):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "flows.cli", *args], capture_output=True,
                                text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - started
        imported = imported_packages(result.stderr)
        heavy = [f"{name} {imported[name]:.2f} s" for name in HEAVY if name in imported]
        print(f"imports, {label}: {wall:.1f} s wall, {sum(imported.values()):.1f} s importing; heavy: "
              f"{', '.join(heavy) or 'none'}")


def imported_packages(importtime: str) -> dict[str, float]:
    """Top-level packages and the cumulative seconds their first import took, from -X importtime's lines."""
    packages: dict[str, float] = {}
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # imported by the program itself, not by another package
            name = match.group(3).split(".")[0]
            packages[name] = packages.get(name, 0) + int(match.group(1)) / 1e6
    return packages


def bench_grid(out: Path, env: dict) -> None:
    timed([*ABLATE, "server", "start", "--out", str(out)], env)
    first, result = timed([*ABLATE, "run", "--out", str(out)], env)
    split = split_of(result)
    slowest = float(re.search(r"slowest slot ([\d.]+) s", split).group(1))
    print(f"default grid, first run (local server running): {first:.1f} s wall; orchestration overhead (wall minus "
          f"the slowest slot) {first - slowest:.1f} s = {100 * (first - slowest) / first:.1f}% (goal at most 10%)"
          f"\n    {split}")
    again, result = timed([*ABLATE, "run", "--out", str(out)], env)
    print(f"default grid, run again (every cell reused): {again:.1f} s = {100 * again / first:.1f}% of the first "
          f"run (goal at most 5%)\n    {split_of(result)}")


def count_files(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


if __name__ == "__main__":
    raise SystemExit(main())
