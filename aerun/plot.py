"""Figures from checkpoints and history files, never from live training state.

Uses matplotlib's object API (no pyplot), so nothing depends on a display or on
global figure state. Every figure function takes loaded runs and data and writes
one PNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import torch
from matplotlib.figure import Figure
from torch import nn

from aerun import atomic, loggers, ood
from aerun.ood import check_kind
from aerun import checkpoint as ckpt
from aerun.data import Split, floats, label_names, load_split
from aerun.data import showcase as pick_showcase
from aerun.evaluate import (check_shape, fitted_pca, group_by_setting, is_sweep, job_labels, noisy_test_inputs,
                            setting_digest, without_seed)
from aerun.perimage import encode, reconstruct
from aerun.models import ACTIVATIONS, CODE_SPACE, CODE_USAGE, FILTERS, KERNELS, PCA, SAMPLES, Autoencoder
from aerun.noise import generator
from aerun.runs import find_runs
from aerun.runs import EPOCH_LOG, ITER_FIELDS, ITER_LOG, read_csv

FIGURES = "figures"
# part 5's levels, owned here: the noise of a digit moved in pixel space, and of its code before decoding (the plot
# command's defaults in conf/plot.yaml are these; a test holds them equal)
PIXEL_NOISE = (0.3, 0.5, 0.8, 0.9)
CODE_NOISE = (0.1, 0.5, 0.8, 500.0)
MANIFOLD_MAX_CODE = 32  # code-space figures for bottlenecks this small or smaller


@dataclass
class Row:
    """One row of an image grid: n images (n, H, W) or (n, C, H, W) with C 1 or 3 (drawn in colour), titles
    optional."""

    label: str
    images: torch.Tensor
    titles: Sequence[str] | None = None
    cmap: str = "gray"
    vmin: float | None = 0.0
    vmax: float | None = 1.0


@dataclass
class Loaded:
    run: Path
    label: str
    checkpoint: dict[str, Any]
    model: Autoencoder

    @property
    def trained_noise(self) -> tuple[str, float]:
        noise = self.checkpoint["config"]["noise"]
        return noise["name"], float(noise["level"])


def load(run: Path, label: str | None, device: str, prefix: str = "", which: str = "last") -> Loaded:
    """A run's checkpoint (`which`: last, or best) and model; labelled by `label`, else by its preset's name."""
    checkpoint = ckpt.load(ckpt.checkpoint_path(run, which))
    return Loaded(run, prefix + (label or checkpoint["model"]["name"]), checkpoint, ckpt.rebuild(checkpoint, device))


# --------------------------------------------------------------------------- drawing helpers


def _save(fig: Figure, path: Path) -> Path:
    return atomic.write_png(fig, path)


def image_grid(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Rows of images, each row drawn as one strip (one Axes per row keeps large grids fast)."""
    n = max(r.images.shape[0] for r in rows)
    fig = Figure(figsize=(1.25 * n + 1.2, 1.45 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows):
        images = row.images.detach().float().cpu()
        colour = images.dim() == 4 and images.shape[1] == 3
        images = images.permute(0, 2, 3, 1) if colour else (images[:, 0] if images.dim() == 4 else images)
        height, width = images.shape[1:3]
        gap = max(1, width // 7)
        # a colour strip is drawn as it is (values clipped to [0, 1]; gaps white), a grey one through its colour map
        strip = torch.full((height, n * (width + gap) - gap, *images.shape[3:]), 1.0 if colour else float("nan"))
        for c, image in enumerate(images[:n]):
            strip[:, c * (width + gap): c * (width + gap) + width] = image
        if colour:
            low, high = row.vmin if row.vmin is not None else 0.0, row.vmax if row.vmax is not None else 1.0
            ax.imshow(((strip - low) / (high - low)).clamp(0, 1).numpy(), interpolation="nearest")
        else:
            cmap = matplotlib.colormaps[row.cmap].with_extremes(bad="white")
            ax.imshow(strip.numpy(), cmap=cmap, vmin=row.vmin, vmax=row.vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        for c, text in enumerate((row.titles or [])[:n]):
            ax.text(c * (width + gap) + (width - 1) / 2, -1, text, ha="center", va="bottom", fontsize=7)
        ax.set_ylabel(row.label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def sse_titles(sse: torch.Tensor) -> list[str]:
    return [f"SSE {v:.2f}" for v in sse.tolist()]


def output_row(label: str, model: nn.Module, inputs: torch.Tensor, clean: torch.Tensor | None = None) -> Row:
    """A model's reconstructions of `inputs`, titled with their SSE against `clean` (default: the inputs)."""
    clean = inputs if clean is None else clean
    with torch.no_grad():
        recon = model(inputs)[0]
    return Row(label, recon, sse_titles(reconstruct(model, inputs, clean)[0]))


def grid_side(n: int) -> tuple[int, int]:
    """A near-square (rows, cols) holding n cells: 1156 -> 34x34, 256 -> 16x16, 30 -> 5x6."""
    rows = math.isqrt(n)
    return rows, -(-n // rows)


def code_maps(codes: torch.Tensor) -> torch.Tensor:
    """Codes (n, D) as images (n, rows, cols), padded with NaN (drawn blank)."""
    rows, cols = grid_side(codes.shape[1])
    padded = torch.full((codes.shape[0], rows * cols), float("nan"))
    padded[:, : codes.shape[1]] = codes.detach().float().cpu()
    return padded.view(-1, rows, cols)


def normalised(weights: torch.Tensor) -> torch.Tensor:
    """Each filter scaled to [0, 1] on its own, for display."""
    flat = weights.detach().float().cpu().flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).view_as(weights.detach().cpu())


def first_layer_filters(model: Autoencoder) -> torch.Tensor | None:
    """Encoder filters as images of the input's shape, where the family declares them (each unit's input weights;
    PCA: its components)."""
    return model.encoder_filters() if FILTERS in model.figures else None


# --------------------------------------------------------------------------- figures


def _curve(runs: Sequence[Path], log: str, x: str, y: str) -> tuple[list[float], torch.Tensor] | None:
    """A column over seeds: x of the first run, and y (seeds, points) cut to the shortest run."""
    columns = [read_csv(run / log) for run in runs]
    if not all(c and y in c for c in columns):
        return None
    length = min(len(c[y]) for c in columns)
    return columns[0][x][:length], torch.tensor([c[y][:length] for c in columns])


def _band(ax, xs: Sequence[float], ys: torch.Tensor, style: str, label: str, color=None, lw: float = 1.2):
    """The mean over seeds as a line, and the range of the seeds (min to max) as a band around it."""
    (line,) = ax.plot(xs, ys.mean(0).tolist(), style, color=color, lw=lw,
                      label=label + (f" (mean of {len(ys)} seeds; band: min-max)" if len(ys) > 1 else ""))
    if len(ys) > 1:
        ax.fill_between(xs, ys.min(0).values.tolist(), ys.max(0).values.tolist(), color=line.get_color(),
                        alpha=0.2, lw=0)
    return line


@dataclass
class Curves:
    """One setting's loss curves: its runs (they differ only in their seed), whether it trained on noisy
    inputs, and what its family calls its training loss ("MSE", or a VAE's "NLL (nats/image)")."""

    label: str
    runs: Sequence[Path]
    noisy: bool = False
    reconstruction: str = "MSE"


def loss_figures(histories: Sequence[Curves], out_dir: Path) -> list[Path]:
    """Loss per iteration (train) and per epoch (train and test), one line per setting.

    Each line is the runs' mean and a band spans them. A run trained on noisy inputs has its training
    loss labelled so: it is the loss on corrupted inputs, while the test loss is on clean ones. Each
    regulariser a run trains with (a column of loss_iter.csv after the fixed ones) is drawn dotted
    beside its training loss. A training loss that is not the MSE (a VAE's NLL, in nats per image) goes
    on a second axis (right), with its terms; the test loss, like every run's, is the MSE per pixel (left).
    """
    it_fig, ep_fig = Figure(figsize=(7, 4), layout="constrained"), Figure(figsize=(7, 4), layout="constrained")
    it_ax, ep_ax = it_fig.subplots(), ep_fig.subplots()
    twins: dict[Any, Any] = {}  # an axis -> its right-hand axis in nats, made when first needed

    def nats(ax) -> Any:
        if ax not in twins:
            twins[ax] = ax.twinx()
            twins[ax].set_ylabel("training terms in nats per image (NLL and its regularisers)")
            twins[ax].set_yscale("log")
        return twins[ax]

    trained, regularised = False, False
    for curves in histories:
        label, runs = curves.label, curves.runs
        iters = _curve(runs, ITER_LOG, "step", "loss")
        epochs = read_csv(runs[0] / EPOCH_LOG)
        if iters is None or epochs.get("epoch", [0])[-1] == 0:  # a fitted model (PCA): no training curve
            continue
        trained = True
        terms = [t for t in read_csv(runs[0] / ITER_LOG) if t not in ITER_FIELDS]
        own_unit, regularised = curves.reconstruction != "MSE", regularised or bool(terms)
        it_train, ep_train = (nats(it_ax), nats(ep_ax)) if own_unit else (it_ax, ep_ax)
        name = (label + (" (noisy inputs)" if curves.noisy else "")
                + (f" {curves.reconstruction}" if own_unit else ""))
        line = _band(it_train, *iters, "-", name, lw=0.8)
        for term in terms:
            _band(it_train, *_curve(runs, ITER_LOG, "step", term), ":", f"{label} {term} term", line.get_color(), lw=0.8)
        train_curve, test_curve = _curve(runs, EPOCH_LOG, "epoch", "train_loss"), _curve(runs, EPOCH_LOG, "epoch", "test_loss")
        _band(ep_train, *train_curve, "o-", f"{name} train", line.get_color())
        _band(ep_ax, *test_curve, "s--", f"{label} test", line.get_color())
    if not trained:
        return []
    for ax, xlabel in ((it_ax, "iteration"), (ep_ax, "epoch")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("reconstruction MSE per pixel" + (" (dotted: regularisers)" if regularised and ax is it_ax else ""))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()[0] + (twins[ax].get_legend_handles_labels()[0] if ax in twins else [])
        ax.legend(handles=handles, fontsize=7)
    ep_ax.xaxis.get_major_locator().set_params(integer=True)
    it_ax.set_title("Training loss per iteration")
    ep_ax.set_title("Loss per epoch (train: mean over the epoch; test: at its end)")
    return [_save(it_fig, out_dir / "loss_iter.png"), _save(ep_fig, out_dir / "loss_epoch.png")]


def reconstructions_figure(models: Sequence[Loaded], test: Split, showcase: list[int], pca: PCA, out: Path,
                           title: str) -> Path:
    originals = test.take(showcase)
    reference = output_row(f"PCA-{pca.code_dim}", pca, originals)
    rows = [Row("original", originals), reference]
    for m in models:
        row = output_row(m.label, m.model, originals)
        if not torch.allclose(row.images, reference.images, atol=1e-5):  # a PCA run of this k: its row is there
            rows.append(row)
    return image_grid(rows, out, title)


def filters_figure(models: Sequence[Loaded], n: int, out: Path, per_row: int = 16) -> Path | None:
    """Encoder filters as 28x28 images: for one model, a grid of its first n; for several, a row each."""
    found = [(m.label, f) for m in models if (f := first_layer_filters(m.model)) is not None]
    if not found:
        return None
    if len(found) == 1:
        label, filters = found[0]
        filters = normalised(filters[:n])
        rows = [Row(f"units {i}-{min(i + per_row, len(filters)) - 1}", filters[i: i + per_row])
                for i in range(0, len(filters), per_row)]
        return image_grid(rows, out, f"{label}: encoder filters (each unit's input weights, scaled to [0, 1])")
    rows = [Row(label, normalised(f[:per_row])) for label, f in found]
    return image_grid(rows, out, f"Encoder filters, first {per_row} units of each model (scaled to [0, 1])")


def mosaic(weight: torch.Tensor, limit: int = 16) -> torch.Tensor:
    """Kernels (A, B, k, k) tiled into one image, A down and B across, NaN gaps between them."""
    w = weight.detach().float().cpu()[:limit, :limit]
    a, b, k, _ = w.shape
    tiles = torch.full((a, k + 1, b, k + 1), float("nan"))
    tiles[:, :k, :, :k] = w.permute(0, 2, 1, 3)
    return tiles.reshape(a * (k + 1), b * (k + 1))[:-1, :-1]


def conv_filters_figure(model: Loaded, out: Path) -> Path | None:
    """Every convolution kernel of a family that declares them (the conv AEs: encoder and decoder layers),
    up to 16x16 per layer."""
    if KERNELS not in model.model.figures:
        return None
    layers = model.model.kernels()
    columns = 4
    fig = Figure(figsize=(3.2 * columns, 3.6 * -(-len(layers) // columns)), layout="constrained")
    axes = fig.subplots(-(-len(layers) // columns), columns, squeeze=False).flatten()
    for ax, (name, weight) in zip(axes, layers):
        scale = weight.abs().max().item() or 1.0
        ax.imshow(mosaic(weight).numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(f"{name}\nweight {tuple(weight.shape)}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(layers):]:
        ax.set_axis_off()
    fig.suptitle(f"{model.label}: convolution kernels, one block per (dim 0, dim 1) pair; red +, blue -",
                 fontsize=10)
    return _save(fig, out)


def activations_figure(models: Sequence[Loaded], test, showcase: list[int], out: Path) -> Path | None:
    """Code activations as maps: the mean over the test split, then each showcase digit; a row per model."""
    rows = []
    for m in models:
        if ACTIVATIONS not in m.model.figures:
            continue
        _, codes = reconstruct(m.model, test.pixels)
        maps = code_maps(torch.cat([codes.mean(0, keepdim=True), codes[showcase]]))
        zero = (codes == 0).double().mean().item()
        titles = [f"mean ({zero:.0%} zero)"] + label_names(test, showcase)
        rows.append(Row(m.label, maps, titles, cmap="viridis", vmin=0, vmax=float(codes[showcase].max())))
    if not rows:
        return None
    return image_grid(rows, out, "Code activations: mean over the test split, then each showcase image")


def denoising_figure(
    models: Sequence[Loaded], noises: Sequence[tuple[str, float]], baseline: Loaded | None,
    test, showcase: list[int], seed: int, out: Path,
) -> Path | None:
    """For each model: its noisy inputs, the baseline's outputs, its own outputs; SSE against the clean digits."""
    clean = test.take(showcase)
    rows = []
    for m, (name, level) in zip(models, noises):
        if name == "none":
            continue
        noisy = floats(noisy_test_inputs(test.pixels, (name, level), seed)[showcase])  # the draw `aerun eval` scores
        rows.append(Row(f"{name} {level:g}", noisy, sse_titles((noisy - clean).pow(2).flatten(1).sum(1))))
        if baseline is not None:
            rows.append(output_row(baseline.label, baseline.model, noisy, clean))
        rows.append(output_row(m.label, m.model, noisy, clean))
    if not rows:
        return None
    return image_grid(rows, out, "Noisy inputs and their reconstructions (SSE against the clean digit)")


def manifold_figures(model: Loaded, test, showcase: list[int], pixel_noise, code_noise, seed: int, out_dir: Path) -> list[Path]:
    """Assignment part 5: random moves in pixel space against moves in code space, and interpolations."""
    m = model.model
    if CODE_SPACE not in m.figures or m.code_dim > MANIFOLD_MAX_CODE:
        return []
    gen = generator(seed, "cpu")  # drawn on the CPU: the same moves on every device
    digit = test.take(showcase[2 % len(showcase)])
    samples = 8
    written = []
    pixel_rows = [Row("original", digit[None])]
    for level in pixel_noise:
        moved = digit + level * torch.randn((samples, *digit.shape), generator=gen).to(digit.device)
        pixel_rows.append(Row(f"pixel noise {level:g}", moved, vmin=0, vmax=1))
    written.append(image_grid(pixel_rows, out_dir / "manifold_pixel.png",
                              "A digit moved in random directions of pixel space: no longer a digit"))
    with torch.no_grad():
        code = m.encode(digit[None])
        code_rows = [Row("original", digit[None]), Row("decoded", m.decode(code))]
        for level in code_noise:
            moved = code + level * torch.randn((samples, code.shape[1]), generator=gen).to(code.device)
            code_rows.append(Row(f"code noise {level:g}", m.decode(moved)))
        written.append(image_grid(code_rows, out_dir / "manifold_code.png",
                                  f"{model.label}: noise added to the {m.code_dim}-d code, then decoded"))
        a, b = test.take(showcase[2 % len(showcase)]), test.take(showcase[7 % len(showcase)])
        t = torch.linspace(0, 1, 10, device=a.device).view(-1, 1, 1, 1)
        za, zb = m.encode(a[None]), m.encode(b[None])
        inter_rows = [
            Row("pixel space", (1 - t) * a + t * b, [f"t={v:.2f}" for v in t.flatten().tolist()]),
            Row("code space", m.decode((1 - t.view(-1, 1)) * za + t.view(-1, 1) * zb)),
        ]
        written.append(image_grid(inter_rows, out_dir / "manifold_interpolation.png",
                                  f"{model.label}: from one digit to another, in pixel space and in code space"))
    return written


def samples_figure(model: Loaded, seed: int, out: Path, rows: int = 4, per_row: int = 10) -> Path | None:
    """Digits from nothing, for a family with a prior (a VAE's N(0, I)): codes drawn from it, decoded."""
    m = model.model
    if SAMPLES not in m.figures:
        return None
    device = next(m.parameters()).device
    gen = generator(seed, "cpu")  # drawn on the CPU: the same samples on every device
    with torch.no_grad():
        images = m.decode(m.prior(rows * per_row, gen).to(device))
    grid = [Row("" if r else "samples", images[r * per_row:(r + 1) * per_row]) for r in range(rows)]
    return image_grid(grid, out, f"{model.label}: codes drawn from the prior of its {m.code_dim}-d code, decoded")


def latent_map_figure(model: Loaded, test, out: Path, side: int = 15) -> Path | None:
    """A 2-d code drawn whole: the test set's codes coloured by digit, beside images decoded over the same area."""
    m = model.model
    if m.code_dim != 2 or CODE_SPACE not in m.figures:
        return None
    codes = encode(m, test.pixels).cpu()
    lo, hi = codes.quantile(0.005, dim=0), codes.quantile(0.995, dim=0)
    fig = Figure(figsize=(12, 5.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    if test.labels is not None:
        classes = max(10, test.n_classes)
        points = left.scatter(codes[:, 0].numpy(), codes[:, 1].numpy(), c=test.labels.cpu().numpy(),
                              cmap="tab10" if classes <= 10 else "tab20", vmin=-0.5, vmax=classes - 0.5, s=2,
                              alpha=0.6, rasterized=True)
        fig.colorbar(points, ax=left, ticks=range(test.n_classes), label="class")
    else:
        left.scatter(codes[:, 0].numpy(), codes[:, 1].numpy(), s=2, alpha=0.6, rasterized=True)
    left.set(xlim=(lo[0].item(), hi[0].item()), ylim=(lo[1].item(), hi[1].item()), xlabel="code 1", ylabel="code 2",
             title=f"{len(codes):,} test images' codes")
    xs = torch.linspace(lo[0].item(), hi[0].item(), side)
    ys = torch.linspace(hi[1].item(), lo[1].item(), side)  # top row: the highest code 2, as in the scatter
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).view(-1, 2)
    with torch.no_grad():
        images = m.decode(grid.to(next(m.parameters()).device)).cpu().clamp(0, 1)
    c, h, w = images.shape[1:]
    mosaic_image = images.view(side, side, c, h, w).permute(0, 3, 1, 4, 2).reshape(side * h, side * w, c)
    right.imshow(mosaic_image.numpy() if c == 3 else mosaic_image[..., 0].numpy(), cmap="gray", vmin=0, vmax=1,
                 interpolation="nearest",
                 extent=(lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item()), aspect="auto")
    right.set(xlabel="code 1", ylabel="code 2", title=f"decoded at a {side}x{side} grid of codes over the same area")
    fig.suptitle(f"{model.label}: the 2-d code space (central 99 % of the test codes on each axis)", fontsize=10)
    return _save(fig, out)


def code_usage_figure(model: Loaded, test, out: Path) -> Path | None:
    """How often each codebook entry is chosen over the test split, most used first (a family with a codebook)."""
    m = model.model
    if CODE_USAGE not in m.figures:
        return None
    counts = m.code_usage(test.images).double().cpu()
    ranked = counts.sort(descending=True).values
    share = ranked / ranked.sum()
    used = int((counts > 0).sum())
    entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.bar(range(len(ranked)), share.numpy(), width=1.0, color="#4477aa")
    ax.axhline(1 / len(ranked), color="#cc6677", lw=1, ls="--", label="uniform use of every entry")
    ax.set(xlabel="codebook entry, most used first", ylabel="share of the test split's code vectors",
           title=f"{model.label}: {used} of {len(ranked)} entries used, perplexity {math.exp(entropy):.1f}")
    ax.set_xlim(-0.5, len(ranked) - 0.5)
    ax.legend(fontsize=8)
    return _save(fig, out)


def code_noise_figure(models: Sequence[Loaded], test, showcase: list[int], levels: Sequence[float], seed: int,
                      out: Path, samples: int = 8) -> Path:
    """Part 5's code-space moves for several models, one above the other: one digit, each model's code of it
    plus noise at each level, decoded. Every model gets the same noise draw per level (its first code_dim numbers)."""
    digit = test.take(showcase[2 % len(showcase)])
    rows = [Row("original", digit[None])]
    for loaded in models:
        m = loaded.model
        with torch.no_grad():
            code = m.encode(digit[None])
            rows.append(Row(f"{loaded.label}\ndecoded", m.decode(code)))
            for level in levels:
                gen = generator(seed, "cpu")
                noise = torch.randn((samples, code.shape[1]), generator=gen).to(code.device)
                rows.append(Row(f"{loaded.label}\n+ noise {level:g}", m.decode(code + level * noise)))
    return image_grid(rows, out, "Noise added to each model's code of one digit, then decoded")


def ood_inputs(kind: str, data_dir: Path | str, device: str, seed: int, shape: Sequence[int],
               n: int = 10, path: str | None = None) -> tuple[str, torch.Tensor]:
    """Ten inputs unlike the training data, as floats: uniform noise of the models' shape (continuous), or another
    data set's first test images made the models' shape (aerun.ood.other_images)."""
    check_kind(kind)
    if kind == "noise":
        return "uniform random images", torch.rand((n, *shape), generator=generator(seed, "cpu")).to(device)
    name, pixels = ood.other_images(kind, data_dir, device, seed, shape, n=n, path=path)
    return name, floats(pixels)


def ood_figure(models: Sequence[Loaded], kind: str, data_dir, device: str, seed: int, out: Path,
               path: str | None = None) -> Path:
    name, inputs = ood_inputs(kind, data_dir, device, seed, models[0].model.in_shape, path=path)
    rows = [Row("input", inputs)] + [output_row(m.label, m.model, inputs) for m in models]
    return image_grid(rows, out, f"Inputs unlike the training data ({name}) and their reconstructions")


# --------------------------------------------------------------------------- the command


def seed_groups(models: Sequence[Loaded]) -> list[list[Loaded]]:
    """Runs that differ only in their seed, together, lowest seed first."""
    return group_by_setting(models, lambda m: setting_digest(m.checkpoint["config"]),
                            lambda m: m.checkpoint["config"]["seed"])


def plot(
    path: Path, data_dir: Path | str, device: str, *, baseline: Path | None = None, ood: str = "none",
    ood_path: str | None = None,
    noise: tuple[str, float] = ("none", 0.0), filters: int = 64,
    pixel_noise: Sequence[float] = PIXEL_NOISE, code_noise: Sequence[float] = CODE_NOISE,
    seed: int = 0, each_job: bool = True, runs: Sequence[Path] | None = None, which: str = "last",
) -> list[Path]:
    """Write figures/*.png for a run, or for every job of a sweep plus comparisons at its root.

    Without `each_job`, a sweep gets its comparisons and each job only what exists per model
    (the convolutional kernels): the report's choice, many times faster. `runs` picks the jobs
    of the sweep to draw (default: every job in it).
    """
    path = Path(path)
    runs = list(runs) if runs is not None else find_runs(path)
    labels = job_labels(runs) if is_sweep(path, runs) else [None]
    loaded = [load(run, label and without_seed(label), device, which=which) for run, label in zip(runs, labels)]
    groups = seed_groups(loaded)
    models = [members[0] for members in groups]  # showcase figures: each setting's lowest seed
    base = None
    if baseline is not None:
        base = load(find_runs(Path(baseline), "baseline")[0], None, device, prefix="baseline: ")
    check_kind(ood)
    dataset = models[0].checkpoint["config"]["dataset"]
    test = load_split(dataset, "test", data_dir, device)
    for m in loaded:
        check_shape(m.model, test.shape, m.run, dataset["name"])
    showcase = pick_showcase(dataset, test)
    span = f"{dataset['name']} test images {showcase[0]}–{showcase[-1]}"

    def noise_of(m: Loaded) -> tuple[str, float]:
        return noise if noise[0] != "none" else m.trained_noise

    def figures_for(group: Sequence[Loaded], out: Path, settings: Sequence[Sequence[Loaded]]) -> list[Path]:
        pca = fitted_pca(dataset, group[0].model.code_dim, data_dir, device)
        with_base = [*group, base] if base is not None else list(group)
        written = [reconstructions_figure(with_base, test, showcase, pca, out / "reconstructions.png",
                                          f"{span}: reconstructions (SSE per image)")]
        written += loss_figures([Curves(g[0].label, [m.run for m in g], g[0].trained_noise[0] != "none",
                                        g[0].model.reconstruction_name) for g in settings], out)
        written.append(filters_figure(with_base, filters, out / "filters.png"))
        written.append(activations_figure(with_base, test, showcase, out / "activations.png"))
        written.append(denoising_figure(group, [noise_of(m) for m in group], base, test, showcase, seed,
                                        out / "denoising.png"))
        if ood != "none":
            written.append(ood_figure(with_base, ood, data_dir, device, seed, out / f"ood_{ood}.png", ood_path))
        return written

    written: list[Path | None] = []
    for m in models:
        out = m.run / FIGURES
        if each_job or len(models) == 1:
            written += figures_for([m], out, [[m]])
        written.append(conv_filters_figure(m, out / "conv_filters.png"))
        written += manifold_figures(m, test, showcase, pixel_noise, code_noise, seed, out)
        written.append(samples_figure(m, seed, out / "samples.png"))
        written.append(latent_map_figure(m, test, out / "latent_map.png"))
        written.append(code_usage_figure(m, test, out / "code_usage.png"))
    if len(loaded) > 1:
        written += figures_for(models, path / FIGURES, groups)
    found = [p for p in written if p is not None]
    for run in runs:  # each run's own figures into its tracker runs (trackers.json), if it has any
        loggers.attach(run, [p for p in found if Path(run).resolve() in p.resolve().parents])
    return found
