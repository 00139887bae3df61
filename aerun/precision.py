"""`precision=32|bf16-mixed|16-mixed`: the forward pass and the loss under torch.autocast, weights and optimiser
state in float32 (as Lightning's `precision=` names them).

- `32`: float32 throughout; TF32 stays off on CUDA, so a run gives the CPU's numbers to float32 rounding.
- `bf16-mixed`: matrix products and convolutions in bfloat16 under autocast, on every device. A CPU without
  bfloat16 instructions (avx512_bf16 or AMX) runs it in software, slower than float32: one warning says so.
- `16-mixed`: float16 under autocast with a gradient scaler (float16's range needs one): CUDA only; elsewhere
  one line. With either mixed precision a CUDA device also runs the float32 products that remain in TF32.

Evaluation is always float32: a run's numbers are its weights', whatever precision trained them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any

import torch

from aerun.errors import UserError

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def check(precision: Any, device: str | None = None) -> None:
    """One line for a precision aerun does not know, or one the device cannot run."""
    if str(precision) not in PRECISIONS:
        raise UserError(f"precision={precision!r} is not allowed; allowed: {', '.join(PRECISIONS)}")
    if str(precision) == "16-mixed" and device is not None and device != "cuda":
        raise UserError(f"precision=16-mixed needs a CUDA GPU (float16 with a gradient scaler), and this run is on "
                        f"{device}; use precision=bf16-mixed or 32")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (Linux's /proc/cpuinfo flags); False where it cannot tell."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def prepare(precision: str, device: torch.device) -> None:
    """Device settings for a precision, said once where they cost something."""
    check(precision, device.type)
    if precision == "bf16-mixed" and device.type == "cpu" and not cpu_has_bf16():
        log.warning("warning: this CPU has no bfloat16 instructions (%s): precision=bf16-mixed runs in software, "
                    "slower than precision=32", " or ".join(CPU_BF16_FLAGS))
    if device.type == "cuda" and precision != "32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(precision: str, device: torch.device, cache: bool = True) -> contextlib.AbstractContextManager:
    """The context the forward pass and the loss run in: autocast at the precision's type, or nothing at 32.
    `cache=False` for a step captured in a CUDA graph (autocast's cast cache must not outlive the capture)."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision], cache_enabled=cache)


def scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The gradient scaler float16 needs (16-mixed); None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
