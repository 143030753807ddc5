"""Finished training cells, kept by what they depend on, so a rerun trains only what is missing.

A cell's key hashes the dataset's fingerprint, the cell's whole config (seed, epochs and the protocol's
validation share and carve included), the Keras
backend and the version of the training code (a hash of the modules that build and fit the model, and of the
user's model module with --model). Change any
of these and the cell trains again; change none and its record is reused, in this run or any later one. Failed
cells are not kept: a rerun tries them again. Records are small JSON files, written atomically the moment a cell
finishes, so a crash or Ctrl-C loses no finished cell.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tasks.files import write_atomic

_TRAINING_MODULES = ("train.py", "feed.py", "models.py", "grid.py")


def _code_version() -> str:
    digest = hashlib.sha256()
    for name in _TRAINING_MODULES:
        digest.update((Path(__file__).with_name(name)).read_bytes())
    return digest.hexdigest()[:12]


CODE_VERSION = _code_version()


def model_version(spec: str) -> str:
    """A hash of the source file of the user's model module ("package.module:function"), without importing it:
    edit the model and its cells train again."""
    import importlib.util

    from tasks.training.grid import working_dir_importable

    module = spec.split(":")[0]
    working_dir_importable()
    try:
        origin = importlib.util.find_spec(module).origin
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:12]
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        return "unreadable"  # the model check before training says what is wrong with it


def cell_key(cell: dict, fingerprint: str, backend: str) -> str:
    """The cell's identity: what its result depends on, not what it is called on the report."""
    config = {k: v for k, v in cell.items() if k not in ("axis", "variant")}
    identity = {"dataset": fingerprint, "config": config, "backend": backend, "code": CODE_VERSION}
    if cell.get("model"):
        identity["model code"] = model_version(cell["model"])
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def cell_keys(cells: list, fingerprint: str, backend: str) -> dict[str, str]:
    """Each grid cell's cache key, by its grid key (e.g. "dropout/dropout 0.5/seed1")."""
    return {cell.key: cell_key(cell.to_dict(), fingerprint, backend) for cell in cells}


def load_cell(directory: Path, key: str) -> dict | None:
    try:
        return json.loads((directory / f"{key}.json").read_text())
    except (OSError, ValueError):  # not there, or damaged: train it
        return None


def save_cell(directory: Path, key: str, record: dict) -> None:
    """Keep a finished cell (failed ones are not kept, so a rerun tries them again)."""
    if record.get("status") == "failed":
        return
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"{key}.json", json.dumps(record))


def export_models(records: list[dict], keys: dict[str, str], slugs: dict[str, str], directory: Path,
                  target: Path, keep_all: bool) -> list[Path]:
    """Copy the kept cells' best models (``<key>.keras`` in ``directory``) into ``target`` under readable names.

    Kept: every seed of the variant with the highest mean validation accuracy at its chosen epoch (chosen on
    validation, never on the test split), or every cell with
    ``keep_all``. ``keys`` and ``slugs`` map a cell's grid key to its cache key and its file name.
    """
    scored = [r for r in records if r.get("status") in ("ok", "diverged")]
    if not scored:
        return []
    means: dict[tuple, list[float]] = {}
    for record in scored:
        means.setdefault((record["axis"], record["variant"]), []).append(record["val_accuracy_at_best"])
    best = max(means, key=lambda variant: sum(means[variant]) / len(means[variant]))
    kept = [r for r in scored if keep_all or (r["axis"], r["variant"]) == best]
    copied = []
    for record in kept:
        grid_key = f"{record['axis']}/{record['variant']}/seed{record['seed']}"
        source = directory / f"{keys[grid_key]}.keras"
        if source.exists():  # a cell trained before models were kept has none
            target.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copyfile(source, target / f"{slugs[grid_key]}.keras")))
    return copied
