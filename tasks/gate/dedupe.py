"""The dedupe report: every test image with an exact or near copy in the training split, as CSV, so a user can
purge them (or move them to training) and measure on a clean test split.

Paths are as the dataset names its images (relative to its folder). One row per test image, with the training
image it copies (empty where only the exact-copy hash found it), the distance (0 for an exact copy; see
`tasks.gate.near_copies`) and whether the copy is exact. Closest first.
"""

from __future__ import annotations

import csv
import io

COLUMNS = ("test_image", "training_image", "distance", "exact")


def dedupe_csv(leaked: list[dict]) -> str:
    """``leaked``: `GateResult.leaked`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in leaked:
        distance = row.get("distance")
        writer.writerow([row["image"], row.get("copy") or "", "" if distance is None else f"{distance:.4f}",
                         "yes" if row.get("exact") else "no"])
    return out.getvalue()
