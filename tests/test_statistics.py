"""The verdict's statistics on simulated paired seeds, where the truth is known."""

import numpy as np

from tasks.report.statistics import (ALPHA, accuracy_interval, beats, holm, paired_p, seeds_for_power,
                                     seeds_to_reach, sign_flip_p, t_interval)


def simulated_run(rng, effects, seeds, sd=0.01):
    """Per-seed differences of each change with one shared baseline (as in a run: every change is compared
    with the same baseline seeds, so the comparisons are correlated)."""
    baseline = 0.9 + rng.normal(0, sd, seeds)
    return [0.9 + effect + rng.normal(0, sd, seeds) - baseline for effect in effects]


def labels(differences):
    tested = [paired_p(d)[1] for d in differences]
    return [(adjusted < ALPHA, t_interval(d, level)) for d, (adjusted, level) in zip(differences, holm(tested))]


def test_the_95_percent_interval_covers_the_true_difference_95_times_in_100():
    rng = np.random.default_rng(0)
    truth, covered, runs = 0.02, 0, 4000
    for _ in range(runs):
        low, high = t_interval(truth + rng.normal(0, 0.01, 5), 0.05)
        covered += low <= truth <= high
    assert 0.94 <= covered / runs <= 0.96


def test_holm_keeps_the_chance_of_any_false_claim_at_5_percent_where_nothing_matters():
    rng = np.random.default_rng(1)
    runs = 2000
    any_false = sum(any(claim for claim, _ in labels(simulated_run(rng, [0.0] * 8, seeds=5)))
                    for _ in range(runs))
    assert any_false / runs <= ALPHA
    # without the adjustment the same runs claim far more often: the test can fail, and the adjustment matters
    rng = np.random.default_rng(1)
    raw = sum(any(paired_p(d)[1] < ALPHA for d in simulated_run(rng, [0.0] * 8, seeds=5)) for _ in range(runs))
    assert raw / runs > 3 * ALPHA


def test_a_large_effect_is_named_from_the_default_three_seeds_among_eight_changes():
    rng = np.random.default_rng(2)
    found = [labels(simulated_run(rng, [0.15] + [0.0] * 7, seeds=3))[0][0] for _ in range(200)]
    assert np.mean(found) >= 0.8


def test_the_interval_excludes_zero_exactly_when_the_label_claims_a_difference():
    rng = np.random.default_rng(3)
    for _ in range(300):
        effects = rng.choice([0.0, 0.005, 0.02, -0.02], size=6)
        for claim, (low, high) in labels(simulated_run(rng, effects, seeds=int(rng.integers(3, 8)))):
            assert claim == (low > 0 or high < 0)


def test_accuracy_intervals_stay_between_0_and_1():
    low, high = accuracy_interval(np.array([0.99, 0.93, 0.99]))
    assert 0.0 < low < 0.97 < high < 1.0
    assert accuracy_interval(np.array([1.0, 1.0, 1.0]))[1] <= 1.0


def test_two_seeds_fall_back_to_the_exact_test_which_cannot_reach_the_adjusted_level():
    test, p = paired_p(np.array([0.1, 0.12]))
    assert test == "exact sign-flip" and p == 0.5
    assert sign_flip_p(np.array([0.1, 0.2, 0.3])) == 0.25
    assert seeds_to_reach(ALPHA / 8) == 9  # 2 / 2^9 < 0.00625 <= 2 / 2^8


def test_many_clearly_non_normal_seeds_fall_back_to_a_sign_flip_test_that_stays_small():
    skewed = np.r_[np.full(29, 0.01), 0.9]  # 30 seeds, one far outlier: Shapiro-Wilk rejects normality
    test, p = paired_p(skewed)
    assert test == "sign-flip, 65,536 random patterns" and p < 1e-3  # not 2^30 enumerated
    assert sign_flip_p(-skewed) == p


def test_beating_probability_and_seeds_for_power():
    share, low, high = beats(np.array([0.01, 0.02, -0.01, 0.0]))
    assert share == 0.625 and 0 <= low < share < high <= 1
    assert seeds_for_power(0.02, 0.01, ALPHA) < seeds_for_power(0.005, 0.01, ALPHA)
    assert seeds_for_power(0.0, 0.01, ALPHA) is None


def test_seeds_that_all_differ_by_the_same_amount_are_judged_by_the_exact_test_without_an_interval():
    """Accuracies are counts over the test images, so three seeds of a change that does nothing can tie (+1.3
    points each, met in the calibration benchmark): no spread is no evidence, not infinite evidence."""
    tied = np.array([0.013, 0.013, 0.013])
    assert paired_p(tied) == ("exact sign-flip", 0.25)
    assert all(np.isnan(t_interval(tied, 0.05)))
    assert paired_p(np.full(10, 0.01)) == ("exact sign-flip", 2 / 2 ** 10)
