"""The verdict's statistics: one decision rule, stated once, used by the page, `summary.json` and the runs index.

The rule. Each change (and the A/A control) is compared with the baseline on the seeds both scored: seed s of
the change and seed s of the baseline share initial weights, data order and validation carve, so the per-seed
difference of their test accuracies isolates the change. The paired t-test gives each comparison a p-value;
Holm's step-down adjusts them for the number of comparisons in the run; a change "helps" or "hurts" when its
adjusted p-value is below ALPHA, else "no clear difference". The interval printed beside it is the t-interval
at the level Holm's step-down tested it at (ALPHA / (m - rank + 1), the same level for every comparison after
the first one it kept), so it excludes zero exactly when the label is "helps" or "hurts": a label never
contradicts the interval beside it.

Why the t-test: an exact sign-flip test needs 2^n / 2 > m / ALPHA sign patterns before it can reject anything
(9 seeds for 8 comparisons); with the default 3 seeds it never could. The t-test can name an effect that is
large against the spread between seeds from 3 seeds on. It assumes the per-seed differences are roughly
normal. Where that is checked and fails (8 or more seeds, Shapiro-Wilk p < 0.01), with 2 seeds (one degree of
freedom), or where every seed differs by exactly the same amount (no spread to divide by: accuracies are counts,
so a few seeds can tie by chance), the comparison falls back to the exact sign-flip test, and where even that
cannot reach the adjusted level the page says so up front, with the seeds it would need.
"""

from __future__ import annotations

import math

import numpy as np

# t and normal distributions come from scipy.special (stdtr, stdtrit, nctdtr, ndtri): the very functions
# scipy.stats calls, without scipy.stats's import (~1.2 s of every report on 2 cores). Shapiro-Wilk, needed only
# from NORMALITY_FROM seeds on, still imports it.
ALPHA = 0.05
POWER = 0.8
NORMALITY_FROM = 8  # seeds: fewer cannot tell a non-normal sample from a normal one
MAX_SEEDS = 1000  # the power search gives up here


def paired_p(differences: np.ndarray) -> tuple[str, float]:
    """(test name, two-sided p-value) that the mean paired difference is zero."""
    n = len(differences)
    if n < 2:
        return "", math.nan
    sd = float(differences.std(ddof=1))
    # Every seed moved by exactly the same amount: the t statistic is infinite, but accuracies are counts over the
    # test images, so a few seeds tie by chance (three no-op seeds each +1.3 points, seen in the calibration
    # benchmark); the exact test says what so few seeds can show.
    if n == 2 or np.ptp(differences) < 1e-12 or (n >= NORMALITY_FROM and _not_normal(differences)):
        name = "exact sign-flip" if n <= EXACT_UP_TO else "sign-flip, 65,536 random patterns"
        return name, sign_flip_p(differences)
    mean = float(differences.mean())
    from scipy import special

    return "paired t-test", float(2 * special.stdtr(n - 1, -abs(mean) / (sd / math.sqrt(n))))  # t's survival


def _not_normal(differences: np.ndarray) -> bool:
    from scipy import stats

    return np.ptp(differences) > 0 and float(stats.shapiro(differences).pvalue) < 0.01


EXACT_UP_TO = 16  # seeds: 2^16 sign patterns enumerate in milliseconds; 2^30 would not fit in memory


def sign_flip_p(differences: np.ndarray) -> float:
    """Two-sided sign-flip p-value: exact over all 2^n sign patterns up to EXACT_UP_TO seeds, beyond that over
    2^EXACT_UP_TO patterns drawn at random (seeded, so a run reads the same twice), counting the observed one."""
    n = len(differences)
    if n <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(0).choice([-1, 1], size=(2 ** EXACT_UP_TO, n))
        signs[0] = 1
    flipped = np.abs((signs * differences).mean(axis=1))
    return float(np.mean(flipped >= abs(differences.mean()) - 1e-12))


def smallest_sign_flip_p(n: int) -> float:
    return 2 / 2 ** n if n else 1.0


def holm(p_values: list[float], alpha: float = ALPHA) -> list[tuple[float, float]]:
    """Per p-value (NaN: not tested): (Holm-adjusted p-value, the level its step tested it at)."""
    tested = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(tested)
    result = [(math.nan, math.nan)] * len(p_values)
    running, stopped = 0.0, None
    for rank, i in enumerate(sorted(tested, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        level = alpha / (m - rank)
        if stopped is None and running >= alpha:
            stopped = level  # the first comparison kept: it and every later one are tested at this level
        result[i] = (running, stopped if stopped is not None else level)
    return result


def t_interval(differences: np.ndarray, level: float) -> tuple[float, float]:
    """Two-sided (1 - level) t-interval of the mean, within [-1, 1] (a difference of two accuracies); none where
    every seed differs by the same amount (a zero-width interval would claim what `paired_p` does not)."""
    n = len(differences)
    if n < 2 or math.isnan(level) or np.ptp(differences) < 1e-12:
        return math.nan, math.nan
    from scipy import special

    mean = float(differences.mean())
    half = float(special.stdtrit(n - 1, 1 - level / 2) * differences.std(ddof=1) / math.sqrt(n))
    return max(-1.0, mean - half), min(1.0, mean + half)


def accuracy_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """A t-interval of mean accuracy on the logit scale, mapped back: always inside 0-1, and wider on the side
    with more room (97% over 3 seeds is never "93.2 to 100.8")."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    from scipy import special

    clipped = np.clip(values, 1e-4, 1 - 1e-4)
    logits = np.log(clipped / (1 - clipped))
    half = float(special.stdtrit(n - 1, 0.5 + confidence / 2) * logits.std(ddof=1) / math.sqrt(n))
    centre = float(logits.mean())
    return _expit(centre - half), _expit(centre + half)


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def beats(differences: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """P(variant > baseline) on a paired seed (ties count half), with its Wilson score interval."""
    n = len(differences)
    if n == 0:
        return math.nan, math.nan, math.nan
    share = (np.sum(differences > 0) + 0.5 * np.sum(differences == 0)) / n
    from scipy import special

    z = float(special.ndtri(0.5 + confidence / 2))
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(share), max(0.0, centre - half), min(1.0, centre + half)


def seeds_for_power(delta: float, sd: float, level: float, power: float = POWER) -> int | None:
    """The fewest seeds at which a paired t-test at ``level`` finds a true mean difference ``delta`` (spread
    ``sd`` between seeds) with probability ``power``; None beyond MAX_SEEDS or without an effect to find."""
    if not (delta and sd > 0) or math.isnan(delta) or math.isnan(sd):
        return None
    return next((n for n in range(3, MAX_SEEDS + 1) if t_test_power(delta, sd, n, level) >= power), None)


def t_test_power(delta: float, sd: float, n: int, level: float) -> float:
    """The chance that a two-sided paired t-test at ``level`` on ``n`` seeds rejects, when the true mean
    difference is ``delta`` and the spread between seeds ``sd``."""
    from scipy import special

    critical = special.stdtrit(n - 1, 1 - level / 2)
    shift = abs(delta) / sd * math.sqrt(n)  # the noncentral t's survival beyond +critical and CDF below -critical
    return float(1 - special.nctdtr(n - 1, shift, critical) + special.nctdtr(n - 1, shift, -critical))


def seeds_to_reach(level: float) -> int:
    """The fewest seeds whose exact sign-flip test can reach ``level`` at all."""
    return next(n for n in range(1, 64) if smallest_sign_flip_p(n) < level)
