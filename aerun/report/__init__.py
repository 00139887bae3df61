"""`aerun report`: the whole assignment in one command, answered with measured numbers.

The package is one module per concern:

- `plan`: the parts, their sweeps, every job (a setting and a seed), and whether a job's folder can be reused;
- `jobs`: the training loop over the jobs, in this process (the data is loaded once);
- `measure`: evaluations (each run once per noise), histories, figures and the report's own measurements;
- `parts`: one module per part (its sweeps and the section that writes it), registered with `@part`;
- `common`: what the parts write alike;

and `report` below, the command: train what is missing, then write `<dir>/report.md` and `<dir>/index.html`.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from aerun import atomic, runlock
from aerun.data import load_split
from aerun.document import Document
from aerun.errors import UserError
from aerun.claims import Later, compare, trend
from aerun.report.jobs import train_all
from aerun.report.measure import Context
from aerun.report.parts import chosen_parts, part, registered
from aerun.report.plan import Part, Sweep, plan_sweep, report_seeds
from aerun.stats import RULE
from aerun.train import resolve_device

__all__ = ["Part", "Sweep", "chosen_parts", "compare", "part", "registered", "report", "trend"]


def tests_text(ctx: Context, parts: list[Part]) -> str:
    """How many comparisons each part tests, and how they are corrected: known once every part is written."""
    counts = [(f"part {p.title.split('. ')[0]}" if ". " in p.title else p.key, ctx.ledger.tested(p.key)) for p in parts]
    counted = [f"{name}: {n}" for name, n in counts if n]
    if not counted:
        return ""
    return (f" The report tests {sum(n for _, n in counts)} comparisons, each fixed by the parts' settings before "
            f"any number existed (part by part: {'; '.join(counted)}); within each part the p-values are adjusted "
            "by Holm's step-down method, so that the chance of calling any difference of a part that is not there "
            "stays under 5 %. report.json lists every comparison with its raw and adjusted p.")


def preamble(ctx: Context, parts: list[Part]) -> str:
    """What the numbers are, and how far they can be trusted: said once, before any part (rendered after them)."""
    seeds = ctx.seeds
    common = (f"Every number below was measured by this report from the checkpoints under "
              f"`{ctx.rel(ctx.root / 'runs')}/` (device {ctx.device}). Errors are on the test split, SSE/image = sum "
              "of squared pixel errors per image on the [0, 1] scale; PSNR from the MSE with peak 1. The probe "
              "accuracy is the test accuracy of a logistic regression fitted on the training split's codes "
              "(standardised, L2-regularised): how linearly a code carries the digit's identity. ")
    precisions = sorted({str(s.cfg.precision) for settings in ctx.settings.values() for s in settings} - {"32"})
    if precisions:  # never changed silently: a mixed precision changes the numbers
        common += (f"The models were trained at precision={', '.join(precisions)} (the forward pass and the loss "
                   "under autocast, weights in float32) and are evaluated in float32. ")
    if seeds == 1:
        return common + ("Each model was trained once (one seed), so no difference between two models is resolved "
                         "here: another seed may reverse a small gap, and rankings hold only in this run. "
                         "`aerun report seeds=3` trains every job with seeds 0, 1 and 2, gives mean ± standard "
                         "deviation, and names a winner only where the seeds resolve it.")
    return common + (f"Every model was trained with seeds 0–{seeds - 1}; tables give the mean ± the standard "
                     f"deviation over the {seeds} seeds (PCA is deterministic: no spread). {RULE} Showcase "
                     "figures show seed 0; loss curves show the mean over the seeds with a band from the lowest "
                     "to the highest." + tests_text(ctx, parts))


def report(cfg: DictConfig) -> Path:
    """Train what is missing, then write <dir>/report.md and <dir>/index.html; return the HTML's path."""
    start = time.perf_counter()
    root = Path(cfg.dir)
    extra = list(cfg.train_overrides)
    if not isinstance(cfg.beyond, bool):
        raise UserError(f"beyond={cfg.beyond!r} is not allowed; it must be true or false")
    seeds = report_seeds(cfg.seeds, extra)
    chosen_parts(cfg.parts, cfg.beyond)  # checked before the folder is made
    root.mkdir(parents=True, exist_ok=True)
    with runlock.hold(root, "written by another `aerun report`"):
        return _report(cfg, root, extra, seeds, start)


