"""The data-quality gate alone: load -> profile -> validate -> report. Run it with `ablate validate` or
`python -m flows.data_quality_gate`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import deployment, flow_run

from flows.framework_logs import framework_logging
from flows.parameters import Limit, Side, HeldOutFraction
from flows.steps import dedupe_step, gate_step, load_dataset_step, report_step
from tasks.errors import GateFailed
from tasks.gate.suite import load_suite
from tasks.paths import reports_dir
from tasks.report.runs import new_run_dir, run_record


@flow(name="data-quality-gate")
def data_quality_gate(
    dataset: str = "digits",
    out: Path | None = None,
    image_size: tuple[Side, Side] | None = None,
    test_fraction: HeldOutFraction = 0.2,
    limit: Limit | None = None,
    suite: str | None = None,
    verbose: bool = False,
    dedupe_report: str | None = None,
) -> dict:
    """Validate a dataset's pixels and labels with Great Expectations; fail the run on critical problems.
    ``verbose``: show Great Expectations' own messages too. ``dedupe_report``: a CSV file to write with every
    test image that has an exact or near copy in the training split (written also when the gate fails)."""
    framework_logging(verbose)
    reports = reports_dir(out)
    checks = load_suite(suite)  # a bad suite file fails the run before any work

    # 1. Load the dataset
    data = load_dataset_step(dataset, image_size, test_fraction, limit, reports)
    run_dir = new_run_dir(reports, data["name"])
    run = run_record(run_dir, data, {"image_size": image_size, "test_fraction": test_fraction, "limit": limit,
                                     "suite": suite or "default"})
    run |= {"flow_run_id": str(flow_run.id), "deployment": deployment.name}

    # 2. Profile and validate
    started = time.perf_counter()
    checked = gate_step(data, run_dir, checks, reports)
    run["timings"]["gate"] = time.perf_counter() - started
    run["status"] = f"gate {checked.status}"
    if dedupe_report:
        dedupe_step(checked, Path(dedupe_report))

    # 3. Report; a critical failure fails the flow run (and `ablate validate` exits 1)
    report_started = time.perf_counter()
    page = report_step(run, checked, None, run_dir)
    run["timings"]["report"] = time.perf_counter() - report_started
    if checked.status == "fail":
        critical = [c.title for c in checked.failed if c.severity == "critical"]
        raise GateFailed(f"the data-quality gate failed: {', '.join(critical)} "
                         f"(report: {page})", page)
    return {"run_dir": str(run_dir), "report": page, "status": checked.status, "timings": run["timings"],
            "dedupe_report": dedupe_report, "leaked": len(checked.leaked)}


if __name__ == "__main__":
    from flows.cli import entry

    entry(["validate", *sys.argv[1:]])
