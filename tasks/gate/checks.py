"""The gate's checks, as data: each one turns the profiled tables and its suite settings into an expectation.

A check names the Great Expectations class, its arguments (thresholds from the suite file, expected values from
the data's majority where there is no fixed truth, like the usual scale) and a one-line explanation of what a
failure means for training. Which checks run, their severities and thresholds come from the suite file
(`tasks/gate/gate_suite.toml`); this module only knows what each check *is*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

CRITICAL, WARNING, OFF = "critical", "warning", "off"
NOISE_QUANTILE = 0.999  # drift checks: a divergence sampling noise alone reaches 0.1% of the time is not drift
IMAGES, CLASSES = "images", "classes"


@dataclass(frozen=True)
class CheckSpec:
    """One expectation, ready to build: the check's key, severity, table, Great Expectations class and arguments."""

    name: str
    severity: str
    table: str
    expectation: str
    kwargs: dict
    explain: str
    split: str | None = None  # restrict to one split's rows


@dataclass(frozen=True)
class Check:
    title: str  # how the report and logs name it
    table: str
    params: tuple[str, ...]
    build: Callable[..., tuple[str, dict, str | None, str]]  # -> expectation, kwargs, split, explanation
    # The suite's severity applies only where this says so (data, params -> bool); a warning otherwise.
    severe: Callable[..., bool] | None = None


CHECKS: dict[str, Check] = {}


def check(name: str, table: str = IMAGES, params: tuple[str, ...] = (), title: str | None = None,
          severe: Callable[..., bool] | None = None):
    def register(build):
        CHECKS[name] = Check(title or name.replace("_", " "), table, params, build, severe)
        return build
    return register


def title(name: str) -> str:
    """The readable name of a check ("no NaN pixels" for no_nan_pixels)."""
    return CHECKS[name].title if name in CHECKS else name.replace("_", " ")


def build_specs(suite: dict, images: pd.DataFrame, classes: pd.DataFrame, class_names: list[str]) -> list[CheckSpec]:
    """The expectations ``suite`` asks for (checks set to "off" are left out), in the suite's order."""
    specs = []
    for name, settings in suite["checks"].items():
        if settings["severity"] == OFF:
            continue
        definition = CHECKS[name]
        params = {key: settings[key] for key in definition.params}
        data = images if definition.table == IMAGES else classes
        expectation, kwargs, split, explain = definition.build(data, class_names, **params)
        severity = settings["severity"]
        if definition.severe is not None and not definition.severe(data, **params):
            severity = WARNING
        specs.append(CheckSpec(name, severity, definition.table, expectation, kwargs, explain, split))
    return specs


def _below(column: str, limit) -> tuple[str, dict]:
    return "ExpectColumnValuesToBeBetween", {"column": column, "max_value": limit}


def _in_set(column: str, values: list) -> tuple[str, dict]:
    return "ExpectColumnValuesToBeInSet", {"column": column, "value_set": values}


# --- scale and type -------------------------------------------------------------------------------------------

@check("one_pixel_scale")
def _one_pixel_scale(images, class_names):
    usual = images["usual_scale"].iloc[0]
    return (*_in_set("scale", [usual, "constant"]), None,
            f"Most images are on the {usual} scale; an image on another scale looks black, blown out or like "
            "noise to the model, the classic reason accuracy stalls. Rescale it before training.")


@check("one_dtype")
def _one_dtype(images, class_names):
    dtypes = images["dtype"].dropna()
    usual = dtypes.mode().iloc[0] if len(dtypes) else "uint8"
    return (*_in_set("dtype", [usual]), None,
            f"Most images are stored as {usual}; a split stored differently was usually saved or loaded by "
            "different code, and often on a different scale.")


@check("no_nan_pixels", title="no NaN pixels")
def _no_nan(images, class_names):
    return (*_below("nan_count", 0), None, "A NaN pixel makes the loss NaN and training stops learning.")


@check("no_infinite_pixels")
def _no_inf(images, class_names):
    return (*_below("inf_count", 0), None, "An infinite pixel overflows the activations: the loss becomes NaN.")


# --- files ----------------------------------------------------------------------------------------------------

@check("readable_files")
def _readable(images, class_names):
    return ("ExpectColumnValuesToBeNull", {"column": "file_error"}, None,
            "These files could not be decoded (empty, truncated, not an image, or an unsupported mode); a "
            "training input pipeline would crash on them or silently skip them.")


