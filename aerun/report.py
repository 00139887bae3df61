"""`aerun report`: the whole assignment in one command, answered with measured numbers.

Every part of the assignment is one or two sweeps of an experiment config
(`conf/experiment/`). The report trains each job in this process (the data is
loaded once), under `<dir>/runs/<sweep>/<job>/`, reusing a job whose checkpoint
is complete and resuming one that stopped; then it evaluates, plots, and writes
`<dir>/report.md` and `<dir>/index.html`. Every sentence with a number in it is
generated from the numbers measured here.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from aerun import checkpoint as ckpt
from aerun.document import Document
from aerun.errors import UserError


@dataclass(frozen=True)
class Sweep:
    """One experiment's sweep, trained under runs/<name>/<job>/; `extra` overrides go on every job."""

    name: str
    experiment: str
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    sweeps: tuple[Sweep, ...]
    needs: tuple[str, ...] = ()  # parts whose runs this part's section compares against


ASSIGNMENT = (
    Part("pca_vs_ae", "1. PCA versus a deep autoencoder", (Sweep("pca_vs_ae", "pca_vs_ae"),)),
    Part("standard", "2. The standard (undercomplete) autoencoder", (Sweep("standard", "standard"),)),
    Part("sparse", "3. The sparse autoencoder", (Sweep("sparse", "sparse"),), needs=("standard",)),
    Part("denoising", "4. The denoising autoencoder", (
        Sweep("denoising_gaussian", "denoising"),
        Sweep("denoising_salt_pepper", "denoising", ("noise=salt_pepper",)),
    ), needs=("standard",)),
    Part("manifold", "5. Manifold learning", (Sweep("manifold", "manifold"),)),
    Part("conv", "6. The convolutional autoencoder", (Sweep("conv", "conv"),)),
)
BEYOND = Part("beyond", "Beyond the assignment", (
    Sweep("deep_best", "deep_best"),
    Sweep("standard_best", "standard_best"),
), needs=("pca_vs_ae", "standard"))
PARTS = {p.key: p for p in (*ASSIGNMENT, BEYOND)}


def chosen_parts(keys: Sequence[str], beyond: bool) -> tuple[list[Part], list[Part]]:
    """(the parts to write up, the parts to train): the chosen ones, and those they compare against."""
    unknown = [k for k in keys if k not in PARTS]
    if unknown:
        raise UserError(f"parts has {unknown[0]!r}; allowed: {', '.join(PARTS)}")
    written = [PARTS[k] for k in PARTS if k in keys]
    needed = {k for p in written for k in (p.key, *p.needs)}
    trained = [p for p in PARTS.values() if p.key in needed and (p is not BEYOND or beyond)]
    return written, trained


@dataclass
class Job:
    sweep: Sweep
    labels: list[str]  # the sweep's own overrides, e.g. ["model.hidden=64"]
    cfg: DictConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return " ".join(self.labels) or self.cfg.model.name


@dataclass
class Context:
    cfg: DictConfig
    root: Path
    device: str
    jobs: dict[str, list[Job]] = field(default_factory=dict)  # by sweep name
    evaluations: dict[tuple[str, tuple[str, float]], dict[str, Any]] = field(default_factory=dict)  # (run, noise)

    @property
    def data_dir(self) -> str:
        return str(self.cfg.paths.data_dir)

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root)


# --------------------------------------------------------------------------- planning


def plan_sweep(sweep: Sweep, extra: Sequence[str], runs_dir: Path) -> list[Job]:
    """Every job of a sweep, composed as `aerun -m experiment=...` composes it, and checked."""
    from aerun.cli import CONF_DIR, _one_line, sweep_combinations
    from aerun.validate import check_train

    base = [f"experiment={sweep.experiment}", *sweep.extra]

    def compose_all() -> tuple[list[list[str]], list[DictConfig]]:
        hydra_cfg = compose(config_name="train", overrides=base, return_hydra_config=True).hydra
        params = hydra_cfg.sweeper.params or {}
        combos = list(sweep_combinations([f"{k}={v}" for k, v in params.items()], multirun=True))
        return combos, [compose(config_name="train", overrides=[*base, *combo, *extra]) for combo in combos]

    try:
        if GlobalHydra.instance().is_initialized():  # inside `aerun report`: Hydra's own config search path
            combos, configs = compose_all()
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                combos, configs = compose_all()
            GlobalHydra.instance().clear()
    except UserError:
        raise
    except Exception as exc:
        GlobalHydra.instance().clear()
        raise UserError(f"report: cannot compose experiment={sweep.experiment} with "
                        f"train_overrides={list(extra)}: {_one_line(exc)}") from None
    jobs = []
    for i, (combo, cfg) in enumerate(zip(combos, configs)):
        check_train(cfg)
        jobs.append(Job(sweep, combo, cfg, runs_dir / sweep.name / str(i)))
    return jobs


