"""Each command imports the heavy packages only on the paths that use them (measured with `python -X importtime`,
as `benchmarks/bench_startup.py` does). A warm `ablate validate` is checked in test_local_server.py."""

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
