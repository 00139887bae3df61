"""Checks of a composed training config, before any data is loaded or any weight trained.

Each failure is a UserError naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from omegaconf import DictConfig

from aerun import noise
from aerun.errors import UserError
from aerun.models import build, builder_args

DEVICES = ("auto", "cpu", "cuda")
MAX_SHIFT = 4


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(key: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise UserError(f"{key}={value!r} is not allowed; it must be a positive integer")


def number(key: str, value: Any, *, minimum: float, inclusive: bool) -> None:
    ok = _is_number(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise UserError(f"{key}={value!r} is not allowed; it must be a number {bound}")


def device(value: Any) -> None:
    if value not in DEVICES:
        raise UserError(f"device={value!r} is not a device; allowed: {', '.join(DEVICES)}")
    if value == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but this machine has no CUDA GPU; allowed here: auto, cpu")


def check_noise(cfg: DictConfig) -> None:
    number("noise.level", cfg.noise.level, minimum=0, inclusive=True)
    noise.check(cfg.noise.name, cfg.noise.level)
    if not _is_int(cfg.noise_seed) or cfg.noise_seed < 0:
        raise UserError(f"noise_seed={cfg.noise_seed!r} is not allowed; it must be an integer >= 0")


def check_train(cfg: DictConfig) -> None:
    """Raise a UserError for the first bad value in a training config."""
    positive_int("epochs", cfg.epochs)
    positive_int("batch_size", cfg.batch_size)
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise UserError(f"seed={cfg.seed!r} is not allowed; it must be an integer >= 0")
    number("sparsity", cfg.sparsity, minimum=0, inclusive=True)
    device(cfg.device)
    number("optimizer.lr", cfg.optimizer.lr, minimum=0, inclusive=False)
    check_noise(cfg)
    shift = cfg.get("augment_shift", 0)
    if not _is_int(shift) or not 0 <= shift <= MAX_SHIFT:
        raise UserError(f"augment_shift={shift!r} is not allowed; it must be an integer from 0 to {MAX_SHIFT} (pixels)")
    from aerun import tensorboard

    tensorboard.check(cfg.get("logger", "csv"))
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"lr_schedule={cfg.lr_schedule!r} is not allowed; allowed: constant, cosine")
    for key in ("hidden", "code", "k"):
        if key in cfg.model:
            positive_int(f"model.{key}", cfg.model[key])
    build(cfg.model.builder, **builder_args(cfg.model))  # every builder argument, checked by its builder
