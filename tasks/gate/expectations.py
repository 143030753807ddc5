"""The data-quality gate: the suite's checks, validated by Great Expectations over the profiled tables.

`run_gate` profiles the per-image statistics (duplicates, outliers, per-class counts), builds the suite's
expectations (`tasks/gate/checks.py`), validates the image table and the class table with Great Expectations, writes
Data Docs, and condenses each result into a `CheckResult` that names the offending images.
Great Expectations is imported inside `validate`: it costs 2.5-5 s, which the CLI's start-up should not pay; a run
that will validate can have it imported on a thread ahead of time (`import_ahead`).
"""

from __future__ import annotations

import html
import importlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.gate.checks import CRITICAL, IMAGES, OFF, CheckSpec, build_specs, title
from tasks.gate.profile import class_table, leaked_test_images, profile_images
from tasks.gate.suite import load_suite

MAX_NAMED = 50  # offending images listed per check in gate.json and the report; the Data Docs list them all
KEY_COLUMN = {"images": "path", "classes": "class"}  # what names an offending row in each table


@dataclass(frozen=True)
class CheckResult:
    name: str  # the suite's key, e.g. "one_pixel_scale"
    severity: str
    success: bool
    observed: str
    explain: str
    offending: list[str] = field(default_factory=list)  # image paths (or "split/class" for class checks)
    offending_count: int = 0
    expectation: str = ""  # the Great Expectations class and its arguments, as the suite built them
    kwargs: dict = field(default_factory=dict)
    pairs: list[dict] = field(default_factory=list)  # near-copy checks: {"image", "copy", "distance"}, closest first

    @property
    def title(self) -> str:
        return title(self.name)


@dataclass(frozen=True)
class GateResult:
    status: str  # "pass", "warn" (warnings only) or "fail" (a critical check failed)
    checks: list[CheckResult]
    images: int
    data_docs: str | None = None  # path of the Data Docs index.html
    suite: dict = field(default_factory=dict)  # name, version and path of the suite file
    # Every test image with an exact or near copy in the training split ({"image", "copy", "distance", "exact"},
    # closest first): what the report scores without and `ablate validate --dedupe-report` lists.
    leaked: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_plain)

    @classmethod
    def from_json(cls, text: str) -> GateResult:
        raw = json.loads(text)
        return cls(**raw | {"checks": [CheckResult(**c) for c in raw["checks"]]})


def run_gate(stats: pd.DataFrame, class_names: list[str], suite: dict | None = None,
             docs_dir: Path | None = None) -> GateResult:
    """Profile ``stats``, validate both tables with Great Expectations, write Data Docs under ``docs_dir``.

    ``suite`` is a loaded suite file (`tasks.gate.suite.load_suite`); the default suite when None.
    """
    suite = suite or load_suite()
    images = profile_images(stats)
    classes = class_table(stats, class_names)
    specs = build_specs(suite, images, classes, class_names)
    results = validate(images, classes, specs, suite["name"], docs_dir)
    checks = [_with_pairs(_condense(spec, results[spec.name]), spec, images) for spec in specs]
    docs = docs_dir / "index.html" if docs_dir is not None else None
    near = suite["checks"].get("near_duplicates_across_splits", {})
    leaked = leaked_test_images(images, near["max_distance"] if near.get("severity", OFF) != OFF else -1.0)
    return GateResult(gate_status(checks), checks, int(images["split"].notna().sum()),
                      str(docs) if docs and docs.exists() else None,
                      {key: suite[key] for key in ("name", "version", "path")},
                      _records(leaked))


PAIRED = {"near_duplicates": "near_copy_in_split", "near_duplicates_across_splits": "near_copy_in_other_split"}


def _with_pairs(check: CheckResult, spec: CheckSpec, images: pd.DataFrame) -> CheckResult:
    """A near-copy check's pairs (image, copy, distance), closest first, each pair once, at most MAX_NAMED."""
    column = PAIRED.get(check.name)
    if column is None or check.success:
        return check
    rows = images[images[f"{column}_distance"] <= spec.kwargs["min_value"]]
    if spec.split:
        rows = rows[rows["split"] == spec.split]
    rows = rows.sort_values([f"{column}_distance", "path"], kind="stable")
    pairs, seen = [], set()
    for image, copy, distance in zip(rows["path"], rows[column], rows[f"{column}_distance"]):
        if frozenset((image, copy)) not in seen:
            seen.add(frozenset((image, copy)))
            pairs.append({"image": str(image), "copy": str(copy), "distance": round(float(distance), 4)})
    return replace(check, pairs=pairs[:MAX_NAMED])


def _records(table: pd.DataFrame) -> list[dict]:
    return [{key: (None if isinstance(value, float) and np.isnan(value) else value) for key, value in row.items()}
            for row in table.astype(object).to_dict("records")]


GX_MODULES = ("great_expectations", "great_expectations.expectations",
              "great_expectations.expectations.row_conditions", "great_expectations.data_context.types.base")


