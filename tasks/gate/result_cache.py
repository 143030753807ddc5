"""The gate's result, kept by what decides it: a dataset and suite validated before are not validated again.

The key is the statistics' fingerprint (the dataset's fingerprint and the statistics' version), the suite's
content (not its path: a copy of a suite validates alike), the class names, and the source of the modules that
turn statistics into a verdict, so an edited check validates again. An entry is `gate.json` and the Data Docs
folder. A hit copies both into the run folder without importing Great Expectations (2.5-5 s of every run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tasks.gate.expectations import GateResult
from tasks.gate.pixel_stats import STATS_VERSION

# The modules whose code decides a gate result from the statistics: a change to any of them is a new key.
DECIDING = ("checks.py", "profile.py", "expectations.py", "suite.py")


def gate_key(fingerprint: str, suite: dict, class_names: list[str]) -> str:
    here = Path(__file__).parent
    try:
        gx = version("great_expectations")
    except PackageNotFoundError:
        gx = "?"
    content = {"statistics": f"{fingerprint}-v{STATS_VERSION}", "classes": class_names, "great_expectations": gx,
               "suite": {key: value for key, value in suite.items() if key != "path"},
               "code": [hashlib.sha256((here / name).read_bytes()).hexdigest() for name in DECIDING]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:24]


def is_kept(entry: Path) -> bool:
    """Whether ``entry`` holds a kept result (`cached_gate` may still find it damaged and validate again)."""
    return (entry / "gate.json").is_file()


def cached_gate(entry: Path, docs_dir: Path, suite: dict) -> GateResult | None:
    """The result kept in ``entry``, its Data Docs copied to ``docs_dir``; None when there is none (or it is
    damaged, in which case the gate validates again)."""
    try:
        result = GateResult.from_json((entry / "gate.json").read_text(encoding="utf-8"))
        if (entry / "data_docs").is_dir():
            _copy_tree(entry / "data_docs", docs_dir)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    docs = docs_dir / "index.html"
    return replace(result, data_docs=str(docs) if result.data_docs and docs.exists() else None,
                   suite=result.suite | {"path": suite["path"]})


def keep_gate(entry: Path, result: GateResult, docs_dir: Path) -> None:
    """Keep a fresh result: written aside and renamed into place, so a reader never finds half an entry."""
    staging = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if docs_dir.is_dir():
        _copy_tree(docs_dir, staging / "data_docs")
    (staging / "gate.json").write_text(result.to_json(), encoding="utf-8")
    shutil.rmtree(entry, ignore_errors=True)
    try:
        os.replace(staging, entry)
    except OSError:  # another run kept the same entry at the same moment: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def _copy_tree(source: Path, target: Path) -> None:
    """Hard links where the file system allows (the Data Docs are never edited in place), copies elsewhere."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)
