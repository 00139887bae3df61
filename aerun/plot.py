"""Figures from checkpoints and history files, never from live training state.

Uses matplotlib's object API (no pyplot), so nothing depends on a display or on
global figure state.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import torch
from matplotlib.figure import Figure

from aerun import checkpoint as ckpt
from aerun.data import load_split
from aerun.models import PCA
from aerun.evaluate import find_runs, fitted_pca, is_sweep, job_labels, sse_per_image
from aerun.train import EPOCH_LOG, ITER_LOG

FIGURES = "figures"


def read_csv(path: Path) -> dict[str, list[float]]:
    """Columns of a history file; empty when the run has none (yet)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: [float(r[key]) for r in rows] for key in rows[0]}


def image_grid(rows: Sequence[tuple[str, torch.Tensor, Sequence[float] | None]], path: Path, title: str) -> Path:
    """One row of images per entry: (row label, images (n, 1, H, W), SSE per image or None)."""
    n = rows[0][1].shape[0]
    fig = Figure(figsize=(1.3 * n + 1.0, 1.5 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, images, errors) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c, 0].detach().cpu().clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if errors is not None:
                ax.set_title(f"SSE {errors[c]:.2f}", fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def loss_figures(histories: Sequence[tuple[str, Path]], out_dir: Path) -> list[Path]:
    """Loss per iteration (train) and per epoch (train and test), one line per run."""
    it_fig, ep_fig = Figure(figsize=(7, 4), layout="constrained"), Figure(figsize=(7, 4), layout="constrained")
    it_ax, ep_ax = it_fig.subplots(), ep_fig.subplots()
    trained = False
    for label, run in histories:
        iters, epochs = read_csv(run / ITER_LOG), read_csv(run / EPOCH_LOG)
        if not iters or epochs.get("epoch", [0])[-1] == 0:  # PCA: fitted, no training curve
            continue
        trained = True
        (line,) = it_ax.plot(iters["step"], iters["loss"], lw=0.8, label=label)
        ep_ax.plot(epochs["epoch"], epochs["train_loss"], "o-", color=line.get_color(), label=f"{label} train")
        ep_ax.plot(epochs["epoch"], epochs["test_loss"], "s--", color=line.get_color(), label=f"{label} test")
    if not trained:
        return []
    for ax, xlabel in ((it_ax, "iteration"), (ep_ax, "epoch")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("MSE per pixel")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    it_ax.set_title("Training loss per iteration")
    ep_ax.set_title("Loss per epoch (train: mean over the epoch; test: at its end)")
    return [_save(it_fig, out_dir / "loss_iter.png"), _save(ep_fig, out_dir / "loss_epoch.png")]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def reconstruction_rows(runs: Sequence[Path], labels: Sequence[str], data_dir: Path | str, device: str):
    """Rows for `image_grid`: the showcase originals, PCA at the first run's code size, then each run."""
    first = ckpt.load(runs[0] / ckpt.CHECKPOINT)
    models = [ckpt.rebuild(first if run == runs[0] else ckpt.load(run / ckpt.CHECKPOINT), device) for run in runs]
    dataset = first["config"]["dataset"]
    showcase = [int(i) for i in dataset["showcase"]]
    test = load_split(dataset, "test", data_dir, device)
    originals = test.images[showcase]
    rows: list[tuple[str, torch.Tensor, Sequence[float] | None]] = [("original", originals, None)]
    pca = fitted_pca(dataset, first["model"]["code_dim"], data_dir, device)
    with torch.no_grad():
        rows.append((f"PCA-{pca.code_dim}", pca(originals)[0], sse_per_image(pca, originals).tolist()))
        for model, label in zip(models, labels):
            if isinstance(model, PCA) and model.code_dim == pca.code_dim:
                continue  # the PCA row already shows it
            rows.append((label, model(originals)[0], sse_per_image(model, originals).tolist()))
    return dataset["name"], showcase, rows


def plot(path: Path, data_dir: Path | str, device: str) -> list[Path]:
    """Write figures/*.png for a run, or for every job of a sweep plus overlays at its root."""
    path = Path(path)
    runs = find_runs(path)
    written = []
    for run in runs:
        name = ckpt.load(run / ckpt.CHECKPOINT)["model"]["name"]
        dataset, showcase, rows = reconstruction_rows([run], [name], data_dir, device)
        title = f"{dataset} test images {showcase[0]}–{showcase[-1]}: reconstructions (SSE per image)"
        written.append(image_grid(rows, run / FIGURES / "reconstructions.png", title))
        written += loss_figures([(name, run)], run / FIGURES)
    if is_sweep(path, runs):
        labels = job_labels(runs)
        dataset, showcase, rows = reconstruction_rows(runs, labels, data_dir, device)
        title = f"{dataset} test images {showcase[0]}–{showcase[-1]}: every job of the sweep (SSE per image)"
        written.append(image_grid(rows, path / FIGURES / "reconstructions.png", title))
        written += loss_figures(list(zip(labels, runs)), path / FIGURES)
    return written
