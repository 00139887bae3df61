"""Optimisers without torch's compiler: its import costs every training process about 2 s.

PyTorch wraps the optimiser's methods for `torch.compile`: `add_param_group`, `zero_grad`, `state_dict` and
`load_state_dict` import `torch._dynamo` on their first call (to exclude themselves from compilation), and
`step` imports it on every call (to mark graph breaks). aerun never compiles its step, so these wrappers only
cost the import: a one-epoch `aerun dataset=synthetic epochs=1 model=shallow device=cpu` took 5.1-5.4 s with
it and 3.0-3.1 s without (2026-12-02; docs/results.md). Here the first four are marked as resolved, and
`step` calls the optimiser's own update under `no_grad`, which is what the wrappers run in eager mode. Where
anything differs from that case (the compiler already imported, step hooks registered, a differentiable
optimiser), `optimizer.step()` is called as it is.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim import optimizer as optimizer_module

COMPILER = "torch._dynamo"
RESOLVED = "__dynamo_disable"  # where torch's lazy wrapper (torch._compile._disable_dynamo) keeps what it resolved to
WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _skip_compiler_import() -> None:
    """Mark Optimizer's lazily-disabled methods as resolved to themselves, so their first call imports nothing."""
    if COMPILER in sys.modules:
        return
    for name in WRAPPED:
        inner = getattr(getattr(Optimizer, name, None), "__wrapped__", None)
        if inner is not None and not hasattr(inner, RESOLVED):
            setattr(inner, RESOLVED, inner)


def build(make: Callable[..., Optimizer], params: Iterable[Any]) -> Optimizer:
    """`make(params=params)` (a Hydra-instantiated optimiser class), its methods kept from importing the compiler."""
    _skip_compiler_import()
    return make(params=params)


@functools.cache
def _update(cls: type) -> Callable[..., Any]:
    """The class's own `step`, beneath torch's wrappers (hooks and profiling, grad mode and graph breaks)."""
    fn = cls.step
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def step(optimizer: Optimizer) -> None:
    """`optimizer.step()`: the same update, without the compiler's import where nothing needs the wrappers."""
    hooked = (optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
              or optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks)
    if hooked or optimizer.defaults.get("differentiable") or COMPILER in sys.modules:
        optimizer.step()
        return
    update = _update(type(optimizer))
    with torch.no_grad():
        update(optimizer)
