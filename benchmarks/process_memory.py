"""Run a command and sample the memory of its whole process tree: the flow process and each training process.

Two numbers per process: RSS (what `top` shows; pages of a shared memory-mapped file count in full in every
process that touched them) and PSS (proportional set size: each shared page divided among the processes that
map it), so the sum of PSS over the tree is the memory the run really takes. Peaks are the largest values seen
at any sample (every ``--every`` seconds).

    python benchmarks/process_memory.py -- ablate run --dataset photos/ --epochs 1 --seeds 1

prints the command's own output, then one JSON line: peak total PSS, and per process its role and peak RSS/PSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil

MIB = 2**20


def role(process: psutil.Process) -> str:
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    if "multiprocessing" in line and "spawn" in line:
        return "worker"  # a training process (slot pool) or a decoding process: their logs tell which
    if "prefect" in line and "server" in line:
        return "prefect server"
    return "main"


def sample(root: psutil.Process, peaks: dict, totals: list) -> None:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        entry = peaks.setdefault(process.pid, {"pid": process.pid, "role": role(process), "rss_mib": 0.0,
                                               "pss_mib": 0.0})
        entry["rss_mib"] = max(entry["rss_mib"], info.rss / MIB)
        entry["pss_mib"] = max(entry["pss_mib"], info.pss / MIB)
        total += info.pss
    totals.append(total / MIB)


def measure(command: list[str], every: float = 1.0, **popen) -> dict:
    """Run ``command`` to its end, sampling; returns its exit code, wall time and the peaks."""
    started = time.perf_counter()
    child = subprocess.Popen(command, **popen)
    root = psutil.Process(child.pid)
    peaks: dict = {}
    totals: list[float] = []
    while child.poll() is None:
        try:
            sample(root, peaks, totals)
        except psutil.NoSuchProcess:
            break
        time.sleep(every)
    processes = sorted(peaks.values(), key=lambda p: -p["pss_mib"])
    return {"exit_code": child.wait(), "seconds": round(time.perf_counter() - started, 1),
            "peak_total_pss_mib": round(max(totals, default=0.0)),
            "processes": [{k: round(v) if isinstance(v, float) else v for k, v in p.items()} for p in processes]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    result = measure(command, args.every)
    print(json.dumps(result), flush=True)
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
