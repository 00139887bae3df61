"""Sentences that compare numbers, saying only what their spread over seeds supports.

Every comparison of a report is a `Claim` in its `Ledger`, filed under the part that makes it. The
comparisons a part makes are fixed by its settings (each λ against the same control, every pair of
decoders), never by its numbers (no "the best against ..."). When a part is written, Holm's
adjustment is applied to the p-values of all its claims together (aerun.stats.holm), and only then is
any sentence rendered: a Claim is a deferred sentence, rendered by the document at the end. The rule
(aerun.stats.RULE): a winner is named only where the adjusted p < 0.05; with one seed a ranking holds
"in this run"; each comparison gives the difference and its 95 % confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from aerun.stats import ALPHA, MIN_SEEDS, Spread, Welch, holm, welch


def error_ratio(lose: str, worse: float, win: str, better: float, noun: str = "error") -> str:
    """'B's error is 2.5 times A's' (at least 1.5 times), else 'B's error is 14 % larger'."""
    if better <= 0:
        return f"{lose}'s {noun} is larger"
    if worse >= 1.5 * better:
        return f"{lose}'s {noun} is {worse / better:.1f} times {win}'s"
    return f"{lose}'s {noun} is {100 * (worse / better - 1):.2g} % larger"


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "p undefined"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


@dataclass
class Claim:
    """One comparison of two settings on one metric, filed under a part; a sentence once its part is adjusted."""

    part: str
    metric: str
    a: str
    sa: Spread
    b: str
    sb: Spread
    higher_is_better: bool = False
    unit: str = ""
    noun: str = "error"
    lead: str = ""
    tail: str = ""
    context: dict[str, Any] = field(default_factory=dict)  # the settings both sides share that tell it from its kin
    p_adjusted: float | None = None
    test: Welch = field(init=False)

    def __post_init__(self) -> None:
        self.test = welch(self.sa, self.sb)

    @property
    def n(self) -> int:
        return min(self.sa.n, self.sb.n)

    @property
    def resolved(self) -> bool:
        """Whether the seeds resolve it: an exact difference (no spread, beside a fitted side), or its adjusted p
        below ALPHA with at least MIN_SEEDS seeds on each trained side."""
        if self.test.untested and self.test.ci_low is not None:
            return self.test.difference != 0
        if self.trained_seeds < MIN_SEEDS:
            return False
        return self.p_adjusted is not None and self.p_adjusted < ALPHA

    def better(self) -> tuple[tuple[str, Spread], tuple[str, Spread]]:
        """(the better side, the other), by mean."""
        sides = sorted(((self.a, self.sa), (self.b, self.sb)),
                       key=lambda t: -t[1].mean if self.higher_is_better else t[1].mean)
        return sides[0], sides[1]

    def fmt(self, s: Spread) -> str:
        if self.unit == "%":
            return f"{100 * s.mean:.1f} %" + (f" ± {100 * s.sd:.1f}" if s.sd else "")
        return s.text()

    def number(self, value: float) -> str:
        return f"{100 * value:.1f} points" if self.unit == "%" else f"{value:.3g}"

    def interval(self) -> str:
        """'a − b = −1.9, 95 % CI [−2.3, −1.5]'."""
        t = self.test
        scale = 100 if self.unit == "%" else 1
        ci = f", 95 % CI [{scale * t.ci_low:.3g}, {scale * t.ci_high:.3g}]" if t.ci_low is not None else ""
        return f"{self.a} − {self.b} = {scale * t.difference:.3g}{' points' if self.unit == '%' else ''}{ci}"

    def tested(self) -> str:
        return f"Welch {p_text(self.test.p)}, Holm-adjusted {p_text(self.p_adjusted)}"

    def __str__(self) -> str:
        return self.lead + self.sentence() + self.tail

    def sentence(self) -> str:
        (win, w), (lose, lw) = self.better()
        better = f"the {'higher' if self.higher_is_better else 'lower'} {self.metric}"
        margin = (self.number(w.mean - lw.mean) if self.higher_is_better
                  else error_ratio(lose, lw.mean, win, w.mean, self.noun))
        if self.n < 2:
            if w.mean == lw.mean:
                return f"In this run {self.a} and {self.b} have the same {self.metric} ({self.fmt(self.sa)})."
            return f"In this run {win} has {better}: {self.fmt(w)} against {self.fmt(lw)} for {lose} ({margin})."
        if self.test.untested:
            if self.test.difference == 0:
                return f"{self.a} and {self.b} give the same {self.metric} in every seed ({self.fmt(self.sa)})."
            return (f"{win} has {better} in every seed: {self.fmt(w)} against {self.fmt(lw)} for {lose} ({margin}; "
                    f"{self.test.untested}).")
        if self.resolved:
            return (f"Over {self.n} seeds {win} has {better}: {self.fmt(w)} against {self.fmt(lw)} for {lose} "
                    f"({margin}; {self.interval()}; {self.tested()}).")
        few = f"; a difference needs {MIN_SEEDS} seeds a side" if self.trained_seeds < MIN_SEEDS else ""
        return (f"{self.n} seeds do not resolve {self.a} against {self.b}: {self.metric} {self.fmt(self.sa)} and "
                f"{self.fmt(self.sb)} ({self.interval()}; {self.tested()}{few}).")

    @property
    def trained_seeds(self) -> int:
        """The seeds of the side with fewest, fitted sides aside (a fitted side is the same in every seed)."""
        return min([s.n for s in (self.sa, self.sb) if not s.fitted] or [self.n])

    def as_dict(self) -> dict[str, Any]:
        """The evidence, as report.json carries it."""
        t = self.test
        return {"part": self.part, "metric": self.metric, "a": self.a, "b": self.b, "n": self.n,
                "mean_a": self.sa.mean, "mean_b": self.sb.mean, "sd_a": self.sa.sd, "sd_b": self.sb.sd,
                "difference": t.difference, "ci_low": t.ci_low, "ci_high": t.ci_high, "p": t.p,
                "p_adjusted": self.p_adjusted, "resolved": self.resolved if self.n >= 2 else None,
                "untested": t.untested, "higher_is_better": self.higher_is_better, "context": dict(self.context)}


