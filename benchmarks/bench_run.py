"""Time `ablate run` with its defaults (digits, all four axes, 3 seeds, 10 epochs), as `make run` runs it.

Prints the wall time of the whole command (Prefect's temporary server start included) and the split the CLI
reports. Goal: under 5 minutes on the 2-core machine with the install already done.
Usage: python benchmarks/bench_run.py [extra ablate-run options]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 300


def main() -> int:
    ablate = Path(sys.executable).with_name("ablate")
    with tempfile.TemporaryDirectory(prefix="bench-run-") as out:
        started = time.perf_counter()
        result = subprocess.run([str(ablate), "run", "--out", out, *sys.argv[1:]], capture_output=True, text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        return result.returncode
    split = next((line for line in result.stdout.splitlines() if line.startswith("time:")), "")
    print(f"ablate run {' '.join(sys.argv[1:]) or '(defaults)'}: {wall:.1f} s wall "
          f"({'within' if wall < GOAL_SECONDS else 'OVER'} the {GOAL_SECONDS} s goal)")
    print(split)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
