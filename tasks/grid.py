"""The ablation grid as data: a frozen baseline config, axes that each change one field, and their expansion.

Every variant is `replace(BASELINE, **change)`, so a variant lists only what it changes. The baseline takes the
middle value of every axis, so each axis shows one step down and one step up, and it is trained once (per seed)
and shared by all axes rather than once per axis.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

NORMALISATIONS = ("raw", "scale", "standardise")  # 0-255 as loaded / divided by 255 / per-channel z-score


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on, the seed included."""

    normalisation: str = "scale"
    conv_filters: tuple[int, ...] = (32,)  # one 3x3 conv + 2x2 max-pool block per entry
    dense_units: int = 0  # a hidden Dense layer before the classifier (0: none)
    learning_rate: float = 1e-3  # Adam
    dropout: float = 0.2  # before the classifier
    batch_size: int = 32
    max_epochs: int = 10  # EarlyStopping may end sooner; results record the epochs actually run
    patience: int = 3  # EarlyStopping on validation loss; long enough to ride out one noisy epoch
    seed: int = 0
    # 0 for every cell but the A/A control's second run of the baseline (1): it draws its initial weights and
    # data order from seed + SEED_STRIDE, an independent run of the same config, still paired by ``seed``.
    # (Reusing the seed itself would reproduce the baseline bit for bit and test nothing.)
    run_copy: int = 0

    @property
    def random_seed(self) -> int:
        return self.seed + SEED_STRIDE * self.run_copy


SEED_STRIDE = 1000
BASELINE = TrainConfig()

AXES: dict[str, dict[str, dict]] = {
    "normalisation": {
        "raw 0-255": {"normalisation": "raw"},
        "divide by 255": {"normalisation": "scale"},
        "standardise": {"normalisation": "standardise"},
    },
    "depth": {
        "1 block x16": {"conv_filters": (16,), "dense_units": 0},
        "1 block x32": {"conv_filters": (32,), "dense_units": 0},
        "2 blocks 32,64 + dense 128": {"conv_filters": (32, 64), "dense_units": 128},
    },
    "learning_rate": {
        "lr 1e-2": {"learning_rate": 1e-2},
        "lr 1e-3": {"learning_rate": 1e-3},
        "lr 1e-4": {"learning_rate": 1e-4},
    },
    "dropout": {
        "dropout 0": {"dropout": 0.0},
        "dropout 0.2": {"dropout": 0.2},
        "dropout 0.5": {"dropout": 0.5},
    },
}
BASELINE_AXIS = "baseline"
AA_AXIS, AA_VARIANT = "a/a control", "baseline, second run"  # --aa: the baseline trained again, independently


@dataclass(frozen=True)
class Cell:
    """One training run: a variant of the baseline on one axis, with one seed."""

    axis: str  # "baseline" for the shared baseline
    variant: str
    config: TrainConfig

    @property
    def key(self) -> str:
        return f"{self.axis}/{self.variant}/seed{self.config.seed}"

    @property
    def slug(self) -> str:
        """The key as a file name: "dropout-dropout-0.5-seed1"."""
        return re.sub(r"[^A-Za-z0-9.]+", "-", f"{self.axis}-{self.variant}-seed{self.config.seed}").strip("-")

    def to_dict(self) -> dict:
        return {"axis": self.axis, "variant": self.variant, **asdict(self.config)}


def expand_grid(axes: list[str] | None = None, seeds: int = 3, epochs: int = 10,
                baseline: TrainConfig = BASELINE, aa: bool = False) -> list[Cell]:
    """Baseline plus every one-factor change on ``axes``, each for seeds 0..seeds-1.

    A value equal to the baseline is the baseline itself and is not trained again. With ``aa``, the A/A
    control: the baseline's config trained a second time under another name, which must show no clear
    difference from the baseline (if it does, the seeds' noise is larger than the intervals allow for).
    """
    axes = list(AXES) if axes is None else axes
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise ValueError(f"unknown axis {', '.join(unknown)}; choose from {', '.join(AXES)}")
    if seeds < 1 or epochs < 1:
        raise ValueError("--seeds and --epochs must be at least 1")
    base = replace(baseline, max_epochs=epochs)
    variants = [(BASELINE_AXIS, BASELINE_AXIS, base)]
    for axis in axes:
        for name, change in AXES[axis].items():
            config = replace(base, **change)
            if config != base:
                variants.append((axis, name, config))
    if aa:
        variants.append((AA_AXIS, AA_VARIANT, replace(base, run_copy=1)))
    return [Cell(axis, name, replace(config, seed=seed)) for axis, name, config in variants for seed in range(seeds)]


def baseline_value(axis: str, baseline: TrainConfig = BASELINE) -> str | None:
    """The name of the value on ``axis`` that the baseline takes (e.g. "divide by 255"), if any."""
    return next((name for name, change in AXES[axis].items()
                 if replace(baseline, **change) == baseline), None)
