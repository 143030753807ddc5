"""The folder tree is the data-flow diagram, and the imports keep it so: a stage never imports a later one, and
`tasks/` never imports Prefect or the flows (training processes import it without paying for Prefect)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TASKS = Path(__file__).resolve().parents[1] / "tasks"
SHARED = {"errors", "paths", "files"}  # tasks.errors, tasks.paths, tasks.files: every stage may use them
# What each stage may import, as its package docstring says: only the stages before it.
MAY_IMPORT = {
    "shared": set(),
    "data": {"shared"},
    "gate": {"shared", "data"},
    "training": {"shared", "data"},
    "report": {"shared", "data", "gate", "training"},
}


def stage_of(module: str) -> str | None:
    """"tasks.gate.checks" -> "gate"; "tasks.errors" -> "shared"; anything outside tasks -> None."""
    parts = module.split(".")
    if parts[0] != "tasks" or len(parts) < 2:
        return None
    return "shared" if parts[1] in SHARED else parts[1]


def imports_of(path: Path) -> list[str]:
    """Every module a file imports, at the top or inside a function, as absolute names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; use absolute ones"
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


MODULES = sorted(p for p in TASKS.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(TASKS.parent).with_suffix("").parts).removesuffix(".__init__")


def test_every_module_belongs_to_a_stage_or_is_shared():
    for path in MODULES:
        if path.parent == TASKS and path.name != "__init__.py":
            assert path.stem in SHARED, f"{path.name} sits beside the stages; put it in the stage it serves"
        elif path.parent != TASKS:
            assert path.parent.name in MAY_IMPORT, f"{path}: not in a stage package"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_stage_imports_a_later_one_and_none_imports_prefect(path):
    stage = stage_of(module_name(path)) or "shared"
    for imported in imports_of(path):
        assert imported.split(".")[0] not in ("prefect", "flows"), f"{module_name(path)} imports {imported}"
        other = stage_of(imported)
        if other is not None and other != stage:
            assert other in MAY_IMPORT[stage], (f"{module_name(path)} ({stage}) imports {imported} ({other}); "
                                                f"{stage} may import {sorted(MAY_IMPORT[stage]) or 'nothing'}")


def test_the_walk_sees_the_imports_it_checks():
    """The check above cannot pass by finding nothing: it reads imports inside functions too."""
    assert "tasks.training.train" in imports_of(TASKS / "training" / "slots.py")  # a function-level import
    assert "tasks.data.datasets.Dataset" in imports_of(TASKS / "gate" / "pixel_stats.py")
    assert len(MODULES) > 30


def test_the_stage_packages_import_on_their_own():
    command = "import tasks.data, tasks.gate, tasks.training, tasks.report"
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("stage", sorted(MAY_IMPORT.keys() - {"shared"}))
def test_each_stage_says_what_it_owns_and_may_import(stage):
    doc = ast.get_docstring(ast.parse((TASKS / stage / "__init__.py").read_text())) or ""
    assert "Owns:" in doc and "May import" in doc
    for other in MAY_IMPORT[stage] - {"shared"}:
        assert f"tasks.{other}" in doc, f"tasks/{stage}/__init__.py does not name tasks.{other}"