def import_ahead() -> threading.Thread:
    """Import Great Expectations (what `validate` imports) on a thread of its own, for a run whose gate will
    validate: its 2.5-5 s pass while the run waits on something else (the process checking ``--model`` builds
    the user's model meanwhile). `validate`'s own import then waits for this one (Python's module locks): never
    twice. A failure here is left for that import to report."""
    def load() -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        try:
            for name in GX_MODULES:
                importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - see above
            pass

    thread = threading.Thread(target=load, name="import-great-expectations", daemon=True)
    thread.start()
    return thread


def validate(images: pd.DataFrame, classes: pd.DataFrame, specs: list[CheckSpec], suite_name: str,
             docs_dir: Path | None) -> dict:
    """Run the expectations over each table (one validation per table) and return each check's raw result."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dataset")
    results = {}
    for table, frame in ((IMAGES, images), ("classes", classes)):
        table_specs = [spec for spec in specs if spec.table == table]
        if not table_specs:
            continue
        suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_name}.{table}"))
        for spec in table_specs:
            suite.add_expectation(_expectation(spec))
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
        run = definition.run(batch_parameters={"dataframe": _for_gx(frame, table_specs, table)}, result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": [KEY_COLUMN[table]]})
        results |= {r.expectation_config.meta["check"]: r for r in run.results}
    if docs_dir is not None:
        folder = str(Path(docs_dir).absolute())  # Great Expectations refuses a relative one
        context.add_data_docs_site(site_name="gate", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": folder},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        context.build_data_docs(site_names=["gate"])
    return results


def _for_gx(frame: pd.DataFrame, specs: list[CheckSpec], table: str) -> pd.DataFrame:
    """Only the columns the expectations read (and the key and split), text HTML-escaped.

    Great Expectations writes offending values into its Data Docs HTML without escaping them, so a file or
    class folder named ``<script>`` would become markup there. Escaped here, the Data Docs show the names as
    text; `_condense` unescapes what comes back, so gate.json and the report hold the real names.
    """
    columns = {KEY_COLUMN[table], "split"} | {spec.kwargs["column"] for spec in specs}
    frame = frame[[c for c in frame.columns if c in columns]].copy()
    for name in frame.columns:
        if frame[name].dtype == object or pd.api.types.is_string_dtype(frame[name]):
            frame[name] = frame[name].map(lambda v: html.escape(v) if isinstance(v, str) else v)
    return frame


def gate_status(checks: list[CheckResult]) -> str:
    failed = {c.severity for c in checks if not c.success}
    return "fail" if CRITICAL in failed else "warn" if failed else "pass"


def _expectation(spec: CheckSpec):
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    extra = {"row_condition": Column("split") == spec.split} if spec.split else {}
    cls = getattr(gxe, spec.expectation)
    return cls(**spec.kwargs, **extra, severity=spec.severity, description=title(spec.name),
               meta={"check": spec.name})


def _condense(spec: CheckSpec, result) -> CheckResult:
    """The few facts a reader needs from one Great Expectations result."""
    details = result.result or {}
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "partition_object"}
    base = {"name": spec.name, "severity": spec.severity, "success": bool(result.success), "explain": spec.explain,
            "expectation": spec.expectation, "kwargs": kwargs}
    if result.exception_info and result.exception_info.get("raised_exception"):
        message = result.exception_info.get("exception_message") or "the expectation raised an error"
        return CheckResult(**base | {"success": False, "observed": f"could not be evaluated: {message}"})
    if "unexpected_count" not in details:  # an aggregate expectation: a divergence, a count of classes
        observed = details.get("observed_value")
        if spec.expectation == "ExpectColumnUniqueValueCountToBeBetween":
            text = f"{observed} classes (at least {spec.kwargs['min_value']})"
        else:
            number = f"{float(observed):.3f}" if isinstance(observed, (int, float, np.floating)) else str(observed)
            text = f"{number} (limit {spec.kwargs.get('threshold')})"
        return CheckResult(**base | {"observed": text})
    key = KEY_COLUMN[spec.table]
    offending = [html.unescape(str(row[key])) for row in details.get("unexpected_index_list") or []]
    raw_values = [html.unescape(v) if isinstance(v, str) else v for v in details.get("partial_unexpected_list") or []]
    # Yes/no flags say nothing beyond the count, nor do near-copy distances (the pairs list them); other values
    # (a scale, a size, a reason) do.
    values = [] if spec.name in PAIRED or all(isinstance(v, (bool, np.bool_)) for v in raw_values) \
        else sorted({_short(v) for v in raw_values})
    count = int(details.get("unexpected_count") or 0)
    noun = "images" if spec.table == IMAGES else "classes"
    observed = f"{count} of {details.get('element_count', '?')} {noun}" + (
        f" (values: {', '.join(values[:5])})" if values and count else "")
    return CheckResult(**base | {"observed": observed, "offending": offending[:MAX_NAMED], "offending_count": count})


def _short(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4g}"
    return str(value)[:120]


def _plain(value):
    """JSON for the numpy scalars Great Expectations hands back."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
