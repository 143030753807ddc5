"""A folder of photos, as a new user brings it: decoding speed, memory with several training processes, and a
dataset larger than memory.

Generates (or reuses) a photo-like folder (`tests/photos.py`: mostly 500x375 JPEGs, some 640x480, 1024x768 and
portrait) and measures, printing one JSON line per measurement:

- load: a cold load (decoded into a fresh cache, at the default working resolution) and a warm one (the cache
  reused), and decoding's images per second per core (the decode stage alone; the JPEGs are in the page cache);
  on the generated folder, and again on one of 500x375 JPEGs only (the goal's case);
- memory: `ablate run` on the folder with 2 and with 8 training processes (`--processes`), sampled every second
  (`process_memory.py`): peak RSS and PSS of the flow process and of each training process, and the total PSS
  against the size of the decoded dataset (one shared copy means total = dataset + a fixed cost per process);
- epoch: one training cell's seconds per epoch streamed from the memmap against the same data copied into the
  process (`tasks.training.feed`);
- larger than memory (where a memory cgroup can be made, i.e. as root on cgroup v1): a training process held to
  ``--memory-limit`` GiB of memory trains on a dataset twice that size; its peak memory and any out-of-memory
  kill are printed.

    python benchmarks/bench_photos.py --images 2000
    python benchmarks/bench_photos.py --folder ~/my-photos --skip-large
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from process_memory import measure  # noqa: E402

from tasks.data.decode import workers  # noqa: E402
from tasks.data.store import load_cache, new_staging, publish  # noqa: E402
from tests.photos import write_photo_folder  # noqa: E402

ABLATE = str(Path(sys.executable).with_name("ablate"))
LOAD = """
import json, sys, time
from pathlib import Path
from tasks.data.datasets import load_dataset
starts, stages = {}, {}
def progress(stage, done, total):
    if done == 0:
        starts[stage] = time.perf_counter()
    if done == total:
        stages[stage] = [time.perf_counter() - starts[stage], total]
started = time.perf_counter()
data = load_dataset(sys.argv[1], cache=Path(sys.argv[2]), progress=progress)
print(json.dumps({"seconds": time.perf_counter() - started, "stages": stages, "cache": str(data.cached_at),
                  "shape": list(data.x_train.shape[1:]), "images": len(data.y_train) + len(data.y_test)}))
"""
EPOCH = """
import json, sys
from dataclasses import replace
from tasks.training import feed
from tasks.training.grid import BASELINE, Cell
from tasks.training.train import init_process, train_cell
init_process(0)
feed.IN_MEMORY_BYTES = int(sys.argv[2])
cell = Cell("baseline", "baseline", replace(BASELINE, max_epochs=int(sys.argv[3]), early_stopping=False)).to_dict()
if len(sys.argv) > 4:
    cell["model"] = sys.argv[4]
