"""Each command imports the heavy packages only on the paths that use them (measured with `python -X importtime`,
as `benchmarks/bench_startup.py` does). A warm `ablate validate` is checked in test_local_server.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_startup import HEAVY, imported_packages

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["grid", "--grid", "examples/ablation.toml"],
                                  ["server", "status"]])
def test_help_grid_and_server_import_none_of_the_heavy_packages(args, tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "flows.cli", *args, *(
        ["--out", str(tmp_path)] if args[0] in ("grid", "server") else [])], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode in (0, 1), result.stderr[-2000:]  # `server status` is 1 when none runs
    imported = imported_packages(result.stderr)
    assert imported and not set(imported) & set(HEAVY), imported


def test_a_training_process_imports_keras_without_scikit_learn_and_matplotlib_yet_a_model_file_can_use_them():
    script = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
from tasks.training.framework import import_keras
keras = import_keras()
print(sorted(name for name in ("sklearn", "matplotlib", "tensorflow") if name in sys.modules))
keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])(keras.ops.ones((1, 4)))  # Keras works
import sklearn.base, matplotlib.pyplot  # and a user's model file still gets the real packages
print(sklearn.base.BaseEstimator.__module__, matplotlib.pyplot.__name__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["['tensorflow']", "sklearn.base matplotlib.pyplot"]
