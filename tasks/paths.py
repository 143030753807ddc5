"""Paths the project writes to, defined once (pathlib everywhere)."""

from __future__ import annotations

from pathlib import Path


def default_reports_dir() -> Path:
    """``./reports`` of the directory the tool runs in (the project root under `make run`), like mlruns/."""
    return Path.cwd() / "reports"


def reports_dir(out: str | Path | None = None) -> Path:
    """The reports folder a run writes to: ``out`` as given, or the default, made absolute. Relative paths are
    resolved once, here, against the directory the tool was started in: run folders, the Data Docs (which Great
    Expectations requires absolute) and the paths printed at the end all agree on it."""
    return (Path(out).expanduser() if out else default_reports_dir()).absolute()


def cache_dir(reports_dir: Path) -> Path:
    """The cache under the reports folder (never the user's home), safe to delete at any time:
    ``datasets/`` decoded datasets by fingerprint (the training processes load them from there), ``folders/``
    which decoded dataset a folder's file listing gave, ``stats/`` pixel statistics by dataset fingerprint,
    ``gate/`` gate results by statistics and suite, ``charts/`` the reports' charts by their inputs.
    The local Prefect server's home is ``.prefect/`` beside it."""
    return Path(reports_dir) / ".cache"
