"""What the report's data-quality section shows: problems first with thumbnails of the offending images, then the
passed checks, a pixel-value histogram per split and sample images per class (`templates/_gate.html`)."""

from __future__ import annotations

from tasks.gate.checks import CRITICAL
from tasks.gate.expectations import MAX_NAMED, CheckResult, GateResult
from tasks.report.thumbnails import ImageDrawer

THUMBNAILS = 8  # offending images drawn per check


def gate_view(gate: GateResult, drawer: ImageDrawer | None, docs_link: str | None) -> dict:
    """The gate's section. Without a ``drawer`` (no pixels at hand) offending images are listed by name."""
    suite = gate.suite or {}
    return {"status": gate.status, "status_class": {"pass": "pass", "warn": "warning"}.get(gate.status, "critical"),
            "images": gate.images, "suite": f"{suite.get('name', '')} v{suite.get('version', '')}",
            "docs_link": docs_link, "drawn": drawer is not None,
            "problems": [problem_view(c, drawer) for c in sorted(gate.failed, key=lambda c: c.severity != CRITICAL)],
            "passed": [c for c in gate.checks if c.success],
            "histogram": drawer.histogram() if drawer else None, "classes": drawer.classes() if drawer else None}


def problem_view(check: CheckResult, drawer: ImageDrawer | None) -> dict:
    """A failed check: what was observed, why it matters, and up to THUMBNAILS of the images it names; a
    near-copy check shows its pairs instead, side by side with their distance."""
    if check.pairs:
        shown = check.pairs[:THUMBNAILS]
        return {"check": check, "figures": [], "names": [], "pairs": [pair_view(p, drawer) for p in shown],
                "more": len(check.pairs) - len(shown), "named": MAX_NAMED}
    shown = check.offending[:THUMBNAILS]
    return {"check": check, "figures": [drawer.figure(path) for path in shown] if drawer else [],
            "names": shown, "pairs": [], "more": check.offending_count - min(len(check.offending), THUMBNAILS),
            "named": MAX_NAMED}


def pair_view(pair: dict, drawer: ImageDrawer | None) -> dict:
    """One near-copy pair: its copy (the training image, across splits) and the image, drawn or named."""
    return {"distance": f"{pair['distance']:.3f}", "image": pair["image"], "copy": pair["copy"],
            "figures": [drawer.figure(pair["copy"]), drawer.figure(pair["image"])] if drawer else []}
