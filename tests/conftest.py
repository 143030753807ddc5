"""Shared fixtures: a real Prefect test server for the session, and small datasets the tests generate."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before Prefect is imported anywhere: a private Prefect home so no cache or database leaks between test runs,
# and no analytics calls to the network.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ablation-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def no_local_server_left_behind(tmp_path_factory):
    """A command run without PREFECT_API_URL leaves the local Prefect server running in the background, as it
    should for a user; the tests' servers (all under this session's temporary folder) are stopped at the end."""
    yield
    import psutil

    root = str(tmp_path_factory.getbasetemp())
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if "flows.local_server" in command and any(part.startswith(root) for part in command):
            process.kill()


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server (temporary database) for every flow test; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def user_runs(tmp_path_factory, prefect_server):
    """Every command of the user's table (`tests/user_commands.py`), run once for the session, two at a time;
    the tests that only read a run share it."""
    from tests.user_commands import run_all

    return run_all(tmp_path_factory.mktemp("user-commands"), prefect_server)


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 16, test: bool = True,
                       mode: str = "L", seed: int = 0) -> Path:
    """A folder dataset of random PNGs: root/train/<class>/*.png (and root/test/<class>/*.png)."""
    rng = np.random.default_rng(seed)
    splits = ["train", "test"] if test else ["train"]
    for split in splits:
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (size, size) if mode == "L" else (size, size, 3)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels, mode=None).save(folder / f"img_{i}.png")
    return root


def write_npz(path: Path, n: int = 40, classes: int = 4, size: int = 12, dtype=np.uint8, seed: int = 0, **overrides):
    """An .npz dataset with x_train, y_train, x_test, y_test; ``overrides`` replace or drop (None) keys."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n, size, size, 3)).astype(dtype),
        "y_train": np.arange(n) % classes,
        "x_test": rng.integers(0, 256, (n // 2, size, size, 3)).astype(dtype),
        "y_test": np.arange(n // 2) % classes,
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")
