"""Tie the gate's findings to the ablation's results where one explains the other, in one sentence each.

Pure: failed check names and the summary in, sentences out. Only pairs with a known mechanism are linked; the
report shows every finding and every effect anyway.
"""

from __future__ import annotations

import pandas as pd

from tasks.report.aggregate import HELPS, HURTS

SCALE_CHECKS = {"one_pixel_scale", "one_dtype", "brightness_drift", "contrast_drift"}
LEAK_CHECKS = {"train_test_leakage", "near_duplicates_across_splits"}
LABEL_CHECKS = {"conflicting_labels", "labels_within_class_list"}


def gate_links(failed: set[str], summary: pd.DataFrame | None) -> list[str]:
    """Sentences linking failed gate checks (by name) to the effects in ``summary``."""
    links = []
    rows = summary.to_dict("records") if summary is not None else []
    normalization = [r for r in rows if r["axis"] == "normalization" and r.get("effect") in (HELPS, HURTS)]
    if failed & SCALE_CHECKS:
        names = ", ".join(sorted(failed & SCALE_CHECKS)).replace("_", " ")
        if normalization:
            effects = "; ".join(f"{r['variant']} {r['effect']} ({r['delta'] * 100:+.1f} points)" for r in normalization)
            links.append(f"The gate found pixels on mixed scales or drifting between splits ({names}), and the "
                         f"normalization axis confirms that scaling matters here: {effects}.")
        else:
            links.append(f"The gate found pixels on mixed scales or drifting between splits ({names}); no "
                         "normalization variant changed accuracy clearly, so one fixed scaling cannot undo it: "
                         "bring every image to one scale before training.")
    if failed & LEAK_CHECKS:
        links.append("The gate found test images that are copies of training images: test accuracy is "
                     "inflated for every variant, and changes that memorise more (depth, less dropout) look "
                     "better than they are.")
    if failed & LABEL_CHECKS:
        links.append("The gate found contradictory or invalid labels: they cap the accuracy any variant can "
                     "reach, so a plateau below 100% is expected whatever the capacity.")
    if "class_imbalance" in failed:
        links.append("The gate found imbalanced classes: accuracy rewards the majority class, so compare the "
                     "confusion matrices, not accuracy alone.")
    return links
