"""Beyond the assignment: the other families, each beside its twin (the same network without the family's own part)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from aerun.data import IMAGE_SHAPE, showcase
from aerun.document import Document
from aerun.models import CODE_SPACE, Autoencoder
from aerun.plot import CODE_NOISE, code_noise_figure, load
from aerun.report.common import chosen_on_test, fitted, not_trained_yet, pct, probe, probe_claim, sse, yardstick_text
from aerun.report.measure import (Context, add_figures, code_measures, figures, manifold_moves, seconds_per_epoch,
                                  split_of, spread)
from aerun.report.parts import part
from aerun.report.plan import TWIN, Setting, Sweep
from aerun.stats import Spread


JACOBIAN_MAX_CODE = 256  # ||dh/dx||_F^2 takes a backward pass per code unit: measured for codes up to this size


@dataclass
class Family:
    """One row of the comparison: its name in the tables, its setting, its seed-0 model (what the family
    declares), the twin it is compared with (the same network without the family's own part), and the
    assignment's model of its code size, for reference."""

    name: str
    setting: Setting
    model: Autoencoder
    against: str | None = None
    reference: str | None = None


def family_rows(ctx: Context) -> list[Family]:
    """Each family of the families sweep beside its twin (`experiment=<preset>_twin`, where there is one) and
    beside the assignment's model of the same code size (part 1's deep AE, part 2's AE of that width)."""
    def model(setting: Setting) -> Autoencoder:
        return load(setting.first.run_dir, None, ctx.device).model

    assignment = [("deep AE (part 1)", s) for s in ctx.settings["pca_vs_ae"] if not fitted(s)]
    assignment += [(f"shallow AE {s.cfg.model.code} (part 2)", s) for s in ctx.settings["standard"]]
    sizes = {name: model(s).code_dim for name, s in assignment}
    rows: list[Family] = []
    for setting in ctx.settings["families"]:
        preset, own = setting.cfg.model.name, model(setting)
        reference = next((name for name, size in sizes.items() if size == own.code_dim), None)
        if reference and reference not in [r.name for r in rows]:
            rows.append(Family(reference, dict(assignment)[reference], model(dict(assignment)[reference])))
        twin = ctx.settings.get(preset + TWIN)
        if twin:
            rows.append(Family(f"{preset} twin", twin[0], model(twin[0])))
        rows.append(Family(preset, setting, own, f"{preset} twin" if twin else None, reference))
    return rows


def measures_note(f: Family, results: Sequence[dict[str, Any]]) -> str | None:
    """A family's own measures (eval.json's model.<measures_key>) over the seeds, numbers as mean ± sd."""
    key = f.model.measures_key
    if not all(key in r["model"] for r in results):
        return None
    values = [r["model"][key] for r in results]
    numbers = [k for k, v in values[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    words = [f"{k} {v}" for k, v in values[0].items() if isinstance(v, str)]
    return (f"{f.name}'s own measures on the test split ({', '.join(words) or key}): "
            + ", ".join(f"{k.replace('_', ' ')} {Spread.of([v[k] for v in values]).text(4)}" for k in numbers) + ".")


@part("families", "Beyond the assignment: other families, each beside its twin", [Sweep("families", "families")],
      needs=("pca_vs_ae", "standard"), twins=True, beyond=True, order=8)
def section(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** each family below adds its own part to a plain autoencoder: the variational AE "
             "(`model=vae`, `vae2d`) a Gaussian code pulled towards N(0, I) by a KL term, the contractive AE "
             "(`model=contractive`) a penalty on its code's Jacobian, the winner-take-all AE (`model=wta`) "
             "lifetime sparsity, the VQ-VAE (`model=vqvae`) a codebook its code snaps to. What does that part "
             "cost in reconstruction, what does it change in what a linear probe reads, and where does noise "
             "in the code decode to?")
    if not_trained_yet(doc, ctx, "about 15 minutes on a 2-core CPU"):
        return
    for sweep in ctx.part.sweeps:
        ctx.sweep(sweep.name)  # the sweeps' eval.json and eval.md
    rows = family_rows(ctx)
    results = {f.name: ctx.results(f.setting) for f in rows}
    measured = {f.name: code_measures(ctx, f.setting.runs, jacobian=f.model.code_dim <= JACOBIAN_MAX_CODE)
                for f in rows}
    scale = {name: Spread.of(m[0]) for name, m in measured.items()}
    jacobian = {name: Spread.of(m[1]) if m[1] else None for name, m in measured.items()}
    pairs = families_compared(doc, ctx, rows, results, scale, jacobian)
    moves = families_code_noise(doc, ctx, rows, pairs, scale)
    families_figures(doc, ctx, rows, moves)


def families_compared(doc: Document, ctx: Context, rows: list[Any], results: dict[str, Any],
                      scale: dict[str, Spread], jacobian: dict[str, Spread | None]) -> list[tuple[str, str]]:
    """The families' table, and each family against its twin (and its reference model): the pairs compared."""
    doc.text("Each family is compared with its twin, `experiment=<preset>_twin`: the same layers, output and "
             "optimiser without the family's own part (conf/experiment/ says what each twin lacks), so that a "
             "difference between the two is that part; the contractive AE and its twin each train at the Adam rate "
             "the same search on a validation split found for it, so that neither is compared at a rate tuned for "
             "the other. For reference only, each family is also set beside the assignment's model of the same code "
             "size where there is one. " + chosen_on_test([f.setting.cfg.model.name for f in rows]))
    doc.table(["model", "code", "epochs", "SSE/image", "probe accuracy", "code unit sd", "‖∂h/∂x‖²_F", "s/epoch"], [
        [f.name, results[f.name][0]["model"]["code_dim"], results[f.name][0]["epoch"], sse(results[f.name]).text(),
         pct(probe(results[f.name])), scale[f.name].text(3),
         jacobian[f.name].text(3) if jacobian[f.name] else "-", seconds_per_epoch(f.setting)] for f in rows])
    doc.text("Code unit sd: the standard deviation of a code unit over the test digits, averaged over the units "
             "(the scale the noise levels below are added at). ‖∂h/∂x‖²_F: the squared Frobenius norm of the "
             "code's Jacobian with respect to the input pixels, mean over 1,000 test digits (the contractive "
             f"penalty, unweighted; measured for codes of at most {JACOBIAN_MAX_CODE} units). A VAE's code is its "
             "posterior mean; the probe reads each family's features (a winner-take-all AE's every ReLU "
             "activation, as its paper's classifier does).")
    pairs = [(f.name, f.against) for f in rows if f.against]
    pixels = spread(results[rows[0].name], "pixels_probe_accuracy")
    notes: list[Any] = []
    for new, old in pairs:
        notes.append(ctx.ledger.compare(new, sse(results[new]), old, sse(results[old])))
        if jacobian[new] and jacobian[old]:
            notes.append(ctx.ledger.compare(new, jacobian[new], old, jacobian[old], "‖∂h/∂x‖²_F",
                                            noun="Jacobian norm"))
        notes.append(probe_claim(ctx, new, probe(results[new]), old, probe(results[old]), pixels, "Probe:"))
    notes += [note for f in rows if (note := measures_note(f, results[f.name]))]
    doc.items(notes)
    referenced = [f for f in rows if f.reference]
    if referenced:  # side by side, not tested: a reference differs from the family in more than the family's part
        doc.table(["family", "SSE/image", "the assignment's model of its code size", "its SSE/image"],
                  [[f.name, sse(results[f.name]).text(), f.reference, sse(results[f.reference]).text()]
                   for f in referenced])
        doc.text("For reference only: the assignment's model of the same code size differs from each family in its "
                 "output, loss and learning rate too, so no test is made against it; the twin above is the "
                 "comparison.")

    return pairs


def families_code_noise(doc: Document, ctx: Context, rows: list[Any], pairs: list[tuple[str, str]],
                        scale: dict[str, Spread]) -> dict[str, Any]:
    """Part 5's code noise for every family that decodes codes, each against its twin: the moves measured."""
    # part 5's levels, then noise as large as the code's own scale (the last level), in one pass per model
    decodes = [f for f in rows if CODE_SPACE in f.model.figures]
    moves = {f.name: manifold_moves(ctx, f.setting, [], [*CODE_NOISE, scale[f.name].mean]) for f in decodes}

    def share(name: str, i: int) -> Spread:
        return Spread.of([seed[i][0] for seed in moves[name].code])

    def distance(name: str, i: int) -> Spread:
        return Spread.of([seed[i][1] for seed in moves[name].code])

    if decodes:
        doc.text("Noise in the code, as in part 5: each showcase digit's code plus Gaussian noise at each level, 20 "
                 "draws each, decoded; the share of decoded images that are digit-like, and (below it) their mean SSE "
                 "to the nearest training digit. " + yardstick_text(moves[decodes[0].name])
                 + " The last row adds noise as large as each code's own unit sd.")
        names = [f.name for f in decodes]
        levels = [*[f"{level:g}" for level in CODE_NOISE], "the code's own unit sd"]
        doc.table(["code noise", *names], [[level, *[f"{pct(share(n, i))} ({distance(n, i).text(3)})" for n in names]]
                                           for i, level in enumerate(levels)])
        notes = [f"{f.name}'s reconstructions of 1,000 real test digits are digit-like in "
                 f"{100 * moves[f.name].reconstructions[0]:.0f} % of cases (seed 0): the yardstick's verdict on the "
                 "decoder itself." for f in decodes]
        for new, old in pairs:
            if new in moves and old in moves:
                for i, level in enumerate(levels):
                    notes.append(ctx.ledger.compare(new, share(new, i), old, share(old, i), "share of digit-like images",
                                                    True, "%", lead=f"Code noise {level}: ",
                                                    context={"code_noise": level}))
        bounded = [f.name for f in decodes if f.model.bounded_output]
        if bounded:
            notes.append(f"{', '.join(bounded)} end in a sigmoid: any two images in [0, 1] are at most "
                         f"{math.prod(IMAGE_SHAPE)} apart, which bounds their distances at every noise level; an "
                         "output without a bound has none.")
        doc.items(notes)

    return moves


def families_figures(doc: Document, ctx: Context, rows: list[Any], moves: dict[str, Any]) -> None:
    """Each family's code-noise figure beside its twin, the showcase reconstructions, and its own figures."""
    path = figures(ctx, "families")
    dataset = rows[0].setting.cfg.dataset
    by_name = {f.name: f for f in rows}
    for f in rows:
        if f.against and f.name in moves:
            group = [by_name[n] for n in (f.reference, f.against) if n and n in moves] + [f]
            code_noise_figure([load(g.setting.first.run_dir, g.name, ctx.device) for g in group],
                              split_of(ctx, dataset), showcase(dataset, split_of(ctx, dataset)), CODE_NOISE,
                              ctx.cfg.noise_seed, path / "figures" / f"code_noise_{f.name}.png")
            add_figures(doc, ctx, path, [(f"code_noise_{f.name}.png", f"Part 5's code noise: one digit's code plus "
                                          f"noise, decoded — {f.name} beside {' and '.join(g.name for g in group[:-1])}"
                                          " (the same draws for every model)")])
    add_figures(doc, ctx, path, [("reconstructions.png", "Showcase digits: each family")])
    for f in rows:
        if f.against or f.setting in ctx.settings["families"]:
            add_figures(doc, ctx, f.setting.first.run_dir, [
                ("samples.png", f"{f.name}: codes drawn from its prior, decoded"),
                ("latent_map.png", f"{f.name}: test codes coloured by digit, and images decoded over the same area"),
                ("code_usage.png", f"{f.name}: how often each codebook entry is chosen")])

