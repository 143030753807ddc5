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


COMMAND_TABLE_FILES = {"tests/test_commands.py", "tests/test_browser.py"}  # the tests that read `user_runs`
# The files that take longest (real servers, training processes, whole commands), heaviest first: they start
# first, so the last file still running at the end is a short one. The command table alone is 4-6 minutes.
HEAVY_FILES = ("tests/test_commands.py", "tests/test_browser.py", "tests/test_cli.py", "tests/test_local_server.py",
               "tests/test_dask.py", "tests/test_deployments.py", "tests/test_flows.py",
               "tests/test_models_and_training.py", "tests/test_slots.py")


def pytest_collection_modifyitems(items):
    """Heavy files first (HEAVY_FILES's order), the rest as collected; within a file, tests keep their order."""
    rank = {path: index for index, path in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist (`make test` runs a worker per core): each test file runs whole on one worker, so a
    module's fixtures are built once; and the files that read the command table share one worker, which runs the
    table (12 real commands) once. Files are handed out in the order collected (HEAVY_FILES first: the Makefile
    passes --no-loadscope-reorder, which would otherwise order them by their number of tests), then as workers
    free up."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFileWithTheCommandTable(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "the command table" if path in COMMAND_TABLE_FILES else path

    return ByFileWithTheCommandTable(config, log)


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
