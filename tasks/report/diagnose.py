"""Read a variant's learning curves like a practitioner would, and say what they show in one sentence each.

Pure: the records of one variant (its seeds) in, diagnoses out. Curves are averaged over seeds first, so one
noisy seed does not decide; NaN losses and early stops are counted per seed. The thresholds below are rules of
thumb for accuracy curves, each with its reason beside it.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tasks.training.grid import BASELINE_AXIS

OVERFIT_GAP = 0.10  # train accuracy 10 points above validation: more than batch noise or dropout's train penalty
VAL_RISE = 0.10  # validation loss 10% above its minimum at the end: the model got worse on unseen data
UNDERFIT_TRAIN = 0.70  # even on the training data, under 70% (well above chance for 3+ classes)
FLAT = 0.01  # under 1 point gained over the last third of the epochs: the curve has flattened
PLATEAU = 0.005  # validation accuracy up less than half a point over the last 3 epochs
CHANCE_MARGIN = 0.05  # best validation accuracy within 5 points of guessing (1 / classes)
SWINGS = 3  # direction changes of 5+ points in validation accuracy: oscillation, not noise
SWING_SIZE = 0.05
MIN_EPOCHS_FOR_TRENDS = 4  # shorter curves have no shape to read: only NaN, chance and early stopping apply


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # divergence, oscillation, chance, overfitting, underfitting, plateau, early stopping
    sentence: str


def diagnose(records: list[dict], classes: int, max_epochs: int) -> list[Diagnosis]:
    """What the curves of one variant (its records over seeds) show."""
    found: list[Diagnosis] = []
    nan_seeds = sum(any(_isnan(v) for v in r["history"]["loss"]) for r in records)
    if nan_seeds:
        found.append(Diagnosis("divergence", f"Diverged: the loss became NaN in {nan_seeds} of {len(records)} "
                                             "seeds, the mark of a learning rate too high for this model."))
    curves = _mean_curves(records)
    if not len(curves["val_accuracy"]):
        return found
    val_acc, train_acc = curves["val_accuracy"], curves["accuracy"]
    val_loss, train_loss = curves["val_loss"], curves["loss"]
    chance = 1 / max(classes, 1)
    if np.nanmax(val_acc) <= chance + CHANCE_MARGIN:
        found.append(Diagnosis("chance", f"Stuck at chance: best validation accuracy {np.nanmax(val_acc):.0%} "
                                         f"against {chance:.0%} for guessing; the model learned nothing."))
    epochs = len(val_acc)
    if epochs >= MIN_EPOCHS_FOR_TRENDS:
        found += _trends(train_acc, val_acc, train_loss, val_loss, epochs)
    stopped = [r["epochs"] for r in records if 0 < r["epochs"] < max_epochs]
    if stopped:
        found.append(Diagnosis("early stopping", f"Early stopping ended {len(stopped)} of {len(records)} seeds "
                                                 f"at epoch {int(np.median(stopped))} (median) of {max_epochs}: "
                                                 "validation loss had stopped improving."))
    return found


def _trends(train_acc, val_acc, train_loss, val_loss, epochs: int) -> list[Diagnosis]:
    found = []
    swings = _swings(val_acc)
    if swings >= SWINGS:
        found.append(Diagnosis("oscillation", f"Oscillating: validation accuracy changed direction by "
                                              f"{SWING_SIZE:.0%} or more {swings} times; try a lower learning rate."))
    rising = not _isnan(train_loss[0]) and train_loss[-1] > train_loss[0]
    if rising:
        found.append(Diagnosis("divergence", f"Training loss rose from {train_loss[0]:.3g} to {train_loss[-1]:.3g}: "
                                             "the optimizer is stepping past the minimum (learning rate too high)."))
    gap = train_acc[-1] - val_acc[-1]
    val_min = np.nanmin(val_loss)
    val_up = val_loss[-1] > val_min * (1 + VAL_RISE)
    if gap > OVERFIT_GAP:
        worse = (f", and validation loss rose {val_loss[-1] / val_min - 1:.0%} above its minimum (epoch "
                 f"{int(np.nanargmin(val_loss)) + 1})") if val_up else ""
        found.append(Diagnosis("overfitting", f"Overfitting: training accuracy {train_acc[-1]:.0%} against "
                                              f"{val_acc[-1]:.0%} on validation{worse}; regularise (dropout, "
                                              "augmentation) or use a smaller model."))
    third = max(1, epochs // 3)
    if train_acc[-1] < UNDERFIT_TRAIN and train_acc[-1] - train_acc[-1 - third] < FLAT and not rising:
        found.append(Diagnosis("underfitting", f"Underfitting: training accuracy only {train_acc[-1]:.0%} and "
                                               "flat; the model is too small, or the learning rate too low, or the "
                                               "inputs need normalizing."))
    elif val_acc[-1] - val_acc[-min(3, epochs - 1) - 1] < PLATEAU and gap <= OVERFIT_GAP and not rising:
        best = int(np.nanargmax(val_acc)) + 1
        found.append(Diagnosis("plateau", f"Plateau: validation accuracy settled at {val_acc[-1]:.0%} (best at "
                                          f"epoch {best}); more epochs alone will not help."))
    return found


def _swings(values: np.ndarray) -> int:
    steps = np.diff(values[~np.isnan(values)])
    big = steps[np.abs(steps) >= SWING_SIZE]
    return int(np.sum(np.sign(big[1:]) != np.sign(big[:-1])))


def _mean_curves(records: list[dict]) -> dict[str, np.ndarray]:
    """Mean over seeds per epoch, over the epochs every seed ran (early stops cut the tail)."""
    keys = ("accuracy", "val_accuracy", "loss", "val_loss")
    runs = [r["history"] for r in records if r["history"]["val_accuracy"]]
    if not runs:
        return {key: np.array([]) for key in keys}
    length = min(len(run["val_accuracy"]) for run in runs)
    with warnings.catch_warnings():  # an epoch where every seed has NaN stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return {key: np.nanmean(np.array([run[key][:length] for run in runs], dtype=float), axis=0)
                for key in keys}


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def diagnose_all(records: list[dict], classes: int,
                 max_epochs: int | None = None) -> dict[tuple[str, str], list[Diagnosis]]:
    """Diagnoses per (axis, variant), from its trained (ok or diverged) seeds; ``max_epochs`` defaults to what
    each variant's records say (a grid file may vary it)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if record["status"] in ("ok", "diverged"):
            groups.setdefault((record["axis"], record["variant"]), []).append(record)
    return {variant: diagnose(group, classes, max_epochs or int(group[0].get("max_epochs", 0)))
            for variant, group in groups.items()}


