"""Training: one function per step, a config in and a summary out.

`train(cfg, run_dir)` builds the model from the registry, trains it on the
tensor-resident training split (PCA is fitted in closed form instead), records
the loss per iteration and per epoch, and writes `checkpoints/last.pt` after
every epoch.
"""

from __future__ import annotations

import csv
import ctypes
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from aerun import checkpoint as ckpt
from aerun import atomic, eager, failures, graphs, loggers, runlock, schema
from aerun import precision as mixed
from aerun.data import Split, batch_rows, data_shape, floats, load_split, shape_text, showcase
from aerun.errors import EnvironmentFailure, UserError
from aerun.perimage import features, sse_per_image, where
from aerun.models import Autoencoder, builder_args
from aerun.noise import corrupt, draw
from aerun.objective import Objective, loss_terms
from aerun.probe import probe_accuracy
from aerun.runs import EPOCH_FIELDS, EPOCH_LOG, ITER_FIELDS, ITER_LOG
from aerun.search import direction
from aerun.validate import available_devices, check_train, take_initial_model
from aerun.validate import device as check_device

log = logging.getLogger(__name__)



def resolve_device(name: str) -> torch.device:
    """`auto` is the best device present (cuda, then mps, then cpu); each is set up for exact runs."""
    check_device(name)
    if name == "auto":
        name = available_devices()[0]
    if name == "cpu":
        keep_freed_memory()
        use_allocated_cpus()
    if name == "cuda":
        deterministic_cuda()
    return torch.device(name)


def deterministic_cuda() -> None:
    """What torch needs for a CUDA run to repeat itself bit for bit, so a resumed run ends as a straight one.

    cuBLAS picks reduction orders by workspace unless its workspace is fixed (set before the first
    cuBLAS call); cuDNN must not pick algorithms by timing; and deterministic kernels are asked for
    wherever torch has them (`warn_only`: an op without one warns rather than fails).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def use_allocated_cpus() -> None:
    """In a Slurm job, compute with the CPUs the job was given, not every core of the node.

    Without task binding a job sees all the node's cores, and torch starts a thread on each:
    two 1-CPU jobs on a 2-core node would then run four threads on two cores.
    """
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        torch.set_num_threads(int(cpus))


def keep_freed_memory() -> None:
    """Let glibc keep freed blocks for reuse instead of returning them to the system.

    Every training step frees and reallocates the same activation and gradient buffers
    (hundreds of KiB each). By default glibc serves such blocks with mmap and unmaps them
    on free, so each step pays fresh page faults; keeping them in the heap removes that.
    A no-op where the C library is not glibc.
    """
    global _MEMORY_KEPT
    if _MEMORY_KEPT:
        return
    _MEMORY_KEPT = True
    if os.environ.get("AERUN_MALLOC", "keep") != "keep":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


_MEMORY_KEPT = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Randomness of an epoch (data order, noise, shifts, a VAE's samples) from (seed, epoch) alone, so a resumed
    run sees the same. A CPU generator on every device: each draw is made on the CPU and then moved, so a run
    draws the same numbers on a GPU as on a laptop, and resumes on either (CPU and CUDA streams differ)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(base: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of an epoch (1-based), set once per epoch.

    cosine: half a cosine from `base` at epoch 1 towards 0, which it would reach at epoch
    `epochs` + 1; the last epoch runs at 0.5 * (1 + cos(pi * (epochs - 1) / epochs)) of it
    (2.4 % for 10 epochs). A function of (epoch, epochs) alone, so resuming is exact; and
    since every epoch's rate depends on `epochs`, a cosine run cannot be extended (see
    `check_schedule_extension`).
    """
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
    return base


