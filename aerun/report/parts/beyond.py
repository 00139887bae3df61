"""Beyond the assignment: parts 1 and 2 trained the way an autoencoder is trained today (trained with beyond=true)."""

from __future__ import annotations

from typing import Any

from aerun.document import Document
from aerun.evaluate import pca_name
from aerun.report.common import chosen_on_test, fitted, not_trained_yet, pct, probe, sse
from aerun.report.measure import Context, add_figures, figures, history, spread
from aerun.report.parts import part
from aerun.report.plan import Setting, Sweep


@part("beyond", "Beyond the assignment", [Sweep("deep_best", "deep_best"), Sweep("standard_best", "standard_best")],
      needs=("pca_vs_ae", "standard"), beyond=True, order=7)
def section(doc: Document, ctx: Context) -> None:
    doc.text("The assignment's settings (ReLU on the code and the output, 10 epochs at a fixed learning rate) "
             "are not how an autoencoder is trained today. The same comparisons with a linear code, a sigmoid "
             "output, more epochs and a cosine learning-rate schedule (`conf/experiment/deep_best.yaml`, "
             "`standard_best.yaml`):")
    doc.text(chosen_on_test(["deep_best"]))
    if not_trained_yet(doc, ctx, "the 30-d deep AE alone takes about 25 minutes on a 2-core CPU"):
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

