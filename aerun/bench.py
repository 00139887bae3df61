"""`aerun bench`: one training epoch, the original pipeline against aerun's, and the FLOP bound.

(a) reference: torchvision `MNIST` with `ToTensor` through a `DataLoader` (batch
    256, shuffle) and the original notebook's plain loop;
(b) aerun: the tensor-resident split and `aerun.train.train_epoch`;
(c) bound: the epoch's FLOPs (matrix products and convolutions, forward and
    backward, counted by torch) over this device's measured float32 matmul
    throughput (2048x2048 products: what the BLAS reaches at its best shapes; on a
    GPU, the TF32 throughput for products that run in TF32). No loop beats it.

All paths use the same model (same builder, same initial weights) and
optimiser; the median of `repeats` epochs is reported.
"""

from __future__ import annotations

import copy
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
from torch.utils.flop_counter import FlopCounterMode

from aerun import atomic, eager
from aerun import precision as mixed
from aerun.data import data_shape, ensure, load_split
from aerun.models import Autoencoder, build, builder_args
from aerun.objective import Objective, loss_terms
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


def training_flops(model: Autoencoder, n_images: int) -> float:
    """FLOPs of one epoch's training steps: matrix products and convolutions, forward and backward.

    Counted by torch's FlopCounterMode on one step of two images (every count is linear in the
    batch), on a CPU copy of the model, with the family's loss at its default weights (what the
    bench trains): what autograd really runs, so the first layer's input gradient, which the images
    do not need, is not counted. A fitted model (PCA) has none.
    """
    if model.fitted:
        return 0.0
    clone = copy.deepcopy(model).cpu().train()
    images = torch.rand(2, *clone.in_shape)
    objective = Objective.defaults(clone)
    with FlopCounterMode(display=False) as counter:
        reconstruction, terms = loss_terms(clone, images, images, objective, torch.Generator().manual_seed(0))
        sum(terms.values(), reconstruction).backward()
    return counter.get_total_flops() / 2 * n_images


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
        eager.step(optimizer)
    synchronize(device)
    return time.perf_counter() - start


def aerun_epoch(model, optimizer, images: torch.Tensor, batch_size: int, seed: int, epoch: int,
                precision: str = "32", cuda_graphs: bool = False) -> float:
    device = images.device
    synchronize(device)
    start = time.perf_counter()
    train_epoch(model, optimizer, images, batch_size=batch_size, generator=epoch_generator(seed, epoch),
                objective=Objective.defaults(model), desc="aerun", precision=precision,
                scaler=mixed.scaler(precision, device), cuda_graphs=cuda_graphs)
    synchronize(device)
    return time.perf_counter() - start


KINDS = ("reference", "aerun")


def bench_preset(name: str, model_cfg: DictConfig, cfg: DictConfig, device: torch.device, loader,
                 probes: list[float], shape: tuple[int, ...]) -> tuple[dict[str, list[float]], float]:
    """Seconds of each epoch of each kind, and the epoch's FLOPs; after each kind the matmul
    throughput is probed again (into `probes`), so the machine's best is found across the run."""
    images = load_split(cfg.dataset, "train", cfg.paths.data_dir, device).pixels  # uint8, as training reads it
    epochs: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for kind in KINDS if loader is not None else ("aerun",):
        torch.manual_seed(cfg.seed)
        model = build(model_cfg.builder, in_shape=shape, **builder_args(model_cfg)).to(device)
        optimizer = eager.build(instantiate(cfg.optimizer), model.parameters())
        for epoch in range(1, cfg.repeats + 1):
            if kind == "reference":
                seconds = reference_epoch(model, optimizer, loader, device)
            else:
                seconds = aerun_epoch(model, optimizer, images, cfg.batch_size, cfg.seed, epoch, str(cfg.precision),
                                      bool(cfg.cuda_graphs))
            epochs[kind].append(seconds)
            log.info("%-8s %-9s epoch %d: %.2f s", name, kind, epoch, seconds)
        probes.append(matmul_gflops(device))
    return epochs, training_flops(model, len(images))


def summarise(epochs: dict[str, list[float]], flops: float, gflops: float, precision: str = "float32") -> dict[str, Any]:
    """A preset's row: the median epoch of each kind, the bound at `gflops`, and their ratios."""
    reference_s = statistics.median(epochs["reference"]) if epochs["reference"] else None
    aerun_s = statistics.median(epochs["aerun"])
    bound_s = flops / (gflops * 1e9)
    return {
        "reference_s": reference_s,
        "aerun_s": aerun_s,
        "bound_s": bound_s,
        "speedup": reference_s / aerun_s if reference_s is not None else None,
        "fraction_of_bound": bound_s / aerun_s,
        "gflop_per_epoch": flops / 1e9,
        "bound_precision": precision,
        **{f"{kind}_epochs_s": epochs[kind] for kind in KINDS},
    }