def plan_parts(ctx: Context, parts: list[Part], extra: list[str], root: Path, seeds: int) -> dict[str, str]:
    """Every job of every part into `ctx.settings`; {part: why} for the parts whose jobs cannot train on this data
    (a model that does not take its images' shape), and for those that compare against them."""
    left_out: dict[str, str] = {}
    for each in parts:
        try:
            planned = {sweep.name: plan_sweep(sweep, extra, root / "runs", seeds) for sweep in each.sweeps}
        except UserError as exc:
            left_out[each.key] = str(exc)
            continue
        ctx.settings.update(planned)
    if not ctx.settings:
        raise UserError(next(iter(left_out.values())))
    for each in parts:
        missing = [k for k in each.needs if k in left_out]
        if missing and each.key not in left_out:
            left_out[each.key] = f"it compares against {registered()[missing[0]].title}, which is left out"
    return left_out


def check_labels(ctx: Context) -> str:
    """The data set's name; one line where it has no labels (every part reads a linear probe of its labels)."""
    dataset = next(iter(ctx.settings.values()))[0].cfg.dataset
    if load_split(dataset, "test", ctx.data_dir, ctx.device).labels is None:
        raise UserError(f"aerun report compares codes by a linear probe of their labels, and {dataset.name} has none; "
                        "train and compare its models with aerun -m and aerun eval instead")
    return dataset.name


def _report(cfg: DictConfig, root: Path, extra: list[str], seeds: int, start: float) -> Path:
    ctx = Context(cfg, root, str(resolve_device(cfg.device)))
    written, trained = chosen_parts(cfg.parts, cfg.beyond)
    left_out = plan_parts(ctx, list({p.key: p for p in (*written, *trained)}.values()), extra, root, seeds)
    dataset = check_labels(ctx)
    for key, why in left_out.items():
        print(f"[report] left out on {dataset}: {registered()[key].title}: {why}", flush=True)
    written = [p for p in written if p.key not in left_out]
    trained = [p for p in trained if p.key not in left_out]
    train_all(ctx.settings, trained, ctx.device, root, str(cfg.device))
    trained_at = time.perf_counter()

    doc = Document(f"aerun report: autoencoders on {dataset}")
    doc.text(Later(lambda: preamble(ctx, written)))  # it counts the tests of every part
    if left_out:
        doc.text(f"Left out on {dataset}: " + "; ".join(f"{registered()[k].title} ({why})" for k, why in left_out.items())
                 + ".")
    for k, ctx.part in enumerate(written, 1):
        print(f"[report] writing part {k}/{len(written)}: {ctx.part.title}", flush=True)
        doc.heading(ctx.part.title)
        ctx.ledger.start(ctx.part.key)
        ctx.part.section(doc, ctx)
        ctx.ledger.close()  # Holm's adjustment over the part's comparisons, before any sentence is rendered
    made, reused = ctx.evaluated["made"], ctx.evaluated["reused"]
    print(f"[report] evaluations: {made} made here, {reused} reused (saved by an earlier report or "
          "aerun eval, of the same checkpoints)", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    atomic.write_text(root / "report.md", doc.markdown())
    atomic.write_text(root / "index.html", doc.html())
    jobs = {name: [[str(run) for run in s.runs] for s in settings] for name, settings in ctx.settings.items()}
    atomic.write_json(root / "report.json", {
        "seconds": time.perf_counter() - start, "training_seconds": trained_at - start, "seeds": ctx.seeds,
        "evaluations": {"made": made, "reused": reused}, "left_out": left_out,
        "jobs": jobs, "claims": [claim.as_dict() for claim in ctx.ledger.claims], "tables": doc.tables(),
        **({"yardstick": {name: {**stick.about, "controls": checked} for name, (stick, checked)
                          in ctx.yardsticks.items()}} if ctx.yardsticks else {})})
    return root / "index.html"
