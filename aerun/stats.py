"""Spread over seeds, Welch's test and its interval, and the correction for many tests.

Welch's statistic and its degrees of freedom are written out below (so that a side without spread, a
deterministic PCA, counts as exact rather than as a precision warning); the t distribution they are
read against is scipy.stats'.

The rule, stated once in every report: two settings differ when Welch's t-test (unequal variances,
two-sided; scipy.stats) over their seeds gives a p-value that, adjusted by Holm's step-down method
for the tests of its part, is below 0.05, with at least three seeds on each trained side. Each comparison
also gives the difference of the means with its 95 % confidence interval. With one seed on either side
nothing is tested; a method fitted in closed form (PCA) has sd 0, and only beside it is a difference
without spread exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

ALPHA = 0.05
RULE = ("A difference is called only where Welch's t-test over the seeds (two-sided, unequal variances), its "
        f"p-value adjusted by Holm's step-down method for every test of its part, gives p < {ALPHA:g} with at least "
        "three seeds on each trained side; each "
        "comparison gives the difference with its 95 % confidence interval, and otherwise the text says the "
        "seeds do not resolve it.")


@dataclass(frozen=True)
class Spread:
    """Values of one metric over seeds: mean, sample standard deviation (None for one value), n."""

    values: tuple[float, ...]
    fitted: bool = False  # a method fitted in closed form (PCA): the same value in every seed by construction

    @classmethod
    def of(cls, values: Sequence[float], fitted: bool = False) -> "Spread":
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(tuple(float(v) for v in values), fitted)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def sd(self) -> float | None:
        """Sample standard deviation; a spread at rounding level (a deterministic fit redone) counts as 0."""
        if self.n < 2:
            return None
        m = self.mean
        sd = math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))
        return 0.0 if sd <= 1e-9 * abs(m) else sd

    def as_dict(self) -> dict:
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "values": list(self.values)}

    def text(self, digits: int = 4) -> str:
        """'2.231 ± 0.012' (n > 1 and some spread), else the mean alone."""
        mean = f"{self.mean:.{digits}g}"
        if self.sd is None or self.sd == 0:
            return mean
        return f"{mean} ± {self.sd:.2g}"


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of a against b: the difference of the means (a - b), its 95 % interval and p; where no
    test is possible, `untested` says why (one seed; no spread on either side)."""

    difference: float
    ci_low: float | None = None
    ci_high: float | None = None
    p: float | None = None
    untested: str | None = None


def welch(a: Spread, b: Spread, confidence: float = 0.95) -> Welch:
    difference = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Welch(difference, untested="one seed")
    if not a.sd and not b.sd and (a.fitted or b.fitted):
        return Welch(difference, difference, difference,
                     untested="no spread on either side: every seed gave the same value, the difference is exact")
    if not a.sd and not b.sd:  # trained sides that tied by chance (a share that moves in steps): nothing measured
        return Welch(difference, untested="no spread on either side: every seed happened to give the same value, "
                                          "which says nothing of how much the seeds can vary")
    va, vb = (a.sd or 0.0) ** 2 / a.n, (b.sd or 0.0) ** 2 / b.n  # a deterministic side (PCA) adds no variance
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va ** 2 / (a.n - 1) if va else 0.0) + (vb ** 2 / (b.n - 1) if vb else 0.0))
    # scipy.stats takes about a second to import: only comparisons need it, not every aerun command that
    # imports Spread (eval, plot, train), so it is imported here, once, on first use
    from scipy import stats as scipy_stats

    t = scipy_stats.t(df)  # Welch-Satterthwaite degrees of freedom
    half = float(t.ppf(0.5 + confidence / 2)) * se
    return Welch(difference, difference - half, difference + half, float(2 * t.sf(abs(difference) / se)))


def welch_p(a: Spread, b: Spread) -> float | None:
    """Two-sided p-value of Welch's t-test; None where there is none (one seed, no spread)."""
    return welch(a, b).p


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: untested, left out of the family).

    The i-th smallest of m p-values is multiplied by m - i + 1 (i from 1), each adjusted value is kept at
    least the one before it, and none exceeds 1: the family-wise error stays at the level without
    assuming the tests independent (Holm, 1979).
    """
    tested = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    adjusted: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


MIN_SEEDS = 3  # per side, for a difference to be resolved: two seeds leave Welch about one degree of freedom


def resolved(a: Spread, b: Spread, p_adjusted: float | None = None) -> bool:
    """Whether the seeds resolve the difference between a and b: an exact difference (no spread on either side, one
    of them fitted) always; otherwise, with at least MIN_SEEDS on each trained side, its p (adjusted, where given)
    below ALPHA."""
    test = welch(a, b)
    if test.untested and test.ci_low is not None:
        return test.difference != 0
    trained = [s.n for s in (a, b) if not s.fitted]
    if trained and min(trained) < MIN_SEEDS:
        return False
    p = p_adjusted if p_adjusted is not None else test.p
    return p is not None and p < ALPHA