def tf32_in_use(model: nn.Module, device: torch.device) -> bool:
    """Whether this model's products run in TF32 here: cuDNN convolutions and cuBLAS matmuls each have a switch."""
    if device.type != "cuda":
        return False
    convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return bool(torch.backends.cudnn.allow_tf32 if convolutional else torch.backends.cuda.matmul.allow_tf32)


def tf32_gflops(device: torch.device) -> float:
    """The matmul throughput with TF32 allowed (tensor cores), for presets whose products use it."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return matmul_gflops(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def bench(cfg: DictConfig, models: dict[str, DictConfig], run_dir: Path) -> dict[str, Any]:
    """Time every preset in `models` each way; write bench.json into `run_dir`.

    The bound uses the best matmul throughput of all the run's probes (one before the
    presets, one after each kind of epoch): on a shared machine one probe may land in a
    slow moment and make the bound look far easier than it is.
    """
    import torchvision  # the reference pipeline's own data path; slow to import

    device = resolve_device(cfg.device)
    mixed.prepare(str(cfg.precision), device)
    loader = None
    if cfg.reference and cfg.dataset.name != "mnist":
        log.info("the reference pipeline reads MNIST only: on %s, aerun's epoch and the bound", cfg.dataset.name)
    elif cfg.reference:
        ensure("mnist", Path(cfg.paths.data_dir))
        dataset = torchvision.datasets.MNIST(str(cfg.paths.data_dir), train=True,
                                             transform=torchvision.transforms.ToTensor())
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True)
    probes = [matmul_gflops(device)]
    log.info("float32 matmul: %.1f GFLOP/s on %s (%d threads)", probes[0], device, torch.get_num_threads())
    shape = data_shape(cfg.dataset, cfg.paths.data_dir)
    timed = {name: bench_preset(name, model_cfg, cfg, device, loader, probes, shape)
             for name, model_cfg in models.items()}
    gflops = max(probes)
    tf32 = tf32_gflops(device) if device.type == "cuda" else None
    rows = {}
    for name, (epochs, flops) in timed.items():
        model = build(models[name].builder, in_shape=shape, **builder_args(models[name]))
        uses_tf32 = tf32_in_use(model, device)
        rows[name] = summarise(epochs, flops, tf32 if uses_tf32 else gflops, "tf32" if uses_tf32 else "float32")
        rows[name]["cuda_graph"] = bool(cfg.cuda_graphs) and device.type == "cuda" and model.graphable
    result: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "matmul_gflops": gflops,
        "matmul_gflops_probes": probes,
        "tf32_matmul_gflops": tf32,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dataset": cfg.dataset.name,
        "precision": str(cfg.precision),
        "cuda_graphs": bool(cfg.cuda_graphs) and device.type == "cuda",
        "shape": list(shape),
        "batch_size": cfg.batch_size,
        "repeats": cfg.repeats,
        "presets": rows,
    }
    atomic.write_json(run_dir / "bench.json", result)
    return result


def table(result: dict[str, Any]) -> str:
    header = (f"{'preset':<20}{'GFLOP':>8}{'reference_s':>12}{'aerun_s':>10}{'bound_s':>10}"
              f"{'speedup':>10}{'of_bound':>10}")
    tf32 = f", TF32 {result['tf32_matmul_gflops']:.1f}" if result.get("tf32_matmul_gflops") else ""
    lines = [f"device {result.get('device_name') or result['device']}, {result['threads']} threads, "
             f"float32 matmul {result['matmul_gflops']:.1f} GFLOP/s{tf32} "
             f"(best of {len(result['matmul_gflops_probes'])} probes), median of {result['repeats']} epochs", header]
    for name, r in result["presets"].items():
        mark = " (tf32)" if r.get("bound_precision") == "tf32" else ""
        reference, speedup = (f"{r[k]:>{w}.2f}" if r[k] is not None else f"{'-':>{w}}"
                              for k, w in (("reference_s", 12), ("speedup", 10)))
        lines.append(f"{name + mark:<20}{r['gflop_per_epoch']:>8.0f}{reference}{r['aerun_s']:>10.3f}"
                     f"{r['bound_s']:>10.3f}{speedup}{r['fraction_of_bound']:>10.2f}")
    return "\n".join(lines)
