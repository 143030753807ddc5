"""The devices cells train on: CPU cores and GPUs found on this machine, the Keras backend, and the slot plan
(how many training processes, on which device, with how many threads each).

Read from the operating system and nvidia-smi, never by importing a framework (TensorFlow's import alone costs
seconds), so the CLI, the flow and the report can ask cheaply.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass

from tasks.errors import AblationError

DEFAULT_PER_GPU = 8  # one H100 ran 8 Keras processes of this CNN each about as fast as one alone (host-bound)
MIB_PER_SLOT = 2048  # GPU memory per training process: its CUDA context (~0.5 GB) plus a small CNN's working set
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # Keras 3 backends


class BackendError(AblationError):
    """The chosen Keras backend is unknown or not installed (exit code 2)."""


@dataclass(frozen=True)
class SlotSpec:
    index: int
    device: str  # "cpu" or "gpu:<id>"
    threads: int  # framework intra-op threads, so slots do not fight over cores
    backend: str = "tensorflow"  # the Keras backend the process imports

    def env(self) -> dict[str, str]:
        """Environment the slot's process starts with, set before the framework is imported."""
        gpu = self.device.removeprefix("gpu:") if self.device.startswith("gpu:") else ""
        return {
            "CUDA_VISIBLE_DEVICES": gpu,  # "" hides every GPU from a CPU slot
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # Keras on JAX: share the GPU between slots
            "OMP_NUM_THREADS": str(self.threads),
            "KERAS_BACKEND": self.backend,
        }


def plan_slots(cells: int, cpus: int, gpus: list[str], per_gpu: int = DEFAULT_PER_GPU,
               gpu_memory_mib: dict[str, int] | None = None, backend: str = "tensorflow",
               processes: int | None = None) -> list[SlotSpec]:
    """Several slots per GPU where there are GPUs, else one per CPU core; never more slots than cells.

    A GPU gets ``per_gpu`` slots, fewer when its memory (``gpu_memory_mib``) holds fewer processes of
    MIB_PER_SLOT each: 8 on an 80 GB card, 4 on an 8 GB one. ``processes`` sets the number in all instead,
    spread over the GPUs in turn (or all on the CPU).
    """
    memory = gpu_memory_mib or {}
    if processes:
        places = [f"gpu:{g}" for g in gpus] or ["cpu"]
        devices = [places[i % len(places)] for i in range(processes)]
    elif gpus:
        devices = [f"gpu:{g}" for g in gpus for _ in range(_fitting(per_gpu, memory.get(g)))]
    else:
        devices = ["cpu"] * cpus
    devices = devices[:max(1, cells)]
    threads = max(1, cpus // len(devices))
    return [SlotSpec(i, device, threads, backend) for i, device in enumerate(devices)]


def _fitting(per_gpu: int, memory_mib: int | None) -> int:
    return per_gpu if memory_mib is None else max(1, min(per_gpu, memory_mib // MIB_PER_SLOT))


def gpu_memory_mib() -> dict[str, int]:
    """Total memory per GPU id, from nvidia-smi (empty when there is none)."""
    rows = nvidia_smi("index,memory.total")
    return {row[0]: int(float(row[1])) for row in rows if len(row) == 2 and row[1].replace(".", "").isdigit()}


def nvidia_smi(query: str) -> list[list[str]]:
    """nvidia-smi's answer to a --query-gpu, one list of fields per GPU; none when it is missing or fails."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[field.strip() for field in line.split(",")] for line in out.splitlines() if line.strip()]


def check_backend(backend: str) -> None:
    """Fail at once, with the fix, when the chosen Keras backend is unknown or not installed."""
    if backend not in BACKEND_MODULES:
        raise BackendError(f"unknown --backend {backend!r}; choose from {', '.join(BACKEND_MODULES)}")
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        raise BackendError(f"--backend {backend}: {BACKEND_MODULES[backend]} is not installed in this environment "
                           f"(pip install {BACKEND_MODULES[backend]})")


def detect_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    return [row[0] for row in nvidia_smi("index")]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
