"""Assignment part 4: denoising autoencoders for Gaussian and salt-and-pepper noise, against a control trained clean."""

from __future__ import annotations

from aerun.document import Document
from aerun.report.common import epochs, layers, listed, pct, probe, probe_claim, sse, standard_baseline
from aerun.report.measure import Context, add_figures, figures, noisy_input_errors, spread
from aerun.report.parts import part
from aerun.report.plan import Sweep


@part("denoising", "4. The denoising autoencoder", [
    Sweep("denoising_gaussian", "denoising"),
    Sweep("denoising_salt_pepper", "denoising", ("noise=salt_pepper",)),
    Sweep("denoising_control", "denoising_control"),
], needs=("standard",), order=4)
def section(doc: Document, ctx: Context) -> None:
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

