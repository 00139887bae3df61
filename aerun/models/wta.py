"""The fully connected winner-take-all autoencoder (Makhzani & Frey, "Winner-Take-All Autoencoders", NIPS 2015).

A ReLU encoder and a linear decoder. In training, each code unit keeps only its largest
`sparsity_rate` of activations across the mini-batch and the rest are set to zero ("lifetime
sparsity": units compete with themselves over the batch, not with each other, so none is left dead).
The decoder then learns from sparse codes; only the kept activations pass a gradient.

At test time there is no batch to rank over. For reconstruction the code keeps, per unit, the
activations above that unit's typical cut-off in training (a running mean of the per-batch
thresholds, a buffer of the model, so it resumes exactly); the linear probe reads the ReLU
activations without any cut-off, as the paper classifies with them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from aerun.data.base import IMAGE_SHAPE
from aerun.errors import UserError
from aerun.models.base import ACTIVATIONS, CODE_SPACE, FILTERS, Autoencoder, register
from aerun.models.layers import check_widths, stack

MOMENTUM = 0.9  # of the running threshold: about the last ten batches, so it follows the weights as they grow


@register("wta")
class WinnerTakeAll(Autoencoder):
    """in - encoder... - code (ReLU, lifetime-sparse in training) - linear decoder - in."""

    figures = frozenset({FILTERS, ACTIVATIONS, CODE_SPACE})

    def __init__(self, code: int = 2000, encoder: Sequence[int] = (), sparsity_rate: float = 0.05,
                 in_shape: Sequence[int] = IMAGE_SHAPE) -> None:
        super().__init__(in_shape)
        if not 0 < sparsity_rate <= 1:
            raise UserError(f"model.sparsity_rate={sparsity_rate!r} is not allowed; it is the fraction of a batch "
                            "each code unit keeps, in (0, 1] (1: no sparsity)")
        check_widths(code, encoder, ())
        self.code_dim = code
        self.sparsity_rate = float(sparsity_rate)
        dim = math.prod(self.in_shape)
        self.encoder = stack([dim, *encoder, code], "relu", "relu", "model.activation")
        self.decoder = nn.Linear(code, dim)
        self.register_buffer("threshold", torch.zeros(code))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ReLU activations, every one of them: what the paper's linear classifier reads."""
        return self.encoder(x.flatten(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if self.sparsity_rate >= 1:
            return h
        if self.training:
            return self.lifetime_sparse(h)
        return h * (h >= self.threshold)

    def lifetime_sparse(self, h: torch.Tensor) -> torch.Tensor:
        """Each unit's k = ceil(rate * batch) largest activations over the batch kept, the rest zeroed;
        the per-unit cut-off feeds the running threshold used at test time."""
        k = max(1, math.ceil(self.sparsity_rate * h.shape[0]))
        cut = h.topk(k, dim=0).values[-1]  # (units,): the k-th largest of each unit
        with torch.no_grad():
            if self.batches == 0:
                self.threshold.copy_(cut)
            else:
                self.threshold.mul_(MOMENTUM).add_(cut.detach(), alpha=1 - MOMENTUM)
            self.batches += 1
        return h * ((h >= cut) & (h > 0))  # a zero stays out even where fewer than k are positive

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h).view(-1, *self.in_shape)

    def encoder_filters(self) -> torch.Tensor:
        return self.encoder[0].weight.view(-1, *self.in_shape)
