"""`aerun bench`: one training epoch, the original pipeline against aerun's, and the FLOP bound.

(a) reference: torchvision `MNIST` with `ToTensor` through a `DataLoader` (batch
    256, shuffle) and the original notebook's plain loop;
(b) aerun: the tensor-resident split and `aerun.train.train_epoch`;
(c) bound: the epoch's matrix-multiply FLOPs over this machine's measured float32
    matmul throughput.

Both paths train the same model (same builder, same initial weights) with the
same optimiser; the median of `repeats` epochs is reported.
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


def training_flops(model: nn.Module, n_images: int) -> float:
    """Matrix-multiply FLOPs of one epoch: per linear layer 2·in·out forward, 2·in·out for the
    weight gradient, and 2·in·out for the input gradient except in the first layer."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    per_image = sum((4 if i == 0 else 6) * m.in_features * m.out_features for i, m in enumerate(linears))
    return float(per_image * n_images)


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


def bench_preset(name: str, model_cfg: DictConfig, optimizer_cfg: DictConfig, cfg: DictConfig,
                 device: torch.device, gflops: float, loader) -> dict[str, Any]:
    images = load_split({"name": "mnist"}, "train", cfg.paths.data_dir, device).images
    results: dict[str, list[float]] = {"reference": [], "aerun": []}
    for kind in ("reference", "aerun"):
        torch.manual_seed(cfg.seed)
        model = build(model_cfg.builder, **builder_args(model_cfg)).to(device)
        optimizer = instantiate(optimizer_cfg)(params=model.parameters())
        for epoch in range(1, cfg.repeats + 1):
            if kind == "reference":
                seconds = reference_epoch(model, optimizer, loader, device)
            else:
                seconds = aerun_epoch(model, optimizer, images, cfg.batch_size, cfg.seed, epoch)
            results[kind].append(seconds)
            log.info("%-8s %-9s epoch %d: %.2f s", name, kind, epoch, seconds)
    reference_s, aerun_s = statistics.median(results["reference"]), statistics.median(results["aerun"])
    bound_s = training_flops(model, len(images)) / (gflops * 1e9)
    return {
        "reference_s": reference_s,
        "aerun_s": aerun_s,
        "bound_s": bound_s,
        "speedup": reference_s / aerun_s,
        "fraction_of_bound": bound_s / aerun_s,
        "reference_epochs_s": results["reference"],
        "aerun_epochs_s": results["aerun"],
    }


def bench(cfg: DictConfig, models: dict[str, DictConfig], run_dir: Path) -> dict[str, Any]:
    """Time every preset in `models` both ways; write bench.json into `run_dir`."""
    import torchvision  # the reference pipeline's own data path; slow to import

    device = resolve_device(cfg.device)
    ensure("mnist", Path(cfg.paths.data_dir))
    dataset = torchvision.datasets.MNIST(str(cfg.paths.data_dir), train=True,
                                         transform=torchvision.transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True)
    gflops = matmul_gflops(device)
    log.info("float32 matmul: %.1f GFLOP/s on %s (%d threads)", gflops, device, torch.get_num_threads())
    result: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "matmul_gflops": gflops,
        "batch_size": cfg.batch_size,
        "repeats": cfg.repeats,
        "presets": {},
    }
    for name, model_cfg in models.items():
        result["presets"][name] = bench_preset(name, model_cfg, cfg.optimizer, cfg, device, gflops, loader)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    header = f"{'preset':<10}{'reference_s':>12}{'aerun_s':>10}{'bound_s':>10}{'speedup':>10}{'of_bound':>10}"
    lines = [f"device {result['device']}, {result['threads']} threads, "
             f"matmul {result['matmul_gflops']:.1f} GFLOP/s, median of {result['repeats']} epochs", header]
    for name, r in result["presets"].items():
        lines.append(f"{name:<10}{r['reference_s']:>12.2f}{r['aerun_s']:>10.2f}{r['bound_s']:>10.2f}"
                     f"{r['speedup']:>10.2f}{r['fraction_of_bound']:>10.2f}")
    return "\n".join(lines)
