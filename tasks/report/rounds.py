"""Which cells the next round trains, read from the records so far: the flow asks, the report reads the same.

With ``--seeds auto`` every variant starts with the plan's first look of seeds; after each round the records
are judged by the report's own rule (`aggregate.summarise` with the plan), and only the comparisons still open
get the next look's seeds; the baseline gets as many as the most any open variant needs, so every pair exists.
Because this reads only the records, an interrupted run that is started again (its finished cells cached)
reaches the same round with the same decisions. After the last round, the recommended configuration's
confirmation (`recommend`) is one more round.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from tasks.report.aggregate import results_table, summarise
from tasks.report.diagnose import broken_variants
from tasks.report.recommend import combination, config_of
from tasks.report.sequential import OPEN, next_look
from tasks.training.grid import BASELINE_AXIS, CONFIRM_AXIS, Cell, Variant


def judged(records: list[dict], plan: tuple[int, ...] | None, classes: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results table and its summary, as the report will judge them."""
    results = results_table(records)
    return results, summarise(results, plan, broken_variants(records, classes))


def next_round(variants: list[Variant], records: list[dict], plan: tuple[int, ...], classes: int) -> list[Cell]:
    """The cells of the next round: the next look's seeds for every comparison still open (and the baseline's
    to pair them); [] when every comparison is settled or the plan is spent."""
    tried = {(axis, name): 0 for axis, name, _ in variants}
    for record in records:
        key = (record["axis"], record["variant"])
        if key in tried:
            tried[key] = max(tried[key], int(record["seed"]) + 1)
    if not records:
        wanted = {key: plan[0] for key in tried}
    else:
        _, summary = judged(records, plan, classes)
        still_open = {(row["axis"], row["variant"]) for row in summary.to_dict("records")
                      if row.get("stopped") == OPEN}
        wanted = {key: next_look(count, plan) if key in still_open else count for key, count in tried.items()}
        wanted[(BASELINE_AXIS, BASELINE_AXIS)] = max(wanted.values())
    return [Cell(axis, name, replace(config, seed=seed)) for axis, name, config in variants
            for seed in range(tried[(axis, name)], wanted[(axis, name)])]


def standing_words(records: list[dict], plan: tuple[int, ...], classes: int) -> str:
    """After a round, for the log: "4 settled (2 decided, 1 futile, 1 broken), 4 still open"."""
    _, summary = judged(records, plan, classes)
    states = summary["stopped"].dropna().value_counts() if "stopped" in summary else pd.Series(dtype=int)
    still = int(states.get(OPEN, 0))
    settled = {state: int(count) for state, count in states.items() if state != OPEN}
    parts = ", ".join(f"{count} {state}" for state, count in settled.items())
    return f"{sum(settled.values())} settled{f' ({parts})' if parts else ''}, {still} still open"


def confirmation_round(records: list[dict], plan: tuple[int, ...] | None, seeds: int | None, classes: int
                       ) -> list[Cell]:
    """The confirmation of the combined helping changes (see `recommend`): the baseline, the best single change
    and the combination, on as many fresh seeds as the one-factor pass gave (in rounds: as many as the best
    single change used, at least the first look's); [] when fewer than two changes help."""
    results, summary = judged([r for r in records if r["axis"] != CONFIRM_AXIS], plan, classes)
    combo = combination(summary, results)
    if combo is None:
        return []
    first = int(results["seed"].max()) + 1
    if plan is None:
        count = int(seeds or 0)
    else:
        best = summary[summary["variant"] == combo.used[0]].iloc[0]
        count = max(plan[0], int(best["pairs"]))
    configs = (config_of(results, BASELINE_AXIS, BASELINE_AXIS), combo.best, combo.config)
    return [Cell(CONFIRM_AXIS, name, replace(config, seed=seed)) for name, config in zip(combo.names, configs)
            for seed in range(first, first + count)]
