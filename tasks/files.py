"""Writing files so that a reader never sees half of one: every stage writes its results through here."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file and rename, so a crash never leaves half a report where a whole one was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
