"""What the report measures from checkpoints: evaluations (each run once per noise), histories,
figures, and the measurements only the report makes (inputs that are not digits, distances to the
training digits, the unpooling decoders' side channel).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from aerun.data import data_shape, load_split, showcase
from aerun.document import Document
from aerun.errors import UserError
from aerun.evaluate import (CLEAN, eval_name, evaluate, fitted_pca, noisy_test_inputs, saved_evaluation,
                            write_sweep)
from aerun.models import Autoencoder
from aerun.noise import generator
from aerun.perimage import encode, reconstruct
from aerun.plot import load, ood_inputs, plot
from aerun.claims import Ledger
from aerun.report.plan import Job, Part, Setting
from aerun.stats import Spread
from aerun.yardstick import Yardstick, controls
from aerun.runs import EPOCH_LOG, read_csv


@dataclass
class Context:
    cfg: DictConfig
    root: Path
    device: str
    settings: dict[str, list[Setting]] = field(default_factory=dict)  # by sweep name
    evaluations: dict[tuple[str, tuple[str, float]], dict[str, Any]] = field(default_factory=dict)  # (run, noise)
    ledger: Ledger = field(default_factory=Ledger)  # every comparison, by part
    evaluated: Counter[str] = field(default_factory=Counter)  # evaluations "made" here and "reused"
    part: Part | None = None  # the part being written
    yardsticks: dict[str, tuple[Yardstick, list[dict[str, Any]]]] = field(default_factory=dict)  # by data set

    @property
    def data_dir(self) -> str:
        return str(self.cfg.paths.data_dir)

    @property
    def seeds(self) -> int:
        return max(len(s.jobs) for settings in self.settings.values() for s in settings)

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root)

    def evaluate(self, job: Job, noise: tuple[str, float] = CLEAN) -> dict[str, Any]:
        """A job's evaluation (eval.json beside it), computed once per noise and report; one that an earlier
        report or `aerun eval` saved of the same checkpoint, noise, device and code is reused."""
        key = (str(job.run_dir), noise)
        if key not in self.evaluations:
            saved = saved_evaluation(job.run_dir, self.device, noise, self.cfg.noise_seed)
            self.evaluated["reused" if saved else "made"] += 1
            self.evaluations[key] = saved or evaluate(job.run_dir, self.data_dir, self.device, noise,
                                                      self.cfg.noise_seed)
        return self.evaluations[key]

    def results(self, setting: Setting, noise: tuple[str, float] = CLEAN) -> list[dict[str, Any]]:
        """One evaluation per seed of a setting; a spread whose members differ in anything but their seed (their
        settings, or the epochs their checkpoints hold) is refused, never averaged."""
        results = [self.evaluate(job, noise) for job in setting.jobs]
        epochs = sorted({r["epoch"] for r in results})
        if len(epochs) > 1 or len({r["setting"] for r in results}) > 1:
            what = f"epochs {', '.join(map(str, epochs))}" if len(epochs) > 1 else "settings"
            raise UserError(f"the runs of {setting.label} ({', '.join(str(j.run_dir) for j in setting.jobs)}) differ "
                            f"in their {what}: one mean ± sd cannot hold them; retrain the odd one out")
        return results

    def sweep(self, name: str, noise: tuple[str, float] = CLEAN) -> list[list[dict[str, Any]]]:
        """Every setting's evaluations; also writes the sweep's own eval.json/eval.md (with spreads)."""
        results = [self.results(s, noise) for s in self.settings[name]]
        jobs = [job for s in self.settings[name] for job in s.jobs]
        write_sweep(self.root / "runs" / name, [j.run_dir for j in jobs], [r for rs in results for r in rs],
                    eval_name(noise))
        return results


def spread(results: Sequence[dict[str, Any]], *keys: str) -> Spread:
    """One metric over the seeds of a setting: spread(results, "model", "sse_per_image"); fitted where the entry
    holding the metric says its model was fitted in closed form (PCA)."""
    values, fitted = [], True
    for result in results:
        for key in keys[:-1]:
            result = result[key]
        fitted = fitted and bool(result.get("fitted"))
        values.append(result[keys[-1]])
    return Spread.of(values, fitted=fitted)


def history(run: Path) -> dict[str, list[float]]:
    return read_csv(run / EPOCH_LOG)


def seconds_per_epoch(setting: Setting) -> float:
    """Mean wall time of a trained epoch over every seed's run (NaN for a fitted model)."""
    seconds: list[float] = []
    for run in setting.runs:
        h = history(run)
        seconds += [s for e, s in zip(h.get("epoch", []), h.get("seconds", [])) if e > 0]
    return sum(seconds) / len(seconds) if seconds else float("nan")


