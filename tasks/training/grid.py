"""The ablation grid as data: a frozen baseline config, axes of named changes to it, and their expansion.

Every variant is `replace(BASELINE, **change)`, so a variant lists only what it changes (one setting, or two
that belong together, such as AdamW and its weight decay). On the default axes the baseline takes the middle
value, so each shows one step down and one step up; every axis holds the baseline's own value exactly once. The
baseline is trained once (per seed) and shared by all axes rather than once per axis. Grid files
(`tasks.training.grid_file`) build the same cells from settings and values of their own.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import asdict, dataclass, replace

NORMALIZATIONS = ("raw", "scale", "standardize")  # 0-255 as loaded / divided by 255 / per-channel z-score
OPTIMIZERS = ("adam", "sgd", "adamw")  # sgd: with momentum 0.9
LR_SCHEDULES = ("constant", "cosine", "plateau")  # plateau: ReduceLROnPlateau on validation loss
AUGMENTATIONS = ("flip", "translate", "rotate", "zoom")
MODEL_SPEC = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"  # a user model builder: "package.module:function"


def working_dir_importable() -> None:
    """Put the working directory on ``sys.path``, as ``python -m`` does and console scripts (``ablate``) do not,
    so a user's ``--model my_model:build`` beside them imports (and training processes inherit the path)."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on, the seed included."""

    normalization: str = "scale"
    conv_filters: tuple[int, ...] = (32,)  # one 3x3 conv + 2x2 max-pool block per entry
    dense_units: int = 0  # a hidden Dense layer before the classifier (0: none)
    learning_rate: float = 1e-3
    dropout: float = 0.2  # before the classifier
    batch_size: int = 32
    max_epochs: int = 10  # EarlyStopping may end sooner; results record the epochs actually run
    patience: int = 3  # EarlyStopping on validation loss; long enough to ride out one noisy epoch
    early_stopping: bool = True
    optimizer: str = "adam"  # one of OPTIMIZERS
    weight_decay: float = 0.0  # decoupled weight decay, as Keras 3 optimizers apply it
    lr_schedule: str = "constant"  # one of LR_SCHEDULES
    warmup_epochs: int = 0  # linear warm-up from 0 to learning_rate (cosine schedule)
    batch_norm: bool = False  # BatchNormalization after each convolution, before its ReLU
    augmentation: tuple[str, ...] = ()  # of AUGMENTATIONS: Keras preprocessing layers, active in training only
    width: float = 1.0  # multiplies every conv and dense layer's units
    input_scale: float = 1.0  # images resized by this factor inside the model (a Resizing layer)
    # The protocol: each seed trains on the training split less a stratified validation carve of this share
    # (drawn from the seed, or from one fixed seed with ``fixed_split``), which early stopping, the learning-rate
    # schedule and the best epoch read; the test split is scored once, with the best epoch's weights.
    val_fraction: float = 0.2
    fixed_split: bool = False
    model: str = ""  # "": the built-in CNN; "package.module:function": the user's builder (tasks.training.models)
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
DEFAULT_SEEDS = 3  # the fewest that give an interval; a grid file or --seeds sets another number
# --seeds auto: seeds in rounds, looked at after each (tasks.report.sequential says why these numbers)
FIRST_LOOK = 3  # seeds: the fewest a t-test can use with more than one degree of freedom
GROWTH = 1.5  # each look has about 1.5 times the seeds of the one before
DEFAULT_MAX_SEEDS = 10

