"""`dataset=synthetic`: a tiny deterministic stand-in for MNIST, made in memory, for tests and smoke runs."""

from __future__ import annotations

import torch

from aerun.data.base import Dataset, Images, register_dataset


def synthetic(n: int, seed: int, channels: int = 1, size: tuple[int, int] = (28, 28)) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes of blurred three-blob figures, a function of (n, seed, channels, size) alone.

    Returns uint8 images (n, H, W) (or (n, 3, H, W) in colour: each class its own colour) and int64 labels (n,).
    """
    class_gen = torch.Generator().manual_seed(1234)
    centres = 6 + 16 * torch.rand(10, 3, 2, generator=class_gen)  # three blobs per class, pixels of a 28x28 image
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    where = centres[labels] + 1.5 * torch.randn(n, 3, 2, generator=gen)
    height, width = size
    scale = torch.tensor([height / 28, width / 28])
    where = where * scale if (height, width) != (28, 28) else where
    rows, cols = torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32)
    dy = rows.view(1, 1, height, 1) - where[..., 0, None, None]
    dx = cols.view(1, 1, 1, width) - where[..., 1, None, None]
    spread = 8.0 * float(scale.prod()) if (height, width) != (28, 28) else 8.0
    images = torch.exp(-(dy**2 + dx**2) / spread).sum(1).clamp(0, 1)
    if channels == 3:
        colours = 0.25 + 0.75 * torch.rand(10, 3, generator=class_gen)
        images = images[:, None] * colours[labels][:, :, None, None]
    return (images * 255).round().to(torch.uint8), labels


@register_dataset("synthetic")
class Synthetic(Dataset):
    """`dataset.n_train`, `n_test` images made from `dataset.seed` (the test split from seed + 1);
    `dataset.channels=3` and `dataset.size=[H,W]` make them in colour and of another size."""

    def _made(self) -> tuple[int, tuple[int, int]]:
        size = self.cfg.get("size")
        return int(self.cfg.get("channels") or 1), (int(size[0]), int(size[1])) if size else (28, 28)

    def load(self, split: str) -> Images:
        channels, size = self._made()
        n, seed = int(self.cfg[f"n_{split}"]), int(self.cfg["seed"]) + (split == "test")
        images, labels = synthetic(n, seed, channels, size)
        return Images.of(images.view(n, channels, *size), labels, [str(k) for k in range(10)], "dataset=synthetic")

    def shape(self) -> tuple[int, int, int]:
        channels, size = self._made()
        return channels, *size

    def prepare(self) -> str:
        return "synthetic is made in memory; nothing to fetch"
