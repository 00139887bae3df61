"""Sentences that compare numbers, saying only what their spread over seeds supports.

The rule (aerun.stats.RULE): a winner is named, or an error said to rise or fall
with a setting, only when Welch's t-test over the seeds gives p < 0.05. With one
seed a ranking is said to hold "in this run"; with several seeds that do not
resolve a difference, the sentence says so and how large the difference is.
"""

from __future__ import annotations

from typing import Sequence

from aerun.stats import Spread, resolved, welch_p


def error_ratio(lose: str, worse: float, win: str, better: float, noun: str = "error") -> str:
    """'B's error is 2.5 times A's' (at least 1.5 times), else 'B's error is 14 % larger'."""
    if better <= 0:
        return f"{lose}'s {noun} is larger"
    if worse >= 1.5 * better:
        return f"{lose}'s {noun} is {worse / better:.1f} times {win}'s"
    return f"{lose}'s {noun} is {100 * (worse / better - 1):.2g} % larger"


def _p(a: Spread, b: Spread) -> str:
    p = welch_p(a, b)
    return f"p = {p:.2g}" if p is not None and p >= 1e-4 else "p < 0.0001"


def compare(name_a: str, a: Spread, name_b: str, b: Spread, what: str = "SSE/image",
            higher_is_better: bool = False, unit: str = "", noun: str = "error") -> str:
    """One sentence: which of a and b is better, and whether the seeds resolve it.

    `noun` names what a lower-is-better ratio compares ("B's error is 2.5 times A's").
    """
    fmt = (lambda s: f"{100 * s.mean:.1f} %" + (f" ± {100 * s.sd:.1f}" if s.sd else "")) if unit == "%" else \
        (lambda s: s.text())
    (win, w), (lose, lw) = sorted(((name_a, a), (name_b, b)), key=lambda t: -t[1].mean if higher_is_better else t[1].mean)
    n = min(a.n, b.n)
    if higher_is_better:
        margin = f"{100 * (w.mean - lw.mean):.1f} points" if unit == "%" else f"{w.mean - lw.mean:.3g}"
        better = f"the higher {what}"
    else:
        margin = error_ratio(lose, lw.mean, win, w.mean, noun)
        better = f"the lower {what}"
    if n < 2:
        if w.mean == lw.mean:
            return f"In this run {name_a} and {name_b} have the same {what} ({fmt(a)})."
        return f"In this run {win} has {better}: {fmt(w)} against {fmt(lw)} for {lose} ({margin})."
    if resolved(a, b):
        return (f"Over {n} seeds {win} has {better}: {fmt(w)} against {fmt(lw)} for {lose} "
                f"({margin}; Welch {_p(a, b)}).")
    diff = abs(a.mean - b.mean)
    rel = f", {100 * diff / min(a.mean, b.mean):.1f} %" if min(a.mean, b.mean) > 0 and unit != "%" else ""
    size = f"{100 * diff:.1f} points" if unit == "%" else f"{diff:.3g}{rel}"
    return (f"{n} seeds do not resolve {name_a} against {name_b}: {what} {fmt(a)} and {fmt(b)}, "
            f"a difference of {size} ({_p(a, b)}).")


def trend(spreads: Sequence[Spread], labels: Sequence[str] | None = None) -> str:
    """How a metric moves along a setting: 'falls', 'rises' or 'does not move in one direction', qualified."""
    means = [s.mean for s in spreads]
    pairs = list(zip(spreads, spreads[1:]))
    direction = ("falls" if all(b.mean < a.mean for a, b in pairs) else
                 "rises" if all(b.mean > a.mean for a, b in pairs) else None)
    n = min(s.n for s in spreads)
    if n < 2:
        return f"{direction or 'does not move in one direction'} in this run"
    if direction is None:
        return f"does not move in one direction (means {', '.join(f'{m:.4g}' for m in means)})"
    labels = list(labels) if labels else [f"{m:.4g}" for m in means]
    open_steps = [f"{labels[i]} to {labels[i + 1]}" for i, (a, b) in enumerate(pairs) if not resolved(a, b)]
    if not open_steps:
        return f"{direction} at every step (each step resolved by the {n} seeds)"
    return f"{direction} in the means, but the {n} seeds do not resolve the step from {', '.join(open_steps)}"


def is_better(a: Spread, b: Spread, higher_is_better: bool = False) -> bool:
    """a is better than b and the seeds resolve it (never with one seed)."""
    return resolved(a, b) and (a.mean > b.mean if higher_is_better else a.mean < b.mean)