# Keys a job may change between report runs without being retrained: where data lives, where it runs,
# and how long it trains (more epochs resume the run).
REUSABLE_CHANGES = ("paths", "device", "epochs")
# Keys newer than some checkpoints, with the value that means "as before the key existed".
NEW_KEY_DEFAULTS = {"augment_shift": 0}


def first_difference(stored: Any, wanted: Any, prefix: str = "") -> str | None:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        for key in sorted(set(stored) | set(wanted)):
            if not prefix and key in REUSABLE_CHANGES:
                continue
            if not prefix and key not in stored and wanted.get(key) == NEW_KEY_DEFAULTS.get(key, ...):
                continue
            if key not in stored or key not in wanted:
                return prefix + key
            found = first_difference(stored[key], wanted[key], f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if stored == wanted else prefix.rstrip(".")


def trained_epochs(job: Job) -> int | None:
    """The epochs a job's checkpoint holds (None: no checkpoint); a checkpoint of another config is refused."""
    path = job.run_dir / ckpt.CHECKPOINT
    if not path.exists():
        return None
    state = ckpt.load(path)
    wanted = OmegaConf.to_container(job.cfg, resolve=True)
    key = first_difference(state["config"], wanted)
    if key is not None:
        raise UserError(f"{job.run_dir} holds a run whose {key} differs from this report's; "
                        f"delete that folder to retrain it, or write the report elsewhere with dir=...")
    return int(state["epoch"])


def write_job_files(job: Job) -> None:
    """What Hydra would leave in a job's .hydra/: its overrides (sweep labels read them) and its config."""
    hydra_dir = job.run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(list(job.labels)))
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(job.cfg))


def train_all(ctx: Context, parts: Sequence[Part]) -> None:
    """Train every job not yet complete, with progress as `part k/K · job i/N`."""
    from aerun.train import train

    total = sum(len(ctx.jobs[s.name]) for p in parts for s in p.sweeps)
    done = 0
    for k, part in enumerate(parts, 1):
        for sweep in part.sweeps:
            for job in ctx.jobs[sweep.name]:
                done += 1
                have = trained_epochs(job)
                hasfit = job.cfg.model.builder == "pca"
                complete = have is not None and (hasfit or have >= job.cfg.epochs)
                state = "reused (complete)" if complete else (
                    f"resuming at epoch {have}" if have else f"training {job.cfg.epochs} epochs")
                print(f"[report] part {k}/{len(parts)} {part.key} · job {done}/{total} · "
                      f"{sweep.name} {job.label}: {state}", flush=True)
                if complete:
                    continue
                write_job_files(job)
                job.cfg.device = ctx.device
                train(job.cfg, job.run_dir, resume=have is not None)


# --------------------------------------------------------------------------- measurements


def history(run: Path) -> dict[str, list[float]]:
    from aerun.plot import read_csv
    from aerun.train import EPOCH_LOG

    return read_csv(run / EPOCH_LOG)


def seconds_per_epoch(run: Path) -> float:
    h = history(run)
    trained = [s for e, s in zip(h.get("epoch", []), h.get("seconds", [])) if e > 0]
    return sum(trained) / len(trained) if trained else float("nan")


def evaluate_sweep(ctx: Context, name: str, noise: tuple[str, float] = ("none", 0.0)) -> list[dict[str, Any]]:
    """Evaluate every job of a sweep (files beside each job and at the sweep root); one result per job.

    Each run is evaluated once per noise and report: later sections reuse the results.
    """
    from aerun.evaluate import evaluate

    jobs = ctx.jobs[name]
    if any((str(job.run_dir), noise) not in ctx.evaluations for job in jobs):
        result = evaluate(ctx.root / "runs" / name, ctx.data_dir, ctx.device, noise, ctx.cfg.noise_seed)
        for job, evaluated in zip(jobs, result["jobs"]):
            ctx.evaluations[str(job.run_dir), noise] = evaluated
    return [ctx.evaluations[str(job.run_dir), noise] for job in jobs]


