"""What a model does to each image: its reconstruction error and code, and the features a probe reads.

Below evaluation, training and the out-of-distribution scores, which all measure images one by one.
"""

from __future__ import annotations

import torch
from torch import nn

from aerun.data import batch_rows, floats


@torch.no_grad()
def reconstruct(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSE of each image against `targets` (default: the inputs), float64 (N,), and the codes (N, code_dim).
    Inputs and targets are floats in [0, 1] or uint8 pixels (made floats batch by batch)."""
    model.eval()
    targets = inputs if targets is None else targets
    batch_size = batch_size or batch_rows(inputs.shape[1:])
    # the results go into tensors made once: small results kept between a batch's large temporaries pinned the
    # C heap, and evaluating 20,000 3x64x64 images held 1.5 GB more than it used (measured)
    device = where(model, inputs)
    errors, codes = torch.empty(len(inputs), dtype=torch.float64, device=device), None
    for start in range(0, len(inputs), batch_size):
        x, y = (floats(t[start:start + batch_size].to(device, non_blocking=True)) for t in (inputs, targets))
        recon, code = model(x)
        if codes is None:
            codes = torch.empty(len(inputs), code.shape[1], dtype=code.dtype, device=device)
        errors[start:start + len(x)] = (recon - y).double().pow(2).flatten(1).sum(1)
        codes[start:start + len(x)] = code
    return errors, codes


def where(model: nn.Module, images: torch.Tensor) -> torch.device:
    """Where a model computes: its parameters' device (a split too large for a GPU stays in host memory)."""
    parameter = next(iter(model.parameters()), None)
    if parameter is None:
        parameter = next(iter(model.buffers()), None)
    return parameter.device if parameter is not None else images.device


def sse_per_image(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    return reconstruct(model, inputs, targets)[0]


@torch.no_grad()
def each_batch(model: nn.Module, images: torch.Tensor, method: str, batch_size: int | None = None) -> torch.Tensor:
    """`model.<method>` of `images` batch by batch, on the model's device, flattened to (N, -1)."""
    model.eval()
    batch_size = batch_size or batch_rows(images.shape[1:])
    device = where(model, images)
    call = getattr(model, method)
    return torch.cat([call(floats(x.to(device))).flatten(1) for x in images.split(batch_size)])


def features(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """What the linear probe reads of `images`: a family's `features` (its code, unless it says otherwise)."""
    return each_batch(model, images, "features", batch_size)


def encode(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The codes of `images` (N, code_dim), without decoding them."""
    return each_batch(model, images, "encode", batch_size)
