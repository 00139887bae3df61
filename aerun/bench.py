"""`aerun bench`: one training epoch, the original pipeline against aerun's, and the FLOP bound.

(a) reference: torchvision `MNIST` with `ToTensor` through a `DataLoader` (batch
    256, shuffle) and the original notebook's plain loop;
(b) aerun: the tensor-resident split and `aerun.train.train_epoch`;
(c) floor: the epoch's matrix products alone, at the training shapes, on
    preallocated tensors, each step followed by the optimiser's step -- what any
    loop around this BLAS spends at least;
(d) bound: the epoch's matrix-multiply FLOPs over this machine's measured float32
    matmul throughput (2048x2048 products: what the BLAS reaches at its best shapes).

All paths use the same model (same builder, same initial weights) and
optimiser; the median of `repeats` epochs is reported.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from aerun.data import ensure, load_split
from aerun.models import build, builder_args
from aerun.train import epoch_generator, resolve_device, train_epoch

log = logging.getLogger(__name__)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Float32 matrix-multiply throughput of this device, GFLOP/s: the best of `repeats`.

    The product goes into a preallocated tensor, so the number is the multiply's alone;
    the best repeat is the machine's attainable peak (a shared machine only ever slows it).
    """
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    for _ in range(3):
        torch.mm(a, b, out=c)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def training_products(model: nn.Module, batch: int) -> list[tuple[str, int, int, int, int]]:
    """The matrix products of one training step of the model's linear layers, as (kind, layer, m, k, n):
    per layer the forward x·Wᵀ (batch, in, out), the weight gradient gᵀ·x (out, batch, in) and,
    except in the first layer (the images need no gradient), the input gradient g·W (batch, out, in)."""
    products = []
    for i, m in enumerate(linear_layers(model)):
        products.append(("forward", i, batch, m.in_features, m.out_features))
        products.append(("weight_grad", i, m.out_features, batch, m.in_features))
        if i > 0:
            products.append(("input_grad", i, batch, m.out_features, m.in_features))
    return products


def training_flops(model: nn.Module, n_images: int) -> float:
    """Matrix-multiply FLOPs of one epoch: 2·m·k·n for every product of every step."""
    return float(sum(2 * m * k * n for *_, m, k, n in training_products(model, 1)) * n_images)


Operands = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def floor_steps(model: nn.Module, n_images: int, batch_size: int, device: torch.device) -> list[Operands]:
    """Per step of an epoch, the (a, b, out) of each of its products, in the layouts training
    uses: weights are the model's own, stored (out, in), so the forward multiplies by a
    transposed view; the last step takes the epoch's remainder."""
    linears = linear_layers(model)

    def step(batch: int) -> Operands:
        operands = []
        for kind, i, m, k, n in training_products(model, batch):
            weight = linears[i].weight.detach()
            if kind == "forward":
                a, b = torch.rand(m, k, device=device), weight.t()
            elif kind == "weight_grad":
                a, b = torch.randn(k, m, device=device).t(), torch.rand(k, n, device=device)
            else:
                a, b = torch.randn(m, k, device=device), weight
            operands.append((a, b, torch.empty(m, n, device=device)))
        return operands

    full, rest = divmod(n_images, batch_size)
    return [step(batch_size)] * full + ([step(rest)] if rest else [])


