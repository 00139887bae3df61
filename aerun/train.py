"""Training: one function per step, a config in and a summary out.

`train(cfg, run_dir)` builds the model from the registry, trains it on the
tensor-resident training split (PCA is fitted in closed form instead), records
the loss per iteration and per epoch, and writes `checkpoints/last.pt` after
every epoch.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from aerun import checkpoint as ckpt
from aerun.data import load_split
from aerun.errors import UserError
from aerun.models import build, builder_args

log = logging.getLogger(__name__)

ITER_LOG = "loss_iter.csv"
EPOCH_LOG = "loss_epoch.csv"
ITER_FIELDS = ("step", "epoch", "loss", "penalty")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "test_loss", "seconds")
EVAL_BATCH = 4096


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but this machine has no CUDA GPU; use device=auto or device=cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"device={name!r} is not a device; allowed: auto, cpu, cuda")
    return torch.device(name)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The data order of an epoch depends on (seed, epoch) alone, so a resumed run sees the same batches."""
    return torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches of a fresh permutation; the last batch may be smaller."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    yield from order.split(batch_size)


def loss_terms(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error plus the L1 activity penalty of the sparse AE (assignment part 3).

    The penalty is `sparsity * sum(|code|)` over the batch and the code units, as the
    original notebook defined it, so its weight relative to the MSE grows with the batch size.
    """
    recon, code = model(inputs)
    mse = F.mse_loss(recon, targets)
    penalty = sparsity * code.abs().sum() if sparsity else torch.zeros((), device=mse.device)
    return mse, penalty


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    sparsity: float,
    desc: str,
) -> torch.Tensor:
    """One pass over `images`; returns (steps, 2) of [reconstruction MSE, penalty] per step."""
    model.train()
    n_steps = -(-images.shape[0] // batch_size)
    record = torch.empty(n_steps, 2, device=images.device)
    with tqdm(total=n_steps, desc=desc, unit="batch", leave=False, disable=None) as bar:
        for i, idx in enumerate(batches(images.shape[0], batch_size, generator)):
            x = images[idx]
            mse, penalty = loss_terms(model, x, x, sparsity)
            optimizer.zero_grad(set_to_none=True)
            (mse + penalty).backward()
            optimizer.step()
            record[i, 0] = mse.detach()
            record[i, 1] = penalty.detach()
            if i % 25 == 0:  # a host sync now and then, not every step
                bar.set_postfix(loss=f"{record[i, 0].item():.4f}")
            bar.update()
    return record.cpu()


@torch.no_grad()
def mean_mse(model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH) -> float:
    """Mean squared error per pixel over a whole split."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=images.device)
    for chunk in images.split(batch_size):
        recon, _ = model(chunk)
        total += F.mse_loss(recon, chunk, reduction="sum").double()
    return (total / images.numel()).item()


class History:
    """The loss per iteration and per epoch, as two CSV files in the run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.iter_path = run_dir / ITER_LOG
        self.epoch_path = run_dir / EPOCH_LOG
        for path, fields in ((self.iter_path, ITER_FIELDS), (self.epoch_path, EPOCH_FIELDS)):
            if not path.exists():
                path.write_text(",".join(fields) + "\n")

    def append(self, epoch: int, first_step: int, record: torch.Tensor, test_loss: float, seconds: float) -> None:
        with open(self.iter_path, "a", newline="") as f:
            writer = csv.writer(f)
            for i, (loss, penalty) in enumerate(record.tolist()):
                writer.writerow([first_step + i + 1, epoch, f"{loss:.6g}", f"{penalty:.6g}"])
        train_loss = record[:, 0].mean().item() if len(record) else float("nan")
        with open(self.epoch_path, "a", newline="") as f:
            csv.writer(f).writerow([epoch, first_step + len(record), f"{train_loss:.6g}", f"{test_loss:.6g}", f"{seconds:.3f}"])


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or fit) the model `cfg` describes; write history and checkpoint into `run_dir`."""
    run_dir = Path(run_dir)
    path = run_dir / ckpt.CHECKPOINT
    if path.exists():
        raise UserError(f"{run_dir} already holds a trained run; choose another hydra.run.dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    train_set = load_split(cfg.dataset, "train", cfg.paths.data_dir, device)
    test_set = load_split(cfg.dataset, "test", cfg.paths.data_dir, device)

    torch.manual_seed(cfg.seed)
    args = builder_args(cfg.model)
    model = build(cfg.model.builder, **args).to(device)
    config = OmegaConf.to_container(cfg, resolve=True)
    describe = dict(model=model, preset=cfg.model.name, builder=cfg.model.builder, args=args, config=config)
    history = History(run_dir)
    log.info("training %s (%s, code %d) on %s: %d train / %d test images, device %s",
             cfg.model.name, cfg.model.builder, model.code_dim, cfg.dataset.name, len(train_set), len(test_set), device)

    if hasattr(model, "fit"):
        start = time.perf_counter()
        model.fit(train_set.images)
        record = torch.tensor([[mean_mse(model, train_set.images), 0.0]])
        test_loss = mean_mse(model, test_set.images)
        history.append(0, 0, record, test_loss, time.perf_counter() - start)
        ckpt.save(ckpt.make(**describe, epoch=0, step=0), path)
        log.info("fitted: train MSE %.5f, test MSE %.5f", record[0, 0].item(), test_loss)
        return {"run_dir": str(run_dir), "epochs": 0, "test_loss": test_loss}

    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    step, test_loss = 0, float("nan")
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        record = train_epoch(
            model, optimizer, train_set.images,
            batch_size=cfg.batch_size, generator=epoch_generator(cfg.seed, epoch, device),
            sparsity=cfg.sparsity, desc=f"epoch {epoch}/{cfg.epochs}",
        )
        seconds = time.perf_counter() - start
        test_loss = mean_mse(model, test_set.images)
        history.append(epoch, step, record, test_loss, seconds)
        step += len(record)
        ckpt.save(ckpt.make(**describe, epoch=epoch, step=step, optimizer=optimizer), path)
        log.info("epoch %d/%d  train MSE %.5f  test MSE %.5f  %.1f s",
                 epoch, cfg.epochs, record[:, 0].mean().item(), test_loss, seconds)
    return {"run_dir": str(run_dir), "epochs": cfg.epochs, "test_loss": test_loss}
