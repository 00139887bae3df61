"""Checks of a composed training config, before any data is loaded or any weight trained.

Each failure is a UserError naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aerun import eager, loggers, noise, precision
from aerun.data import BINARIZE, data_shape, dataset
from aerun.errors import UserError
from aerun.models import Autoencoder, build, builder_args, families
from aerun.objective import Objective, Term, default
from aerun.schema import DEFAULTS
from aerun.search import VALIDATION, check_metric

DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SHIFT = 4
MAX_SEED = 2**32 - 1  # torch seeds each epoch's generator with seed * 100_003 + epoch, which must fit 64 bits


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(key: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise UserError(f"{key}={value!r} is not allowed; it must be a positive integer")


def number(key: str, value: Any, *, minimum: float, inclusive: bool) -> None:
    ok = _is_number(value) and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        shown = f"{value:g}" if _is_number(value) else repr(value)
        raise UserError(f"{key}={shown} is not allowed; it must be a finite number {bound}")


def mps_available() -> bool:
    """Apple silicon's GPU (Metal Performance Shaders), where this torch was built with it."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    """The devices this machine can train on, best first: what `device=auto` picks from."""
    return [*(["cuda"] if torch.cuda.is_available() else []), *(["mps"] if mps_available() else []), "cpu"]


def device(value: Any) -> None:
    if value not in DEVICES:
        raise UserError(f"device={value!r} is not a device; allowed: {', '.join(DEVICES)}")
    if value == "auto" or value in available_devices():
        return
    what = {"cuda": "no CUDA GPU", "mps": "no Apple-silicon GPU (mps)"}[value]
    raise UserError(f"device={value} but this machine has {what}; allowed here: "
                    f"{', '.join(['auto', *available_devices()])}")


def check_noise(cfg: DictConfig) -> None:
    number("noise.level", cfg.noise.level, minimum=0, inclusive=True)
    noise.check(cfg.noise.name, cfg.noise.level)
    seed("noise_seed", cfg.noise_seed)


def seed(key: str, value: Any) -> None:
    if not _is_int(value) or not 0 <= value <= MAX_SEED:
        raise UserError(f"{key}={value!r} is not allowed; it must be an integer from 0 to {MAX_SEED}")


