"""Benchmark the data-quality gate at CIFAR scale, on data it generates itself.

1. Statistics on 60,000 images of 32x32x3 already in memory, five runs (goal: at least 200,000 images per second
   on every run, so the slowest run is judged).
2. `ablate validate` on a folder of 60,000 small JPEGs (50,000 train, 10,000 test, 10 classes): cold (empty
   cache: decode, statistics, hashes, Great Expectations, Data Docs; goal under 60 s) and warm (unchanged folder:
   decoded arrays and statistics come from the cache; goal under 10 s), with the peak resident memory of the
   command (goal under 2 GB). The CLI's own time split is printed too: Prefect's temporary server start and
   the Great Expectations import are a fixed cost of every run.
3. The same cold/warm pair for the gate alone (no Prefect): load, statistics, Great Expectations, gate.json.

Usage: python benchmarks/bench_gate.py [--images 60000] [--folder PATH (reuse a generated folder)]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.data.datasets import Dataset  # noqa: E402
from tasks.gate.pixel_stats import pixel_stats  # noqa: E402

CLASSES = 10
GATE_ONLY = """
import json, resource, sys, time
from pathlib import Path
started = time.perf_counter()
from tasks.data.datasets import load_dataset
from tasks.data.store import save_cache
from tasks.paths import cache_dir
from tasks.gate.stats_cache import cached_pixel_stats
from tasks.gate.expectations import run_gate
from tasks.gate.suite import load_suite
folder, out = sys.argv[1], Path(sys.argv[2])
data = load_dataset(folder, cache=cache_dir(out))
facts = {"fingerprint": data.fingerprint, "cache_path": str(save_cache(data, cache_dir(out) / "datasets"))}
loaded = time.perf_counter()
stats, _ = cached_pixel_stats(facts, cache_dir(out) / "stats")
measured = time.perf_counter()
result = run_gate(stats, data.class_names, load_suite(), out / "data_docs")
(out / "gate.json").write_text(result.to_json())
done = time.perf_counter()
print(json.dumps({"load": loaded - started, "stats": measured - loaded, "validate": done - measured,
                  "status": result.status, "images": result.images,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--folder", type=Path, default=None, help="reuse (or create) the JPEG folder here")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores")
    bench_statistics(args.images)
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as scratch:
        folder = args.folder or Path(scratch) / "jpegs"
        if not (folder / "train").is_dir():
            started = time.perf_counter()
            write_jpeg_folder(folder, args.images)
            print(f"wrote {args.images:,} JPEGs in {time.perf_counter() - started:.1f} s (not timed below)")
        bench_cli(folder, Path(scratch))
        bench_gate_only(folder, Path(scratch))
    return 0


def bench_statistics(n: int, runs: int = 5, goal: int = 200_000) -> None:
    """Time pixel_stats ``runs`` times; the goal (images per second) holds on every run, so the slowest is judged."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, n)
    ids = np.array([f"x[{i}]" for i in range(n)])
    shapes = np.tile([32, 32, 3], (n, 1))
    cut = n * 5 // 6
    data = Dataset("bench", x[:cut], y[:cut], x[cut:], y[cut:], [str(c) for c in range(CLASSES)],
                   ids[:cut], ids[cut:], shapes[:cut], shapes[cut:])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        pixel_stats(data)
        times.append(time.perf_counter() - started)
    slowest = max(times)
    verdict = "met" if n / slowest >= goal else "MISSED"
    print(f"statistics, {n:,} images of 32x32x3 in memory: runs {', '.join(f'{n / t:,.0f}' for t in times)} "
          f"images/s; slowest {slowest:.2f} s = {n / slowest:,.0f} images/s (goal {goal:,} images/s on every "
          f"run: {verdict})")


def write_jpeg_folder(root: Path, n: int) -> None:
    """n JPEGs of 32x32 (smooth random blobs plus grain, like small photos), 5/6 train and 1/6 test."""
    jobs = [(root, start, min(start + 2000, n), n) for start in range(0, n, 2000)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_chunk, jobs))


def _write_chunk(job) -> None:
    from PIL import Image

    root, start, stop, n = job
    rng = np.random.default_rng(start)
    yy, xx = np.mgrid[0:32, 0:32] / 32
    for i in range(start, stop):
        split = "train" if i < n * 5 // 6 else "test"
        folder = root / split / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        picture = np.zeros((32, 32, 3))
        for _ in range(3):
            cy, cx, width = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
            picture += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / width**2)[..., None] * rng.uniform(0, 1, 3)
        picture = picture / max(picture.max(), 1e-6) * rng.uniform(0.5, 1) + rng.normal(0, 0.05, picture.shape)
        pixels = (np.clip(picture, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


def bench_cli(folder: Path, scratch: Path) -> None:
    ablate = Path(sys.executable).with_name("ablate")
    out = scratch / "reports-cli"
    for label, goal in (("cold", 60), ("warm", 10)):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        result = subprocess.run([str(ablate), "validate", str(folder), "--out", str(out)], capture_output=True,
                                text=True)
        wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        split = next((line for line in result.stdout.splitlines() if line.startswith("time:")),
                     result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
        peak_note = f"peak RSS {peak / 1024:,.0f} MB" if peak > before else "peak RSS below an earlier run's"
        print(f"ablate validate, {label}: {wall:.1f} s wall (goal {goal} s), exit {result.returncode}, {peak_note}")
        print(f"    {re.sub(r'^time: ', '', split)}")
    # The first command started the local Prefect server, as it does for a user; stop it before the scratch
    # folder holding its database is removed.
    subprocess.run([str(ablate), "server", "stop", "--out", str(out)], capture_output=True)


def bench_gate_only(folder: Path, scratch: Path) -> None:
    out = scratch / "reports-gate-only"
    out.mkdir()
    root = Path(__file__).resolve().parents[1]
    for label, goal in (("cold", 60), ("warm", 10)):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", GATE_ONLY, str(folder), str(out)], capture_output=True,
                                text=True, cwd=root)
        wall = time.perf_counter() - started
        if result.returncode:
            print(result.stderr[-2000:])
            continue
        facts = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"gate alone (no Prefect), {label}: {wall:.1f} s wall (goal {goal} s) = load {facts['load']:.1f} s, "
              f"statistics {facts['stats']:.1f} s, Great Expectations (import, validation, Data Docs) "
              f"{facts['validate']:.1f} s, rest "
              f"(Python and imports) {wall - facts['load'] - facts['stats'] - facts['validate']:.1f} s; "
              f"{facts['images']:,} images, status {facts['status']}, peak RSS {facts['peak_mb']:,.0f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
