"""The data-quality gate: Great Expectations checks over the per-image statistics table.

`gate_checks` decides, as plain data, what to expect of a dataset (which columns, which values, how severe a
failure is). `run_gate` turns those into a Great Expectations suite, validates the table with a checkpoint that
also writes Data Docs, and condenses the result into a `GateResult` that names the offending images.
Great Expectations is imported inside `run_gate`: it costs ~2.5 s, which the CLI's start-up should not pay.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

CRITICAL, WARNING = "critical", "warning"
MAX_NAMED = 50  # offending images listed per check in gate.json and the report; the Data Docs list them all


@dataclass(frozen=True)
class CheckSpec:
    """One expectation, as data: the Great Expectations class name and its arguments."""

    name: str
    severity: str
    expectation: str
    kwargs: dict
    explain: str  # what a failure means for training, shown beside it in the report
    split: str | None = None  # restrict to one split's rows


@dataclass(frozen=True)
class CheckResult:
    name: str
    severity: str
    success: bool
    observed: str
    explain: str
    offending: list[str] = field(default_factory=list)
    offending_count: int = 0


@dataclass(frozen=True)
class GateResult:
    status: str  # "pass", "warn" (warnings only) or "fail" (a critical check failed)
    checks: list[CheckResult]
    images: int
    data_docs: str | None = None  # path of the Data Docs index.html

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> GateResult:
        raw = json.loads(text)
        return cls(**raw | {"checks": [CheckResult(**c) for c in raw["checks"]]})


def gate_checks(stats: pd.DataFrame, class_names: list[str]) -> list[CheckSpec]:
    """The checks for this dataset. Expected values come from the data's majority (its usual scale and shape)."""
    scales = stats.loc[stats["scale"] != "constant", "scale"]
    usual_scale = scales.mode().iloc[0] if len(scales) else "constant"
    usual_shape = stats["shape"].mode().iloc[0]
    every_class = list(range(len(class_names)))
    return [
        CheckSpec("one pixel scale", CRITICAL, "ExpectColumnValuesToBeInSet",
                  {"column": "scale", "value_set": [usual_scale, "constant"]},
                  f"Most images are on the {usual_scale} scale; images on another scale look like noise or "
                  "black to the model, a classic reason accuracy stalls. Rescale them before training."),
        CheckSpec("no NaN pixels", CRITICAL, "ExpectColumnValuesToBeBetween",
                  {"column": "nan_count", "min_value": 0, "max_value": 0},
                  "A NaN pixel makes the loss NaN and training stops learning."),
        CheckSpec("no infinite pixels", CRITICAL, "ExpectColumnValuesToBeBetween",
                  {"column": "inf_count", "min_value": 0, "max_value": 0},
                  "An infinite pixel overflows the activations: the loss becomes NaN."),
        CheckSpec("labels within the class list", CRITICAL, "ExpectColumnValuesToBeBetween",
                  {"column": "label", "min_value": 0, "max_value": len(class_names) - 1},
                  f"Labels must index the {len(class_names)} classes; others cannot be learned or scored."),
        CheckSpec("one image shape", WARNING, "ExpectColumnValuesToBeInSet",
                  {"column": "shape", "value_set": [usual_shape]},
                  f"Images were resized to one size for training (most are {usual_shape}); resizing distorts "
                  "the others. Check they belong in this dataset."),
        CheckSpec("every class in the training split", CRITICAL, "ExpectColumnDistinctValuesToContainSet",
                  {"column": "label", "value_set": every_class},
                  "A class without training images can never be predicted.", split="train"),
        CheckSpec("every class in the test split", WARNING, "ExpectColumnDistinctValuesToContainSet",
                  {"column": "label", "value_set": every_class},
                  "A class without test images is never scored: accuracy says nothing about it.", split="test"),
    ]


def run_gate(stats: pd.DataFrame, class_names: list[str], docs_dir: Path | None = None) -> GateResult:
    """Validate ``stats`` with Great Expectations; write Data Docs under ``docs_dir`` when given."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    specs = gate_checks(stats, class_names)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("images").add_dataframe_asset("pixel_stats")
             .add_batch_definition_whole_dataframe("all images"))
    suite = context.suites.add(gx.ExpectationSuite(name="image_gate"))
    for spec in specs:
        suite.add_expectation(_expectation(spec))
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(site_name="gate", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        actions = [UpdateDataDocsAction(name="data_docs", site_names=["gate"])]
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="gate", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="image_gate", validation_definitions=[validation], actions=actions,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]},
    ))
    run = checkpoint.run(batch_parameters={"dataframe": stats})
    (suite_result,) = run.run_results.values()
    by_name = {r.expectation_config.meta["check"]: r for r in suite_result.results}
    checks = [_condense(spec, by_name[spec.name], class_names) for spec in specs]
    docs = docs_dir / "index.html" if docs_dir is not None else None
    return GateResult(gate_status(checks), checks, len(stats), str(docs) if docs and docs.exists() else None)


def gate_status(checks: list[CheckResult]) -> str:
    failed = {c.severity for c in checks if not c.success}
    return "fail" if CRITICAL in failed else "warn" if failed else "pass"


def _expectation(spec: CheckSpec):
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    extra = {"row_condition": Column("split") == spec.split} if spec.split else {}
    cls = getattr(gxe, spec.expectation)
    return cls(**spec.kwargs, **extra, severity=spec.severity, description=spec.name, meta={"check": spec.name})


def _condense(spec: CheckSpec, result, class_names: list[str]) -> CheckResult:
    """The few facts a reader needs from one Great Expectations result."""
    details = result.result
    if spec.expectation == "ExpectColumnDistinctValuesToContainSet":
        missing = [class_names[i] for i in details.get("partial_missing_list") or [] if 0 <= i < len(class_names)]
        observed = f"missing classes: {', '.join(missing)}" if missing else "all classes present"
        return CheckResult(spec.name, spec.severity, bool(result.success), observed, spec.explain)
    offending = [row["path"] for row in details.get("unexpected_index_list") or []]
    values = sorted({str(v) for v in details.get("partial_unexpected_list") or []})
    count = int(details.get("unexpected_count") or 0)
    observed = f"{count} of {details.get('element_count', '?')} images" + (
        f" (values: {', '.join(values[:5])})" if values else "")
    return CheckResult(spec.name, spec.severity, bool(result.success), observed, spec.explain,
                       offending[:MAX_NAMED], count)
