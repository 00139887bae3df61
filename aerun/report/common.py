"""What the report's parts write alike: numbers as text (a spread, a percentage, a list), the comparisons every
part makes (SSE, the probe), and the lines a part writes when its runs are not there yet."""

from __future__ import annotations

from typing import Any, Sequence

from aerun import checkpoint as ckpt
from aerun import yardstick
from aerun.claims import Claim
from aerun.document import Document
from aerun.models import family
from aerun.report.measure import Context, spread
from aerun.report.plan import Setting
from aerun.stats import Spread


def fitted(setting: Setting) -> bool:
    """A setting of a family fitted in closed form (PCA), not trained."""
    return family(setting.cfg.model.builder).fitted


def sse(results: Sequence[dict[str, Any]], key: str = "model") -> Spread:
    return spread(results, key, "sse_per_image")


def probe(results: Sequence[dict[str, Any]], key: str = "model") -> Spread:
    return spread(results, key, "probe_accuracy")


def pct(s: Spread) -> str:
    """An accuracy over seeds as '97.1 % ± 0.2'."""
    return f"{100 * s.mean:.1f} %" + (f" ± {100 * s.sd:.1f}" if s.sd else "")


def pixels_row(results: Sequence[dict[str, Any]], header: Sequence[str]) -> list[Any]:
    """The reference line of a table with a "probe accuracy" column: a logistic regression on the raw pixels."""
    cells = {"probe accuracy": pct(spread(results, "pixels_probe_accuracy")), "code": 784, "hidden": 784}
    return ["raw pixels (reference)", *[cells.get(h, "-") for h in header[1:]]]


def probe_claim(ctx: Context, a_name: str, a: Spread, b_name: str, b: Spread, pixels: Spread, question: str,
                context: dict[str, Any] | None = None) -> Claim:
    """A probe comparison (higher is better), with the raw pixels' accuracy after it for reference."""
    return ctx.ledger.compare(a_name, a, b_name, b, "probe accuracy", True, "%", lead=f"{question} ",
                              tail=f" Raw pixels give {pct(pixels)}.", context=context)


def layers(model: Any) -> str:
    """A fully connected preset's widths from its config, '784-512-256-128-30-128-256-784, ReLU': never a
    fixed string that a train_override would leave stale."""
    encoder = list(model.get("encoder") or [])
    decoder = list(model.get("decoder")) if model.get("decoder") is not None else encoder[::-1]
    return f"{'-'.join(str(w) for w in [784, *encoder, model.code, *decoder, 784])}, {model.get('activation', 'relu')}"


def listed(values: Sequence[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def standard_baseline(ctx: Context) -> Setting:
    """The standard AE the sparse and denoising parts compare against: the largest hidden layer."""
    return max(ctx.settings["standard"], key=lambda s: s.cfg.model.code)


def not_trained_yet(doc: Document, ctx: Context, how_long: str) -> bool:
    """The part being written (`ctx.part`, one trained only with beyond=true) not trained: say how to train it,
    and return True."""
    planned = [job for sweep in ctx.part.sweeps for s in ctx.settings.get(sweep.name, []) for job in s.jobs]
    if planned and all((job.run_dir / ckpt.CHECKPOINT).exists() for job in planned):
        return False
    doc.text(f"These models are not trained yet: `aerun report beyond=true` trains them ({how_long}) and later "
             "reports reuse them.")
    return True


def yardstick_text(moves: Any) -> str:
    """What counts as digit-like, and the yardstick's verdicts on its controls (aerun.yardstick)."""
    return yardstick.text(moves.yardstick, moves.controls) + (
        " The SSE to the nearest training digit is given beside each share: a distance in pixels, which a blur keeps "
        "small, not the verdict.")


# Preset choices made by looking at the test split, not a validation split (docs/results.md, "Choices behind the
# presets"): said in the sections that use them. The contractive AE and its twin were searched on a validation split.
VAE_CHOICE = "the VAE's depth (one hidden layer each way) and Adam's rate 1e-3"
CHOSEN_ON_TEST = {
    "vae": VAE_CHOICE,
    "vae2d": VAE_CHOICE,  # the same preset but for its code size: said once
    "wta": "the winner-take-all AE's Adam rate 1e-3",
    "deep_best": "deep_best's one-pixel shifts (augment_shift=1)",
}


def chosen_on_test(names: Sequence[str]) -> str:
    """A sentence naming the preset choices of `names` that were made on the test split ("" if none)."""
    said = list(dict.fromkeys(CHOSEN_ON_TEST[n] for n in names if n in CHOSEN_ON_TEST))
    if not said:
        return ""
    return (f"Chosen by looking at the test split, not at a validation split: {'; '.join(said)} (docs/results.md, "
            "\"Choices behind the presets\"): a number measured with them may be a little better than a choice made "
            "without the test split would give.")