def check_schedule_extension(run_dir: Path, base: float, schedule: str, planned: int, done: int, epochs: int) -> None:
    """Refuse to resume a run to a length whose schedule would have run its finished epochs at other rates.

    A resumed run must end as a fresh run of the new length would have. That holds when every
    finished epoch's rate is the same under the old length and the new one: always for a constant
    rate, and for a cosine only while no epoch past the first is done. Otherwise restarting the
    schedule is a warm restart, not that run, so the resume is refused.
    """
    if any(learning_rate(base, schedule, e, planned) != learning_rate(base, schedule, e, epochs)
           for e in range(1, done + 1)):
        raise UserError(f"epochs={epochs} is not allowed for {run_dir}: its {done} finished epochs followed a "
                        f"{planned}-epoch {schedule} schedule, at rates a {epochs}-epoch run would not have used; "
                        f"train a new run with epochs={epochs} (a constant-rate run can be extended)")


def batches(n: int, batch_size: int, generator: torch.Generator,
            device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Index batches of a fresh permutation, drawn on the generator's device and moved to `device`; the last
    batch may be smaller."""
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    yield from order.split(batch_size)


def random_shift(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to `pixels` in each direction, at random; zeros move in at the edges."""
    if pixels == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels)).flatten(2)
    offsets = torch.randint(0, 2 * pixels + 1, (b, 2, 1), generator=generator, device=generator.device).to(x.device)
    rows = torch.arange(h, device=x.device) + offsets[:, 0]  # (b, h) rows of the padded image
    cols = torch.arange(w, device=x.device) + offsets[:, 1]  # (b, w)
    index = (rows[:, :, None] * (w + 2 * pixels) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.gather(2, index).view(b, c, h, w)


def train_epoch(
    model: Autoencoder,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    objective: Objective,
    desc: str,
    noise: tuple[str, float] = ("none", 0.0),
    noise_generator: torch.Generator | None = None,
    shift: int = 0,
    binarize: bool = False,
    device: torch.device | str | None = None,
    precision: str = "32",
    scaler: torch.amp.GradScaler | None = None,
    cuda_graphs: bool = False,
) -> torch.Tensor:
    """One pass over `images` (uint8 pixels, made floats in [0, 1] batch by batch, or floats); returns
    (steps, 1 + terms) of [reconstruction term, each regulariser] per step.

    The regularisers are `objective.names`, in that order (see aerun.objective).

    With a noise, the model sees corrupted inputs and is scored against the clean
    images (the denoising AE, assignment part 4). With a shift, every image is first
    moved by up to `shift` pixels (data augmentation; input and target move together). With `binarize`
    (dataset.binarize=dynamic), each pixel of each batch is then drawn afresh as 0 or 1 with its grey level as
    the probability, from the epoch's generator, so every epoch sees another binary draw of the training set.
    `device` is where the model is, when the images are not there (a split too large for a GPU's memory).
    `precision` runs the forward pass and the loss under autocast (aerun.precision); `scaler` scales the loss of
    a float16 run before its backward pass. With `cuda_graphs`, full batches replay one captured CUDA graph of
    the step where that is exact (aerun.graphs); the numbers are the eager step's.
    """
    model.train()
    device = torch.device(device) if device is not None else images.device
    n_steps = -(-images.shape[0] // batch_size)
    record = torch.empty(n_steps, 1 + len(objective.names), device=device)
    graphed = (graphs.GraphedStep(model, optimizer, objective, mixed.autocast(precision, device, cache=False))
               if cuda_graphs and graphs.usable(model, optimizer, device, scaler) else None)
    with tqdm(total=n_steps, desc=desc, unit="batch", leave=False, disable=None) as bar:
        for i, idx in enumerate(batches(images.shape[0], batch_size, generator, images.device)):
            batch = images.index_select(0, idx)  # index_select: faster than images[idx]
            x = random_shift(floats(batch.to(device, non_blocking=True)), shift, generator)
            if binarize:
                x = (draw(torch.rand, x, generator) < x).to(x.dtype)
            inputs = corrupt(x, *noise, noise_generator)
            if graphed is not None and len(idx) == batch_size:
                graphed(inputs, x, record[i])
                bar.update()
                continue
            eager_step(model, optimizer, objective, inputs, x, generator, precision, device, scaler, record[i])
            bar.update()
            if i % 25 == 0:  # a host sync now and then, not every step
                loss = record[i, 0].item()
                bar.set_postfix(loss=f"{loss:.4f}")
                if not math.isfinite(loss):
                    return record[: i + 1].cpu()
    return record.cpu()


def eager_step(model: Autoencoder, optimizer: torch.optim.Optimizer, objective: Objective, inputs: torch.Tensor,
               targets: torch.Tensor, generator: torch.Generator, precision: str, device: torch.device,
               scaler: torch.amp.GradScaler | None, row: torch.Tensor) -> None:
    """One optimiser step on a batch, its loss terms written into `row` (reconstruction, then each regulariser)."""
    with mixed.autocast(precision, device):
        reconstruction, terms = loss_terms(model, inputs, targets, objective, generator)
    optimizer.zero_grad(set_to_none=True)
    loss = sum(terms.values(), reconstruction)
    if scaler is None:
        loss.backward()
        eager.step(optimizer)
    else:  # float16: the loss scaled up for the backward pass, the step skipped where a gradient overflowed
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    row[0] = reconstruction.detach()
    for j, term in enumerate(terms.values(), start=1):
        row[j] = term.detach()


def mean_mse(model: Autoencoder, images: torch.Tensor) -> float:
    """Mean squared error per pixel over a whole split (the test loss of each epoch): uint8 pixels or floats."""
    return (sse_per_image(model, images).sum() / images.numel()).item()


class History:
    """The loss per iteration and per epoch, as two CSV files in the run directory.

    Each has the reconstruction term ("loss"), the sum of the regularisers ("penalty") and then
    one column per regulariser the run has (`terms`, e.g. "kl"; "train_kl" per epoch).
    """

    def __init__(self, run_dir: Path, upto_epoch: int = 0, terms: tuple[str, ...] = (),
                 validation: tuple[str, ...] = ()) -> None:
        """Start the files, or keep the rows of epochs up to `upto_epoch` (those of the checkpoint). Each epoch's
        row has the `validation` columns (`val_loss`, the validation split's MSE; `val_probe`, its linear probe
        accuracy) after `seconds`."""
        self.iter_path = run_dir / ITER_LOG
        self.epoch_path = run_dir / EPOCH_LOG
        self.terms = tuple(terms)
        self.validation = tuple(validation)
        iter_fields = (*ITER_FIELDS, *self.terms)
        self.epoch_fields = (*EPOCH_FIELDS, *self.validation, *(f"train_{t}" for t in self.terms))
        for path, fields in ((self.iter_path, iter_fields), (self.epoch_path, self.epoch_fields)):
            kept = []
            if upto_epoch and path.exists():
                with open(path, newline="") as f:
                    kept = [row for row in csv.DictReader(f) if int(row["epoch"]) <= upto_epoch]
            with atomic.replacing(path, "w") as f:  # the old rows stay whole until the kept ones replace them
                writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore", lineterminator="\r\n")
                writer.writeheader()
                writer.writerows(kept)

    def first_and_last_loss(self) -> tuple[float | None, float | None]:
        """The first step's loss and the last epoch's mean training loss."""
        with open(self.iter_path, newline="") as f:
            first = next(csv.DictReader(f), None)
        with open(self.epoch_path, newline="") as f:
            rows = list(csv.DictReader(f))
        return (float(first["loss"]) if first else None), (float(rows[-1]["train_loss"]) if rows else None)

    def sizes(self) -> dict[Path, int]:
        return {path: path.stat().st_size for path in (self.iter_path, self.epoch_path)}

    def truncate(self, sizes: dict[Path, int]) -> None:
        """Back to the given sizes: cutting a file short needs no free space, so this works on a full disk."""
        for path, size in sizes.items():
            os.truncate(path, size)

    def append(self, epoch: int, first_step: int, record: torch.Tensor, test_loss: float, seconds: float,
               validation: dict[str, float] | None = None) -> dict[str, float]:
        """Rows for `record`: (steps, 1 + len(terms)) of [reconstruction term, each regulariser]; `validation`
        has a value for each of this history's validation columns."""
        if record.shape[1] != 1 + len(self.terms):
            raise ValueError(f"record has {record.shape[1]} columns; this history logs 1 + {len(self.terms)}")

        def cells(values: list[float]) -> list[str]:
            return [f"{values[0]:.6g}", f"{sum(values[1:]):.6g}", *(f"{v:.6g}" for v in values[1:])]

        with open(self.iter_path, "a", newline="") as f:
            writer = csv.writer(f)
            for i, values in enumerate(record.tolist()):
                writer.writerow([first_step + i + 1, epoch, *cells(values)])
        loss, penalty, *terms = cells(record.mean(0).tolist())
        row = [epoch, first_step + len(record), loss, penalty, f"{test_loss:.6g}", f"{seconds:.3f}",
               *(f"{(validation or {})[k]:.6g}" for k in self.validation), *terms]
        with open(self.epoch_path, "a", newline="") as f:
            csv.writer(f).writerow(row)
        return {name: float(cell) for name, cell in zip(self.epoch_fields, row)}  # the row as written: what trackers record


def validation_measures(cfg: DictConfig) -> tuple[str, ...]:
    """What each epoch measures on the validation split: its MSE, and the linear probe's accuracy (a probe fitted
    on the training split's codes, scored on the validation split's: a few seconds an epoch) when a search asks
    for it."""
    probe = "val_probe" in (cfg.search.metric, cfg.checkpoint.monitor)
    return ("val_loss", "val_probe") if probe else ("val_loss",)


def monitored(name: str, record: torch.Tensor, validation: dict[str, float] | None, terms: tuple[str, ...]) -> float:
    """An epoch's value of loss_epoch.csv's column `name` (checkpoint.monitor), at full precision."""
    if validation and name in validation:
        return float(validation[name])
    means = record.mean(0).tolist()
    if name == "train_loss":
        return means[0]
    if name == "train_penalty":
        return float(sum(means[1:]))
    return means[1 + terms.index(name.removeprefix("train_"))]


def improves(value: float, best: dict[str, Any] | None, name: str) -> bool:
    """Whether `value` of column `name` beats the best so far (a validation measure's own way; losses lower)."""
    if best is None:
        return True
    return value > best["value"] if direction(name) == "maximize" else value < best["value"]


def write_failure(exc: OSError, run_dir: Path, epoch: int) -> EnvironmentFailure:
    """One line for an epoch that could not be written: what failed, what to do, what is kept."""
    advice = failures.OS_ADVICE.get(exc.errno, "check that disk")
    kept = (f"epochs 1-{epoch - 1} are kept; continue with: aerun train resume={run_dir}" if epoch > 1
            else "no epoch was finished")
    return EnvironmentFailure(f"could not write epoch {epoch} of {run_dir}: {exc.strerror or exc} "
                              f"({exc.filename or 'checkpoint'}); {advice}; {kept}")


def check_finite_state(state: dict[str, Any], path: Path) -> None:
    """A checkpoint whose weights or optimiser state already hold NaN or infinity cannot be resumed: one line
    naming the file (no learning rate explains a state that was non-finite before the first step)."""
    def tensors(value: Any) -> Iterator[tuple[str, torch.Tensor]]:
        if isinstance(value, torch.Tensor):
            yield "", value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from ((f"{key}.{name}".rstrip("."), t) for name, t in tensors(item))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                yield from ((f"{i}.{name}".rstrip("."), t) for name, t in tensors(item))

    for part in ("model", "optimizer"):
        for name, tensor in tensors(state[part]["state"] if part == "model" else state[part] or {}):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise EnvironmentFailure(f"{path} holds non-finite values in its {part} state ({name}) before any "
                                         "step: it cannot be resumed, whatever the learning rate; "
                                         "train the run again (delete its folder first)")


# A run whose loss ends this far above its first step's has diverged.
DIVERGED = 1.1


def health_warning(cfg: DictConfig, model: Autoencoder, test_images: torch.Tensor, history: "History",
                   mean_image: torch.Tensor | None = None) -> str | None:
    """A warning for a run that finished but did not learn: its output ignores its input, it reconstructs the
    test images no better than the mean training image does, or its loss grew.

    It names the likely causes: the learning rate, each of the family's terms weighted above its
    default (aerun.objective.Objective.causes), and the training noise.
    """
    cause = f"the learning rate (optimizer.lr={cfg.optimizer.lr:g}) is likely too high"
    for term in Objective.of(cfg, model).causes():
        cause += f", or {term} too strong"
    if cfg.noise.name != "none":
        cause += f", or the training noise (noise={cfg.noise.name}, level {cfg.noise.level:g}) too strong"
    model.eval()
    with torch.no_grad():
        recon = model(floats(test_images[:256].to(where(model, test_images))))[0]
    if torch.equal(recon.amax(0), recon.amin(0)):
        return (f"the network's output no longer depends on its input (every image gives the same "
                f"reconstruction: {model.collapse}); {cause}")
    if mean_image is not None:
        test_mse, blank = mean_mse(model, test_images), spread_around(test_images, mean_image)
        if test_mse >= blank:
            return (f"the test MSE ended at {test_mse:.4g}, no better than the mean training image's {blank:.4g}: "
                    f"the network has learnt nothing of its inputs ({model.collapse}, or too few epochs "
                    f"(epochs={cfg.epochs})); {cause}")
    first, last = history.first_and_last_loss()
    if first is not None and last is not None and last > DIVERGED * first:
        return f"the training loss ended at {last:.4g}, above its first step's {first:.4g}; {cause}"
    return None


def mean_of(pixels: torch.Tensor) -> torch.Tensor:
    """The mean image of a split, as floats in [0, 1], summed batch by batch (float64)."""
    total = sum(floats(chunk).double().sum(0) for chunk in pixels.split(batch_rows(pixels.shape[1:])))
    return (total / len(pixels)).float()


def spread_around(pixels: torch.Tensor, image: torch.Tensor) -> float:
    """The mean squared difference of a split's pixels from one image: what the mean image scores."""
    total = sum((floats(chunk.to(image.device)) - image).double().pow(2).sum().item()
                for chunk in pixels.split(batch_rows(pixels.shape[1:])))
    return total / pixels.numel()


# Images whose floats a family's `start_from_data` reads at most: the whole split for MNIST (47 M values, the
# bias its conv AEs start from exactly as before), the first images of a larger one (256 MB of floats).
START_VALUES = 1 << 26


def first_images(split: Split, device: torch.device) -> torch.Tensor:
    n = max(1, min(len(split), START_VALUES // max(1, math.prod(split.shape))))
    return split.take(slice(0, n)).to(device)


def train(cfg: DictConfig, run_dir: Path, *, resume: bool = False,
          after_epoch: Callable[[int, dict[str, float]], bool] | None = None) -> dict[str, Any]:
    """Train (or fit) the model `cfg` describes; write history and checkpoint into `run_dir`.

    With `resume`, continue from the run's checkpoint up to `cfg.epochs`: the same
    weights, optimiser state and data order as if it had never stopped. `after_epoch(epoch,
    validation)` is told each saved epoch's validation measures ({"val_loss": …}, with "val_probe" when
    `search.metric` names it) and stops training by returning True (a search's pruner); the summary then
    has `pruned_at`.
    """
    cfg = schema.complete(cfg)
    check_train(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with runlock.hold(run_dir):
        return _train(cfg, run_dir, resume, after_epoch)


def resumed_state(cfg: DictConfig, run_dir: Path, resume: bool) -> tuple[dict[str, Any] | None, Path | None]:
    """The checkpoint a run goes on from (None for a new run) and its file, after every check that it may."""
    path = run_dir / ckpt.CHECKPOINT
    if not resume:
        if path.exists() or (run_dir / ckpt.PREVIOUS).exists():
            raise UserError(f"{run_dir} already holds a trained run; choose another hydra.run.dir")
        return None, None
    found = ckpt.run_state(run_dir, OmegaConf.to_container(cfg, resolve=True), "this run's config",
                           "train a new run in another hydra.run.dir")
    if found.action == "new":
        raise UserError(f"no checkpoint at {path}; train a run first (`aerun train`)")
    state, done = found.checkpoint, found.epochs
    check_finite_state(state, found.source)
    check_schedule_extension(run_dir, cfg.optimizer.lr, cfg.lr_schedule, state["config"]["epochs"], done, cfg.epochs)
    return state, found.source


class Fit:
    """What one training run holds while it trains: the model and its data, the files it writes, its trackers."""

    def __init__(self, cfg: DictConfig, run_dir: Path, model: Autoencoder, device: torch.device,
                 describe: dict[str, Any], done: int, trackers: loggers.Trackers) -> None:
        self.cfg, self.run_dir, self.model, self.device, self.describe = cfg, run_dir, model, device, describe
        self.trackers = trackers
        self.path = run_dir / ckpt.CHECKPOINT
        self.train_set = load_split(cfg.dataset, "train", cfg.paths.data_dir, device)
        self.test_set = load_split(cfg.dataset, "test", cfg.paths.data_dir, device)
        self.val_set = load_split(cfg.dataset, "val", cfg.paths.data_dir, device) if cfg.dataset.val_size else None
        self.objective = Objective.of(cfg, model)
        self.measures = validation_measures(cfg) if self.val_set is not None else ()
        if "val_probe" in self.measures and self.train_set.labels is None:
            raise UserError(f"search.metric=val_probe fits a linear probe on labels, and {cfg.dataset.name} has "
                            "none; search on val_loss")
        self.history = History(run_dir, upto_epoch=done, terms=self.objective.names, validation=self.measures)
        held_out = f" / {len(self.val_set)} validation" if self.val_set is not None else ""
        log.info("training %s (%s, code %d) on %s: %d train%s / %d test images, device %s", cfg.model.name,
                 cfg.model.builder, model.code_dim, cfg.dataset.name, len(self.train_set), held_out,
                 len(self.test_set), device)

    def validate(self) -> dict[str, float] | None:
        if self.val_set is None:
            return None
        model, train_set, val_set = self.model, self.train_set, self.val_set
        found = {"val_loss": mean_mse(model, val_set.pixels)}
        if "val_probe" in self.measures:
            found["val_probe"] = probe_accuracy(features(model, train_set.pixels), train_set.labels,
                                                features(model, val_set.pixels), val_set.labels, train_set.n_classes)
        return found

    def showcase(self) -> torch.Tensor | None:
        """The showcase images, for a tracker that draws them each epoch (TensorBoard)."""
        if "tensorboard" not in self.trackers.started:
            return None
        return self.test_set.take(showcase(self.cfg.dataset, self.test_set)).to(self.device)

    def fitted(self) -> dict[str, Any]:
        """A model fitted in closed form (PCA): epoch 0, written once."""
        model, start = self.model, time.perf_counter()
        model.fit(self.train_set.pixels)
        record = torch.tensor([[mean_mse(model, self.train_set.pixels)]])
        test_loss = mean_mse(model, self.test_set.pixels)
        row = self.history.append(0, 0, record, test_loss, time.perf_counter() - start, self.validate())
        ckpt.save(ckpt.make(**self.describe, epoch=0, step=0), self.path)
        self.trackers.epoch(loggers.Epoch(epoch=0, metrics=row, record=record, model=model))
        log.info("fitted: train MSE %.5f, test MSE %.5f", record[0, 0].item(), test_loss)
        return {"run_dir": str(self.run_dir), "epochs": 0, "test_loss": test_loss}


def _train(cfg: DictConfig, run_dir: Path, resume: bool,
           after_epoch: Callable[[int, dict[str, float]], bool] | None = None) -> dict[str, Any]:
    state, source = resumed_state(cfg, run_dir, resume)
    done = state["epoch"] if state else 0
    device = resolve_device(cfg.device)
    mixed.prepare(cfg.precision, device)

    args = builder_args(cfg.model)
    shape = data_shape(cfg.dataset, cfg.paths.data_dir)
    if state and tuple(state["model"].get("in_shape", shape)) != tuple(shape):
        raise UserError(f"{run_dir} was trained on images of {shape_text(state['model']['in_shape'])} and "
                        f"{cfg.dataset.name} now gives {shape_text(shape)}: it cannot be resumed on them")
    model = take_initial_model(cfg, shape).to(device)  # the one check_train built
    if state:
        model.load_state_dict(state["model"]["state"])
    config = OmegaConf.to_container(cfg, resolve=True)
    describe = dict(model=model, preset=cfg.model.name, builder=cfg.model.builder, args=args, config=config)
    if state and ckpt.finished(state, cfg.epochs, model.fitted):
        how = "stopped early at" if state.get("stopped_early") else "already trained to"
        log.info("%s is %s epoch %d; nothing to do", run_dir, how, done)
        return {"run_dir": str(run_dir), "epochs": done, "test_loss": None}

    trackers = loggers.Trackers.open(cfg.logger, run_dir, config)  # one line here if one cannot start
    status = "failed"
    try:
        fit = Fit(cfg, run_dir, model, device, describe, done, trackers)
        summary = fit.fitted() if model.fitted else epochs(fit, state, source, after_epoch)
        status = "finished"
        return summary
    except KeyboardInterrupt:
        status = "killed"
        raise
    finally:
        trackers.finish(status)


def epochs(fit: Fit, state: dict[str, Any] | None, source: Path | None,
           after_epoch: Callable[[int, dict[str, float]], bool] | None) -> dict[str, Any]:
    """Train from the state's epoch (or the start) up to `epochs`: an epoch's rows and checkpoint together."""
    cfg, model, device, run_dir = fit.cfg, fit.model, fit.device, fit.run_dir
    done = state["epoch"] if state else 0
    optimizer, scaler, step, graphed = optimiser(fit, state)
    test_loss = float("nan")
    monitor, patience = cfg.checkpoint.monitor, cfg.early_stop.patience
    best = dict(state["best"]) if state and state.get("best") else None
    showcase_images = fit.showcase()
    for epoch in range(done + 1, cfg.epochs + 1):
        start = time.perf_counter()
        lr = learning_rate(cfg.optimizer.lr, cfg.lr_schedule, epoch, cfg.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        record = train_epoch(
            model, optimizer, fit.train_set.pixels,
            batch_size=cfg.batch_size, generator=epoch_generator(cfg.seed, epoch),
            objective=fit.objective, desc=f"epoch {epoch}/{cfg.epochs}",
            noise=(cfg.noise.name, cfg.noise.level), noise_generator=epoch_generator(cfg.noise_seed, epoch),
            shift=cfg.augment_shift, binarize=cfg.dataset.binarize == "dynamic", device=device,
            precision=cfg.precision, scaler=scaler, cuda_graphs=graphed,
        )
        check_finite_record(record, epoch, step, done, source, cfg.optimizer.lr)
        seconds = time.perf_counter() - start
        test_loss, validation = mean_mse(model, fit.test_set.pixels), fit.validate()
        better, stop = False, False
        if monitor:
            value = monitored(monitor, record, validation, fit.objective.names)
            better = improves(value, best, monitor)
            if better:
                best = {"monitor": monitor, "value": value, "epoch": epoch}
            stop = bool(patience) and epoch - best["epoch"] >= patience and epoch < cfg.epochs
        kept = fit.history.sizes()
        try:  # the epoch's rows and its checkpoint are written together, or neither is
            row = fit.history.append(epoch, step, record, test_loss, seconds, validation)
            made = ckpt.make(**fit.describe, epoch=epoch, step=step + len(record), optimizer=optimizer,
                             scaler=scaler, best=best)
            if better:  # first, so that last.pt never names a best epoch that best.pt does not hold
                ckpt.save(dict(made), run_dir / ckpt.BEST, keep_previous=False)
            if stop:  # early_stop.patience ended the run before its epochs: complete as it is (ckpt.finished)
                made["stopped_early"] = True
            ckpt.save(made, fit.path)
        except OSError as exc:
            fit.history.truncate(kept)
            raise write_failure(exc, run_dir, epoch) from exc
        fit.trackers.epoch(loggers.Epoch(epoch=epoch, metrics=row, first_step=step, record=record, lr=lr,
                                         model=model, showcase=showcase_images))
        step += len(record)
        log.info("epoch %d/%d  train %s %.5f  %stest MSE %.5f  %.1f s", epoch, cfg.epochs,
                 model.reconstruction_name, record[:, 0].mean().item(),
                 "" if validation is None else f"val MSE {validation['val_loss']:.5f}  "
                 + (f"val probe {validation['val_probe']:.2%}  " if "val_probe" in validation else ""),
                 test_loss, seconds)
        if stop:
            log.info("stopped early at epoch %d: %s has not improved on %.6g (epoch %d) for %d epochs; %s holds that "
                     "epoch", epoch, monitor, best["value"], best["epoch"], patience, ckpt.BEST)
            break
        if after_epoch is not None and validation is not None and after_epoch(epoch, validation) and epoch < cfg.epochs:
            log.info("pruned at epoch %d: its %s is worse than earlier trials' at this epoch", epoch, cfg.search.metric)
            return {"run_dir": str(run_dir), "epochs": epoch, "test_loss": test_loss, "pruned_at": epoch}
    warning = health_warning(cfg, model, fit.test_set.pixels, fit.history, mean_of(fit.train_set.pixels).to(device))
    if warning:
        log.warning("warning: %s", warning)
    result = {"run_dir": str(run_dir), "epochs": epoch, "test_loss": test_loss, "warning": warning}
    if best is not None:
        result["best"] = best
    if stop:
        result["stopped_early"] = epoch
    return result


def optimiser(fit: Fit, state: dict[str, Any] | None
              ) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler | None, int, bool]:
    """The optimiser (and a float16 run's loss scaler) as new, or as the checkpoint left them; the step it is at;
    whether its steps replay a CUDA graph."""
    cfg, model, device = fit.cfg, fit.model, fit.device
    if not state and type(model).start_from_data is not Autoencoder.start_from_data:  # e.g. the conv AEs' output bias
        model.start_from_data(first_images(fit.train_set, device))
    optimizer = eager.build(instantiate(cfg.optimizer), model.parameters())
    scaler = mixed.scaler(cfg.precision, device)
    step = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = state["step"]
        log.info("resuming from epoch %d (step %d)", state["epoch"], step)
    graphed = bool(cfg.cuda_graphs and graphs.usable(model, optimizer, device, scaler))
    graphs.set_capturable(optimizer, graphed)
    return optimizer, scaler, step, graphed


def check_finite_record(record: torch.Tensor, epoch: int, step: int, done: int, source: Path | None,
                        lr: float) -> None:
    """One line for an epoch whose loss became non-finite: where, what is kept, and what to try."""
    finite = torch.isfinite(record).all(dim=1)
    if finite.all():
        return
    bad = step + int((~finite).nonzero()[0]) + 1
    kept = f"the last good checkpoint (epoch {epoch - 1}) is kept" if epoch > 1 else "no epoch was finished"
    if epoch == done + 1 and source:  # the resumed state, not the learning rate, is what changed
        raise UserError(f"the loss became non-finite at epoch {epoch}, step {bad}, the first step"
                        f"{'' if bad == step + 1 else 's'} after resuming from {source} (epoch {done}); "
                        f"{kept}; a straight run of this config would tell whether the saved state or the "
                        f"settings are at fault (optimizer.lr={lr:g})")
    raise UserError(f"the loss became non-finite at epoch {epoch}, step {bad}; {kept}; try a smaller optimizer.lr")
