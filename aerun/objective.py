"""What a model trains on: its reconstruction term plus the regularisers its family declares.

A family declares its regularisers on its class (`Autoencoder.terms`, a tuple of `Term`) and computes
them in its `loss`; this module holds what they share: the declaration, the weights a run's config
gives them (`Objective`), and the math several families use.

- `sparsity` (any family): the L1 penalty on the code, `sparsity * sum(|code|)` over the batch and
  the code units, as the assignment's notebook defined it (part 3);
- `contractive` (any family): `contractive * ||dh/dx||_F^2`, the squared Frobenius norm of the code's
  Jacobian with respect to the input, averaged over the batch (Rifai et al., 2011);
- a family's own: a VAE's `model.beta * KL(q(z|x) || N(0, I))`, a VQ-VAE's codebook and commitment terms.

Each active regulariser is a named term, logged per iteration beside the reconstruction term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from omegaconf import OmegaConf

from aerun.schema import DEFAULTS


@dataclass(frozen=True)
class Term:
    """A regulariser a family trains with, logged per iteration as a column of loss_iter.csv.

    `key` is the config key of its weight: a top-level training key (its default and type live in
    aerun.schema), `model.<name>`, a key of the family's presets, whose default is `default` here, or
    None for a term of weight 1 (a VQ-VAE's codebook term). `always`: computed and logged even at
    weight 0 (a VAE's KL term); otherwise only a positive weight turns it on. `what` names it in a
    warning ("the KL weight (model.beta=4) too strong").
    """

    name: str
    key: str | None
    what: str
    always: bool = False
    default: float | None = None  # for a `model.` key only: the weight when the preset does not set it
    formerly: str | None = None   # the top-level key the weight had in older runs' configs (`carry_forward`)

    @property
    def top_level(self) -> bool:
        return self.key is not None and "." not in self.key


# The regularisers any family can take (Autoencoder.terms holds them unless a family says otherwise).
L1 = Term("l1", "sparsity", "the sparsity penalty")
CONTRACTIVE = Term("contractive", "contractive", "the contractive penalty")


@dataclass(frozen=True)
class Objective:
    """The weight of each active term of a family, in the family's order: what one run trains on."""

    weights: Mapping[str, float]
    terms: tuple[Term, ...] = ()  # the family's terms, active or not

    @classmethod
    def of(cls, cfg: Any, model: Any) -> "Objective":
        """The objective a training config declares for a model (checked by aerun.validate.check_train)."""
        weights = {}
        for term in model.active_terms():
            weight = float(default(term) if term.key is None else cfg[term.key] if term.top_level
                           else OmegaConf.select(cfg, term.key, default=default(term)))
            if weight != 0 or term.always:
                weights[term.name] = weight
        return cls(weights, tuple(model.active_terms()))

    @classmethod
    def defaults(cls, model: Any) -> "Objective":
        """Every term at its default weight: the terms a family always has, and no optional penalty."""
        terms = tuple(model.active_terms())
        return cls({t.name: default(t) for t in terms if default(t) or t.always}, terms)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def causes(self) -> list[str]:
        """What a health warning names: each term weighted above its default ("the KL weight (model.beta=4)")."""
        return [f"{t.what} ({t.key}={self.weights[t.name]:g})" for t in self.terms
                if t.name in self.weights and self.weights[t.name] > default(t)]


def carry_forward(config: Mapping[str, Any], terms: tuple[Term, ...], retired: Sequence[str] = ()) -> dict[str, Any]:
    """A plain config of a family with these terms, with each `model.` weight the family has (its default where
    the preset leaves it out), and the retired top-level keys (`schema.RETIRED`) moved to where the family keeps
    them now (an older VAE run's `beta` to `model.beta`) or dropped where it has no such term: two configs of
    one run compare equal however old either is."""
    config, model = dict(config), dict(config.get("model") or {})
    moved = {term.formerly: term for term in terms if term.formerly}
    for key in retired:
        if key in config:
            value = config.pop(key)
            if key in moved:
                model.setdefault(moved[key].key.split(".", 1)[1], value)
    for term in terms:
        if term.key and not term.top_level:
            model.setdefault(term.key.split(".", 1)[1], default(term))
    return {**config, "model": model}


def default(term: Term) -> float:
    """A term's weight when nothing sets it: the schema's default for a top-level key, the term's own for a
    `model.` key, and 1 for a term without a key."""
    if term.key is None:
        return 1.0
    return float(DEFAULTS[term.key] if term.top_level else term.default or 0.0)


def loss_terms(model: Any, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(the reconstruction term, {regulariser name: its weighted value}) for one batch, in the family's
    order; the training loss is their sum with the reconstruction term."""
    reconstruction, terms = model.loss(inputs, targets, objective.weights, generator)
    return reconstruction, {name: terms[name] for name in objective.names if name in terms}


def l1(code: torch.Tensor) -> torch.Tensor:
    """sum(|code|) over the batch and the code units (assignment part 3)."""
    return code.abs().sum()


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A sample z = mean + sigma * eps, eps ~ N(0, I), differentiable in mean and logvar."""
    where = generator.device if generator is not None else mean.device  # the epoch's generator: on the CPU
    eps = torch.randn(mean.shape, generator=generator, device=where, dtype=mean.dtype).to(mean.device)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats: 0.5 * sum(mean^2 + var - 1 - logvar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def jacobian_norm(encode: Any, inputs: torch.Tensor) -> torch.Tensor:
    """||dh/dx||_F^2 per image, h = encode(x), differentiable in the encoder's weights.

    One backward pass per code unit: images are encoded independently, so each pass gives every
    image's row of the Jacobian.
    """
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        h = encode(x).flatten(1)
        total = torch.zeros(x.shape[0], device=x.device, dtype=h.dtype)
        for j in range(h.shape[1]):
            (row,) = torch.autograd.grad(h[:, j].sum(), x, create_graph=True)
            total = total + row.flatten(1).pow(2).sum(1)
    return total
