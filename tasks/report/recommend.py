"""The recommended configuration: every change that helps, combined, and confirmed before it is recommended.

After the one-factor pass, the changes that help (by the run's decision rule) are merged into one configuration,
the largest gain first: one per axis, and a change that would set a setting another already set differently is
left out and named. When two or more changes make it, the flow trains three variants on the CONFIRM_AXIS, on
seeds the one-factor pass never used: the baseline, the best single change and the combination.

Why fresh seeds: the changes were chosen because their seeds beat the baseline's. Judged on those same seeds,
the combination would inherit that luck (a low baseline seed flatters every change paired with it) and the best
single change would carry its winner's curse into the comparison with the combination. On fresh seeds all
three are measured as they are. Their three comparisons (the combination against the baseline and against the
best single change, the best single change against the baseline) are one new family, Holm-adjusted by the same
rule as the one-factor pass.

The recommendation is the combination, unless it scores below the best single change on these seeds: then the
changes interact, the page warns, and the best single change alone is recommended. With one helping change it
is that change (its gain from the one-factor pass); with none, the baseline as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import pandas as pd

from tasks.report import statistics
from tasks.report.aggregate import HELPS, HURTS, METRIC, SCORED, interval_words, judge
from tasks.training.grid import AA_AXIS, BASELINE, BASELINE_AXIS, CONFIRM_AXIS, TrainConfig
from tasks.training.grid_file import FACTORIAL_AXIS, settings_of, toml_value

COMBINED_PREFIX = "combined: "
NOT_SETTINGS = ("seed", "run_copy", "val_fraction", "fixed_split")  # the protocol and identity, not the model's


@dataclass(frozen=True)
class Combination:
    """The changes that help, merged: the config, the variants in it (largest gain first), those left out."""

    config: TrainConfig
    best: TrainConfig  # the best single change's config
    used: list[str]
    left_out: list[str]

    @property
    def names(self) -> tuple[str, str, str]:
        """The confirmation's three variants: the baseline, the best single change, the combination."""
        return BASELINE_AXIS, self.used[0], COMBINED_PREFIX + " + ".join(self.used)


@dataclass(frozen=True)
class Recommendation:
    """What the first screen ends with."""

    changes: list[str]  # the variants that make the recommended configuration ([] : keep the baseline)
    config: TrainConfig
    baseline: TrainConfig  # the run's
    gain: dict | None  # the comparison that measures it against the baseline (a summary-like row)
    confirmed: bool  # gain measured on fresh seeds (the confirmation), not on the seeds that chose it
    warning: str = ""
    note: str = ""
    comparisons: tuple[dict, ...] = ()  # the confirmation's comparisons, for the page


def config_of(results: pd.DataFrame, axis: str, variant: str) -> TrainConfig:
    """A variant's training config, read back from its rows of the results table (every cell holds it)."""
    row = results[(results["axis"] == axis) & (results["variant"] == variant)].iloc[0].to_dict()
    values = {}
    for field in fields(TrainConfig):
        default = getattr(BASELINE, field.name)
        value = row.get(field.name, default)
        if isinstance(value, list):  # JSON gives lists back for tuples
            value = tuple(value)
        elif hasattr(value, "item"):  # numpy's scalars, from the table's columns
            value = value.item()
        if isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, int) and isinstance(value, float):
            value = int(value)
        values[field.name] = value
    return replace(TrainConfig(**values), seed=0, run_copy=0)


def changes(config: TrainConfig, base: TrainConfig) -> dict:
    """The settings ``config`` sets differently from ``base``."""
    return {f.name: getattr(config, f.name) for f in fields(TrainConfig)
            if f.name not in NOT_SETTINGS and getattr(config, f.name) != getattr(base, f.name)}


def combination(summary: pd.DataFrame, results: pd.DataFrame) -> Combination | None:
    """The helping changes merged, or None when fewer than two can be (or the grid is factorial: its variants
    are combinations already)."""
    if (summary["axis"] == FACTORIAL_AXIS).any():
        return None
    helping = summary[(summary["effect"] == HELPS) & ~summary["axis"].isin([AA_AXIS, BASELINE_AXIS])
                      & (summary["broken"].fillna("") == "")].sort_values("delta", ascending=False)
    base = config_of(results, BASELINE_AXIS, BASELINE_AXIS)
    merged, used, left_out, axes = {}, [], [], set()
    for row in helping.to_dict("records"):
        change = changes(config_of(results, row["axis"], row["variant"]), base)
        if row["axis"] in axes or any(merged.get(k, v) != v for k, v in change.items()):
            left_out.append(row["variant"])
            continue
        merged |= change
        used.append(row["variant"])
        axes.add(row["axis"])
    best = config_of(results, helping.iloc[0]["axis"], helping.iloc[0]["variant"]) if used else base
    if len(used) < 2 or replace(base, **merged) == best:  # AdamW with its decay, and the decay alone: one change
        return None
    return Combination(replace(base, **merged), best, used, left_out)


