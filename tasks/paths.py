"""Paths the project writes to, defined once (pathlib everywhere)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORTS_DIR = PROJECT_ROOT / "reports"


def cache_dir(reports_dir: Path) -> Path:
    """Where decoded datasets are cached (by fingerprint) for the training processes."""
    return Path(reports_dir) / ".cache" / "datasets"