def writable_folder(key: str, value: Any) -> None:
    """A folder aerun will create or write into: not a file, below a writable folder, on a writable disk."""
    path = Path(str(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}={value} is a file, not a folder; choose another {key}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={value} cannot be made: {existing} is a file, not a folder; choose another {key}")
    read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    if read_only or not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if read_only else "is not writable by this user"
        raise UserError(f"{key}={value} cannot be written: {existing} {why}; choose another {key}")


def data_folder(cfg: DictConfig) -> None:
    """The data folder of a data set read from files: a folder, or one that can be made to fetch into."""
    if not dataset(cfg.dataset, cfg.paths.data_dir).fetched:
        return
    path = Path(str(cfg.paths.data_dir)).expanduser()
    if path.is_dir():
        return  # may be read-only (a shared copy); a missing file is named when it is read
    writable_folder("paths.data_dir", cfg.paths.data_dir)


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimiser on one parameter, so an option torch rejects is named before any work."""
    try:
        eager.build(instantiate(cfg.optimizer), [torch.zeros(1, requires_grad=True)])
    except Exception as exc:
        cause = exc.__cause__ or exc
        text = " ".join(str(cause).split())
        raise UserError(f"optimizer {cfg.optimizer.get('_target_', '?')} rejects these options "
                        f"({text[:200]}); see `aerun --cfg job` for the optimizer's keys") from None


def check_train(cfg: DictConfig) -> Autoencoder:
    """Raise a UserError for the first bad value in a training config; return the model it builds (its initial
    weights, as `initial_model`)."""
    positive_int("epochs", cfg.epochs)
    positive_int("batch_size", cfg.batch_size)
    seed("seed", cfg.seed)
    device(cfg.device)
    number("optimizer.lr", cfg.optimizer.lr, minimum=0, inclusive=False)
    check_optimizer(cfg)
    check_noise(cfg)
    shift = cfg.augment_shift
    if not _is_int(shift) or not 0 <= shift <= MAX_SHIFT:
        raise UserError(f"augment_shift={shift!r} is not allowed; it must be an integer from 0 to {MAX_SHIFT} (pixels)")
    loggers.check(cfg.logger)
    precision.check(cfg.precision, available_devices()[0] if cfg.device == "auto" else cfg.device)
    if cfg.dataset.binarize not in BINARIZE:
        raise UserError(f"dataset.binarize={cfg.dataset.binarize!r} is not allowed; allowed: {', '.join(BINARIZE)}")
    val_size, n_train = cfg.dataset.val_size, cfg.dataset.get("n_train")
    if val_size < 0 or (n_train is not None and val_size >= n_train):
        most = f" and below dataset.n_train={n_train}" if n_train is not None else ""
        raise UserError(f"dataset.val_size={val_size} is not allowed; it must be 0 (no validation split) or more{most}")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"lr_schedule={cfg.lr_schedule!r} is not allowed; allowed: constant, cosine")
    for key in ("hidden", "code", "k"):
        if key in cfg.model:
            positive_int(f"model.{key}", cfg.model[key])
    model = initial_model(cfg, data_shape(cfg.dataset, cfg.paths.data_dir))  # every argument, checked by its builder
    check_terms(cfg, model)
    check_monitor(cfg, model)
    return model


# The model the last check built, with the CPU random stream as its build left it: `aerun train` checks its config
# on the command line and again in train(), and trains the model those checks built (`take_initial_model`).
_BUILT: dict[tuple[Any, ...], tuple[Autoencoder, torch.Tensor]] = {}


def _build_key(cfg: DictConfig, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """Everything a model's initial weights depend on: its family and arguments, the seed, the image shape."""
    return cfg.model.builder, repr(sorted(builder_args(cfg.model).items())), int(cfg.seed), tuple(shape)


def initial_model(cfg: DictConfig, shape: tuple[int, ...]) -> Autoencoder:
    """The model a run of `cfg` starts from, built as training builds it (after torch.manual_seed(seed)), the
    process's random streams left as they were; built once for a config however often it is checked."""
    key = _build_key(cfg, shape)
    if key not in _BUILT:
        with torch.random.fork_rng(devices=[]):  # the CPU stream; the build draws from it alone
            torch.random.default_generator.manual_seed(int(cfg.seed))
            model = build(cfg.model.builder, in_shape=shape, **builder_args(cfg.model))
            _BUILT.clear()
            _BUILT[key] = model, torch.get_rng_state()
    return _BUILT[key][0]


def take_initial_model(cfg: DictConfig, shape: tuple[int, ...]) -> Autoencoder:
    """`initial_model`, taken for training: every random stream seeded with `seed` and the CPU's then moved to
    where the build left it, so whatever is drawn next is drawn as if the model were built here; the next call
    for the same config builds a new one."""
    initial_model(cfg, shape)
    model, after = _BUILT.pop(_build_key(cfg, shape))
    torch.manual_seed(cfg.seed)
    torch.set_rng_state(after)
    return model


def check_monitor(cfg: DictConfig, model: Autoencoder) -> None:
    """checkpoint.monitor a column this run logs and may choose by (aerun.search.check_metric), its validation
    split there; early_stop.patience a count of epochs, with a monitor to count them by."""
    monitor, patience = cfg.checkpoint.monitor, cfg.early_stop.patience
    if not _is_int(patience) or patience < 0:
        raise UserError(f"early_stop.patience={patience!r} is not allowed; it must be 0 (off) or a number of epochs")
    if patience and monitor is None:
        raise UserError(f"early_stop.patience={patience} stops a run when checkpoint.monitor stops improving: name "
                        "one, e.g. checkpoint.monitor=val_loss dataset.val_size=10000")
    if monitor is None:
        return
    check_metric("checkpoint.monitor", monitor)
    if monitor in VALIDATION and not cfg.dataset.val_size:
        raise UserError(f"checkpoint.monitor={monitor} is measured on a validation split: add dataset.val_size=N "
                        "(for MNIST, 10000 holds out a sixth of the training images)")
    logged = ("train_loss", "train_penalty", *(f"train_{name}" for name in Objective.of(cfg, model).names))
    if monitor not in VALIDATION and monitor not in logged:
        raise UserError(f"checkpoint.monitor={monitor} is not a column this run logs; it logs "
                        f"{', '.join((*VALIDATION, *logged))}")


def check_terms(cfg: DictConfig, model: Autoencoder) -> None:
    """Every term weight a finite number >= 0; a weight of another family's term (a top-level one moved from its
    default, a `model.` one given at all) refused for a family that does not train with it (model.beta=4 on a
    plain AE would silently do nothing)."""
    own = {term.key for term in model.terms}
    for term in model.terms:
        if term.key is not None:
            weight = cfg[term.key] if term.top_level else OmegaConf.select(cfg, term.key, default=default(term))
            number(term.key, weight, minimum=0, inclusive=True)
    others: dict[str, list[tuple[str, Term]]] = {}
    for name, cls in sorted(families().items()):
        for term in cls.terms:
            if term.key is not None and term.key not in own:
                others.setdefault(term.key, []).append((name, term))
    for key, owners in others.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None or (owners[0][1].top_level and value == DEFAULTS[key]):
            continue
        number(key, value, minimum=0, inclusive=True)
        names = ", ".join(name for name, _ in owners)
        whose = f"the families {names}" if len(owners) > 1 else f"the {names} family"
        raise UserError(f"{key}={value:g} sets {owners[0][1].what} of {whose}, and model={cfg.model.name} "
                        f"(family {cfg.model.builder}) has no such term; use a model of "
                        f"{'one of them' if len(owners) > 1 else 'that family'}, or drop {key}")