def evaluate_job(ctx: Context, job: Job, noise: tuple[str, float]) -> dict[str, Any]:
    from aerun.evaluate import evaluate

    key = (str(job.run_dir), noise)
    if key not in ctx.evaluations:
        ctx.evaluations[key] = evaluate(job.run_dir, ctx.data_dir, ctx.device, noise, ctx.cfg.noise_seed)
    return ctx.evaluations[key]


def figures(ctx: Context, name: str, **kwargs: Any) -> Path:
    """Plot a sweep (every job, and comparisons at its root); return the sweep's folder."""
    from aerun.plot import plot

    path = ctx.root / "runs" / name
    plot(path, ctx.data_dir, ctx.device, seed=ctx.cfg.noise_seed, each_job=False, **kwargs)
    return path


def add_figures(doc: Document, ctx: Context, folder: Path, figures: Sequence[tuple[str, str]]) -> None:
    """(file name, caption) pairs of `folder`/figures/, each added where it was drawn."""
    for name, caption in figures:
        path = folder / "figures" / name
        if path.exists():
            doc.figure(ctx.rel(path), caption)


@torch.no_grad()
def ood_errors(ctx: Context, runs: Sequence[Path], kind: str, n: int = 1000) -> list[float]:
    """Mean SSE/image of each run's model on n inputs of another kind (images it was not trained on)."""
    from aerun.evaluate import reconstruct
    from aerun.plot import load, ood_inputs

    _, inputs = ood_inputs(kind, ctx.data_dir, ctx.device, ctx.cfg.noise_seed, n=n)
    return [reconstruct(load(run, None, ctx.device).model, inputs)[0].mean().item() for run in runs]


def ratio_words(a: float, b: float) -> str:
    """'2.3 times' or '12% ' — how much larger a is than b, for a > b."""
    return f"{a / b:.1f} times" if a >= 1.5 * b else f"{100 * (a / b - 1):.0f}% more than"


def compare(name_a: str, a: float, name_b: str, b: float, what: str = "SSE/image") -> str:
    """One sentence naming the winner (lower is better) and by how much."""
    if math.isclose(a, b, rel_tol=0.01):
        return f"{name_a} and {name_b} are level ({what} {a:.3g} and {b:.3g})."
    (win, w), (lose, lw) = sorted(((name_a, a), (name_b, b)), key=lambda t: t[1])
    how = ratio_words(lw, w)
    if how.endswith("than"):
        return f"{win} wins: {what} {w:.3g} against {lw:.3g} for {lose} ({lose} errs {how} {win})."
    return f"{win} wins: {what} {w:.3g} against {lw:.3g} for {lose}, whose error is {how} larger."


def trend(values: Sequence[float]) -> str:
    pairs = list(zip(values, values[1:]))
    if all(b < a for a, b in pairs):
        return "falls"
    if all(b > a for a, b in pairs):
        return "rises"
    return "does not move in one direction"


# --------------------------------------------------------------------------- the parts


