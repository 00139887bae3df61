"""The variational autoencoder (Kingma & Welling, 2014) with fully connected layers."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from aerun.data.base import IMAGE_SHAPE
from aerun.errors import UserError
from aerun.models.base import ACTIVATIONS, CODE_SPACE, SAMPLES, Autoencoder, register
from aerun.models.layers import check_widths, stack
from aerun.noise import generator as make_generator
from aerun.objective import CONTRACTIVE, L1, Term, kl_divergence, reparameterise

RECONSTRUCTIONS = ("bernoulli", "gaussian")
KL = Term("kl", "model.beta", "the KL weight", always=True, default=1.0, formerly="beta")


@register("vae")
class VariationalAutoencoder(Autoencoder):
    """A Gaussian encoder q(z|x) = N(mean, diag(exp(logvar))): in - encoder... - (mean, logvar) - z -
    decoder... - in. The decoder gives one logit per pixel; the image it decodes to is their sigmoid.
    `reconstruction` is the likelihood p(x|z):

    - bernoulli (default): each pixel a Bernoulli with that probability; its negative log-likelihood is
      the binary cross-entropy summed over the pixels, in nats;
    - gaussian: each pixel a Gaussian around it with standard deviation `sigma`; the negative log
      density, summed over the pixels, in nats (a density: it can be negative).

    `encode` gives the mean, the code of evaluation, figures and the report; training samples z with the
    reparameterisation trick from the epoch's generator, so a resumed run draws the same samples.
    """

    terms = (L1, KL, CONTRACTIVE)
    measures_key = "variational"
    figures = frozenset({ACTIVATIONS, CODE_SPACE, SAMPLES})
    reconstruction_name = "NLL (nats/image)"

    def __init__(
        self,
        code: int,
        encoder: Sequence[int] = (512,),
        decoder: Sequence[int] | None = None,
        activation: str = "relu",
        reconstruction: str = "bernoulli",
        sigma: float = 0.1,
        in_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__(in_shape)
        if reconstruction not in RECONSTRUCTIONS:
            raise UserError(f"model.reconstruction={reconstruction!r} is not allowed; "
                            f"allowed: {', '.join(RECONSTRUCTIONS)}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
            raise UserError(f"model.sigma={sigma!r} is not allowed; it must be a positive number")
        self.reconstruction, self.sigma = reconstruction, float(sigma)
        dim = math.prod(self.in_shape)
        decoder = tuple(reversed(encoder)) if decoder is None else tuple(decoder)
        if not encoder:
            raise UserError("model.encoder is empty; a VAE needs at least one hidden layer before its code")
        check_widths(code, encoder, decoder)
        self.code_dim = code
        self.body = stack([dim, *encoder], activation, activation, "model.activation")
        self.mean = nn.Linear(encoder[-1], code)
        self.logvar = nn.Linear(encoder[-1], code)
        self.decoder = stack([code, *decoder, dim], activation, "none", "model.activation")

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x), each (B, code)."""
        h = self.body(x.flatten(1))
        return self.mean(h), self.logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h).view(-1, *self.in_shape)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(h))

    def negative_log_likelihood(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per image, in nats, from the decoder's logits."""
        if self.reconstruction == "bernoulli":
            nll = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        else:
            error = torch.sigmoid(logits) - targets
            nll = error.pow(2) / (2 * self.sigma ** 2) + 0.5 * math.log(2 * math.pi * self.sigma ** 2)
        return nll.flatten(1).sum(1)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, weights: Mapping[str, float],
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The negative log-likelihood per image at a sampled z, and `beta` * KL per image (batch means)."""
        mean, logvar = self.posterior(inputs)
        z = reparameterise(mean, logvar, generator)
        reconstruction = self.negative_log_likelihood(self.decode_logits(z), targets).mean()
        terms = self.common_terms(inputs, z, weights)
        terms[KL.name] = weights[KL.name] * kl_divergence(mean, logvar).mean()
        return reconstruction, terms

    @torch.no_grad()
    def measures(self, images: torch.Tensor, seed: int, iw_samples: int = 0, batch_size: int = 4096,
                 **options: Any) -> dict[str, Any]:
        """The terms per image, in nats, averaged over `images`.

        kl: KL(q(z|x) || N(0, I)), in closed form; reconstruction_nll: -log p(x|z) at one z drawn from
        q(z|x) per image (drawn on the CPU from `seed`: the same on every device); negative_elbo: their
        sum, the loss at beta = 1. active_units: code units whose posterior mean varies over the images
        by more than 0.01 (variance), the usual count of units the code really uses. With `iw_samples` K,
        nll_iw: the importance-weighted bound on -log p(x) with K samples (Burda et al., 2016), never above
        the negative ELBO in expectation and falling towards -log p(x) as K grows. On grey pixels the
        Bernoulli "likelihood" is a cross-entropy against grey targets, not a likelihood: bernoulli_floor
        is what a perfect decoder would still pay (the pixels' own entropy), and `binary` says which it is.
        """
        kl, nll, means = self.elbo_terms(images, seed, batch_size)
        kl_mean, nll_mean = kl.mean().item(), nll.mean().item()
        binary = bool(((images == 0) | (images == 1)).all())
        result = {"reconstruction": self.reconstruction, "kl": kl_mean, "reconstruction_nll": nll_mean,
                  "negative_elbo": kl_mean + nll_mean, "active_units": int((means.var(0) > 0.01).sum()),
                  "unit": "nats per image", "binary": binary}
        if self.reconstruction == "bernoulli" and not binary:
            p = images.flatten(1).double().clamp(1e-12, 1 - 1e-12)
            result["bernoulli_floor"] = (-(p * p.log() + (1 - p) * (1 - p).log())).sum(1).mean().item()
        if iw_samples:
            result["nll_iw"] = self.importance_weighted_nll(images, iw_samples, seed).mean().item()
            result["iw_samples"] = int(iw_samples)
        return result

    @torch.no_grad()
    def elbo_terms(self, images: torch.Tensor, seed: int, batch_size: int = 4096
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image: KL(q(z|x) || N(0, I)) and -log p(x|z) at one z drawn from q(z|x) (drawn on the CPU from
        `seed`), both float64 in nats, and the posterior means."""
        self.eval()
        gen = make_generator(seed, "cpu")
        kl, nll, means = [], [], []
        for x in images.split(batch_size):
            mean, logvar = self.posterior(x)
            eps = torch.randn(mean.shape, generator=gen).to(mean.device)
            nll.append(self.negative_log_likelihood(self.decode_logits(mean + torch.exp(0.5 * logvar) * eps), x).double())
            kl.append(kl_divergence(mean, logvar).double())
            means.append(mean)
        return torch.cat(kl), torch.cat(nll), torch.cat(means)

    likelihood_scores = ("negative_elbo", "nll_iw")

    @torch.no_grad()
    def anomaly_scores(self, images: torch.Tensor, seed: int, iw_samples: int = 0, **options: Any
                       ) -> dict[str, torch.Tensor]:
        """The negative ELBO (one sample of z, as `measures`) and, with `iw_samples`, the importance-weighted bound on
        -log p(x): nats per image."""
        kl, nll, _ = self.elbo_terms(images, seed)
        found = {"negative_elbo": kl + nll}
        if iw_samples:
            found["nll_iw"] = self.importance_weighted_nll(images, iw_samples, seed)
        return found

    @torch.no_grad()
    def importance_weighted_nll(self, images: torch.Tensor, samples: int, seed: int,
                                budget: int = 1 << 16) -> torch.Tensor:
        """-log p(x) per image, bounded from above by importance sampling with `samples` draws from q(z|x):
        -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), in nats (Burda, Grosse & Salakhutdinov, 2016).

        Batched so that at most `budget` decoded images are held at once; the draws come from a CPU generator
        seeded with `seed`, image by image and sample by sample in order, so K = 5000 runs on a GPU and the
        result is the same on every device.
        """
        self.eval()
        gen = make_generator(seed, "cpu")
        per_batch = max(1, budget // samples)
        out = []
        for x in images.split(per_batch):
            mean, logvar = self.posterior(x)
            std = torch.exp(0.5 * logvar)
            log_w = []
            chunk = max(1, budget // len(x))
            for k in range(0, samples, chunk):
                k_here = min(chunk, samples - k)
                eps = torch.randn((k_here, *mean.shape), generator=gen).to(mean.device)
                z = mean + std * eps                                      # (k, B, D)
                logits = self.decode_logits(z.flatten(0, 1)).view(k_here, len(x), *self.in_shape)
                log_px = -self.negative_log_likelihood(logits.flatten(0, 1),
                                                       x.expand(k_here, *x.shape).flatten(0, 1)).view(k_here, -1)
                log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
                log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(-1)
                log_w.append((log_px + log_pz - log_qz).double())
            log_w = torch.cat(log_w)                                      # (K, B)
            out.append(-(torch.logsumexp(log_w, 0) - math.log(samples)))
        return torch.cat(out)

    @classmethod
    def measures_text(cls, v: Mapping[str, Any]) -> str:
        text = (f"Variational ({v['reconstruction']} likelihood), per image: KL {v['kl']:.2f} nats, reconstruction "
                f"NLL {v['reconstruction_nll']:.2f} nats (one sample of z), negative ELBO {v['negative_elbo']:.2f} "
                f"nats; {v['active_units']} active code units (posterior mean variance > 0.01).")
        if "nll_iw" in v:
            text += f" Importance-weighted NLL bound with {v['iw_samples']} samples: {v['nll_iw']:.2f} nats."
        if "bernoulli_floor" in v:
            text += (f" These test images are grey, not binary: the Bernoulli value is a cross-entropy against grey "
                     f"targets, not a likelihood, and even a perfect decoder pays {v['bernoulli_floor']:.1f} nats per "
                     "image (the pixels' own entropy); it cannot be set beside published likelihoods of binarised "
                     "MNIST (train and evaluate with dataset.binarize=dynamic or static for that).")
        return text

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, self.code_dim), generator=generator)

    @property
    def bounded_output(self) -> bool:
        return True
