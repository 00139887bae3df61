"""One writer per part of the assignment: its question, its tables, observations from its numbers, figures.

Every number is a Spread over the report's seeds; every comparison goes through
`claims`, which names a winner only where the seeds resolve it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from aerun import checkpoint as ckpt
from aerun.data import IMAGE_SHAPE, showcase
from aerun.document import Document
from aerun.errors import UserError
from aerun.evaluate import pca_name
from aerun.claims import Claim, Later
from aerun.report.measure import (Context, add_figures, code_measures, epoch_spread, figures,
                                  history, manifold_moves, noisy_input_errors, ood_errors, ood_pca_error,
                                  side_channel, seconds_per_epoch, split_of, spread, Yardstick)
from aerun.models import CODE_SPACE, Autoencoder, family
from aerun.plot import CODE_NOISE, PIXEL_NOISE, code_noise_figure, load, ood_figure
from aerun.report.plan import BEYOND, FAMILIES, TWIN, Part, Setting
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


# --------------------------------------------------------------------------- 1


def zero_code_note(name: str, zero: Spread, code_dim: int) -> str:
    """How many code numbers carry a digit, when a ReLU code switches some off (mean over seeds)."""
    if zero.mean == 0:
        return f"None of {name}'s code activations is exactly zero on the test split: all {code_dim} carry each digit."
    return (f"{zero.mean:.0%} of {name}'s code activations are exactly zero (its ReLU code layer switches units "
            f"off): on average {code_dim * (1 - zero.mean):.1f} of its {code_dim} code numbers are non-zero for a "
            "test digit.")


def part_pca_vs_ae(doc: Document, ctx: Context) -> None:
    settings = ctx.settings["pca_vs_ae"]
    deep, pca = next(s for s in settings if not fitted(s)).cfg, next(s for s in settings if fitted(s)).cfg
    doc.text(f"**Question:** PCA keeps the top {pca.model.k} eigenvectors of the training set; the deep AE "
             f"({layers(deep.model)}) has a {deep.model.code}-d code. Which reconstructs the test set better, "
             "per showcase image and overall? And which code tells the digits apart?")
    ctx.sweep("pca_vs_ae")
    path = figures(ctx, "pca_vs_ae")
    ae_setting = next(s for s in settings if not fitted(s))
    ae = ctx.results(ae_setting)
    k = ae[0]["pca"]["k"]
    name = pca_name(k)
    header = ["model", "code", "SSE/image", "MSE", "PSNR (dB)", "probe accuracy", "s/epoch"]
    doc.table(header, [
        [name, k, sse(ae, "pca").text(), spread(ae, "pca", "mse").text(), spread(ae, "pca", "psnr_db").text(),
         pct(probe(ae, "pca")), "fitted"],
        [f"deep AE ({epochs(ae[0]['epoch'])})", ae[0]["model"]["code_dim"], sse(ae).text(),
         spread(ae, "model", "mse").text(), spread(ae, "model", "psnr_db").text(), pct(probe(ae)),
         seconds_per_epoch(ae_setting)],
        pixels_row(ae, header),
    ])
    first = ae[0]
    wins = sum(a < p for a, p in zip(first["model"]["showcase_sse"], first["pca"]["showcase_sse"]))
    n = len(first["pca"]["showcase_sse"])
    zero_note = zero_code_note("the deep AE", spread(ae, "model", "code", "fraction_zero"), first["model"]["code_dim"])
    doc.items([
        ctx.ledger.compare(name, sse(ae, "pca"), "the deep AE", sse(ae)),
        f"On the {n} showcase digits the deep AE (seed {ae_setting.first.seed}) has the lower error on {wins} "
        f"and {name} on {n - wins}.",
        zero_note,
        probe_claim(ctx, "the deep AE's code", probe(ae), f"{name}'s code", probe(ae, "pca"),
                    spread(ae, "pixels_probe_accuracy"), f"Which {k} numbers carry the digit's identity?"),
    ])
    doc.table(["test index", "label", f"deep AE SSE (seed {ae_setting.first.seed})", f"{name} SSE"],
              [[i, lab, a, p] for i, lab, a, p in zip(first["showcase"]["indices"], first["showcase"]["labels"],
                                                      first["model"]["showcase_sse"], first["pca"]["showcase_sse"])])
    add_figures(doc, ctx, path, [("reconstructions.png", f"Showcase digits: {name} and the deep AE"),
                                 ("loss_epoch.png", "Deep AE: loss per epoch")])


# --------------------------------------------------------------------------- 2


def part_standard(doc: Document, ctx: Context) -> None:
    settings = ctx.settings["standard"]
    doc.text(f"**Questions:** with one hidden layer of {listed([s.cfg.model.code for s in settings])} units, how do "
             "the loss curves and reconstructions compare? What comes out for images that are not digits? What do "
             "the encoder filters look like?")
    results = ctx.sweep("standard")
    kinds = list(ctx.cfg.ood)
    path = figures(ctx, "standard", ood=kinds[0] if kinds else "none")
    ood: dict[str, list[Spread]] = {}
    ood_pca: dict[str, list[Spread]] = {}
    for kind in kinds:
        try:
            ood[kind] = [Spread.of(ood_errors(ctx, s.runs, kind)) for s in settings]
            ood_pca[kind] = [Spread.of([ood_pca_error(ctx, s.cfg.dataset, r[0]["pca"]["k"], kind)] * len(s.runs),
                                       fitted=True) for s, r in zip(settings, results)]  # the same in every seed
        except UserError as exc:
            doc.text(f"({kind} inputs are unavailable here: {exc})")
    if len(kinds) > 1 and ood:
        models = [load(s.first.run_dir, s.label, ctx.device) for s in settings]
        for kind in kinds[1:]:
            if kind in ood:
                ood_figure(models, kind, ctx.data_dir, ctx.device, ctx.cfg.noise_seed,
                           path / "figures" / f"ood_{kind}.png")
    header = ["hidden", "SSE/image", "PCA same k", "probe accuracy", "PCA probe", "s/epoch", "final train MSE"]
    header += [f"{who} on {kind}" for kind in ood for who in ("SSE", "PCA same k")]
    rows = []
    for i, (s, r) in enumerate(zip(settings, results)):
        train_mse = Spread.of([history(run)["train_loss"][-1] for run in s.runs])
        rows.append([r[0]["model"]["code_dim"], sse(r).text(), sse(r, "pca").text(), pct(probe(r)),
                     pct(probe(r, "pca")), seconds_per_epoch(s), train_mse.text(),
                     *[v for k in ood for v in (ood[k][i].text(), ood_pca[k][i].text())]])
    rows.append(pixels_row(results[0], header))
    doc.table(header, rows)
    errors = [sse(r) for r in results]
    sizes = [str(r[0]["model"]["code_dim"]) for r in results]
    notes: list[Any] = [ctx.ledger.trend(errors, [f"{s} units" for s in sizes], lead="As the hidden size grows, the "
                                         "test error ", tail=": " + ", ".join(f"{s} units {e.text()}"
                                                                               for s, e in zip(sizes, errors)) + ".")]
    for r in results:
        notes.append(ctx.ledger.compare(pca_name(r[0]["pca"]["k"]), sse(r, "pca"), "the AE", sse(r),
                                        lead=f"{r[0]['model']['code_dim']} units: "))
    for kind, errs in ood.items():
        ratios = [e.mean / d.mean for e, d in zip(errs, errors)]
        pca_ratios = [p.mean / sse(r, "pca").mean for p, r in zip(ood_pca[kind], results)]
        notes.append(f"On {kind} inputs the AEs' mean error is {min(ratios):.1f}–{max(ratios):.1f} times their error "
                     f"on digits, and PCA's of the same code size {min(pca_ratios):.1f}–{max(pca_ratios):.1f} times "
                     "(1,000 inputs); whether an AE keeps less of such inputs than PCA of its size does, per size:")
        for size, e, p in zip(sizes, errs, ood_pca[kind]):
            notes.append(ctx.ledger.compare(f"the {size}-unit AE", e, pca_name(int(size)), p,
                                            f"SSE/image on {kind} inputs", lead=f"{kind}, {size} units: "))
    probes = [probe(r) for r in results]
    notes.append(ctx.ledger.trend(probes, [f"{s} units" for s in sizes], "probe accuracy", True,
                                  lead="As the hidden size grows, the probe accuracy ",
                                  tail=": " + ", ".join(f"{s} units {pct(p)}" for s, p in zip(sizes, probes))
                                  + f"; raw pixels give {pct(spread(results[0], 'pixels_probe_accuracy'))}."))
    doc.items(notes)
    add_figures(doc, ctx, path, [("loss_iter.png", "Training loss per iteration"), ("loss_epoch.png", "Loss per epoch"),
                                 ("reconstructions.png", "Showcase digits, each hidden size"),
                                 *[(f"ood_{k}.png", f"Inputs that are not digits ({k})") for k in ood],
                                 ("filters.png", "Encoder filters of each hidden size")])


def standard_baseline(ctx: Context) -> Setting:
    """The standard AE the sparse and denoising parts compare against: the largest hidden layer."""
    return max(ctx.settings["standard"], key=lambda s: s.cfg.model.code)


# --------------------------------------------------------------------------- 3


def part_sparse(doc: Document, ctx: Context) -> None:
    base = standard_baseline(ctx)
    settings = ctx.settings["sparse"]
    doc.text(f"**Questions:** the overcomplete {layers(settings[0].cfg.model)} AE with an L1 penalty on its hidden "
             f"activations, at weights {listed([float(s.cfg.sparsity) for s in settings])}: does too much sparsity "
             "hurt reconstruction? How do its activations and filters compare with the standard AE's?")
    results = ctx.sweep("sparse")
    control_setting = ctx.settings["sparse_control"][0]
    control = ctx.sweep("sparse_control")[0]
    base_results = ctx.results(base)
    path = figures(ctx, "sparse", baseline=base.first.run_dir)

    def mean_activation(r: Sequence[dict[str, Any]]) -> Spread:
        return Spread.of([x["model"]["code"]["mean_l1"] / x["model"]["code_dim"] for x in r])

    def zero(r: Sequence[dict[str, Any]]) -> Spread:
        return spread(r, "model", "code", "fraction_zero")

    def row(name: str, setting: Setting, r: Sequence[dict[str, Any]]) -> list[Any]:
        return [name, r[0]["model"]["code_dim"], epochs(r[0]["epoch"]), sse(r).text(), f"{zero(r).mean:.1%}",
                mean_activation(r).text(3), pct(probe(r)), seconds_per_epoch(setting)]

    control_name = f"control: the same AE without the penalty ({epochs(control[0]['epoch'])})"
    rows = [row(f"sparse, λ={s.cfg.sparsity:g}", s, r) for s, r in zip(settings, results)]
    rows += [row(control_name, control_setting, control),
             row(f"standard (part 2), {base.cfg.model.code} units", base, base_results)]
    header = ["model", "code", "epochs", "SSE/image", "zero activations", "mean activation", "probe accuracy",
              "s/epoch"]
    rows.append(pixels_row(results[0], header))
    doc.table(header, rows)
    doc.text(f"Each sparse AE is compared with the control, the same {control[0]['model']['code_dim']}-unit AE trained "
             "as long without the penalty: they differ in the penalty alone. Part 2's standard AE is in the table "
             "for reference only (another width, another number of epochs).")
    by_weight = sorted(zip(settings, results), key=lambda t: t[0].cfg.sparsity)
    (lo_s, lo), (hi_s, hi) = by_weight[0], by_weight[-1]
    lo_name, hi_name = f"λ={lo_s.cfg.sparsity:g}", f"λ={hi_s.cfg.sparsity:g}"
    extremes = ctx.ledger.compare(hi_name, sse(hi), lo_name, sse(lo))
    notes: list[Any] = [Later(lambda: str(extremes) + (" Too much sparsity hurts reconstruction." if extremes.resolved
                                                        and extremes.test.difference > 0 else ""))]
    notes.append(ctx.ledger.trend([sse(r) for _, r in by_weight], [f"λ={s.cfg.sparsity:g}" for s, _ in by_weight],
                                  lead="As λ grows, the error ",
                                  tail=f", while the share of exactly-zero activations goes from {zero(lo).mean:.1%} "
                                       f"to {zero(hi).mean:.1%}."))
    for s, r in zip(settings, results):
        name = f"the sparse AE at λ={s.cfg.sparsity:g}"
        notes.append(ctx.ledger.compare(name, sse(r), "the control", sse(control), lead="Reconstruction: "))
        notes.append(probe_claim(ctx, name, probe(r), "the control", probe(control),
                                 spread(results[0], "pixels_probe_accuracy"), "Does sparsity help the probe?"))
    notes.append(f"The control leaves {zero(control).mean:.1%} of its activations at zero; the sparse AE at "
                 f"{hi_name} leaves {zero(hi).mean:.1%}, with a mean activation of {mean_activation(hi).text(3)} "
                 f"against {mean_activation(control).text(3)}.")
    doc.items(notes)
    add_figures(doc, ctx, path, [("reconstructions.png", "Showcase digits: each λ and the standard AE"),
                                 ("activations.png", "Hidden activations of the showcase digits, and their averages"),
                                 ("filters.png", "Encoder filters: each λ and the standard AE")])


# --------------------------------------------------------------------------- 4


def part_denoising(doc: Document, ctx: Context) -> None:
    noisy = next(ctx.settings[k] for k in ("denoising_gaussian", "denoising_salt_pepper") if k in ctx.settings)
    doc.text(f"**Questions:** a {layers(noisy[0].cfg.model)} AE trained on corrupted inputs against clean targets, "
             f"at noise levels {listed([float(s.cfg.noise.level) for s in noisy])}: what does the standard AE do with "
             "noisy inputs, and what does the denoising AE do? Do the filters differ?")
    base = standard_baseline(ctx)
    control = ctx.settings["denoising_control"][0]
    ctx.sweep("denoising_control")
    base_name = f"standard AE ({base.cfg.model.code} units, {epochs(base.cfg.epochs)}, part 2)"
    control_name = f"standard AE trained as long ({epochs(control.cfg.epochs)})"
    for sweep in ("denoising_gaussian", "denoising_salt_pepper"):
        if sweep not in ctx.settings:
            continue
        settings = ctx.settings[sweep]
        kind = settings[0].cfg.noise.name
        trained = epochs(settings[0].cfg.epochs)
        doc.heading(f"{kind.replace('_', '-')} noise", 3)
        clean = ctx.sweep(sweep)
        rows, notes, changed = [], [], []
        for s, own_clean in zip(settings, clean):
            noise = (kind, float(s.cfg.noise.level))
            own, std, same = (sse(ctx.results(x, noise)) for x in (s, base, control))
            nothing = noisy_input_errors(ctx, s.cfg.dataset, noise)
            changed.append((noise[1], nothing["changed"]))
            rows.append([f"{noise[1]:g}", nothing["sse"], nothing["clipped_sse"], std.text(), same.text(), own.text(),
                         pct(probe(own_clean))])
            notes.append(ctx.ledger.compare("the denoising AE", own, "the standard AE trained as long", same,
                                            lead=f"level {noise[1]:g}: ", context={"noise": kind, "level": noise[1]}))
        doc.table(["noise level", "noisy input SSE", "noisy input clipped to [0, 1]", f"{base_name} SSE",
                   f"{control_name} SSE", f"denoising AE ({trained}) SSE", "denoising AE probe (clean inputs)"], rows)
        if kind == "salt_pepper":
            doc.text("Salt-and-pepper at level L sets a fraction L of the pixels to 0 or 1 at random, but pepper on "
                     "the black background and salt on white strokes change nothing: the share of pixels actually "
                     "changed is " + ", ".join(f"{100 * c:.0f} % at {lvl:g}" for lvl, c in changed) +
                     " (measured on this noisy test split).")
        pixels = spread(clean[0], "pixels_probe_accuracy")
        for s, r in zip(settings, clean):
            notes.append(probe_claim(ctx, f"the denoising AE at {s.cfg.noise.level:g}", probe(r),
                                     "the standard AE trained as long", probe(ctx.results(control)), pixels,
                                     f"Does denoising ({kind}) help the probe on clean digits?",
                                     {"noise": kind, "level": float(s.cfg.noise.level)}))
        doc.items(notes)
        path = figures(ctx, sweep, baseline=base.first.run_dir)
        add_figures(doc, ctx, path, [
            ("denoising.png", f"{kind} noise: noisy inputs, the standard AE's output, the denoising AE's output"),
            ("filters.png", f"Encoder filters: denoising ({kind}) and standard"),
            ("loss_epoch.png", f"{kind}: loss per epoch (train on noisy inputs, test on clean ones)")])
    doc.text("SSE is measured against the clean digit, on one noise draw shared by every model and the figures. "
             "The noisy input's own SSE is the error of doing nothing; clipping it to [0, 1] is the cheapest "
             f"repair. Each denoising AE is compared with the {control_name}, which differs from it in the training "
             f"noise alone; part 2's standard AE ({epochs(base.cfg.epochs)}, as the assignment set it) is in the "
             "table for reference.")


# --------------------------------------------------------------------------- 5


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


def yardstick_text(stick: Yardstick, n: int) -> str:
    return (f"An image counts as digit-like when it is as near to a training digit as 95 % of {n:,} real test digits "
            f"are (SSE to the nearest of the training digits ≤ {stick.distance:.1f}; their median is "
            f"{stick.median_distance:.1f}), has as much ink as the middle 95 % of them (a pixel sum from "
            f"{stick.ink[0]:.0f} to {stick.ink[1]:.0f}) and is no greyer than 97.5 % of them (greyness, the sum of "
            f"4p(1−p) per unit of ink, ≤ {stick.greyness:.2f}): a blank image fails the ink, the mean training "
            "image the greyness, though both are nearer some training digit than the 95th percentile.")


def part_manifold(doc: Document, ctx: Context) -> None:
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
             "in the code space of each seed's AE, decoded. " + yardstick_text(moves.yardstick, 1000))
    code = [(Spread.of([seed[i][0] for seed in moves.code]), Spread.of([seed[i][1] for seed in moves.code]))
            for i in range(len(code_levels))]
    doc.table(["image", "level", "digit-like", "SSE to the nearest training digit"], [
        *[[name, "-", f"{100 * share:.0f} %", distance] for name, (share, distance) in moves.references.items()],
        ["the AE's reconstructions of real test digits (seed 0)", "-", f"{100 * moves.reconstructions[0]:.0f} %",
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


# --------------------------------------------------------------------------- 6


def part_conv(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** the same convolutional encoder with three decoders — max-unpooling, transposed "
             "convolution, and both: which reconstructs best, which converges fastest, and what do the decoder "
             "weights look like?")
    settings = ctx.settings["conv"]
    results = ctx.sweep("conv")
    path = figures(ctx, "conv")
    rows, named = [], []
    side = {s.cfg.model.name: side_channel(load(s.first.run_dir, None, ctx.device).model) for s in settings}
    for s, r in zip(settings, results):
        first_epoch = epoch_spread(s, "test_loss", 1, scale=784)
        named.append((s.cfg.model.name, sse(r), first_epoch))
        extra = side[s.cfg.model.name]
        rows.append([s.cfg.model.name, r[0]["model"]["code_dim"],
                     f"{extra['values']} indices ({extra['bits']} bits)" if extra else "none",
                     sse(r).text(), spread(r, "model", "psnr_db").text(), pct(probe(r)), first_epoch.text(),
                     seconds_per_epoch(s)])
    doc.table(["decoder", "code", "also receives", "SSE/image", "PSNR (dB)", "probe accuracy",
               "SSE after epoch 1", "s/epoch"], rows)
    ranked = sorted(named, key=lambda t: t[1].mean)
    notes: list[Any] = ["Ranking by mean final test error" + (" in this run" if ranked[0][1].n < 2 else "") + ": "
                        + ", ".join(f"{n} {e.text()}" for n, e, _ in ranked) + "."]
    probes = {s.cfg.model.name: probe(r) for s, r in zip(settings, results)}
    pixels = spread(results[0], "pixels_probe_accuracy")
    for (a, a_sse, a_first), (b, b_sse, b_first) in itertools.combinations(named, 2):  # every pair, fixed in advance
        notes.append(ctx.ledger.compare(a, a_sse, b, b_sse))
        notes.append(ctx.ledger.compare(a, a_first, b, b_first, "test SSE after one epoch", lead="Convergence: "))
        notes.append(probe_claim(ctx, f"{a}'s code", probes[a], f"{b}'s code", probes[b], pixels,
                                 "Which training leaves the encoder's code more telling of the digit?"))
    unpooling = [n for n, extra in side.items() if extra]
    if unpooling:
        extra = next(e for e in side.values() if e)
        notes.append(f"The comparison is not of decoders alone: {' and '.join(unpooling)} receive, besides the "
                     f"{extra['code']}-number code, the encoder's {extra['values']} max-pooling indices per image "
                     f"(where each 2x2 window's maximum was: {extra['bits']} bits), counted from the model; "
                     "the transposed-convolution decoder gets the code alone.")
    doc.items(notes)
    add_figures(doc, ctx, path, [("loss_epoch.png", "Convergence: loss per epoch of the three decoders"),
                                 ("reconstructions.png", "Showcase digits, each decoder")])
    for s in settings:
        add_figures(doc, ctx, s.first.run_dir, [("conv_filters.png", f"{s.cfg.model.name}: decoder weights")])


# --------------------------------------------------------------------------- beyond


def not_trained_yet(doc: Document, ctx: Context, part: Part, how_long: str) -> bool:
    """A part trained only with beyond=true, not trained: say how to train it, and return True."""
    planned = [job for sweep in part.sweeps for s in ctx.settings.get(sweep.name, []) for job in s.jobs]
    if planned and all((job.run_dir / ckpt.CHECKPOINT).exists() for job in planned):
        return False
    doc.text(f"These models are not trained yet: `aerun report beyond=true` trains them ({how_long}) and later "
             "reports reuse them.")
    return True


def part_beyond(doc: Document, ctx: Context) -> None:
    doc.text("The assignment's settings (ReLU on the code and the output, 10 epochs at a fixed learning rate) "
             "are not how an autoencoder is trained today. The same comparisons with a linear code, a sigmoid "
             "output, more epochs and a cosine learning-rate schedule (`conf/experiment/deep_best.yaml`, "
             "`standard_best.yaml`):")
    if not_trained_yet(doc, ctx, BEYOND, "the 30-d deep AE alone takes about 25 minutes on a 2-core CPU"):
        return
    best_setting = ctx.settings["deep_best"][0]
    deep = ctx.sweep("deep_best")[0]
    assignment_setting = next(s for s in ctx.settings["pca_vs_ae"] if not fitted(s))
    assignment = ctx.results(assignment_setting)
    k = deep[0]["pca"]["k"]

    def minutes(s: Setting) -> str:
        return f"{sum(sum(history(run).get('seconds', [])) for run in s.runs) / len(s.runs) / 60:.1f} min"

    doc.table(["model", "code", "epochs", "SSE/image", "PSNR (dB)", "probe accuracy", "training time"], [
        [pca_name(k), k, "-", sse(deep, "pca").text(), spread(deep, "pca", "psnr_db").text(), pct(probe(deep, "pca")),
         "-"],
        ["deep AE, assignment", 30, assignment[0]["epoch"], sse(assignment).text(),
         spread(assignment, "model", "psnr_db").text(), pct(probe(assignment)), minutes(assignment_setting)],
        ["deep_best", deep[0]["model"]["code_dim"], deep[0]["epoch"], sse(deep).text(),
         spread(deep, "model", "psnr_db").text(), pct(probe(deep)), minutes(best_setting)],
    ])
    notes: list[Any] = [ctx.ledger.compare("deep_best", sse(deep), pca_name(k), sse(deep, "pca")),
                        ctx.ledger.compare("deep_best", sse(deep), "the assignment's deep AE", sse(assignment),
                                           lead="Against the assignment's deep AE: ")]
    standard = ctx.sweep("standard")
    best = ctx.sweep("standard_best")
    rows = []
    for s, b in zip(standard, best):
        rows.append([s[0]["model"]["code_dim"], sse(s, "pca").text(), sse(s).text(), sse(b).text(), b[0]["epoch"]])
        notes.append(ctx.ledger.compare("the AE", sse(b), pca_name(b[0]["pca"]["k"]), sse(b, "pca"),
                                        lead=f"{s[0]['model']['code_dim']} units, trained well: "))
    doc.items(notes)
    doc.table(["hidden", "PCA same k", "standard AE (assignment)", "standard_best", "epochs"], rows)
    figures(ctx, "deep_best")
    add_figures(doc, ctx, best_setting.first.run_dir, [("reconstructions.png", f"deep_best against {pca_name(k)}"),
                                                       ("loss_epoch.png", "deep_best: loss per epoch")])


# --------------------------------------------------------------------------- families


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


def part_families(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** each family below adds its own part to a plain autoencoder: the variational AE "
             "(`model=vae`, `vae2d`) a Gaussian code pulled towards N(0, I) by a KL term, the contractive AE "
             "(`model=contractive`) a penalty on its code's Jacobian, the winner-take-all AE (`model=wta`) "
             "lifetime sparsity, the VQ-VAE (`model=vqvae`) a codebook its code snaps to. What does that part "
             "cost in reconstruction, what does it change in what a linear probe reads, and where does noise "
             "in the code decode to?")
    if not_trained_yet(doc, ctx, FAMILIES, "about 15 minutes on a 2-core CPU"):
        return
    for sweep in FAMILIES.sweeps:
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
             "difference between the two is that part; and, for reference, with the assignment's model of the "
             "same code size where there is one.")
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
        stick = moves[decodes[0].name].yardstick
        doc.text("Noise in the code, as in part 5: each showcase digit's code plus Gaussian noise at each level, 20 "
                 "draws each, decoded; the share of decoded images that are digit-like, and (below it) their mean SSE "
                 "to the nearest training digit. " + yardstick_text(stick, 1000) + " The last row adds noise as "
                 "large as each code's own unit sd.")
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


SECTIONS: dict[str, Callable[[Document, Context], None]] = {
    "pca_vs_ae": part_pca_vs_ae,
    "standard": part_standard,
    "sparse": part_sparse,
    "denoising": part_denoising,
    "manifold": part_manifold,
    "conv": part_conv,
    "beyond": part_beyond,
    "families": part_families,
}
