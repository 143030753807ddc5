"""Benchmark the gate's near-copy search (`tasks/gate/near_copies.py`) on planted leakage.

Generates CIFAR-sized natural-looking images (gradients, blobs, shapes, striped textures; `tests/planted_copies.py`)
as 50,000 training and 10,000 test images, and replaces 3% of the test images with edited copies of training
images: a colour shift, a 2-4 pixel translation, a 10% crop rescaled, JPEG re-encoding at quality 50-95, and a
horizontal flip, in turn. Then it prints:

- the seconds the search takes for all 60,000 images on this machine (goal: under 15 s on 2 cores);
- recall per edit at the gate's threshold (a planted copy counts as found when its test image is flagged with
  its own source; goal: at least 90% for each, flips included: a flipped copy is a copy to a model trained with
  flips, which most image models are);
- false flags per 10,000 clean images (an image flagged in either check, within or across splits, that is not
  one of the planted copies paired with its source; goal: under 5);
- the same two at other thresholds, so the choice of the default can be checked.

Usage: python benchmarks/bench_leakage.py [--train 50000] [--test 10000] [--share 0.03] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.gate.near_copies import MAX_DISTANCE, near_copies  # noqa: E402
from tests.planted_copies import EDITS, planted  # noqa: E402

THRESHOLDS = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--share", type=float, default=0.03, help="share of the test split replaced by copies")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores")
    started = time.perf_counter()
    x_train, x_test, where, sources, edits = planted(args.train, args.test, args.share, args.seed)
    print(f"generated {args.train:,} + {args.test:,} images, {len(where)} planted copies "
          f"({time.perf_counter() - started:.1f} s, not timed below)")
    started = time.perf_counter()
    found = near_copies({"train": x_train, "test": x_test})
    seconds = time.perf_counter() - started
    total = args.train + args.test
    print(f"search: {seconds:.1f} s for {total:,} images ({total / seconds:,.0f} images/s; goal under 15 s: "
          f"{'met' if seconds < 15 else 'MISSED'})")
    for threshold in sorted({*THRESHOLDS, MAX_DISTANCE}):
        recall, false_flags = judge(found, where, sources, edits, threshold)
        default = threshold == MAX_DISTANCE
        met = all(r >= 0.9 for r in recall.values()) and false_flags < 5
        print(f"{'the gate' if default else 'threshold'} {threshold:.2f}: recall "
              + ", ".join(f"{edit} {share:.0%}" for edit, share in recall.items())
              + f"; false flags {false_flags:.1f} per 10,000 clean images"
              + (f" (goals: recall >= 90% each, false flags < 5: {'met' if met else 'MISSED'})" if default else ""))
    return 0


def judge(found: dict, where: np.ndarray, sources: np.ndarray, edits: np.ndarray,
          threshold: float) -> tuple[dict[str, float], float]:
    """Recall per edit and false flags per 10,000 clean images at ``threshold``."""
    test, train = found["test"], found["train"]
    across = np.where(test["in_other_split_distance"] <= threshold, test["in_other_split"], -1)
    recall = {edit: float(np.mean(across[where[edits == edit]] == sources[edits == edit])) for edit in EDITS}
    planted_test = np.zeros(len(test), bool)
    planted_test[where] = True
    right = np.zeros(len(test), bool)
    right[where] = across[where] == sources
    flagged_test = ((across >= 0) & ~right) | ((test["in_split_distance"] <= threshold) & ~planted_test)
    flagged_train = train["in_split_distance"] <= threshold
    clean = len(test) + len(train) - 2 * len(where)
    return recall, float(flagged_test.sum() + flagged_train.sum()) / clean * 10_000


if __name__ == "__main__":
    sys.exit(main())
