"""GPU check: how many training processes per GPU pay off, on this machine, through the project's own slot pool.

Needs only numpy, Keras and one backend (JAX, TensorFlow or PyTorch): no Prefect, no Great Expectations. It
detects the GPUs, plans the slots as `ablate run` does (`tasks.training.devices.plan_slots`), and for 1, 4 and
8 processes per GPU trains a grid of CIFAR-sized cells (generated images, 32x32x3, 10 classes; the article's
CNN) through `tasks.training.slots.SlotPool`, each cell in one long-lived process as in a run. Per setting it
prints one JSON line: cells per minute, seconds per epoch (median over cells, first epoch with its compile
included), peak GPU memory per process (nvidia-smi), and the speed-up in cells per minute over one process.
Each process trains two cells, so the second shows the steady state without imports.

    python benchmarks/gpu_check.py                       # on a GPU machine: ~3-5 minutes on one H100/H200
    python benchmarks/gpu_check.py --backend tensorflow  # another backend
    python benchmarks/gpu_check.py --images 2000         # without a GPU: the same check on the CPU, smaller

Without a GPU it runs on the CPU (processes per device instead of per GPU) to show it works; those numbers
say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.data.store import Dataset, save_cache  # noqa: E402
from tasks.training.devices import cpu_count, detect_gpus, nvidia_smi, plan_slots  # noqa: E402
from tasks.training.grid import BASELINE, Cell  # noqa: E402
from tasks.training.slots import SlotPool  # noqa: E402

CELLS_PER_PROCESS = 2


def cifar_sized(images: int, seed: int = 0) -> Dataset:
    """``images`` training and images/5 test images of 32x32x3 in 10 classes, each class a colour and a
    frequency of stripes under noise: learnable, so accuracy moves, and nothing downloaded."""
    rng = np.random.default_rng(seed)

    def split(n: int):
        labels = np.arange(n) % 10
        y, x = np.mgrid[:32, :32]
        stripes = np.sin((x[None] * (1 + labels[:, None, None]) + rng.uniform(0, 6, (n, 1, 1))) / 3)
        colour = np.stack([np.cos(labels), np.sin(labels), np.cos(2 * labels)], axis=1)[:, None, None, :]
        pixels = 128 + 60 * stripes[..., None] * colour + rng.normal(0, 30, (n, 32, 32, 3))
        return np.clip(pixels, 0, 255).astype(np.uint8), labels.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(images), split(max(10, images // 5))
    ids = lambda n, s: np.array([f"{s}[{i}]" for i in range(n)])  # noqa: E731
    shapes = lambda n: np.tile([32, 32, 3], (n, 1))  # noqa: E731
    return Dataset("cifar-sized", x_train, y_train, x_test, y_test, [str(c) for c in range(10)],
                   ids(len(y_train), "x_train"), ids(len(y_test), "x_test"), shapes(len(y_train)), shapes(len(y_test)))


def gpu_memory_by_pid() -> dict[int, float]:
    """MiB of GPU memory per process, from nvidia-smi's compute-apps query (empty without a GPU)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except OSError:
        return {}
    memory = {}
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0].isdigit() and fields[1].replace(".", "").isdigit():
            memory[int(fields[0])] = float(fields[1])
    return memory


def run_setting(per_device: int, gpus: list[str], dataset: str, epochs: int, backend: str, log_dir: Path) -> dict:
    devices = max(1, len(gpus))
    cells = [Cell("baseline", "baseline", replace(BASELINE, seed=seed, max_epochs=epochs, early_stopping=False))
             for seed in range(per_device * devices * CELLS_PER_PROCESS)]
    slots = plan_slots(len(cells), cpu_count(), gpus, per_gpu=per_device, backend=backend,
                       processes=None if gpus else per_device)
    peaks: dict[int, float] = {}
    stop = threading.Event()

    def watch_gpu_memory():
        while not stop.wait(1.0):
            for pid, mib in gpu_memory_by_pid().items():
                peaks[pid] = max(peaks.get(pid, 0.0), mib)

    records = []
    with SlotPool(slots, log_dir / f"{per_device}-per-device") as pool:
        pids = set(pool.pids().values())
        watcher = threading.Thread(target=watch_gpu_memory, daemon=True)
        watcher.start()
        started = time.perf_counter()
        threads = [threading.Thread(target=lambda c=c: records.append(pool.run(
            {"cell": c.to_dict(), "dataset_path": dataset})[0])) for c in cells]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        stop.set()
    ok = [r for r in records if r["status"] == "ok"]
    per_epoch = [r["seconds"] / r["epochs"] for r in ok if r["epochs"]]
    memory = [mib for pid, mib in peaks.items() if pid in pids]
    return {"processes_per_device": per_device, "processes": len(slots), "devices": sorted({s.device for s in slots}),
            "backend": backend, "cells": len(cells), "cells_ok": len(ok), "wall_s": round(wall, 1),
            "cells_per_minute": round(60 * len(ok) / wall, 2),
            "seconds_per_epoch_median": round(statistics.median(per_epoch), 2) if per_epoch else None,
            "gpu_memory_mib_per_process_max": round(max(memory)) if memory else None,
            "mean_test_accuracy": round(float(np.mean([r["test_accuracy"] for r in ok])), 3) if ok else None,
            "errors": sorted({r["error"] for r in records if r["status"] != "ok"})[:3]}


def default_backend() -> str:
    for backend, module in (("jax", "jax"), ("tensorflow", "tensorflow"), ("torch", "torch")):
        if importlib.util.find_spec(module):
            return backend
    sys.exit("gpu_check: no Keras backend installed (jax, tensorflow or torch)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["jax", "tensorflow", "torch"], default=None,
                        help="Keras backend of the training processes (default: jax if installed)")
    parser.add_argument("--images", type=int, default=None,
                        help="training images (default: 20,000 with a GPU, 2,000 without)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--settings", default="1,4,8", help="processes per GPU to try, comma-separated")
    args = parser.parse_args()
    backend = args.backend or default_backend()
    gpus = detect_gpus()
    images = args.images or (20_000 if gpus else 2_000)
    names = [row[0] for row in nvidia_smi("name")] if gpus else []
    print(json.dumps({"gpus": gpus, "gpu_names": names, "cpus": cpu_count(), "backend": backend,
                      "images": images, "epochs": args.epochs,
                      "note": None if gpus else "no GPU found: this runs on the CPU, to show the check works"}),
          flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        dataset = str(save_cache(cifar_sized(images), Path(tmp) / "datasets"))
        one = None
        for per_device in (int(s) for s in args.settings.split(",")):
            result = run_setting(per_device, gpus, dataset, args.epochs, backend, Path(tmp) / "logs")
            one = one or result["cells_per_minute"]
            result["speedup_over_one_process"] = round(result["cells_per_minute"] / one, 2) if one else None
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
