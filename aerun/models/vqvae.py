"""The vector-quantised autoencoder (van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation
Learning", NeurIPS 2017), with a small convolutional encoder and decoder for 28x28 images.

The encoder maps an image to a 7x7 grid of `embedding_dim`-d vectors; each is replaced by its nearest
entry of a codebook of `codebook_size` vectors, and the decoder reconstructs from those. The
quantisation has no gradient, so the decoder's gradient is copied to the encoder's output (the
straight-through estimator). Two terms train the rest: the codebook term ||sg[z_e] - e||^2 moves each
chosen entry towards the encoder outputs that chose it, and the commitment term
`commitment * ||z_e - sg[e]||^2` keeps the encoder near its entries (both means over the vectors).

Dead codes (entries no encoder output is near, which then never move) are the known failure. aerun
avoids them twice over: the codebook starts as encoder outputs of random training images, so every
entry starts where the data is; and every `restart_every` training steps each entry used less than
once per batch on average (a running count, a buffer, so a resumed run restarts the same ones) is
moved onto a random encoder output of the current batch, drawn from the epoch's generator. eval.json
reports what is left: `model.vq.used_codes` of `codebook_size`, and the perplexity of their use.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aerun.data.base import IMAGE_SHAPE
from aerun.errors import UserError
from aerun.models.base import CODE_USAGE, KERNELS, Autoencoder, register
from aerun.objective import Term

CODEBOOK = Term("codebook", None, "the codebook term", always=True)
COMMITMENT = Term("commitment", "model.commitment", "the commitment weight", always=True, default=0.25)
USAGE_DECAY = 0.99  # the running count of each entry's use per batch: about the last hundred batches
DEAD = 1.0          # an entry chosen by fewer encoder outputs than this per batch, on that count, is restarted
INIT_IMAGES = 1024  # training images whose encoder outputs the codebook is drawn from


@register("vqvae")
class VectorQuantised(Autoencoder):
    """conv 4x4/2 (28 -> 14) - ReLU - conv 4x4/2 (14 -> 7) - ReLU - conv 1x1 to `embedding_dim` - quantise -
    conv 3x3 - ReLU - transposed conv 4x4/2 (7 -> 14) - ReLU - transposed conv 4x4/2 (14 -> 28) - sigmoid.

    With `quantize=false` the same network without the codebook: the twin it is compared with.
    """

    terms = (CODEBOOK, COMMITMENT)
    measures_key = "vq"
    figures = frozenset({KERNELS, CODE_USAGE})
    collapse = "every grid position of every image chose the same codebook entries, or dead ReLU units"

    def __init__(self, channels: Sequence[int] = (16, 32), embedding_dim: int = 16, codebook_size: int = 128,
                 quantize: bool = True, restart_every: int = 100, in_shape: Sequence[int] = IMAGE_SHAPE) -> None:
        super().__init__(in_shape)
        if self.in_shape[1] % 4 or self.in_shape[2] % 4:
            raise UserError(f"model=vqvae takes images whose sides are multiples of 4 (two stride-2 convolutions and "
                            f"their transposes), and these are {self.in_shape[1]}x{self.in_shape[2]}; "
                            "give the data dataset.size=[H,W] with H and W multiples of 4")
        if len(channels) != 2 or any(not isinstance(c, int) or c <= 0 for c in channels):
            raise UserError(f"model.channels={list(channels)!r} is not allowed; the VQ-VAE takes two positive widths, "
                            "one per stride-2 convolution (28 -> 14 -> 7)")
        for key, value in (("embedding_dim", embedding_dim), ("codebook_size", codebook_size),
                           ("restart_every", restart_every)):
            if value <= 0:
                raise UserError(f"model.{key}={value!r} is not allowed; it must be a positive integer")
        a, b = channels
        self.quantize, self.restart_every = quantize, restart_every
        self.grid = (embedding_dim, self.in_shape[1] // 4, self.in_shape[2] // 4)
        self.code_dim = math.prod(self.grid)
        self.encoder = nn.Sequential(
            nn.Conv2d(self.in_shape[0], a, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(b, embedding_dim, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(embedding_dim, b, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(b, a, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(a, self.in_shape[0], 4, stride=2, padding=1), nn.Sigmoid())
        self.codebook = nn.Parameter(torch.randn(codebook_size, embedding_dim) / math.sqrt(embedding_dim))
        self.register_buffer("usage", torch.zeros(codebook_size))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def active_terms(self) -> tuple[Term, ...]:
        return self.terms if self.quantize else ()

    # ------------------------------------------------------------------ quantisation

    def vectors(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> (B * H * W, D): one row per grid position."""
        return z.permute(0, 2, 3, 1).reshape(-1, self.grid[0])

    def grid_of(self, rows: torch.Tensor) -> torch.Tensor:
        """(B * H * W, D) -> (B, D, H, W)."""
        return rows.view(-1, self.grid[1], self.grid[2], self.grid[0]).permute(0, 3, 1, 2)

    def nearest(self, rows: torch.Tensor) -> torch.Tensor:
        """The index of each row's nearest codebook entry (squared Euclidean distance)."""
        distances = rows.pow(2).sum(1, keepdim=True) - 2 * rows @ self.codebook.t() + self.codebook.pow(2).sum(1)
        return distances.argmin(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised grid, flattened (B, D * 7 * 7); without quantisation the encoder's output."""
        return self.quantized(self.encoder(x)).flatten(1)

    def encode_with_side(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The code, and that it is quantised already (so the decoder need not look its entries up again)."""
        return self.encode(x), True

    def decode_with_side(self, h: torch.Tensor, side: bool) -> torch.Tensor:
        return self.decoder(h.view(-1, *self.grid)) if side else self.decode(h)

    def quantized(self, z: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return z
        return self.grid_of(self.codebook[self.nearest(self.vectors(z))])

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Any code of the grid's size: each vector moved to its nearest entry first, then decoded."""
        return self.decoder(self.quantized(h.view(-1, *self.grid)))

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def start_from_data(self, images: torch.Tensor) -> None:
        """The output starts at the mean pixel, and the codebook is drawn from encoder outputs of random training
        images, so no entry starts far from data.

        At PyTorch's default the sigmoid output starts near 0.5 on MNIST's mostly black images, and the first
        steps push it down so hard that the decoder's ReLUs die: without the codebook, seeds 0, 1 and 2 all
        ended their first epoch at the all-black image (test MSE 0.114). The output bias at the mean pixel's
        logit starts the network where a blank guess would be, as the conv presets' `output_bias` does.
        """
        mean = min(max(images.mean().item(), 1e-3), 1 - 1e-3)
        self.decoder[-2].bias.fill_(math.log(mean / (1 - mean)))
        if not self.quantize:
            return
        chosen = images[torch.randperm(len(images), device=images.device)[:INIT_IMAGES]]
        rows = self.vectors(self.encoder(chosen))
        pick = torch.randperm(len(rows), device=rows.device)[: len(self.codebook)]
        if len(pick) == len(self.codebook):
            self.codebook.copy_(rows[pick])

    @torch.no_grad()
    def restart_dead(self, rows: torch.Tensor, generator: torch.Generator | None) -> None:
        """Every `restart_every` steps, each entry used less than DEAD times per batch moves onto a random row."""
        self.steps += 1
        if int(self.steps) % self.restart_every:
            return
        dead = (self.usage < DEAD).nonzero().flatten()
        if len(dead):
            where = generator.device if generator is not None else rows.device  # the epoch's generator: the CPU
            pick = torch.randint(len(rows), (len(dead),), generator=generator, device=where).to(rows.device)
            self.codebook[dead] = rows[pick].to(self.codebook.dtype)  # rows are bfloat16 under autocast
            self.usage[dead] = self.usage.mean()

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, weights: Mapping[str, float],
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The MSE per pixel of the reconstruction from the straight-through quantised code, the codebook
        term and the commitment term."""
        z = self.encoder(inputs)
        if not self.quantize:
            return F.mse_loss(self.decoder(z), targets), {}
        rows = self.vectors(z)
        if self.training:
            self.restart_dead(rows.detach(), generator)
        index = self.nearest(rows.detach())
        # the lookup as a product with one-hot rows: indexing's backward adds into the codebook from several
        # threads in no fixed order, which made two runs of one config differ in the last bits
        chosen = F.one_hot(index, len(self.codebook)).to(rows.dtype) @ self.codebook
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(index, minlength=len(self.codebook)).to(self.usage.dtype)
                self.usage.mul_(USAGE_DECAY).add_(counts, alpha=1 - USAGE_DECAY)
        straight = rows + (chosen - rows).detach()
        recon = self.decoder(self.grid_of(straight))
        return F.mse_loss(recon, targets), {
            CODEBOOK.name: weights[CODEBOOK.name] * F.mse_loss(chosen, rows.detach()),
            COMMITMENT.name: weights[COMMITMENT.name] * F.mse_loss(rows, chosen.detach())}

    # ------------------------------------------------------------------ evaluation and figures

    @torch.no_grad()
    def code_usage(self, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """How many grid positions of `images` chose each entry (codebook_size,)."""
        self.eval()
        counts = torch.zeros(len(self.codebook), dtype=torch.long, device=self.codebook.device)
        for x in images.split(batch_size):
            counts += torch.bincount(self.nearest(self.vectors(self.encoder(x))), minlength=len(self.codebook))
        return counts

    @torch.no_grad()
    def measures(self, images: torch.Tensor, seed: int, **options: Any) -> dict[str, Any]:
        """perplexity: exp of the entropy of the entries' use over every grid position of `images` (the number
        of entries a uniform use would need); used_codes: entries chosen at least once."""
        if not self.quantize:
            return {}
        counts = self.code_usage(images).double()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
        return {"perplexity": math.exp(entropy), "used_codes": int((counts > 0).sum()),
                "codebook_size": len(self.codebook), "positions": self.grid[1] * self.grid[2]}

    @classmethod
    def measures_text(cls, v: Mapping[str, Any]) -> str:
        return (f"Codebook: {v['used_codes']} of {v['codebook_size']} entries used on the test split, perplexity "
                f"{v['perplexity']:.1f} ({v['positions']} positions per image).")

    def kernels(self) -> list[tuple[str, torch.Tensor]]:
        convs = [m for m in (*self.encoder, *self.decoder) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        return [(f"{'encoder' if i < 3 else 'decoder'} {i % 3 + 1}, {type(c).__name__}", c.weight)
                for i, c in enumerate(convs)]

    @property
    def bounded_output(self) -> bool:
        return True
