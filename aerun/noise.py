"""Input corruption for denoising autoencoders (assignment part 4).

Every draw takes an explicit generator, so a corruption is a function of its seed:
training reproduces its noise on resume, and evaluation shows every model the
same noisy test images. Draws are made on the generator's device (the CPU, for
training and evaluation alike) and moved to the images', so they are the same
on every device.
"""

from __future__ import annotations

from typing import Callable

import torch

from aerun.errors import UserError


def draw(sample, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`sample` (torch.rand, torch.randn) of `like`'s shape and dtype, drawn on the generator's device, moved to `like`'s."""
    return sample(like.shape, generator=gen, device=gen.device, dtype=like.dtype).to(like.device)


def gaussian(x: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    """x + level * N(0, 1), as the original notebook (not clipped to [0, 1])."""
    return x + level * draw(torch.randn, x, gen)


def salt_pepper(x: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    """A fraction `level` of the pixels, chosen independently, set to 0 or 1 with equal odds."""
    hit = draw(torch.rand, x, gen) < level
    salt = draw(torch.rand, x, gen) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def masking(x: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    """A fraction `level` of the pixels set to 0 (the masking noise of denoising AEs)."""
    return x * (draw(torch.rand, x, gen) >= level)


NOISES: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian": gaussian,
    "salt_pepper": salt_pepper,
    "masking": masking,
}
KINDS = ("none", *NOISES)
BOUNDED = ("salt_pepper", "masking")  # their level is a fraction of pixels


def check(name: str, level: float) -> None:
    if name not in KINDS:
        raise UserError(f"noise={name!r} is not a noise; allowed: {', '.join(KINDS)}")
    if name in BOUNDED and not 0 <= level <= 1:
        raise UserError(f"noise.level={level!r} is not allowed for {name}; it is a fraction of pixels, 0..1")


def corrupt(x: torch.Tensor, name: str, level: float, gen: torch.Generator) -> torch.Tensor:
    """The corrupted copy of x; x itself when the noise is `none` or its level 0."""
    if name == "none" or level == 0:
        return x
    check(name, level)
    return NOISES[name](x, level, gen)


def generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
