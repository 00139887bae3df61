"""Pieces several families build with: activations by name, and checks of layer widths."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import nn

from aerun.errors import UserError

NONLINEARITIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def activation(name: str, key: str, inplace: bool = False) -> nn.Module:
    """The activation called `name`; a UserError naming the config `key` for an unknown one. With `inplace`, a ReLU
    overwrites its input (for a layer whose input no backward pass reads, such as a convolution's output)."""
    if name not in NONLINEARITIES:
        raise UserError(f"{key}={name!r} is not an activation; allowed: {', '.join(NONLINEARITIES)}")
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    return NONLINEARITIES[name]()


def check_widths(code: Any, encoder: Sequence[Any], decoder: Sequence[Any]) -> None:
    for key, widths in (("model.encoder", encoder), ("model.decoder", decoder), ("model.code", [code])):
        bad = [w for w in widths if not isinstance(w, int) or isinstance(w, bool) or w <= 0]
        if bad:
            raise UserError(f"{key} has width {bad[0]!r}; layer widths are positive integers")


def stack(widths: Sequence[int], hidden: str, last: str, last_key: str) -> nn.Sequential:
    """Linear layers through `widths`, `hidden` activations between them and `last` after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        is_last = i == len(widths) - 2
        layers.append(activation(last, last_key) if is_last else activation(hidden, "model.activation"))
    return nn.Sequential(*layers)
