"""PCA as a linear autoencoder (assignment part 1), fitted in closed form."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from aerun.data.base import IMAGE_SHAPE, floats
from aerun.errors import UserError
from aerun.models.base import ACTIVATIONS, CODE_SPACE, FILTERS, Autoencoder, register


FIT_BYTES = 1 << 30  # the float64 block of images that a fit holds at once


@register("pca")
class PCA(Autoencoder):
    """X_rec = (X - mu) V V^T + mu, V the top-k eigenvectors of the training images' covariance matrix."""

    fitted = True
    terms = ()
    figures = frozenset({FILTERS, ACTIVATIONS, CODE_SPACE})

    def __init__(self, k: int = 30, in_shape: Sequence[int] = IMAGE_SHAPE) -> None:
        super().__init__(in_shape)
        dim = math.prod(self.in_shape)
        if not 0 < k <= dim:
            raise UserError(f"model.k={k} is out of range; allowed: 1..{dim}")
        self.code_dim = k
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.zeros(dim, k))
        self.register_buffer("explained_variance", torch.zeros(k))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> "PCA":
        """Fit on floats in [0, 1] or uint8 pixels, in float64, a block of at most FIT_BYTES at a time (MNIST's
        training split is one block, so its components are those aerun has always fitted)."""
        n = images.shape[0]
        rows = max(1, FIT_BYTES // (8 * math.prod(images.shape[1:])))

        def blocks() -> Iterator[torch.Tensor]:
            return (floats(block.to(self.mean.device)).flatten(1).double() for block in images.split(rows))

        mean = next(blocks()).mean(0) if n <= rows else sum(block.sum(0) for block in blocks()) / n
        cov = sum((block - mean).T @ (block - mean) for block in blocks()) / (n - 1)
        eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
        top = torch.argsort(eigvals, descending=True)[: self.code_dim]
        self.mean.copy_(mean)
        self.components.copy_(eigvecs[:, top])
        self.explained_variance.copy_(eigvals[top])
        return self

    def top(self, k: int) -> "PCA":
        """The PCA of the first k of these components (they are sorted by explained variance)."""
        if k == self.code_dim:
            return self
        if not 0 < k <= self.code_dim:
            raise UserError(f"PCA.top({k}): this PCA has {self.code_dim} components")
        pca = PCA(k, self.in_shape).to(self.mean.device)
        pca.mean.copy_(self.mean)
        pca.components.copy_(self.components[:, :k])
        pca.explained_variance.copy_(self.explained_variance[:k])
        return pca.eval()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return (h @ self.components.T + self.mean).view(-1, *self.in_shape)

    def encoder_filters(self) -> torch.Tensor:
        return self.components.T.reshape(-1, *self.in_shape)