record = train_cell(cell, sys.argv[1])
print(json.dumps({k: record[k] for k in ("status", "error", "epochs", "seconds", "test_accuracy")}))
"""


def python(code: str, *args: str, **popen) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                         env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}, **popen)
    if out.returncode:
        raise SystemExit(f"failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def emit(kind: str, **fields) -> None:
    print(json.dumps({"measure": kind} | fields), flush=True)


def bench_load(folder: Path, work: Path, sizes: str) -> Path:
    cache = work / f"cache-{folder.name}"
    cold = python(LOAD, str(folder), str(cache))
    warm = python(LOAD, str(folder), str(cache))
    decode_seconds, images = cold["stages"]["decoding"]
    emit("load", sizes=sizes, images=cold["images"], working_size=cold["shape"], cold_seconds=round(cold["seconds"], 2),
         warm_seconds=round(warm["seconds"], 2), headers_seconds=round(cold["stages"]["reading headers"][0], 2),
         decode_seconds=round(decode_seconds, 2), cores=workers(),
         decode_images_per_second_per_core=round(images / decode_seconds / workers()))
    return Path(cold["cache"])


def bench_memory(folder: Path, work: Path, dataset: Path, processes: int) -> None:
    data = load_cache(dataset)
    dataset_mib = (data.x_train.nbytes + data.x_test.nbytes) / 2**20
    seeds = max(1, -(-processes // 3))  # dropout's three variants x seeds >= processes: every process trains
    command = [ABLATE, "run", "--dataset", str(folder), "--epochs", "1", "--seeds", str(seeds), "--axes", "dropout",
               "--processes", str(processes), "--fresh", "--out", ""]
    reports = work / f"reports-{processes}"
    command[-1] = str(reports)
    result = measure(command, every=1.0, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Training processes name themselves in their logs ("training process 1234: slot 0 ..."); the other spawned
    # processes are the decoding pool's.
    pids = {int(m) for log in reports.glob("*/logs/slot-*.log")
            for m in re.findall(r"training process (\d+)", log.read_text())}
    trainers = [p for p in result["processes"] if p["pid"] in pids]
    main = next(p for p in result["processes"] if p["role"] == "main")
    emit("memory", processes=processes, exit_code=result["exit_code"], seconds=result["seconds"],
         dataset_mib=round(dataset_mib), peak_total_pss_mib=result["peak_total_pss_mib"],
         flow_process={"rss_mib": main["rss_mib"], "pss_mib": main["pss_mib"]},
         training_processes=len(trainers),
         training_rss_mib_max=max((p["rss_mib"] for p in trainers), default=None),
         training_pss_mib_max=max((p["pss_mib"] for p in trainers), default=None))


def bench_epoch(dataset: Path) -> None:
    streamed = python(EPOCH, str(dataset), "0", "2")
    in_memory = python(EPOCH, str(dataset), str(2**40), "2")
    emit("epoch", streamed_seconds_per_epoch=round(streamed["seconds"] / streamed["epochs"], 2),
         in_memory_seconds_per_epoch=round(in_memory["seconds"] / in_memory["epochs"], 2),
         ratio=round(streamed["seconds"] / in_memory["seconds"], 2),
         accuracies=[round(streamed["test_accuracy"], 3), round(in_memory["test_accuracy"], 3)])


def larger_dataset(source: Path, directory: Path, gib: float) -> Path:
    """A dataset of ``gib`` GiB: the source's training rows repeated, written in chunks, then dropped from the
    page cache, so the training process must read it from disk under its own memory limit."""
    data = load_cache(source)
    rows = int(gib * 2**30 / (data.x_train.nbytes / len(data.x_train)))
    staging = new_staging(directory)
    x = np.lib.format.open_memmap(staging / "x_train.npy", mode="w+", dtype=np.uint8,
                                  shape=(rows, *data.x_train.shape[1:]))
    for start in range(0, rows, 4096):
        index = np.arange(start, min(rows, start + 4096)) % len(data.x_train)
        x[start:start + len(index)] = data.x_train[index]
    x.flush()
    y = data.y_train[np.arange(rows) % len(data.y_train)]
    data.x_train, data.y_train = np.load(staging / "x_train.npy", mmap_mode="r"), y
    data.ids_train = np.array([f"x_train[{i}]" for i in range(rows)])
    data.shapes_train = data.shapes_train[np.arange(rows) % len(data.shapes_train)]
    data.cached_at = None
    path = publish(staging, data)
    del x, data  # unmapped: a page still mapped here would stay in memory, charged to this process, not the test
    for name in ("x_train.npy", "x_test.npy"):  # out of the page cache: the limited process reads from disk
        with open(path / name, "rb") as f:
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def bench_larger_than_memory(dataset: Path, work: Path, limit_gib: float) -> None:
    group = Path(f"/sys/fs/cgroup/memory/ablate-bench-{os.getpid()}")
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(int(limit_gib * 2**30)))
    except OSError as exc:
        emit("larger_than_memory", skipped=f"no memory cgroup to hold the process to {limit_gib} GiB: {exc}")
        return
    try:
        big = larger_dataset(dataset, work / "big", 2 * limit_gib)
        into_group = lambda: (group / "cgroup.procs").write_text(str(os.getpid()))  # noqa: E731
        # A small model (tests/user_models.py): the point is the memory of reading 2x the limit, not the CNN.
        record = python(EPOCH, str(big), "0", "1", "tests.user_models:small_mlp", preexec_fn=into_group)
        oom = (group / "memory.oom_control").read_text()
        emit("larger_than_memory", memory_limit_gib=limit_gib,
             dataset_gib=round(sum(f.stat().st_size for f in big.glob("x_*.npy")) / 2**30, 2),
             status=record["status"], error=record["error"], seconds=round(record["seconds"], 1),
             peak_memory_gib=round(int((group / "memory.max_usage_in_bytes").read_text()) / 2**30, 2),
             oom_kills=next((int(line.split()[1]) for line in oom.splitlines() if line.startswith("oom_kill ")), 0))
    finally:
        time.sleep(0.5)
        group.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="photos to generate (default: 2,000)")
    parser.add_argument("--folder", type=Path, default=None, help="use this folder instead of generating one")
    parser.add_argument("--memory-limit", type=float, default=1.5, metavar="GIB",
                        help="memory of the larger-than-memory training process (the dataset is twice this)")
    parser.add_argument("--skip-large", action="store_true", help="skip the larger-than-memory measurement")
    parser.add_argument("--only-large", action="store_true", help="only the larger-than-memory measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        work = Path(tmp)
        folder = args.folder
        if folder is None:
            started = time.perf_counter()
            folder = write_photo_folder(work / "photos", args.images)
            emit("generate", images=args.images, seconds=round(time.perf_counter() - started, 1),
                 megabytes=round(sum(f.stat().st_size for f in folder.rglob("*.jpg")) / 2**20))
        dataset = bench_load(folder, work, "mixed" if args.folder is None else str(folder))
        if args.folder is None and not args.only_large:  # the goal's case: 500x375 JPEGs to the 128-pixel size
            only = write_photo_folder(work / "photos-500x375", args.images, sizes=((500, 375, 1.0),))
            bench_load(only, work, "500x375")
        if not args.only_large:
            for processes in (2, 8):
                bench_memory(folder, work, dataset, processes)
            bench_epoch(dataset)
        if not args.skip_large:
            bench_larger_than_memory(dataset, work, args.memory_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