def part_pca_vs_ae(doc: Document, ctx: Context) -> None:
    doc.text("**Question:** PCA keeps the top 30 eigenvectors of the training set; the deep AE "
             "(784-512-256-128-30-128-256-784, ReLU) has a 30-d code. Which reconstructs the test set better, "
             "per showcase image and overall?")
    results = evaluate_sweep(ctx, "pca_vs_ae")
    path = figures(ctx, "pca_vs_ae")
    ae = next(r for r in results if r["model"]["name"] != "pca")
    pca = ae["pca"]
    run = Path(ae["run_dir"])
    doc.table(["model", "code", "SSE/image", "MSE", "PSNR (dB)", "s/epoch"], [
        [f"PCA-{pca['k']}", pca["k"], pca["sse_per_image"], pca["mse"], pca["psnr_db"], "fitted"],
        [f"deep AE ({ae['epoch']} epochs)", ae["model"]["code_dim"], ae["model"]["sse_per_image"],
         ae["model"]["mse"], ae["model"]["psnr_db"], seconds_per_epoch(run)],
    ])
    wins = sum(a < p for a, p in zip(ae["model"]["showcase_sse"], pca["showcase_sse"]))
    n = len(pca["showcase_sse"])
    doc.items([
        compare(f"PCA-{pca['k']}", pca["sse_per_image"], "the deep AE", ae["model"]["sse_per_image"]),
        f"On the {n} showcase digits the deep AE has the lower error on {wins} and PCA on {n - wins}.",
        f"{ae['model']['code']['fraction_zero']:.0%} of the deep AE's code activations are exactly zero "
        "(its ReLU code layer switches units off, so fewer than 30 numbers carry each digit).",
    ])
    doc.table(["test index", "label", "deep AE SSE", f"PCA-{pca['k']} SSE"],
              [[i, lab, a, p] for i, lab, a, p in zip(ae["showcase"]["indices"], ae["showcase"]["labels"],
                                                      ae["model"]["showcase_sse"], pca["showcase_sse"])])
    add_figures(doc, ctx, path, [("reconstructions.png", "Showcase digits: PCA-30 and the deep AE"),
                                 ("loss_epoch.png", "Deep AE: loss per epoch")])


def part_standard(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** with one hidden layer of 64, 128 or 256 units, how do the loss curves and "
             "reconstructions compare? What comes out for images that are not digits? What do the encoder "
             "filters look like?")
    results = evaluate_sweep(ctx, "standard")
    kinds = list(ctx.cfg.ood)
    path = figures(ctx, "standard", ood=kinds[0] if kinds else "none")
    runs = [Path(r["run_dir"]) for r in results]
    ood = {}
    for kind in kinds:
        try:
            ood[kind] = ood_errors(ctx, runs, kind)
        except UserError as exc:
            doc.text(f"({kind} inputs are unavailable here: {exc})")
    if len(kinds) > 1 and ood:
        from aerun.plot import load, ood_figure

        models = [load(run, r["label"], ctx.device) for run, r in zip(runs, results)]
        for kind in kinds[1:]:
            if kind in ood:
                ood_figure(models, kind, ctx.data_dir, ctx.device, ctx.cfg.noise_seed,
                           path / "figures" / f"ood_{kind}.png")
    header = ["hidden", "SSE/image", f"PCA same k", "s/epoch", "final train MSE"]
    header += [f"SSE on {kind}" for kind in ood]
    rows = []
    for i, r in enumerate(results):
        h = history(runs[i])
        rows.append([r["model"]["code_dim"], r["model"]["sse_per_image"], r["pca"]["sse_per_image"],
                     seconds_per_epoch(runs[i]), h["train_loss"][-1], *[ood[k][i] for k in ood]])
    doc.table(header, rows)
    sse = [r["model"]["sse_per_image"] for r in results]
    sizes = [r["model"]["code_dim"] for r in results]
    notes = [f"The test error {trend(sse)} with the hidden size: "
             + ", ".join(f"{s} units {e:.2f}" for s, e in zip(sizes, sse)) + "."]
    for r in results:
        notes.append(f"{r['model']['code_dim']} units: "
                     + compare(f"PCA-{r['pca']['k']}", r["pca"]["sse_per_image"], "the AE", r["model"]["sse_per_image"]))
    for kind, errors in ood.items():
        worst = max(e / s for e, s in zip(errors, sse))
        best = min(e / s for e, s in zip(errors, sse))
        notes.append(f"On {kind} inputs the error is {best:.1f}–{worst:.1f} times the error on digits: "
                     "the AEs reconstruct what they were trained on, and pull other inputs towards it.")
    doc.items(notes)
    add_figures(doc, ctx, path, [("loss_iter.png", "Training loss per iteration"), ("loss_epoch.png", "Loss per epoch"),
                                 ("reconstructions.png", "Showcase digits, each hidden size"),
                                 *[(f"ood_{k}.png", f"Inputs that are not digits ({k})") for k in ood],
                                 ("filters.png", "Encoder filters of each hidden size")])


