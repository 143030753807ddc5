"""The verdict and the gate's outcome as markdown, for the Prefect UI's artifacts (the HTML report says more)."""

from __future__ import annotations

import math

from tasks.gate.checks import CRITICAL
from tasks.gate.expectations import GateResult
from tasks.report.aggregate import Verdict, interval_words


def verdict_markdown(verdict: Verdict, gate_status: str | None, report: str) -> str:
    """The verdict for Prefect's UI (a markdown artifact): the headline, each effect with its interval, the link."""
    def line(row: dict) -> str:
        interval = "" if math.isnan(row["ci_low"]) else f" ({interval_words(row)})"
        return (f"- **{row['variant']}** ({row['axis'].replace('_', ' ')}): {row['effect']}, "
                f"{row['delta'] * 100:+.1f} points{interval}")
    lines = [f"### {verdict.headline}", "", f"Data-quality gate: **{gate_status or 'not run'}**", ""]
    lines += [line(row) for row in verdict.helps + verdict.hurts + verdict.unclear]
    lines += [f"- **{row['variant']}** ({row['axis'].replace('_', ' ')}): broken, {row['broken']}"
              for row in verdict.broken]
    if verdict.control is not None:
        lines.append(f"- A/A control: {line(verdict.control).removeprefix('- ')}")
    if (advice := verdict.recommendation) is not None:
        gain = ("" if advice.gain is None else
                f": {advice.gain['delta'] * 100:+.1f} points ({interval_words(advice.gain)})")
        lines += ["", f"**Recommended**: {' + '.join(advice.changes) or 'the baseline as it is'}{gain}"]
        lines += [f"_{advice.warning}_"] if advice.warning else []
    lines += [""] + verdict.caveats + verdict.notes + ["", f"Report: `{report}`"]
    return "\n".join(lines)


def gate_markdown(gate: GateResult) -> str:
    """The gate's outcome for Prefect's UI (a markdown artifact): status, then each failing check and examples."""
    lines = [f"### Data-quality gate: {gate.status}", "",
             f"{gate.images} images, {len(gate.checks)} checks, {len(gate.failed)} not passed.", ""]
    for check in sorted(gate.failed, key=lambda c: c.severity != CRITICAL):
        examples = f" (e.g. {', '.join(f'`{p}`' for p in check.offending[:3])})" if check.offending else ""
        lines.append(f"- **{check.title}** ({check.severity}): {check.observed}{examples}")
    return "\n".join(lines)