def broken_seed(record: dict, classes: int) -> str | None:
    """Why one training run is broken, in words, or None if it learned: its loss became NaN; it ended at chance
    (final validation accuracy within CHANCE_MARGIN of guessing) with a training loss above the cross-entropy of
    guessing every class alike (ln of the classes: an Adam step of 10 leaves it in the tens of thousands, never
    NaN) or higher than after its first epoch; or its best validation accuracy never left chance. Validation, not
    test: nothing here reads the data the verdict reports. A heavily regularised model whose training loss stays
    high but whose validation accuracy is above chance is not broken."""
    history = record.get("history") or {}
    loss = list(history.get("loss", []))
    if record["status"] == "diverged" or any(_isnan(v) for v in loss):
        return "the loss became NaN"
    val = [v for v in history.get("val_accuracy", []) if not _isnan(v)]
    if not classes or not val:
        return None
    chance = 1 / classes + CHANCE_MARGIN + 1e-6  # accuracies arrive as float32: 0.15000000596 is 0.15
    if max(val) <= chance:
        return "validation accuracy stayed at chance"
    if val[-1] <= chance and classes > 1 and loss and loss[-1] > math.log(classes):
        return f"it ended at chance with a training loss above guessing's ({math.log(classes):.2f})"
    if val[-1] <= chance and len(loss) >= 2 and loss[-1] > loss[0]:
        return "it ended at chance with a rising training loss"
    return None


def broken_variants(records: list[dict], classes: int) -> dict[tuple[str, str], str]:
    """The variants broken on every seed they trained ("the loss became NaN on 3 of 3 seeds"), by (axis,
    variant). None while the baseline is itself broken on every seed: then nothing is singled out."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if record["status"] in ("ok", "diverged"):
            groups.setdefault((record["axis"], record["variant"]), []).append(record)
    base = groups.get((BASELINE_AXIS, BASELINE_AXIS), [])
    if base and all(broken_seed(r, classes) for r in base):
        return {}
    found = {}
    for key, group in groups.items():
        reasons = [broken_seed(r, classes) for r in group]
        if key[0] != BASELINE_AXIS and all(reasons):
            reason = Counter(reasons).most_common(1)[0][0]
            found[key] = f"{reason} on {reasons.count(reason)} of {len(group)} seeds"
    return found