def epoch_spread(setting: Setting, column: str, epoch: int, scale: float = 1.0) -> Spread:
    """A history column at one epoch over the seeds (e.g. the test loss after epoch 1, as SSE with scale 784)."""
    values = []
    for run in setting.runs:
        h = history(run)
        values += [v * scale for e, v in zip(h.get("epoch", []), h.get(column, [])) if int(e) == epoch]
    return Spread.of(values)


def figures(ctx: Context, name: str, **kwargs: Any) -> Path:
    """Plot a sweep's jobs of this report (comparisons at the sweep's root); return the sweep's folder."""
    path = ctx.root / "runs" / name
    runs = [run for s in ctx.settings[name] for run in s.runs]
    plot(path, ctx.data_dir, ctx.device, seed=ctx.cfg.noise_seed, each_job=False, runs=runs, **kwargs)
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
    models = [load(run, None, ctx.device).model for run in runs]
    _, inputs = ood_inputs(kind, ctx.data_dir, ctx.device, ctx.cfg.noise_seed, models[0].in_shape, n=n)
    return [reconstruct(model, inputs)[0].mean().item() for model in models]


@torch.no_grad()
def ood_pca_error(ctx: Context, dataset: Any, k: int, kind: str, n: int = 1000) -> float:
    """Mean SSE/image of PCA-k (fitted on `dataset`'s training split) on the same n inputs as `ood_errors`."""
    shape = data_shape(dataset, ctx.data_dir)
    _, inputs = ood_inputs(kind, ctx.data_dir, ctx.device, ctx.cfg.noise_seed, shape, n=n)
    return reconstruct(fitted_pca(dataset, k, ctx.data_dir, ctx.device), inputs)[0].mean().item()


def split_of(ctx: Context, dataset: Any, split: str = "test"):
    return load_split(dataset, split, ctx.data_dir, ctx.device)


@torch.no_grad()
def noisy_input_errors(ctx: Context, dataset: Any, noise: tuple[str, float]) -> dict[str, float]:
    """Doing nothing: the SSE of the noisy test inputs (the draw `aerun eval` scores), unclipped and clipped
    to [0, 1], and the fraction of pixels the noise changed."""
    test = split_of(ctx, dataset).images
    noisy = noisy_test_inputs(test, noise, ctx.cfg.noise_seed)

    def sse(x: torch.Tensor) -> float:
        return (x - test).double().pow(2).flatten(1).sum(1).mean().item()

    return {"sse": sse(noisy), "clipped_sse": sse(noisy.clamp(0, 1)),
            "changed": (noisy != test).double().mean().item()}


