"""What a run ran on: package versions and hardware, for the report's "Run" section. Reads package metadata and
/proc, never imports the frameworks (TensorFlow's import alone costs seconds)."""

from __future__ import annotations

import platform
from importlib import metadata

from tasks.training.devices import cpu_count, nvidia_smi

PACKAGES = {"TensorFlow": "tensorflow", "Keras": "keras", "JAX": "jax", "PyTorch": "torch", "Prefect": "prefect",
            "Great Expectations": "great-expectations", "prefect-dask": "prefect-dask", "NumPy": "numpy"}


def environment_facts(backend: str) -> dict[str, str]:
    """Python and package versions, the Keras backend, the CPU and any GPUs."""
    facts = {"Python": platform.python_version()}
    for name, package in PACKAGES.items():
        try:
            facts[name] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue  # an optional backend that is not installed
    gpus = [row[0] for row in nvidia_smi("name") if row]
    facts |= {"Keras backend": backend, "CPU": f"{cpu_name()} ({cpu_count()} cores usable)",
              "GPU": ", ".join(gpus) if gpus else "none", "OS": platform.platform(terse=True)}
    return facts


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