@check("unfollowed_symlinks")
def _unfollowed_symlinks(images, class_names):
    return (*_in_set("link_not_followed", [False]), None,
            "These symlinks point outside the dataset folder, or to a folder the dataset already covers (a "
            "parent, another class), and were not followed: their images are not part of this check or of "
            "training.")


# --- geometry -------------------------------------------------------------------------------------------------

@check("one_channel_count")
def _one_channel_count(images, class_names):
    channels = images["channels"].dropna()
    usual = int(channels.mode().iloc[0]) if len(channels) else 3
    return (*_in_set("channels", [usual]), None,
            f"Most images have {usual} channel(s); the others (greyscale among colour, or an alpha channel) were "
            "converted to match, which can hide a mix of sources.")


# The narrowest a fence may be, beyond the quartiles. Without a floor, a folder where most images share one size
# has an interquartile range of zero and a fence on that one size, so every other image is flagged (seen on a
# photo folder: 416 of 1,000 "odd sizes", and all 1,000 "odd aspect ratios" at 1.33-1.33). Mixed sizes are
# normal in a photo folder: 1024x768 among 500x375 is 4.2 times the pixels, a 160x120 thumbnail 9.8 times fewer.
MIN_SIZE_SPREAD = 8.0  # pixel count: a factor of 8 (2.8 per side) beyond the quartiles before a size is odd
MIN_SHAPE_SPREAD = 1.5  # elongation: 1.5 times the usual, so 2:1 among 4:3 photos, never 3:2 or 16:9


def _log_fences(values: pd.Series, iqr_factor: float, min_spread: float) -> tuple[float, float]:
    """Tukey's fences on a log scale (sizes vary by factors, not by pixels), at least a factor ``min_spread``
    beyond the quartiles, turned back into values. They lie outside the quartiles, so they never flag the
    majority."""
    logs = np.log(values.dropna().astype(float))
    if not len(logs):
        return 0.0, float("inf")
    q1, q3 = np.percentile(logs, [25, 75])
    spread = max(iqr_factor * (q3 - q1), np.log(min_spread))
    return float(np.exp(q1 - spread)), float(np.exp(q3 + spread))


@check("odd_sizes", params=("iqr_factor",))
def _odd_sizes(images, class_names, iqr_factor):
    low, high = _log_fences(images["pixels"], iqr_factor, MIN_SIZE_SPREAD)
    return ("ExpectColumnValuesToBeBetween", {"column": "pixels", "min_value": round(low, 3),
                                              "max_value": round(high, 3)}, None,
            f"Images whose pixel count (height x width) lies outside {low:,.0f}-{high:,.0f} (Tukey's fences "
            f"on the log scale, at least {MIN_SIZE_SPREAD:g} times beyond the quartiles) are resized far more than "
            "the rest: thumbnails or stray files.")


@check("odd_aspect_ratios", params=("iqr_factor",))
def _odd_aspect_ratios(images, class_names, iqr_factor):
    _, high = _log_fences(images["elongation"], iqr_factor, MIN_SHAPE_SPREAD)
    return ("ExpectColumnValuesToBeBetween", {"column": "elongation", "max_value": round(high, 4)}, None,
            f"Images whose long side is more than {high:.2f} times their short side (portrait or landscape alike; "
            "Tukey's fence on the log scale, at least 1.5 times the usual) are squashed or stretched when brought "
            "to the common size: banners, strips or panoramas among photos.")


@check("gray_stored_as_rgb", title="grey stored as RGB")
def _gray_as_rgb(images, class_names):
    return (*_in_set("gray_as_rgb", [False]), None,
            "These colour files hold a greyscale image in three identical channels: harmless to train on, but "
            "worth knowing when colour should matter, or when the rest of the dataset is in colour.")


# --- quality --------------------------------------------------------------------------------------------------

@check("dark_images", params=("min_brightest_level",))
def _dark(images, class_names, min_brightest_level):
    return ("ExpectColumnValuesToBeBetween", {"column": "brightness_p99", "min_value": min_brightest_level}, None,
            f"Even the brightest 1% of these images' pixels stay below {min_brightest_level:.0%} of full "
            "brightness: underexposed, or the wrong scale.")


@check("overexposed_images", params=("max_darkest_level",))
def _overexposed(images, class_names, max_darkest_level):
    return ("ExpectColumnValuesToBeBetween", {"column": "brightness_p01", "max_value": max_darkest_level}, None,
            f"Even the darkest 1% of these images' pixels are above {max_darkest_level:.0%} of full "
            "brightness: washed out, with little contrast left to learn from.")