def confirmation(results: pd.DataFrame, names: tuple[str, str, str]) -> list[dict]:
    """The confirmation's three comparisons on its own seeds, Holm-adjusted together: the combination against
    the baseline, the best single change against the baseline, the combination against the best single change."""
    scored = results[(results["axis"] == CONFIRM_AXIS) & results["status"].isin(SCORED)]
    by_variant = {name: scored[scored["variant"] == name].set_index("seed")[METRIC] for name in names}
    base, best, combined = names
    pairs = [(combined, base), (best, base), (combined, best)]
    differences = [(by_variant[a] - by_variant[b]).dropna().to_numpy() for a, b in pairs]
    tests = [statistics.paired_p(d) for d in differences]
    rows = []
    for (a, b), d, (test, p), (adjusted, level) in zip(pairs, differences, tests,
                                                        statistics.holm([p for _, p in tests])):
        rows.append({"variant": a, "against": b, "axis": CONFIRM_AXIS, "pairs": len(d),
                     "delta": float(d.mean()) if len(d) else math.nan, "test": test, "p_value": p}
                    | judge(d, adjusted < statistics.ALPHA, level, adjusted))
    return rows


def recommend(summary: pd.DataFrame, results: pd.DataFrame) -> Recommendation:
    """The configuration to use next, and how much it gains over the baseline."""
    base = config_of(results, BASELINE_AXIS, BASELINE_AXIS)
    combo = combination(summary, results)
    if combo is not None and (results["axis"] == CONFIRM_AXIS).any():
        rows = confirmation(results, combo.names)
        combined_gain, best_gain, combined_vs_best = rows
        left = f" Left out, as they set what a larger gain already set: {', '.join(combo.left_out)}." \
            if combo.left_out else ""
        if not combined_vs_best["delta"] < 0:  # NaN too: nothing says it is worse
            note = ("" if combined_vs_best["effect"] == HELPS else
                    f" It is not clearly better than {combo.used[0]} alone ({_points(combined_vs_best)}), which is "
                    "as good a choice if you prefer fewer changes.")
            return Recommendation(combo.used, combo.config, base, combined_gain, True, note=(note + left).strip(),
                                  comparisons=tuple(rows))
        others = ", ".join(combo.used[1:])
        why = ("the changes interact" if combined_vs_best["effect"] == HURTS else
               f"{others} add{'s' if len(combo.used) == 2 else ''} nothing on top of it")
        warning = (f"The combination of {', '.join(combo.used)} is "
                   f"{'worse than' if combined_vs_best['effect'] == HURTS else 'no better than'} {combo.used[0]} "
                   f"alone ({_points(combined_vs_best)}): {why}, so {combo.used[0]} alone is recommended.")
        return Recommendation([combo.used[0]], combo.best, base, best_gain, True, warning=warning, note=left.strip(),
                              comparisons=tuple(rows))
    helping = summary[(summary["effect"] == HELPS) & ~summary["axis"].isin([AA_AXIS, BASELINE_AXIS])
                      & (summary["broken"].fillna("") == "")].sort_values("delta", ascending=False)
    if len(helping):
        best = helping.iloc[0].to_dict()
        note = ("The other helping changes were not combined with it: a factorial grid's variants are "
                "combinations already." if len(helping) > 1 else "")
        return Recommendation([best["variant"]], config_of(results, best["axis"], best["variant"]), base, best,
                              False, note=note)
    return Recommendation([], base, base, None, False)


def _points(row: dict) -> str:
    return f"{row['delta'] * 100:+.1f} points, {interval_words(row)}"


def settings_block(config: TrainConfig, was: TrainConfig = BASELINE) -> str:
    """The configuration as a grid file's [baseline] table: epochs, then every setting that differs from the
    built-in baseline or from ``was`` (the run's baseline)."""
    return "[baseline]\n" + "".join(f"{key} = {toml_value(value)}\n"
                                    for key, value in settings_of(config, was).items())


def cli_flags(config: TrainConfig, was: TrainConfig = BASELINE) -> str:
    """The configuration as `ablate run` options: --epochs and one --set per setting of `settings_block`."""
    import shlex

    values = settings_of(config, was)
    flags = [f"--epochs {values.pop('epochs')}"]
    flags += [f"--set {shlex.quote(f'{key}={value if isinstance(value, str) else toml_value(value)}')}"
              for key, value in values.items()]
    return " ".join(flags)
