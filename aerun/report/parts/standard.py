"""Assignment part 2: the standard (undercomplete) autoencoder at several widths: curves, reconstructions, inputs that are not digits, filters."""

from __future__ import annotations

from typing import Any

from aerun.document import Document
from aerun.errors import UserError
from aerun.evaluate import pca_name
from aerun.plot import load, ood_figure
from aerun.report.common import listed, pct, pixels_row, probe, sse
from aerun.report.measure import (Context, add_figures, figures, history, ood_errors, ood_pca_error, seconds_per_epoch,
                                  spread)
from aerun.report.parts import part
from aerun.report.plan import Sweep
from aerun.stats import Spread


@part("standard", "2. The standard (undercomplete) autoencoder", [Sweep("standard", "standard")], order=2)
def section(doc: Document, ctx: Context) -> None:
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