AXES: dict[str, dict[str, dict]] = {
    "normalization": {
        "raw 0-255": {"normalization": "raw"},
        "divide by 255": {"normalization": "scale"},
        "standardize": {"normalization": "standardize"},
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
# The source article's four levers: the default grid. The others are there to ask for (--axes).
DEFAULT_AXES = ("normalization", "depth", "learning_rate", "dropout")
AXES |= {
    "augmentation": {
        "no augmentation": {"augmentation": ()},
        "flip": {"augmentation": ("flip",)},
        "flip, translate, rotate, zoom": {"augmentation": ("flip", "translate", "rotate", "zoom")},
    },
    "batch_norm": {
        "no batch norm": {"batch_norm": False},
        "batch norm": {"batch_norm": True},
    },
    "optimizer": {
        "SGD momentum 0.9": {"optimizer": "sgd"},
        "Adam": {"optimizer": "adam"},
        "AdamW wd 1e-4": {"optimizer": "adamw", "weight_decay": 1e-4},
    },
    "weight_decay": {
        "no weight decay": {"weight_decay": 0.0},
        "wd 1e-4": {"weight_decay": 1e-4},
        "wd 1e-3": {"weight_decay": 1e-3},
    },
    "lr_schedule": {
        "constant": {"lr_schedule": "constant", "warmup_epochs": 0},
        "cosine": {"lr_schedule": "cosine"},
        "cosine, 1 warm-up epoch": {"lr_schedule": "cosine", "warmup_epochs": 1},
        "reduce on plateau": {"lr_schedule": "plateau"},
    },
    "early_stopping": {
        "no early stopping": {"early_stopping": False},
        "early stopping, patience 3": {"early_stopping": True, "patience": 3},
        "early stopping, patience 1": {"early_stopping": True, "patience": 1},
    },
    "batch_size": {
        "batch 16": {"batch_size": 16},
        "batch 32": {"batch_size": 32},
        "batch 128": {"batch_size": 128},
    },
    "resolution": {
        "half resolution": {"input_scale": 0.5},
        "as loaded": {"input_scale": 1.0},
        "double resolution": {"input_scale": 2.0},
    },
    "width": {
        "half width": {"width": 0.5},
        "width x1": {"width": 1.0},
        "double width": {"width": 2.0},
    },
}
# Both spellings are accepted wherever a user names an axis, a setting or a value (--axes, grid files, flow
# parameters); the report, results.csv and the cache use the first, Keras' own (layers.Normalization,
# keras.optimizers).
SPELLINGS = {"normalisation": "normalization", "optimiser": "optimizer"}  # axis and setting names
VALUE_SPELLINGS = {"standardise": "standardize"}  # values of the normalization setting


def canonical_axes(axes: list[str] | None) -> list[str] | None:
    """Axis names as the project spells them: "normalisation" -> "normalization"; others unchanged."""
    return None if axes is None else [SPELLINGS.get(axis, axis) for axis in axes]


def looks(max_seeds: int, first: int = FIRST_LOOK) -> tuple[int, ...]:
    """The seed counts at which the comparisons are looked at: 3, 5, 8, 10 for 10; the last is ``max_seeds``,
    and a look within 15% of it is merged into it (a look for one more seed costs error and saves nothing)."""
    if max_seeds <= first:
        return (max_seeds,)
    planned = [first]
    while (following := math.ceil(planned[-1] * GROWTH)) < max_seeds:
        planned.append(following)
    if planned[-1] >= 0.85 * max_seeds and len(planned) > 1:
        planned.pop()
    return (*planned, max_seeds)


BASELINE_AXIS = "baseline"
AA_AXIS, AA_VARIANT = "a/a control", "baseline, second run"  # --aa: the baseline trained again, independently
# The recommended configuration's confirmation: the baseline, the best single change and their combination, on
# seeds the one-factor pass did not use (tasks.report.recommend)
CONFIRM_AXIS = "confirmation"


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


Variant = tuple[str, str, TrainConfig]  # (axis, variant name, config without its seed)


def expand_grid(axes: list[str] | None = None, seeds: int = DEFAULT_SEEDS, epochs: int = BASELINE.max_epochs,
                baseline: TrainConfig = BASELINE, aa: bool = False) -> list[Cell]:
    """Baseline plus every one-factor change on ``axes`` (default: DEFAULT_AXES), each for seeds 0..seeds-1."""
    if seeds < 1:
        raise ValueError("--seeds and --epochs must be at least 1")
    return seeded(grid_variants(axes, epochs, baseline, aa), range(seeds))


def grid_variants(axes: list[str] | None = None, epochs: int = BASELINE.max_epochs, baseline: TrainConfig = BASELINE,
                  aa: bool = False) -> list[Variant]:
    """The baseline and every one-factor change on ``axes`` (default: DEFAULT_AXES).

    A value equal to the baseline is the baseline itself and is not trained again. With ``aa``, the A/A
    control: the baseline's config trained a second time under another name, which must show no clear
    difference from the baseline (if it does, the seeds' noise is larger than the intervals allow for).
    """
    axes = list(DEFAULT_AXES) if axes is None else axes
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise ValueError(f"unknown axis {', '.join(unknown)}; choose from {', '.join(AXES)}")
    if epochs < 1:
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
    return variants


def seeded(variants: list[Variant], seeds) -> list[Cell]:
    """A cell per variant and seed (``seeds``: the seed numbers), variant by variant."""
    return [Cell(axis, name, replace(config, seed=seed)) for axis, name, config in variants for seed in seeds]


def baseline_value(axis: str, baseline: TrainConfig = BASELINE) -> str | None:
    """The name of the value on ``axis`` that the baseline takes (e.g. "divide by 255"), if any."""
    if axis not in AXES:  # a grid file's axis, or the factorial one
        return None
    return next((name for name, change in AXES[axis].items()
                 if replace(baseline, **change) == baseline), None)