@check("low_information", params=("min_entropy_bits",))
def _low_information(images, class_names, min_entropy_bits):
    return ("ExpectColumnValuesToBeBetween", {"column": "entropy", "min_value": min_entropy_bits}, None,
            f"These images carry under {min_entropy_bits} bits of grey-level entropy: almost all of their "
            "pixels share one value (blank scans, masks, placeholder images).")


@check("blurry_images", params=("iqr_factor",))
def _blurry(images, class_names, iqr_factor):
    sharpness = images["log_sharpness"].dropna()
    q1, q3 = np.percentile(sharpness, [25, 75]) if len(sharpness) else (0.0, 0.0)
    fence = round(float(q1 - iqr_factor * (q3 - q1)), 4)
    return ("ExpectColumnValuesToBeBetween", {"column": "log_sharpness", "min_value": fence}, None,
            f"These images' sharpness (log10 of the variance of the Laplacian) is below {fence:.2f}, "
            f"{iqr_factor:g} interquartile ranges under the dataset's lower quartile: far softer than their "
            "peers, out of focus or upscaled from a thumbnail.")


@check("constant_images")
def _constant(images, class_names):
    return (*_in_set("constant", [False]), None,
            "Every pixel of these images has the same value: nothing to learn from, often a failed export.")


# --- duplicates and leakage -----------------------------------------------------------------------------------

@check("exact_duplicates")
def _exact_duplicates(images, class_names):
    return (*_below("copies_in_split", 0), None,
            "These images appear more than once in their split (identical pixels): they weigh double in "
            "training, or are scored twice.")


def _near_copy(column: str, max_distance: float) -> tuple[str, dict]:
    """Images whose near copy is at most ``max_distance`` away fail (no copy found: NaN, which passes)."""
    return "ExpectColumnValuesToBeBetween", {"column": column, "min_value": max_distance, "strict_min": True}


@check("near_duplicates", params=("max_distance",))
def _near_duplicates(images, class_names, max_distance):
    return (*_near_copy("near_copy_in_split_distance", max_distance), None,
            f"These images have a near copy in their own split (distance at most {max_distance:g}: the same "
            "picture shifted, cropped, recoloured, re-encoded or mirrored): they weigh double in training, or "
            "are scored twice.")


@check("train_test_leakage", title="train/test leakage")
def _leakage(images, class_names):
    return (*_below("copies_in_other_split", 0), None,
            "The same image is in both the training and the test split: the test accuracy rewards memorising "
            "it and overstates how well the model generalises.")


def leaked_share(images: pd.DataFrame, max_distance: float) -> float:
    """The share of the test images that are near (not exact) copies of a training image."""
    test = images[(images["split"] == "test") & images["file_error"].isna()]
    return float((test["near_copy_in_other_split_distance"] <= max_distance).mean()) if len(test) else 0.0


def _leak_is_severe(images, max_distance, critical_share):
    return leaked_share(images, max_distance) > critical_share


@check("near_duplicates_across_splits", title="near duplicates across splits",
       params=("max_distance", "critical_share"), severe=_leak_is_severe)
def _near_leakage(images, class_names, max_distance, critical_share):
    share = leaked_share(images, max_distance)
    return (*_near_copy("near_copy_in_other_split_distance", max_distance), "test",
            f"These test images are near copies of training images (distance at most {max_distance:g}): the model "
            "is scored on pictures it trained on, so test accuracy overstates generalisation, most for the "
            f"variants that memorise most. {share:.1%} of the test images; above {critical_share:.0%} this "
            "check is as severe as the suite says, below it a warning.")


@check("conflicting_labels")
def _conflicting_labels(images, class_names):
    return (*_below("labels_for_same_pixels", 1), None,
            "Identical images carry different labels: at most one can be right, and the model is taught both.")


# --- labels and classes ---------------------------------------------------------------------------------------

@check("at_least_two_classes", table=CLASSES)
def _two_classes(classes, class_names):
    return ("ExpectColumnUniqueValueCountToBeBetween", {"column": "class_name", "min_value": 2}, None,
            "A classifier needs at least two classes: with one, every prediction is right and nothing is learned.")

@check("labels_within_class_list")
def _labels_in_list(images, class_names):
    return ("ExpectColumnValuesToBeBetween", {"column": "label", "min_value": 0,
                                              "max_value": len(class_names) - 1}, None,
            f"Labels must index the {len(class_names)} classes; others cannot be learned or scored.")


