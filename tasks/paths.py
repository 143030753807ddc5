"""Paths the project writes to, defined once (pathlib everywhere)."""

from __future__ import annotations

from pathlib import Path


def default_reports_dir() -> Path:
    """``./reports`` of the directory the tool runs in (the project root under `make run`), like mlruns/."""
    return Path.cwd() / "reports"


def cache_dir(reports_dir: Path) -> Path:
    """Where decoded datasets are cached (by fingerprint) for the training processes."""
    return Path(reports_dir) / ".cache" / "datasets"
