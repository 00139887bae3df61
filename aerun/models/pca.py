"""PCA as a linear autoencoder (assignment part 1), fitted in closed form."""

from __future__ import annotations

import math

import torch

from aerun.errors import UserError
from aerun.models.base import ACTIVATIONS, CODE_SPACE, FILTERS, Autoencoder, register


@register("pca")
class PCA(Autoencoder):
    """X_rec = (X - mu) V V^T + mu, V the top-k eigenvectors of the training images' covariance matrix."""

    fitted = True
    terms = ()
    figures = frozenset({FILTERS, ACTIVATIONS, CODE_SPACE})

    def __init__(self, k: int = 30) -> None:
        super().__init__()
        dim = math.prod(self.in_shape)
        if not 0 < k <= dim:
            raise UserError(f"model.k={k} is out of range; allowed: 1..{dim}")
        self.code_dim = k
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.zeros(dim, k))
        self.register_buffer("explained_variance", torch.zeros(k))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> "PCA":
        x = images.flatten(1).double()
        mean = x.mean(0)
        centred = x - mean
        cov = centred.T @ centred / (x.shape[0] - 1)
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
        pca = PCA(k).to(self.mean.device)
        pca.mean.copy_(self.mean)
        pca.components.copy_(self.components[:, :k])
        pca.explained_variance.copy_(self.explained_variance[:k])
        return pca.eval()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return (h @ self.components.T + self.mean).view(-1, *self.in_shape)

    def encoder_filters(self) -> torch.Tensor:
        return self.components.T.reshape(-1, *self.in_shape[1:])