def standard_baseline(ctx: Context) -> Job:
    """The standard AE the sparse and denoising parts compare against: the largest hidden layer."""
    return max(ctx.jobs["standard"], key=lambda j: j.cfg.model.code)


def part_sparse(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** the overcomplete 784-1156-784 AE with an L1 penalty on its hidden activations, "
             "at weights 4e-6, 1.5e-6, 0.6e-6: does too much sparsity hurt reconstruction? How do its "
             "activations and filters compare with the standard AE's?")
    base = standard_baseline(ctx)
    results = evaluate_sweep(ctx, "sparse")
    base_result = evaluate_job(ctx, base, ("none", 0.0))
    path = figures(ctx, "sparse", baseline=base.run_dir)
    rows = []
    for r, job in zip(results, ctx.jobs["sparse"]):
        c = r["model"]["code"]
        rows.append([f"sparse, λ={job.cfg.sparsity:g}", r["model"]["sse_per_image"], f"{c['fraction_zero']:.1%}",
                     c["mean_l1"] / r["model"]["code_dim"], seconds_per_epoch(job.run_dir)])
    bc = base_result["model"]["code"]
    rows.append([f"standard, {base.cfg.model.code} units", base_result["model"]["sse_per_image"],
                 f"{bc['fraction_zero']:.1%}", bc["mean_l1"] / base_result["model"]["code_dim"],
                 seconds_per_epoch(base.run_dir)])
    doc.table(["model", "SSE/image", "zero activations", "mean activation", "s/epoch"], rows)
    by_weight = sorted(zip(ctx.jobs["sparse"], results), key=lambda t: t[0].cfg.sparsity)
    (lo_job, lo), (hi_job, hi) = by_weight[0], by_weight[-1]
    lo_e, hi_e = lo["model"]["sse_per_image"], hi["model"]["sse_per_image"]
    notes = [
        (f"Too much sparsity hurts: at λ={hi_job.cfg.sparsity:g} the error is {hi_e:.2f}, "
         f"{ratio_words(hi_e, lo_e)} the {lo_e:.2f} at λ={lo_job.cfg.sparsity:g}."
         if hi_e > lo_e else
         f"Here the largest weight λ={hi_job.cfg.sparsity:g} did not raise the error ({hi_e:.2f} against {lo_e:.2f})."),
        f"The error {trend([r['model']['sse_per_image'] for _, r in by_weight])} as λ grows, while the share of "
        f"exactly-zero activations goes from {lo['model']['code']['fraction_zero']:.1%} to "
        f"{hi['model']['code']['fraction_zero']:.1%}.",
        f"The standard AE leaves {bc['fraction_zero']:.1%} of its activations at zero; the sparse AE at "
        f"λ={hi_job.cfg.sparsity:g} leaves {hi['model']['code']['fraction_zero']:.1%}, with a mean activation "
        f"of {hi['model']['code']['mean_l1'] / hi['model']['code_dim']:.3g} against "
        f"{bc['mean_l1'] / base_result['model']['code_dim']:.3g}.",
    ]
    doc.items(notes)
    add_figures(doc, ctx, path, [("reconstructions.png", "Showcase digits: each λ and the standard AE"),
                                 ("activations.png", "Hidden activations of the showcase digits, and their averages"),
                                 ("filters.png", "Encoder filters: each λ and the standard AE")])


def part_denoising(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** a 784-256-784 AE trained on corrupted inputs against clean targets, at noise levels "
             "0.3, 0.5, 0.8, 0.9: what does the standard AE do with noisy inputs, and what does the denoising AE "
             "do? Do the filters differ?")
    base = standard_baseline(ctx)
    for sweep in ("denoising_gaussian", "denoising_salt_pepper"):
        if sweep not in ctx.jobs:
            continue
        jobs = ctx.jobs[sweep]
        kind = jobs[0].cfg.noise.name
        doc.heading(f"{kind.replace('_', '-')} noise", 3)
        evaluate_sweep(ctx, sweep)
        rows, notes = [], []
        for job in jobs:
            noise = (kind, float(job.cfg.noise.level))
            own = evaluate_job(ctx, job, noise)
            std = evaluate_job(ctx, base, noise)
            noisy = noisy_input_error(ctx, noise)
            d, s = own["model"]["sse_per_image"], std["model"]["sse_per_image"]
            rows.append([f"{noise[1]:g}", noisy, s, d])
            notes.append(f"level {noise[1]:g}: " + compare("the denoising AE", d, f"the standard AE", s))
        doc.table(["noise level", "noisy input SSE", f"standard AE ({base.cfg.model.code}) SSE",
                   "denoising AE SSE"], rows)
        doc.items(notes)
        path = figures(ctx, sweep, baseline=base.run_dir)
        add_figures(doc, ctx, path, [
            ("denoising.png", f"{kind} noise: noisy inputs, the standard AE's output, the denoising AE's output"),
            ("filters.png", f"Encoder filters: denoising ({kind}) and standard")])
    doc.text("SSE is measured against the clean digit; the noisy input's own SSE is the error of doing nothing.")


