"""Seeds in rounds (`--seeds auto`): look at the comparisons after every round, stop the settled ones, and keep
the run's chance of any false claim at ALPHA however many times it looks.

The design, and why:

- Looks at planned seed counts (`tasks.training.grid.looks`: 3, 5, 8, ... up to --max-seeds), the same for every
  comparison, fixed before any result is seen. A comparison is tested at each look it reaches, with the paired test
  of `statistics.paired_p` on the seeds up to that look.
- Error spending (Lan & DeMets 1983) with the Hwang-Shih-DeCani family, gamma = SPENDING_GAMMA (-3): between
  O'Brien-Fleming's shape (about -4: almost nothing spent before the last look) and Pocock's (1: spent evenly, paid
  for at the last look, where small effects are decided). Chosen by simulating a grid like the default one (9
  comparisons, effects from -10 to +1 points, spread 1.5): -3 with FUTILITY_MARGIN 3 used 67 cells where 10 fixed
  seeds use 100, and decided 3.21 changes per run against fixed seeds' 3.25 (-2: 66 cells, 3.19; -4: 68, 3.22;
  Pocock-like 1 lost more at the last look). `boundaries` turns the spending into the nominal p-value each look
  rejects at, by the recursive integration of Armitage, McPherson & Rowe (1969) on the normal approximation; the
  t-test's own p-value is compared with it (the "significance level" approach for an unknown variance, Jennison &
  Turnbull 2000, 3.9). Anytime-valid confidence sequences were the other choice: valid at any stopping time without
  a plan, but with 3-10 seeds they are far wider than a planned t-test's boundaries and would decide almost nothing.
- The comparisons of a run are one family, as with fixed seeds: `sequential_holm` is Holm's step-down carried over
  to group-sequential tests (Maurer & Bretz 2013, the graphical approach): each comparison starts with ALPHA / m;
  when one is rejected at any look, its share passes equally to the comparisons still open, whose boundaries are
  recomputed with it. That is a closed test of weighted Bonferroni tests, so the family-wise error stays at ALPHA.
- Stopping early without a claim (`futile`, and a broken variant after its first round) only gives up chances to
  reject: it is "non-binding" and cannot raise the error rate.

Measured, not assumed: `tests/test_statistics.py` simulates the whole procedure (false claims over null runs,
and decisions and seeds against fixed seeds), and `benchmarks/bench_calibration.py --seeds auto` does the same
with real training runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tasks.report import statistics

SPENDING_GAMMA = -3.0
FUTILITY_MARGIN = 3  # stop a comparison whose observed effect would need over this many times --max-seeds
POINTS = 301  # grid points of the numerical integration: boundaries within 0.1% of 2,001 points


def spent(fraction: float, alpha: float) -> float:
    """The Hwang-Shih-DeCani error spending function: the share of ``alpha`` spent by information ``fraction``."""
    gamma = SPENDING_GAMMA
    if gamma == 0:
        return alpha * fraction
    return alpha * (1 - math.exp(-gamma * fraction)) / (1 - math.exp(-gamma))


@lru_cache(maxsize=4096)
def boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Nominal two-sided p-values at which each look rejects, so that the chance of rejecting at any look under
    the null is ``alpha`` (spread over the looks by `spent`). ``fractions``: the looks' shares of the planned
    seeds, increasing, the last 1."""
    from scipy import optimize, special

    nominal, grid, density = [], None, None
    previous = 0.0
    for k, t in enumerate(fractions):
        target = spent(t, alpha) - spent(fractions[k - 1], alpha) if k else spent(t, alpha)
        if k == 0:
            z = float(-special.ndtri(target / 2))  # the normal's inverse survival
            grid = np.linspace(-z * math.sqrt(t), z * math.sqrt(t), POINTS)  # the score S = Z sqrt(t), still open
            density = np.exp(-grid**2 / (2 * t)) / math.sqrt(2 * math.pi * t)  # N(0, t)
        else:
            step = math.sqrt(t - previous)

            def crossing(z: float) -> float:  # P(still open before, |Z_k| >= z now)
                edge = z * math.sqrt(t)
                outside = special.ndtr((-edge - grid) / step) + special.ndtr((grid - edge) / step)
                return float(np.trapezoid(density * outside, grid)) - target

            z = float(optimize.brentq(crossing, 0.1, 40.0)) if crossing(40.0) < 0 < crossing(0.1) else 40.0
            inner = np.linspace(-z * math.sqrt(t), z * math.sqrt(t), POINTS)
            kernel = np.exp(-0.5 * ((inner[:, None] - grid[None, :]) / step) ** 2) / (step * math.sqrt(2 * math.pi))
            density, grid = np.trapezoid(kernel * density[None, :], grid, axis=1), inner
        nominal.append(float(2 * special.ndtr(-z)))
        previous = t
    return tuple(nominal)