@check("class_missing_from_train", table=CLASSES)
def _missing_from_train(classes, class_names):
    return ("ExpectColumnValuesToBeBetween", {"column": "images", "min_value": 1}, "train",
            "A class without training images can never be predicted.")


@check("class_missing_from_test", table=CLASSES)
def _missing_from_test(classes, class_names):
    return ("ExpectColumnValuesToBeBetween", {"column": "images", "min_value": 1}, "test",
            "A class without test images is never scored: accuracy says nothing about it.")


@check("class_imbalance", table=CLASSES, params=("max_ratio",))
def _imbalance(classes, class_names, max_ratio):
    train = classes[(classes["split"] == "train") & (classes["images"] > 0)].sort_values("images")
    facts = ""
    if len(train):
        smallest = ", ".join(f"{r.class_name} ({r.images})" for r in train.head(3).itertuples())
        facts = (f" Imbalance ratio (largest/smallest training class) "
                 f"{train['images'].max() / train['images'].min():.1f}:1; smallest: {smallest}.")
    return ("ExpectColumnValuesToBeBetween", {"column": "ratio_to_largest", "min_value": round(1 / max_ratio, 6)},
            "train", f"Classes with under 1/{max_ratio:g} of the largest class's training images are swamped: "
            f"plain cross-entropy is dominated by the large classes (weight the loss or resample).{facts}")


@check("class_share_drift", table=CLASSES, params=("max_factor",))
def _class_share_drift(classes, class_names, max_factor):
    return ("ExpectColumnValuesToBeBetween", {"column": "share_ratio", "min_value": round(1 / max_factor, 6),
                                              "max_value": max_factor}, "test",
            f"These classes' share of the test split differs from their training share by more than "
            f"{max_factor:g}x: accuracy on the test split weighs them differently from training.")


# --- drift between train and test -----------------------------------------------------------------------------

def _kl_check(images: pd.DataFrame, column: str, max_kl: float, bins: int) -> dict:
    """KL divergence of the test split's ``column`` from the training histogram (equal-count bins).

    Small splits get fewer bins (about 10 test images per bin) and a higher limit: the divergence between two
    samples of one distribution is itself positive, and 2 x n x KL follows a chi-square distribution with
    (bins - 1) degrees of freedom (n: the two splits' effective size, n_train x n_test / (n_train + n_test)).
    The limit is the larger of ``max_kl`` and what sampling noise alone exceeds 0.1% of the time, so a warning
    means a shift that is both large and real. (At 1%, clean splits of 120 and 30 images warned in 2.5% of
    trials: the chi-square law is only approximate for so few images per bin.)
    """
    from scipy.stats import chi2

    train = images.loc[images["split"] == "train", column].dropna().to_numpy(float)
    tested = int(images.loc[images["split"] == "test", column].notna().sum())
    bins = int(max(2, min(bins, tested // 10)))
    edges = np.unique(np.quantile(train, np.linspace(0, 1, bins + 1))) if len(train) else np.array([0.0, 1.0])
    if len(edges) < 2:
        edges = np.array([edges[0] - 1e-9, edges[0] + 1e-9])
    weights, _ = np.histogram(train, bins=edges)
    weights = weights / max(weights.sum(), 1)
    effective = len(train) * tested / max(len(train) + tested, 1)
    noise = chi2.ppf(NOISE_QUANTILE, len(weights) - 1) / (2 * effective) if effective else float("inf")
    return {"column": column, "threshold": round(float(max(max_kl, noise)), 4), "tail_weight_holdout": 0.01,
            "internal_weight_holdout": 0.01, "partition_object": {"bins": edges.tolist(), "weights": weights.tolist()}}


@check("brightness_drift", params=("max_kl", "bins"))
def _brightness_drift(images, class_names, max_kl, bins):
    return ("ExpectColumnKLDivergenceToBeLessThan", _kl_check(images, "brightness", max_kl, bins), "test",
            "The test images' brightness is distributed differently from the training images': the test "
            "accuracy measures a shifted distribution (another camera, lighting or preprocessing).")


@check("contrast_drift", params=("max_kl", "bins"))
def _contrast_drift(images, class_names, max_kl, bins):
    return ("ExpectColumnKLDivergenceToBeLessThan", _kl_check(images, "contrast", max_kl, bins), "test",
            "The test images' contrast is distributed differently from the training images'.")