@torch.no_grad()
def noisy_input_error(ctx: Context, noise: tuple[str, float]) -> float:
    from aerun.data import load_split
    from aerun.evaluate import noisy_test_inputs

    test = load_split(ctx.jobs["standard"][0].cfg.dataset, "test", ctx.data_dir, ctx.device).images
    noisy = noisy_test_inputs(test, noise, ctx.cfg.noise_seed)
    return (noisy - test).double().pow(2).flatten(1).sum(1).mean().item()


@torch.no_grad()
def distances_to_manifold(ctx: Context, run: Path, pixel_noise: Sequence[float], code_noise: Sequence[float],
                          samples: int = 100) -> tuple[list[float], list[float]]:
    """How far images are from what the AE can produce: SSE between an image and the AE's reconstruction of it.

    For a test digit moved in pixel space, and for decodings of its code moved in code space.
    """
    from aerun.data import load_split
    from aerun.noise import generator
    from aerun.plot import load

    model = load(run, None, ctx.device).model.eval()
    job = ctx.jobs["manifold"][0]
    test = load_split(job.cfg.dataset, "test", ctx.data_dir, ctx.device)
    digit = test.images[int(job.cfg.dataset.showcase[2 % len(job.cfg.dataset.showcase)])]
    gen = generator(ctx.cfg.noise_seed, digit.device)

    def off(images: torch.Tensor) -> float:
        return (model(images)[0] - images).pow(2).flatten(1).sum(1).mean().item()

    pixel = [off(digit + s * torch.randn((samples, *digit.shape), generator=gen, device=digit.device))
             for s in pixel_noise]
    code = model.encode(digit[None])
    decoded = [model.decode(code + s * torch.randn((samples, code.shape[1]), generator=gen, device=code.device))
               for s in code_noise]
    return pixel, [off(d) for d in decoded]


def code_space_notes(levels: Sequence[float], distances: Sequence[float], nearest_pixel_move: float) -> list[str]:
    """Which code-space moves decode to images on the manifold (closer than any pixel-space move)."""
    on = [(s, d) for s, d in zip(levels, distances) if d < nearest_pixel_move]
    off = [(s, d) for s, d in zip(levels, distances) if d >= nearest_pixel_move]
    notes = []
    if on:
        notes.append(f"Code noise {', '.join(f'{s:g}' for s, _ in on)} decodes to images "
                     f"{min(d for _, d in on):.3g}–{max(d for _, d in on):.3g} from the manifold, far closer than "
                     f"any pixel-space move ({nearest_pixel_move:.1f} or more): moving in code space stays among digits.")
    for s, d in off:
        notes.append(f"Code noise {s:g} takes the code far outside the codes the decoder was trained on: "
                     f"its outputs are {d:.3g} from the manifold, no longer digit images.")
    return notes