@torch.no_grad()
def nearest_sse(images: torch.Tensor, reference: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """For each image, the SSE to its nearest image in `reference` (float64 sums of float32 products)."""
    ref = reference.flatten(1)
    ref_sq = ref.pow(2).sum(1)
    out = []
    for x in images.flatten(1).split(chunk):
        d = x.pow(2).sum(1, keepdim=True) + ref_sq[None] - 2 * x @ ref.T
        out.append(d.min(1).values.clamp_min(0).double())
    return torch.cat(out)


@dataclass
class Moves:
    """Part 5's question, measured: images moved in pixel space, and codes moved and decoded; per level the
    share of digit-like images and their mean SSE to the nearest training digit (codes: per seed)."""

    yardstick: Yardstick
    controls: list[dict[str, Any]]               # the yardstick on images it never saw (aerun.yardstick.controls)
    references: dict[str, tuple[float, float]]   # name -> (share digit-like, mean distance)
    reconstructions: tuple[float, float]         # the first seed's model's reconstructions of real test digits
    pixel: list[tuple[float, float]]             # per pixel-noise level
    code: list[list[tuple[float, float]]]        # [seed][level]


def yardstick_of(ctx: Context, dataset: Any) -> tuple[Yardstick, list[dict[str, Any]]]:
    """The report's yardstick of a data set and its controls, made once per report (report.json's `yardstick`)."""
    key = dataset["name"]
    if key not in ctx.yardsticks:
        stick = Yardstick.of(dataset, ctx.data_dir, ctx.device, ctx.cfg.noise_seed)
        ctx.yardsticks[key] = stick, controls(stick, dataset, ctx.data_dir, ctx.device, ctx.cfg.noise_seed)
    return ctx.yardsticks[key]


@torch.no_grad()
def manifold_moves(ctx: Context, setting: Setting, pixel_levels: Sequence[float], code_levels: Sequence[float],
                   samples: int = 20, shown: int = 1000) -> Moves:
    """Each of the showcase digits (one of each class) moved `samples` times at each level, in pixel space
    (clipped to [0, 1], as drawn) and in each seed's code space (decoded); noise drawn on the CPU."""
    cfg = setting.cfg
    train = split_of(ctx, cfg.dataset, "train").images
    test_split = split_of(ctx, cfg.dataset)
    test = test_split.images
    stick, checked = yardstick_of(ctx, cfg.dataset)
    digits = test[showcase(cfg.dataset, test_split)]

    def judged(images: torch.Tensor) -> tuple[float, float]:
        return stick.share(images), nearest_sse(images, train).mean().item()

    references = {"the blank image": judged(torch.zeros_like(digits[:1])),
                  "the mean training image": judged(train.mean(0, keepdim=True))}
    gen = generator(ctx.cfg.noise_seed, "cpu")
    pixel = []
    for level in pixel_levels:
        moved = digits.repeat_interleave(samples, 0)
        moved = (moved + level * torch.randn(moved.shape, generator=gen).to(moved.device)).clamp(0, 1)
        pixel.append(judged(moved))
    code = []
    for run in setting.runs:
        model = load(run, None, ctx.device).model.eval()
        z = model.encode(digits).repeat_interleave(samples, 0)
        gen = generator(ctx.cfg.noise_seed, "cpu")
        code.append([judged(model.decode(z + level * torch.randn(z.shape, generator=gen).to(z.device)))
                     for level in code_levels])
    first = load(setting.first.run_dir, None, ctx.device).model.eval()
    return Moves(stick, checked, references, judged(first(test[:shown])[0]), pixel, code)


def side_channel(model: Autoencoder) -> dict[str, int] | None:
    """What a decoder receives beside the code, per image (the unpooling decoders' pooling indices), with the
    code's size for comparison; None where the code is all it gets."""
    side = model.side_information()
    return None if side is None else {**side, "code": model.code_dim}


def code_measures(ctx: Context, runs: Sequence[Path], n: int = 1000,
                  jacobian: bool = True) -> tuple[list[float], list[float]]:
    """Per run, each model loaded once: (its code's scale, its Jacobian norm; none without `jacobian`).

    Scale: the standard deviation of each code unit over the test split, averaged over the units, the
    yardstick for a code-noise level (noise 0.5 is small beside units that spread by 10, large beside
    units in [0, 1]). Jacobian norm: ||dh/dx||_F^2, averaged over the first n test digits.
    """
    scales, norms = [], []
    for run in runs:
        loaded = load(run, None, ctx.device)
        images = split_of(ctx, loaded.checkpoint["config"]["dataset"]).images
        scales.append(encode(loaded.model, images).std(0).mean().item())
        if jacobian:
            norms.append(sum(loaded.model.jacobian_norm(x).detach().double().sum().item()
                             for x in images[:n].split(250)) / len(images[:n]))
    return scales, norms
