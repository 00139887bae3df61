"""Assignment part 3: the sparse (overcomplete, L1-penalised) autoencoder against its unpenalised control and part 2."""

from __future__ import annotations

from typing import Any, Sequence

from aerun.claims import Later
from aerun.document import Document
from aerun.report.common import epochs, layers, listed, pct, pixels_row, probe, probe_claim, sse, standard_baseline
from aerun.report.measure import Context, add_figures, figures, seconds_per_epoch, spread
from aerun.report.parts import part
from aerun.report.plan import Setting, Sweep
from aerun.stats import Spread


@part("sparse", "3. The sparse autoencoder", [Sweep("sparse", "sparse"), Sweep("sparse_control", "sparse_control")],
      needs=("standard",), order=3)
def section(doc: Document, ctx: Context) -> None:
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