def part_manifold(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** moving a test digit in random directions of the 784-d pixel space (noise 0.3–0.9) — "
             "is the result still a digit? With the 784-64-8-64-784 AE, adding noise to the 8-d code "
             "(0.1, 0.5, 0.8, 500) and decoding — what comes out?")
    results = evaluate_sweep(ctx, "manifold")
    path = figures(ctx, "manifold")
    run = Path(results[0]["run_dir"])
    pixel_levels, code_levels = [0.3, 0.5, 0.8, 0.9], [0.1, 0.5, 0.8, 500.0]
    pixel, code = distances_to_manifold(ctx, run, pixel_levels, code_levels)
    doc.text(f"The 8-d AE reconstructs the test set with SSE/image {results[0]['model']['sse_per_image']:.2f} "
             f"(PCA-8: {results[0]['pca']['sse_per_image']:.2f}). As a measure of how far an image is from what "
             "the AE can produce, the table gives its distance to the AE's reconstruction of it (SSE, mean of 100 "
             "random moves); decoded images lie on the AE's manifold by construction.")
    doc.table(["move", "level", "distance to the manifold (SSE)"],
              [*[["pixel space", s, d] for s, d in zip(pixel_levels, pixel)],
               *[["code space", s, d] for s, d in zip(code_levels, code)]])
    doc.items([
        f"A move in pixel space leaves the digits: its distance to the manifold grows from {pixel[0]:.1f} "
        f"(level {pixel_levels[0]:g}) to {pixel[-1]:.1f} (level {pixel_levels[-1]:g}).",
        *code_space_notes(code_levels, code, min(pixel)),
    ])
    add_figures(doc, ctx, run, [("manifold_pixel.png", "A digit moved in random directions of pixel space"),
                                ("manifold_code.png", "Noise added to the 8-d code, then decoded"),
                                ("manifold_interpolation.png", "From one digit to another: pixel space and code space")])


def part_conv(doc: Document, ctx: Context) -> None:
    doc.text("**Questions:** the same convolutional encoder with three decoders — max-unpooling, transposed "
             "convolution, and both: which reconstructs best, which converges fastest, and what do the decoder "
             "weights look like?")
    results = evaluate_sweep(ctx, "conv")
    path = figures(ctx, "conv")
    rows, curves = [], []
    for r, job in zip(results, ctx.jobs["conv"]):
        h = history(job.run_dir)
        curves.append((job.cfg.model.name, h["test_loss"], r["model"]["sse_per_image"]))
        rows.append([job.cfg.model.name, r["model"]["code_dim"], r["model"]["sse_per_image"], r["model"]["psnr_db"],
                     h["test_loss"][0] * 784, seconds_per_epoch(job.run_dir)])
    doc.table(["decoder", "code", "SSE/image", "PSNR (dB)", "SSE after epoch 1", "s/epoch"], rows)
    ranked = sorted(curves, key=lambda c: c[2])
    first = sorted(curves, key=lambda c: c[1][0])
    doc.items([
        "Ranking by final test error: " + ", ".join(f"{n} {e:.2f}" for n, _, e in ranked) + ".",
        compare(ranked[0][0], ranked[0][2], ranked[-1][0], ranked[-1][2]),
        f"After one epoch {first[0][0]} is ahead (test SSE {first[0][1][0] * 784:.2f}), "
        f"{first[-1][0]} behind ({first[-1][1][0] * 784:.2f}).",
    ])
    add_figures(doc, ctx, path, [("loss_epoch.png", "Convergence: loss per epoch of the three decoders"),
                                 ("reconstructions.png", "Showcase digits, each decoder")])
    for job in ctx.jobs["conv"]:
        add_figures(doc, ctx, job.run_dir, [("conv_filters.png", f"{job.cfg.model.name}: decoder weights")])


