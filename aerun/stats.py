"""Spread over seeds and the rule that decides whether a difference is resolved.

The rule, stated once in every report: two settings differ when Welch's t-test
(unequal variances, two-sided) gives p < 0.05 over their seeds. With one seed
on either side nothing is resolved. A deterministic method (PCA) has spread 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

ALPHA = 0.05
RULE = ("A difference is called only where Welch's t-test over the seeds (two-sided, unequal variances) "
        f"gives p < {ALPHA:g}; otherwise the text says the seeds do not resolve it.")


@dataclass(frozen=True)
class Spread:
    """Values of one metric over seeds: mean, sample standard deviation (None for one value), n."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(tuple(float(v) for v in values))

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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1 - math.exp(log_front) * _betacf(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    return betainc(df / 2, 0.5, df / (df + t * t))


def welch_p(a: Spread, b: Spread) -> float | None:
    """Two-sided p-value of Welch's t-test; None when either side has one value."""
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n
    if va + vb == 0:
        return 1.0 if a.mean == b.mean else 0.0
    t = (a.mean - b.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va ** 2 / (a.n - 1) if va else 0) + (vb ** 2 / (b.n - 1) if vb else 0))
    return t_two_sided_p(t, df)


def resolved(a: Spread, b: Spread) -> bool:
    """Whether the seeds resolve the difference between a and b (the report's rule)."""
    p = welch_p(a, b)
    return p is not None and p < ALPHA