class Later:
    """Text rendered when the document is, after every part's adjustment (a conclusion that depends on it)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render

    def __str__(self) -> str:
        return self.render()


@dataclass
class Trend:
    """How a metric moves along a setting: each step between neighbours is a claim of the ledger."""

    steps: list[Claim]
    labels: list[str]
    lead: str = ""
    tail: str = ""

    def __str__(self) -> str:
        return self.lead + self.words() + self.tail

    def words(self) -> str:
        means = [self.steps[0].sa.mean] + [s.sb.mean for s in self.steps]
        direction = ("falls" if all(b < a for a, b in zip(means, means[1:])) else
                     "rises" if all(b > a for a, b in zip(means, means[1:])) else None)
        n = min(s.n for s in self.steps)
        if n < 2:
            return f"{direction or 'does not move in one direction'} in this run"
        names = [f"{self.labels[i]} to {self.labels[i + 1]}" for i in range(len(self.steps))]
        done = [name for name, step in zip(names, self.steps) if step.resolved]
        open_ = [name for name, step in zip(names, self.steps) if not step.resolved]
        if direction is None:
            said = (f"; the {n} seeds resolve the step{'s' if len(done) > 1 else ''} from {', '.join(done)}"
                    if done else f"; the {n} seeds resolve none of its steps")
            return f"does not move in one direction (means {', '.join(f'{m:.4g}' for m in means)}){said}"
        if not open_:
            return f"{direction} at every step (each step resolved by the {n} seeds)"
        plural = "s" if len(open_) > 1 else ""
        if done:
            return (f"{direction} in the means; the {n} seeds resolve the step{'s' if len(done) > 1 else ''} from "
                    f"{', '.join(done)}, not the step{plural} from {', '.join(open_)}")
        return f"{direction} in the means; the {n} seeds do not resolve the step{plural} from {', '.join(open_)}"


class Ledger:
    """Every comparison of a report, filed by part; each part's p-values adjusted together (Holm) when it ends."""

    def __init__(self) -> None:
        self.claims: list[Claim] = []
        self.part = "report"

    def start(self, part: str) -> None:
        self.part = part

    def compare(self, name_a: str, a: Spread, name_b: str, b: Spread, what: str = "SSE/image",
                higher_is_better: bool = False, unit: str = "", noun: str = "error", lead: str = "",
                tail: str = "", context: dict[str, Any] | None = None) -> Claim:
        """File a comparison; `context`: what both sides share that the names do not say (a noise and its level),
        so that report.json tells apart claims of the same two names."""
        claim = Claim(self.part, what, name_a, a, name_b, b, higher_is_better, unit, noun, lead, tail,
                      dict(context or {}))
        self.claims.append(claim)
        return claim

    def trend(self, spreads: Sequence[Spread], labels: Sequence[str], what: str = "SSE/image",
              higher_is_better: bool = False, lead: str = "", tail: str = "") -> Trend:
        steps = [self.compare(labels[i], spreads[i], labels[i + 1], spreads[i + 1], what, higher_is_better)
                 for i in range(len(spreads) - 1)]
        return Trend(steps, list(labels), lead, tail)

    def of(self, part: str) -> list[Claim]:
        return [c for c in self.claims if c.part == part]

    def close(self) -> None:
        """Adjust the p-values of the current part's claims together."""
        claims = self.of(self.part)
        for claim, adjusted in zip(claims, holm([c.test.p for c in claims])):
            claim.p_adjusted = adjusted

    def tested(self, part: str) -> int:
        return sum(c.test.p is not None for c in self.of(part))


def compare(name_a: str, a: Spread, name_b: str, b: Spread, what: str = "SSE/image",
            higher_is_better: bool = False, unit: str = "", noun: str = "error") -> str:
    """One comparison alone, as a sentence (its own family of one test: Holm changes nothing)."""
    claim = Claim("alone", what, name_a, a, name_b, b, higher_is_better, unit, noun)
    claim.p_adjusted = claim.test.p
    return str(claim)


def trend(spreads: Sequence[Spread], labels: Sequence[str] | None = None) -> str:
    """How a metric moves along a setting, its steps tested as one family."""
    ledger = Ledger()
    t = ledger.trend(spreads, list(labels) if labels else [f"{s.mean:.4g}" for s in spreads])
    ledger.close()
    return t.words()