def nominal_levels(plan: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    """`boundaries` for a plan of seed counts."""
    return boundaries(tuple(n / plan[-1] for n in plan), round(alpha, 12))


@dataclass(frozen=True)
class Decision:
    """One comparison's outcome so far: rejected or not, and at which look with which nominal level (the level
    its interval is drawn at, so the interval excludes zero exactly when it is rejected)."""

    rejected: bool
    look: int  # index into the plan: the look that decided it, or its last look
    level: float  # the nominal two-sided level at that look, with the share of ALPHA it ended with
    share: float  # that share of ALPHA


def sequential_holm(p_values: list[list[float]], plan: tuple[int, ...], alpha: float = statistics.ALPHA
                    ) -> list[Decision | None]:
    """Holm's step-down over group-sequential tests (Maurer & Bretz 2013). ``p_values[i][k]``: comparison i's
    p-value at look k, for the looks it reached (NaN: not testable there). None for a comparison never tested."""
    tested = [i for i, ps in enumerate(p_values) if any(not math.isnan(p) for p in ps)]
    share = {i: alpha / len(tested) for i in tested}
    rejected: dict[int, Decision] = {}
    while True:
        found = None
        for i in sorted(set(tested) - set(rejected)):
            levels = nominal_levels(plan, share[i])
            hits = [k for k, p in enumerate(p_values[i]) if not math.isnan(p) and p <= levels[k]]
            if hits:
                found = i, Decision(True, hits[-1], levels[hits[-1]], share[i])  # the latest look: the most seeds
                break
        if found is None:
            break
        i, decision = found
        rejected[i] = decision
        still_open = [j for j in tested if j not in rejected]
        for j in still_open:  # Holm's graph: the rejected comparison's share goes equally to the others
            share[j] += share[i] / len(still_open)
    result: list[Decision | None] = [None] * len(p_values)
    for i in tested:
        if i in rejected:
            result[i] = rejected[i]
        else:
            last = max(k for k, p in enumerate(p_values[i]) if not math.isnan(p))
            result[i] = Decision(False, last, nominal_levels(plan, share[i])[last], share[i])
    return result


def futile(differences: np.ndarray, plan: tuple[int, ...], share: float) -> bool:
    """Whether an open comparison should stop without a claim: even if the effect seen so far were the true one,
    a test at its last look's level (with its ``share`` of ALPHA) would need over FUTILITY_MARGIN times the
    planned seeds for 80% power. Checked from the second look on (three seeds say too little about the spread);
    non-binding, so it never adds a false claim."""
    n, last = len(differences), plan[-1]
    if n < plan[min(1, len(plan) - 1)] or n >= last:
        return False
    delta, sd = float(differences.mean()), float(differences.std(ddof=1))
    if sd == 0 or math.isnan(sd):
        return delta == 0
    level = nominal_levels(plan, share)[-1]
    return statistics.t_test_power(delta, sd, FUTILITY_MARGIN * last, level) < statistics.POWER


OPEN, DECIDED, FUTILE, BROKEN, SPENT = "open", "decided", "futile", "broken", "budget spent"


@dataclass(frozen=True)
class Standing:
    """Where one comparison stands after a round: OPEN (it gets the next look's seeds), DECIDED (rejected),
    FUTILE, BROKEN (no more seeds) or SPENT (every planned seed used without a claim)."""

    state: str
    decision: Decision | None


def settle(differences: list[np.ndarray], plan: tuple[int, ...], broken: frozenset[int] = frozenset(),
           alpha: float = statistics.ALPHA) -> list[Standing]:
    """Where each comparison stands, from its paired differences so far and the plan of looks. ``differences[i]``
    holds comparison i's difference on seeds 0, 1, ... in order, NaN where either side has no score (a failed
    run), as long as the seeds its variant has tried. Pure, so a resumed run reaches the same standings from its
    cached cells. ``broken``: comparisons whose variant was found broken (`diagnose.broken_variants`)."""
    p_values = [[statistics.paired_p(scored(d[:n]))[1] for n in plan if len(d) >= n] for d in differences]
    decisions = sequential_holm(p_values, plan, alpha)
    standings = []
    for i, (d, decision) in enumerate(zip(differences, decisions)):
        if i in broken:  # whatever its test says: it stops, and the page names it broken
            state = BROKEN
        elif decision is not None and decision.rejected:
            state = DECIDED
        elif len(d) >= plan[-1]:
            state = SPENT
        elif decision is not None and futile(scored(d[:plan[decision.look]]), plan, decision.share):
            state = FUTILE
        else:
            state = OPEN
        standings.append(Standing(state, decision))
    return standings


def scored(differences: np.ndarray) -> np.ndarray:
    return differences[~np.isnan(differences)]


def seeds_next(differences: list[np.ndarray], standings: list[Standing], plan: tuple[int, ...]) -> list[int]:
    """How many seeds each comparison's variant should have after the next round (its own count if settled)."""
    return [next_look(len(d), plan) if s.state == OPEN else len(d) for d, s in zip(differences, standings)]


def next_look(seeds: int, plan: tuple[int, ...]) -> int:
    """The seeds of the first look after ``seeds`` (``seeds`` itself past the last look)."""
    return next((n for n in plan if n > seeds), seeds)
