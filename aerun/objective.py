"""What a model trains on: its reconstruction term plus the regularisers the run declares.

The one place for a model's own loss term. A run's objective is read from its config:

- `sparsity` (any model): the L1 penalty on the code, `sparsity * sum(|code|)` over the batch
  and the code units, as the assignment's notebook defined it (part 3);
- `contractive` (any model with an encoder): `contractive * ||dh/dx||_F^2`, the squared
  Frobenius norm of the code's Jacobian with respect to the input, averaged over the batch;
  in closed form for a one-layer sigmoid encoder, by autograd otherwise;
- `beta` (variational models only, default 1): `beta * KL(q(z|x) || N(0, I))` per image,
  averaged over the batch.

The reconstruction term is the mean squared error per pixel for a plain autoencoder and the
negative log-likelihood per image (nats) for a variational one, whose code is sampled with the
reparameterisation trick from the epoch's generator (so a resumed run draws the same samples).
Each active regulariser is a named term, logged per iteration beside the reconstruction term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn


TERMS = ("l1", "kl", "contractive")  # the column order of the per-term logs


def is_variational(model: nn.Module) -> bool:
    return hasattr(model, "posterior")


@dataclass(frozen=True)
class Objective:
    sparsity: float = 0.0
    contractive: float = 0.0
    beta: float = 1.0

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> "Objective":
        """The objective a training config declares (its weights are checked by aerun.validate.check_train)."""
        return cls(float(cfg.get("sparsity", 0.0)), float(cfg.get("contractive", 0.0)), float(cfg.get("beta", 1.0)))

    def terms(self, model: nn.Module) -> tuple[str, ...]:
        """The names of the regularisers this objective adds for `model`, in TERMS order."""
        active = {"l1": self.sparsity > 0, "kl": is_variational(model), "contractive": self.contractive > 0}
        return tuple(name for name in TERMS if active[name])


def loss_terms(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(the reconstruction term, {regulariser name: its weighted value}) for one batch.

    The regularisers are those of `objective.terms(model)`; the training loss is their sum with
    the reconstruction term.
    """
    terms: dict[str, torch.Tensor] = {}
    if is_variational(model):
        mean, logvar = model.posterior(inputs)
        code = reparameterise(mean, logvar, generator)
        reconstruction = model.negative_log_likelihood(model.decode_logits(code), targets).mean()
        terms["kl"] = objective.beta * kl_divergence(mean, logvar).mean()
    else:
        recon, code = model(inputs)
        reconstruction = F.mse_loss(recon, targets)
    if objective.sparsity > 0:
        terms["l1"] = objective.sparsity * code.abs().sum()
    if objective.contractive > 0:
        terms["contractive"] = objective.contractive * jacobian_norm(model, inputs).mean()
    return reconstruction, {name: terms[name] for name in TERMS if name in terms}


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A sample z = mean + sigma * eps, eps ~ N(0, I), differentiable in mean and logvar."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats: 0.5 * sum(mean^2 + var - 1 - logvar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def sigmoid_layer(model: nn.Module) -> nn.Linear | None:
    """The linear map of an encoder that is one linear layer and a sigmoid, else None."""
    encoder = getattr(model, "encoder", None)
    if (isinstance(encoder, nn.Sequential) and len(encoder) == 2 and isinstance(encoder[0], nn.Linear)
            and isinstance(encoder[1], nn.Sigmoid)):
        return encoder[0]
    return None


def jacobian_norm(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """||dh/dx||_F^2 per image, h = model.encode(x), differentiable in the model's weights.

    For h = sigmoid(W x + b): dh_j/dx = h_j (1 - h_j) W_j, so the norm is
    sum_j (h_j (1 - h_j))^2 ||W_j||^2, one matrix product. Otherwise one backward pass per
    code unit (images are encoded independently, so each pass gives every image's row).
    """
    layer = sigmoid_layer(model)
    if layer is not None:
        h = model.encode(inputs)
        return (h * (1 - h)).pow(2) @ layer.weight.pow(2).sum(1)
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        h = model.encode(x).flatten(1)
        total = torch.zeros(x.shape[0], device=x.device, dtype=h.dtype)
        for j in range(h.shape[1]):
            (row,) = torch.autograd.grad(h[:, j].sum(), x, create_graph=True)
            total = total + row.flatten(1).pow(2).sum(1)
    return total