def floor_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, n_images: int, batch_size: int,
                device: torch.device) -> float:
    """Seconds for one epoch of the training steps' matrix products alone, each step followed
    by the optimiser's step on zero gradients (its memory traffic is training's; Adam without
    weight decay leaves the weights as they are). No activation, loss or data gathering is timed."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    steps = floor_steps(model, n_images, batch_size, device)
    synchronize(device)
    start = time.perf_counter()
    for operands in steps:
        for a, b, out in operands:
            torch.mm(a, b, out=out)
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def reference_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader, device: torch.device) -> float:
    """The original notebook's loop over a DataLoader; seconds for one epoch."""
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for images, _ in loader:
        images = images.to(device)
        recon, _ = model(images)
        loss = F.mse_loss(recon, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def aerun_epoch(model, optimizer, images: torch.Tensor, batch_size: int, seed: int, epoch: int) -> float:
    device = images.device
    synchronize(device)
    start = time.perf_counter()
    train_epoch(model, optimizer, images, batch_size=batch_size,
                generator=epoch_generator(seed, epoch, device), sparsity=0.0, desc="aerun")
    synchronize(device)
    return time.perf_counter() - start


KINDS = ("reference", "aerun", "floor")


def bench_preset(name: str, model_cfg: DictConfig, cfg: DictConfig, device: torch.device, loader,
                 probes: list[float]) -> tuple[dict[str, list[float]], float]:
    """Seconds of each epoch of each kind, and the epoch's FLOPs; after each kind the matmul
    throughput is probed again (into `probes`), so the machine's best is found across the run."""
    images = load_split({"name": "mnist"}, "train", cfg.paths.data_dir, device).images
    epochs: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for kind in KINDS:
        torch.manual_seed(cfg.seed)
        model = build(model_cfg.builder, **builder_args(model_cfg)).to(device)
        optimizer = instantiate(cfg.optimizer)(params=model.parameters())
        for epoch in range(1, cfg.repeats + 1):
            if kind == "reference":
                seconds = reference_epoch(model, optimizer, loader, device)
            elif kind == "aerun":
                seconds = aerun_epoch(model, optimizer, images, cfg.batch_size, cfg.seed, epoch)
            else:
                seconds = floor_epoch(model, optimizer, len(images), cfg.batch_size, device)
            epochs[kind].append(seconds)
            log.info("%-8s %-9s epoch %d: %.2f s", name, kind, epoch, seconds)
        probes.append(matmul_gflops(device))
    return epochs, training_flops(model, len(images))


def summarise(epochs: dict[str, list[float]], flops: float, gflops: float) -> dict[str, Any]:
    """A preset's row: the median epoch of each kind, the bound at `gflops`, and their ratios."""
    reference_s, aerun_s, floor_s = (statistics.median(epochs[kind]) for kind in KINDS)
    bound_s = flops / (gflops * 1e9)
    return {
        "reference_s": reference_s,
        "aerun_s": aerun_s,
        "floor_s": floor_s,
        "bound_s": bound_s,
        "speedup": reference_s / aerun_s,
        "fraction_of_bound": bound_s / aerun_s,
        "floor_of_bound": bound_s / floor_s,
        **{f"{kind}_epochs_s": epochs[kind] for kind in KINDS},
    }


def bench(cfg: DictConfig, models: dict[str, DictConfig], run_dir: Path) -> dict[str, Any]:
    """Time every preset in `models` each way; write bench.json into `run_dir`.

    The bound uses the best matmul throughput of all the run's probes (one before the
    presets, one after each kind of epoch): on a shared machine one probe may land in a
    slow moment and make the bound look far easier than it is.
    """
    import torchvision  # the reference pipeline's own data path; slow to import

    device = resolve_device(cfg.device)
    ensure("mnist", Path(cfg.paths.data_dir))
    dataset = torchvision.datasets.MNIST(str(cfg.paths.data_dir), train=True,
                                         transform=torchvision.transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True)
    probes = [matmul_gflops(device)]
    log.info("float32 matmul: %.1f GFLOP/s on %s (%d threads)", probes[0], device, torch.get_num_threads())
    timed = {name: bench_preset(name, model_cfg, cfg, device, loader, probes) for name, model_cfg in models.items()}
    gflops = max(probes)
    result: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "matmul_gflops": gflops,
        "matmul_gflops_probes": probes,
        "batch_size": cfg.batch_size,
        "repeats": cfg.repeats,
        "presets": {name: summarise(epochs, flops, gflops) for name, (epochs, flops) in timed.items()},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    header = (f"{'preset':<10}{'reference_s':>12}{'aerun_s':>10}{'floor_s':>10}{'bound_s':>10}"
              f"{'speedup':>10}{'of_bound':>10}")
    lines = [f"device {result['device']}, {result['threads']} threads, "
             f"matmul {result['matmul_gflops']:.1f} GFLOP/s (best of {len(result['matmul_gflops_probes'])} probes), "
             f"median of {result['repeats']} epochs", header]
    for name, r in result["presets"].items():
        lines.append(f"{name:<10}{r['reference_s']:>12.2f}{r['aerun_s']:>10.2f}{r['floor_s']:>10.2f}"
                     f"{r['bound_s']:>10.2f}{r['speedup']:>10.2f}{r['fraction_of_bound']:>10.2f}")
    return "\n".join(lines)
