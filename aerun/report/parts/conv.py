"""Assignment part 6: the convolutional autoencoders (unpooling, deconvolution, both) and what their decoders carry."""

from __future__ import annotations

import itertools
from typing import Any

from aerun.document import Document
from aerun.plot import load
from aerun.report.common import pct, probe, probe_claim, sse
from aerun.report.measure import Context, add_figures, epoch_spread, figures, seconds_per_epoch, side_channel, spread
from aerun.report.parts import part
from aerun.report.plan import Sweep


@part("conv", "6. The convolutional autoencoder", [Sweep("conv", "conv")], order=6)
def section(doc: Document, ctx: Context) -> None:
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