def part_beyond(doc: Document, ctx: Context) -> None:
    doc.text("The assignment's settings (ReLU on the code and the output, 10 epochs at a fixed learning rate) "
             "are not how an autoencoder is trained today. The same comparisons with a linear code, a sigmoid "
             "output, more epochs and a cosine learning-rate schedule (`conf/experiment/deep_best.yaml`, "
             "`standard_best.yaml`):")
    if not all((j.run_dir / ckpt.CHECKPOINT).exists() for s in BEYOND.sweeps for j in ctx.jobs.get(s.name, [])) \
            or not ctx.jobs.get("deep_best"):
        doc.text("These models are not trained yet: `aerun report beyond=true` trains them (the 30-d deep AE "
                 "alone takes about 25 minutes on a 2-core CPU) and later reports reuse them.")
        return
    deep = evaluate_sweep(ctx, "deep_best")[0]
    assignment = next(r for r in evaluate_sweep(ctx, "pca_vs_ae") if r["model"]["name"] != "pca")
    best_run = Path(deep["run_dir"])
    minutes = sum(history(best_run).get("seconds", [])) / 60
    doc.table(["model", "code", "epochs", "SSE/image", "PSNR (dB)", "training time"], [
        [f"PCA-{deep['pca']['k']}", deep["pca"]["k"], "-", deep["pca"]["sse_per_image"], deep["pca"]["psnr_db"], "-"],
        ["deep AE, assignment", 30, assignment["epoch"], assignment["model"]["sse_per_image"],
         assignment["model"]["psnr_db"], f"{sum(history(Path(assignment['run_dir']))['seconds']) / 60:.1f} min"],
        ["deep_best", deep["model"]["code_dim"], deep["epoch"], deep["model"]["sse_per_image"],
         deep["model"]["psnr_db"], f"{minutes:.1f} min"],
    ])
    notes = [compare("deep_best", deep["model"]["sse_per_image"], f"PCA-{deep['pca']['k']}", deep["pca"]["sse_per_image"]),
             f"Against the assignment's deep AE: " + compare("deep_best", deep["model"]["sse_per_image"],
                                                             "the assignment's deep AE",
                                                             assignment["model"]["sse_per_image"])]
    standard = evaluate_sweep(ctx, "standard")
    best = evaluate_sweep(ctx, "standard_best")
    rows = []
    for s, b in zip(standard, best):
        rows.append([s["model"]["code_dim"], s["pca"]["sse_per_image"], s["model"]["sse_per_image"],
                     b["model"]["sse_per_image"], b["epoch"]])
        notes.append(f"{s['model']['code_dim']} units, trained well: "
                     + compare("the AE", b["model"]["sse_per_image"], f"PCA-{b['pca']['k']}", b["pca"]["sse_per_image"]))
    doc.items(notes)
    doc.table(["hidden", "PCA same k", "standard AE (assignment)", "standard_best", "epochs"], rows)
    figures(ctx, "deep_best")
    add_figures(doc, ctx, best_run, [("reconstructions.png", "deep_best against PCA-30"),
                                     ("loss_epoch.png", "deep_best: loss per epoch")])


SECTIONS: dict[str, Callable[[Document, Context], None]] = {
    "pca_vs_ae": part_pca_vs_ae,
    "standard": part_standard,
    "sparse": part_sparse,
    "denoising": part_denoising,
    "manifold": part_manifold,
    "conv": part_conv,
    "beyond": part_beyond,
}


# --------------------------------------------------------------------------- the command


def report(cfg: DictConfig) -> Path:
    """Train what is missing, then write <dir>/report.md and <dir>/index.html; return the HTML's path."""
    start = time.perf_counter()
    root = Path(cfg.dir)
    extra = list(cfg.train_overrides)
    if not isinstance(cfg.beyond, bool):
        raise UserError(f"beyond={cfg.beyond!r} is not allowed; it must be true or false")
    from aerun.train import resolve_device

    ctx = Context(cfg, root, str(resolve_device(cfg.device)))
    written, trained = chosen_parts(list(cfg.parts), cfg.beyond)
    for part in {p.key: p for p in (*written, *trained)}.values():
        for sweep in part.sweeps:
            ctx.jobs[sweep.name] = plan_sweep(sweep, extra, root / "runs")
    train_all(ctx, trained)

    dataset = next(iter(ctx.jobs.values()))[0].cfg.dataset.name
    doc = Document(f"aerun report: autoencoders on {dataset}")
    doc.text(f"Every number below was measured by this report from the checkpoints under `{ctx.rel(root / 'runs')}/` "
             f"(device {ctx.device}). Errors are on the test split, SSE/image = sum of squared pixel errors per "
             "image on the [0, 1] scale; PSNR from the MSE with peak 1. Regenerate with `aerun report`.")
    for k, part in enumerate(written, 1):
        print(f"[report] writing part {k}/{len(written)}: {part.title}", flush=True)
        doc.heading(part.title)
        SECTIONS[part.key](doc, ctx)
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.md").write_text(doc.markdown())
    (root / "index.html").write_text(doc.html())
    (root / "report.json").write_text(json.dumps({"seconds": time.perf_counter() - start,
                                                  "jobs": {k: [str(j.run_dir) for j in v] for k, v in ctx.jobs.items()}},
                                                 indent=2) + "\n")
    return root / "index.html"
