"""Seeds in rounds (`tasks.report.sequential`): the boundaries, the family-wise error over repeated looks, and what
the rounds save against fixed seeds, on simulated paired seeds where the truth is known."""

import math

import numpy as np
import pytest
from scipy import stats

from tasks.report.sequential import (DECIDED, FUTILE, OPEN, SPENT, futile, nominal_levels, scored, sequential_holm,
                                     settle, seeds_next, spent)
from tasks.report.statistics import ALPHA, holm, paired_p
from tasks.training.grid import looks


def test_the_looks_grow_by_half_and_end_at_the_most_seeds():
    assert looks(10) == (3, 5, 8, 10)
    assert looks(20) == (3, 5, 8, 12, 20)
    assert looks(5) == (3, 5) and looks(3) == (3,)
    assert looks(9) == (3, 5, 9)  # a look at 8 of 9 seeds would cost error and save one seed


def test_the_boundaries_spend_exactly_the_planned_error_at_each_look():
    """Brownian motion observed at the looks' information fractions: the share of paths that cross a boundary
    by each look is what the spending function allows (2 million paths, so within 0.0005)."""
    plan = looks(10)
    fractions = np.array(plan) / plan[-1]
    z = stats.norm.isf(np.array(nominal_levels(plan, ALPHA)) / 2)
    rng = np.random.default_rng(1)
    steps = rng.standard_normal((2_000_000, len(plan))) * np.sqrt(np.diff(fractions, prepend=0))
    crossed = np.abs(np.cumsum(steps, axis=1) / np.sqrt(fractions)) >= z
    for k, fraction in enumerate(fractions):
        assert crossed[:, :k + 1].any(axis=1).mean() == pytest.approx(spent(fraction, ALPHA), abs=5e-4)


def run_in_rounds(draws, plan):
    """What the flow does: every comparison starts at the first look, only open ones get the next look's seeds."""
    have = [plan[0]] * len(draws)
    while True:
        differences = [d[:n] for d, n in zip(draws, have)]
        standings = settle(differences, plan)
        following = seeds_next(differences, standings, plan)
        if following == have:
            return standings, differences, max(have) + sum(have)
        have = following


def naive_looks(draws, plan):
    """The mistake the design avoids: Holm at 5% after every round, as if each look were the only one."""
    return any(adjusted < ALPHA for n in plan for adjusted, _ in holm([paired_p(d[:n])[1] for d in draws]))


def test_looking_after_every_round_keeps_the_chance_of_any_false_claim_at_5_percent():
    """Four changes that do nothing, seeds with heavy tails (t, 4 degrees of freedom), looked at after 3, 5, 8 and
    10 seeds: the rounds' rule claims something in at most ~5% of runs; the naive rule, in far more."""
    rng, plan, runs = np.random.default_rng(7), looks(10), 600
    false, naive = 0, 0
    for _ in range(runs):
        draws = [rng.standard_t(4, plan[-1]) * 0.01 for _ in range(4)]
        standings, _, _ = run_in_rounds(draws, plan)
        false += any(s.state == DECIDED for s in standings)
        naive += naive_looks(draws, plan)
    assert false / runs <= 0.065  # 5% and the sampling error of 600 runs
    assert naive / runs >= 0.08


def test_rounds_decide_what_fixed_seeds_decide_with_fewer_training_runs():
    """A grid like the default one (eight changes: large, medium and null effects, spread 1.5 points): the
    rounds name the large and medium effects as often as ten fixed seeds do, with about a third fewer runs."""
    rng, plan = np.random.default_rng(3), looks(10)
    effects = np.array([-10, -5, -3, 3, 0, 0, 0.3, 0.5]) / 100
    found_rounds, found_fixed, cells = np.zeros(len(effects)), np.zeros(len(effects)), []
    for _ in range(100):
        draws = [effect + rng.normal(0, 0.015, plan[-1]) for effect in effects]
        standings, _, used = run_in_rounds(draws, plan)
        cells.append(used)
        found_rounds += [s.state == DECIDED for s in standings]
        found_fixed += [adjusted < ALPHA for adjusted, _ in holm([paired_p(d)[1] for d in draws])]
    assert np.mean(cells) < 0.75 * (len(effects) + 1) * plan[-1]
    assert (found_rounds[:4] >= found_fixed[:4] - 5).all() and found_rounds[:4].min() >= 85


def test_a_rejected_comparison_passes_its_share_of_the_error_to_the_others():
    plan = looks(10)
    first_look = nominal_levels(plan, ALPHA / 2)[0]
    alone = nominal_levels(plan, ALPHA)[0]
    between = (first_look + alone) / 2  # rejected only with the whole error, not with half of it
    decisions = sequential_holm([[1e-9], [between]], plan)
    assert all(d.rejected and d.look == 0 for d in decisions)
    assert decisions[1].level == pytest.approx(alone) and decisions[1].share == pytest.approx(ALPHA)
    assert not sequential_holm([[0.5], [between]], plan)[1].rejected


def test_a_comparison_that_cannot_tell_in_time_stops_and_an_open_one_gets_the_next_looks_seeds():
    plan = looks(10)
    nothing = np.array([0.001, -0.002, 0.0015, -0.001, 0.0005])  # five seeds, no effect, small spread
    assert futile(nothing, plan, ALPHA)
    assert not futile(np.array([0.03, 0.01, 0.05, 0.0, 0.04]), plan, ALPHA)  # promising: keep going
    assert not futile(nothing[:3], plan, ALPHA)  # three seeds say too little to give up on
    medium = np.array([0.02, 0.005, 0.03, -0.01, 0.025])
    standings = settle([nothing, medium, np.full(10, np.nan)], plan)
    assert [s.state for s in standings[:2]] == [FUTILE, OPEN] and standings[2].decision is None
    assert standings[2].state == SPENT  # every seed tried, none scored
    assert seeds_next([nothing, medium, np.full(10, np.nan)], standings, plan) == [5, 8, 10]


def test_a_failed_seed_is_left_out_of_the_test_not_counted_as_a_difference():
    with_gap = np.array([0.05, np.nan, 0.06, 0.055])
    assert len(scored(with_gap)) == 3 and not math.isnan(paired_p(scored(with_gap))[1])
