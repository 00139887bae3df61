"""Assignment part 5: noise in the pixels against noise in the code, and where each moves a digit."""

from __future__ import annotations

from typing import Sequence

from aerun.data import showcase
from aerun.document import Document
from aerun.evaluate import pca_name
from aerun.plot import CODE_NOISE, PIXEL_NOISE
from aerun.report.common import layers, listed, pct, probe, probe_claim, sse, yardstick_text
from aerun.report.measure import Context, add_figures, figures, manifold_moves, split_of, spread
from aerun.report.parts import part
from aerun.report.plan import Sweep
from aerun.stats import Spread


def manifold_notes(levels: Sequence[float], moves: Sequence[Sequence[tuple[float, float]]], what: str) -> list[str]:
    """Per level, how many of the moved images are digit-like (`moves[seed][level]`: share, mean distance)."""
    notes = []
    for i, level in enumerate(levels):
        share = Spread.of([m[i][0] for m in moves])
        distance = Spread.of([m[i][1] for m in moves])
        verdict = ("every one is digit-like" if min(m[i][0] for m in moves) == 1 else
                   "none is digit-like" if max(m[i][0] for m in moves) == 0 else
                   f"{100 * share.mean:.0f} % are digit-like" + (f" (± {100 * share.sd:.0f} over {share.n} seeds)"
                                                                   if share.sd else ""))
        notes.append(f"{what} {level:g}: {verdict}; their mean SSE to the nearest training digit is "
                     f"{distance.text(3)}.")
    return notes


def bound_text(bound: str | None) -> str:
    """report.json's ">= 0.8" as the table's "at least 80 %"; no bound: reported."""
    if bound is None:
        return "reported"
    sign, value = bound.split()
    return f"{'at least' if sign == '>=' else 'at most'} {100 * float(value):g} %"


@part("manifold", "5. Manifold learning", [Sweep("manifold", "manifold")], order=5)
def section(doc: Document, ctx: Context) -> None:
    setting = ctx.settings["manifold"][0]
    pixel_levels, code_levels = list(PIXEL_NOISE), list(CODE_NOISE)
    doc.text(f"**Questions:** moving a test digit in random directions of the 784-d pixel space (noise "
             f"{listed(pixel_levels)}) — is the result still a digit? With the {layers(setting.cfg.model)} AE, adding "
             f"noise to the {setting.cfg.model.code}-d code ({listed(code_levels)}) and decoding — what comes out?")
    results = ctx.sweep("manifold")[0]
    figures(ctx, "manifold")
    moves = manifold_moves(ctx, setting, pixel_levels, code_levels)
    n = len(showcase(setting.cfg.dataset, split_of(ctx, setting.cfg.dataset)))
    doc.text(f"The {setting.cfg.model.code}-d AE reconstructs the test set with SSE/image {sse(results).text()} "
             f"({pca_name(results[0]['pca']['k'])}: {sse(results, 'pca').text()}). Each of the {n} showcase digits "
             "(one of each class) is moved 20 times at each level: in pixel space (clipped to [0, 1], as drawn) and "
             "in the code space of each seed's AE, decoded. " + yardstick_text(moves))
    doc.table(["control set (never calibrated on)", "images", "digit-like", "bound"],
              [[c["set"], c["n"], "-" if c["share"] is None else f"{100 * c['share']:.1f} %",
                bound_text(c["bound"])] for c in moves.controls])
    code = [(Spread.of([seed[i][0] for seed in moves.code]), Spread.of([seed[i][1] for seed in moves.code]))
            for i in range(len(code_levels))]
    doc.table(["image", "level", "digit-like", "SSE to the nearest training digit"], [
        *[[name, "-", f"{100 * share:.0f} %", distance] for name, (share, distance) in moves.references.items()],
        ["the AE's reconstructions of 1,000 test digits (seed 0)", "-", f"{100 * moves.reconstructions[0]:.0f} %",
         moves.reconstructions[1]],
        *[["pixel-space move", level, f"{100 * share:.0f} %", distance]
          for level, (share, distance) in zip(pixel_levels, moves.pixel)],
        *[["code-space move, decoded", level, pct(share), distance.text(3)]
          for level, (share, distance) in zip(code_levels, code)],
    ])
    doc.items([*manifold_notes(pixel_levels, [moves.pixel], "Pixel noise"),
               *manifold_notes(code_levels, moves.code, "Code noise"),
               probe_claim(ctx, f"the AE's {setting.cfg.model.code}-d code", probe(results),
                           f"{pca_name(results[0]['pca']['k'])}'s code", probe(results, "pca"),
                           spread(results, "pixels_probe_accuracy"),
                           f"Which {setting.cfg.model.code} numbers carry the digit's identity?")])
    add_figures(doc, ctx, setting.first.run_dir, [
        ("manifold_pixel.png", "A digit moved in random directions of pixel space"),
        ("manifold_code.png", "Noise added to the 8-d code, then decoded"),
        ("manifold_interpolation.png", "From one digit to another: pixel space and code space")])

