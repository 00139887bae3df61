"""Assignment part 1: PCA against the deep autoencoder, image by image and overall, and which code a linear probe reads best."""

from __future__ import annotations

from aerun.document import Document
from aerun.evaluate import pca_name
from aerun.report.common import epochs, fitted, layers, pct, pixels_row, probe, probe_claim, sse
from aerun.report.measure import Context, add_figures, figures, seconds_per_epoch, spread
from aerun.report.parts import part
from aerun.report.plan import Sweep
from aerun.stats import Spread


def zero_code_note(name: str, zero: Spread, code_dim: int) -> str:
    """How many code numbers carry a digit, when a ReLU code switches some off (mean over seeds)."""
    if zero.mean == 0:
        return f"None of {name}'s code activations is exactly zero on the test split: all {code_dim} carry each digit."
    return (f"{zero.mean:.0%} of {name}'s code activations are exactly zero (its ReLU code layer switches units "
            f"off): on average {code_dim * (1 - zero.mean):.1f} of its {code_dim} code numbers are non-zero for a "
            "test digit.")


@part("pca_vs_ae", "1. PCA versus a deep autoencoder", [Sweep("pca_vs_ae", "pca_vs_ae")], order=1)
def section(doc: Document, ctx: Context) -> None:
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

