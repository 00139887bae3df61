"""The fully connected autoencoder: the deep, shallow, sparse and manifold presets of the assignment."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aerun.data.base import IMAGE_SHAPE
from aerun.errors import UserError
from aerun.models.base import ACTIVATIONS, CODE_SPACE, FILTERS, Autoencoder, register
from aerun.models.layers import check_widths, stack


RECONSTRUCTIONS = ("mse", "bernoulli")


@register("mlp")
class MLPAutoencoder(Autoencoder):
    """in - encoder... - code - decoder... - in, `activation` between layers; the decoder mirrors the
    encoder unless given. The assignment's ReLU everywhere, output included, is the default."""

    figures = frozenset({FILTERS, ACTIVATIONS, CODE_SPACE})
    graphable = True

    def __init__(
        self,
        code: int,
        encoder: Sequence[int] = (),
        decoder: Sequence[int] | None = None,
        activation: str = "relu",
        code_activation: str = "relu",
        output_activation: str = "relu",
        reconstruction: str = "mse",
        in_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__(in_shape)
        if reconstruction not in RECONSTRUCTIONS:
            raise UserError(f"model.reconstruction={reconstruction!r} is not allowed; allowed: {', '.join(RECONSTRUCTIONS)}")
        if reconstruction == "bernoulli" and output_activation != "sigmoid":
            raise UserError("model.reconstruction=bernoulli reads the output as pixel probabilities: it needs "
                            f"model.output_activation=sigmoid, not {output_activation!r}")
        self.reconstruction = reconstruction
        if reconstruction == "bernoulli":
            self.reconstruction_name = "NLL (nats/image)"
        dim = math.prod(self.in_shape)
        decoder = tuple(reversed(encoder)) if decoder is None else tuple(decoder)
        check_widths(code, encoder, decoder)
        self.code_dim = code
        self.output_activation = output_activation
        self.encoder = stack([dim, *encoder, code], activation, code_activation, "model.code_activation")
        self.decoder = stack([code, *decoder, dim], activation, output_activation, "model.output_activation")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h).view(-1, *self.in_shape)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, weights: Mapping[str, float],
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The MSE per pixel, or with reconstruction=bernoulli the binary cross-entropy summed over the pixels,
        in nats per image, as a VAE's (from the logits, before the sigmoid)."""
        if self.reconstruction == "mse":
            return super().loss(inputs, targets, weights, generator)
        code = self.encode(inputs)
        logits = self.decoder[:-1](code).view_as(targets)
        nll = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).sum(1).mean()
        return nll, self.common_terms(inputs, code, weights)

    def encoder_filters(self) -> torch.Tensor:
        return self.encoder[0].weight.view(-1, *self.in_shape)

    @property
    def bounded_output(self) -> bool:
        return self.output_activation == "sigmoid"

    def sigmoid_layer(self) -> nn.Linear | None:
        """The linear map of an encoder that is one linear layer and a sigmoid, else None."""
        if len(self.encoder) == 2 and isinstance(self.encoder[1], nn.Sigmoid):
            return self.encoder[0]
        return None

    def jacobian_norm(self, inputs: torch.Tensor) -> torch.Tensor:
        """For h = sigmoid(W x + b), dh_j/dx = h_j (1 - h_j) W_j: the norm is sum_j (h_j (1 - h_j))^2 ||W_j||^2,
        one matrix product (the contractive AE's closed form); any other encoder by autograd."""
        layer = self.sigmoid_layer()
        if layer is None:
            return super().jacobian_norm(inputs)
        h = self.encode(inputs)
        return (h * (1 - h)).pow(2) @ layer.weight.pow(2).sum(1)
