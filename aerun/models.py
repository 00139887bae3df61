"""The model registry and its builders.

A builder is registered under a short name; YAML presets in `conf/model/` pick a
builder and its arguments. Checkpoints store the registry name and the arguments,
so a model is rebuilt from its checkpoint alone.

Every model maps images (B, 1, 28, 28) to `(reconstruction, code)` and has a
`code_dim` attribute. A model with a `fit(images)` method is fitted in closed
form (PCA) instead of trained by gradient descent; a model with a `posterior(images)`
method is variational (its loss terms: aerun.objective). A family is a builder here, a
preset in conf/model/ and, where it has one, its loss term in aerun.objective.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from aerun.data import IMAGE_SHAPE
from aerun.errors import UserError

BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in BUILDERS:
            raise ValueError(f"builder {name!r} registered twice")
        BUILDERS[name] = builder
        return builder

    return add


def builder_args(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a model preset that its builder takes (the rest, like `name`, describe the preset)."""
    builder = _builder(model_cfg["builder"])
    params = inspect.signature(builder).parameters
    return {k: _plain(v) for k, v in model_cfg.items() if k in params}


def build(builder: str, **kwargs: Any) -> nn.Module:
    fn = _builder(builder)
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(f"builder {builder!r} takes no argument {unknown[0]!r}; it takes: {', '.join(params)}")
    return fn(**kwargs)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in BUILDERS:
        raise UserError(f"unknown model builder {name!r}; registered: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name]


def _plain(value: Any) -> Any:
    """OmegaConf lists become tuples, so builder arguments are plain and hashable."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return value
    return tuple(_plain(v) for v in value)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def activation(name: str, key: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"{key}={name!r} is not an activation; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# --------------------------------------------------------------------------- PCA


class PCA(nn.Module):
    """Principal component analysis as a linear autoencoder (assignment part 1).

    Fitted on centred data: X_rec = (X - mu) V V^T + mu, V the top-k eigenvectors of
    the covariance matrix.
    """

    def __init__(self, k: int, in_shape: Sequence[int] = IMAGE_SHAPE) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
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
        pca = PCA(k, self.in_shape).to(self.mean.device)
        pca.mean.copy_(self.mean)
        pca.components.copy_(self.components[:, :k])
        pca.explained_variance.copy_(self.explained_variance[:k])
        return pca.eval()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.components.T + self.mean).view(-1, *self.in_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


@register("pca")
def pca(k: int = 30) -> PCA:
    return PCA(k)


# --------------------------------------------------------------------------- MLP


def check_widths(code: Any, encoder: Sequence[Any], decoder: Sequence[Any]) -> None:
    for key, widths in (("model.encoder", encoder), ("model.decoder", decoder), ("model.code", [code])):
        bad = [w for w in widths if not isinstance(w, int) or w <= 0]
        if bad:
            raise UserError(f"{key} has width {bad[0]!r}; layer widths are positive integers")


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder: in - encoder... - code - decoder... - in."""

    def __init__(
        self,
        code: int,
        encoder: Sequence[int] = (),
        decoder: Sequence[int] | None = None,
        activation_name: str = "relu",
        code_activation: str = "relu",
        output_activation: str = "relu",
        in_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        dim = math.prod(self.in_shape)
        decoder = tuple(reversed(encoder)) if decoder is None else tuple(decoder)
        check_widths(code, encoder, decoder)
        self.code_dim = code
        self.encoder = self._stack([dim, *encoder, code], activation_name, code_activation, "model.code_activation")
        self.decoder = self._stack([code, *decoder, dim], activation_name, output_activation, "model.output_activation")

    @staticmethod
    def _stack(widths: Sequence[int], hidden: str, last: str, last_key: str) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(n_in, n_out))
            is_last = i == len(widths) - 2
            layers.append(activation(last, last_key) if is_last else activation(hidden, "model.activation"))
        return nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.in_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


@register("mlp")
def mlp(
    code: int,
    encoder: Sequence[int] = (),
    decoder: Sequence[int] | None = None,
    activation: str = "relu",
    code_activation: str = "relu",
    output_activation: str = "relu",
) -> MLPAutoencoder:
    return MLPAutoencoder(code, encoder, decoder, activation, code_activation, output_activation)


# --------------------------------------------------------------------------- convolutional


UPSAMPLERS = ("unpool", "deconv", "unpool_deconv")
OUTPUT_BIASES = ("data_mean", "default")
# The output bias that makes each output activation start at a pixel value p.
START_AT = {"relu": lambda p: p, "none": lambda p: p, "sigmoid": lambda p: math.log(p / (1 - p)),
            "tanh": math.atanh}


def check_channels(channels: Sequence[int], in_shape: Sequence[int]) -> None:
    """One positive width per level, and no more levels than 2x2 poolings fit into the image."""
    levels = 0
    side = min(in_shape[1:])
    while side >= 2:
        side //= 2
        levels += 1
    if not isinstance(channels, Sequence) or not 1 <= len(channels) <= levels:
        raise UserError(f"model.channels={list(channels) if isinstance(channels, Sequence) else channels!r} is not "
                        f"allowed; it takes 1 to {levels} widths, one per 2x2 pooling of a {in_shape[1]}-pixel image")
    bad = [w for w in channels if not isinstance(w, int) or isinstance(w, bool) or w <= 0]
    if bad:
        raise UserError(f"model.channels has width {bad[0]!r}; channel widths are positive integers")


class ConvAutoencoder(nn.Module):
    """Convolutional AE of assignment part 6, with one of three upsampling schemes.

    Encoder: [conv 3x3 (stride 1) - ReLU - 2x2 max-pool] per entry of `channels`
    (28 -> 14 -> 7 -> 3). The decoder mirrors it, then one last 3x3 convolution maps
    to the output: 2 * len(channels) + 1 convolutional layers in all.

    - unpool: max-unpooling at the recorded indices, then a 3x3 convolution;
    - deconv: a stride-2 transposed convolution does the upsampling;
    - unpool_deconv: max-unpooling, then a stride-1 transposed convolution.

    Unpooling uses the indices and input sizes recorded by this forward pass, so
    any batch size works, and the 7 -> 3 floor is undone exactly.

    The output layer is one convolution with a single bias shared by every pixel. With
    PyTorch's default initialisation that bias is as likely negative as positive, and the
    layer's input is small, so under a ReLU output 4 of 10 seeds start with every output
    pixel at 0, where no gradient flows and the network never trains. `output_bias="data_mean"`
    (the presets' choice) starts the bias at the training images' mean pixel instead, set by
    `start_from_data` before the first step; `"default"` keeps PyTorch's draw.
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 16),
        upsample: str = "unpool",
        activation_name: str = "relu",
        output_activation: str = "relu",
        in_shape: Sequence[int] = IMAGE_SHAPE,
        output_bias: str = "data_mean",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLERS:
            raise UserError(f"model.upsample={upsample!r} is not allowed; allowed: {', '.join(UPSAMPLERS)}")
        if output_bias not in OUTPUT_BIASES:
            raise UserError(f"model.output_bias={output_bias!r} is not allowed; allowed: {', '.join(OUTPUT_BIASES)}")
        self.output_bias = output_bias
        self.output_activation = output_activation
        self.in_shape = tuple(in_shape)
        self.upsample = upsample
        check_channels(channels, self.in_shape)
        widths = [self.in_shape[0], *channels]
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        # mirror: channels[-1] -> ... -> channels[0], then channels[0] -> channels[0] before the output layer
        back = [*reversed(channels), channels[0]]
        sizes = [self.in_shape[1]]  # the side before each pooling: 28, 14, 7
        for _ in channels[1:]:
            sizes.append(sizes[-1] // 2)
        self.decoder = nn.ModuleList(
            self._up_layer(a, b, odd=side % 2 == 1) for a, b, side in zip(back[:-1], back[1:], reversed(sizes))
        )
        self.output = nn.Conv2d(channels[0], self.in_shape[0], 3, padding=1)
        self.act = activation(activation_name, "model.activation")
        self.out_act = activation(output_activation, "model.output_activation")
        size = self.in_shape[1]
        for _ in channels:
            size //= 2
        self.code_dim = channels[-1] * size * size
        # oneDNN's convolutions run about twice as fast on channels-last tensors (measured on CPU)
        self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def start_from_data(self, images: torch.Tensor) -> None:
        """Before the first step: the output bias such that a zero input to the layer gives the mean pixel."""
        if self.output_bias == "data_mean":
            mean = min(max(images.mean().item(), 1e-3), 1 - 1e-3)
            self.output.bias.fill_(START_AT[self.output_activation](mean))

    def _up_layer(self, n_in: int, n_out: int, odd: bool) -> nn.Module:
        if self.upsample == "unpool":
            return nn.Conv2d(n_in, n_out, 3, padding=1)
        if self.upsample == "unpool_deconv":
            return nn.ConvTranspose2d(n_in, n_out, 3, padding=1)
        # stride 2 doubles the side; an odd side before pooling (7 -> 3) needs 2s + 1
        return nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=0 if odd else 1, output_padding=0 if odd else 1)

    def encode_with_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        x = x.contiguous(memory_format=torch.channels_last)
        pooled = []
        for conv in self.encoder:
            x = self.act(conv(x))
            size = x.shape
            x, indices = self.pool(x)
            pooled.append((indices, size))
        return x, pooled

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_with_indices(x)[0].flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, pooled = self.encode_with_indices(x)
        h = z
        for layer, (indices, size) in zip(self.decoder, reversed(pooled)):
            if self.upsample == "deconv":
                h = layer(h)
            else:
                h = layer(self.unpool(h, indices, output_size=size))
            h = self.act(h)
        return self.out_act(self.output(h)), z.flatten(1)


@register("conv")
def conv(
    channels: Sequence[int] = (8, 16, 16),
    upsample: str = "unpool",
    activation: str = "relu",
    output_activation: str = "relu",
    output_bias: str = "data_mean",
) -> ConvAutoencoder:
    return ConvAutoencoder(channels, upsample, activation, output_activation, output_bias=output_bias)


# --------------------------------------------------------------------------- variational


RECONSTRUCTIONS = ("bernoulli", "gaussian")


class VariationalAutoencoder(nn.Module):
    """A VAE with fully connected layers: a Gaussian encoder q(z|x) = N(mean, diag(exp(logvar))).

    in - encoder... - (mean, logvar) - z - decoder... - in. The decoder gives one logit per pixel;
    the image it decodes to is their sigmoid. `reconstruction` is the likelihood p(x|z):

    - bernoulli (default): each pixel a Bernoulli with that probability; its negative log-likelihood is
      the binary cross-entropy summed over the pixels, in nats;
    - gaussian: each pixel a Gaussian around it with standard deviation `sigma`; the negative log
      density, summed over the pixels, in nats (a density: it can be negative).

    `forward` and `encode` use the mean as the code (evaluation, figures, the report); training
    samples z with the reparameterisation trick (see aerun.objective).
    """

    def __init__(
        self,
        code: int,
        encoder: Sequence[int] = (512,),
        decoder: Sequence[int] | None = None,
        activation_name: str = "relu",
        reconstruction: str = "bernoulli",
        sigma: float = 0.1,
        in_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__()
        if reconstruction not in RECONSTRUCTIONS:
            raise UserError(f"model.reconstruction={reconstruction!r} is not allowed; "
                            f"allowed: {', '.join(RECONSTRUCTIONS)}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
            raise UserError(f"model.sigma={sigma!r} is not allowed; it must be a positive number")
        self.reconstruction, self.sigma = reconstruction, float(sigma)
        self.in_shape = tuple(in_shape)
        dim = math.prod(self.in_shape)
        decoder = tuple(reversed(encoder)) if decoder is None else tuple(decoder)
        if not encoder:
            raise UserError("model.encoder is empty; a VAE needs at least one hidden layer before its code")
        check_widths(code, encoder, decoder)
        self.code_dim = code
        self.body = MLPAutoencoder._stack([dim, *encoder], activation_name, activation_name, "model.activation")
        self.mean = nn.Linear(encoder[-1], code)
        self.logvar = nn.Linear(encoder[-1], code)
        self.decoder = MLPAutoencoder._stack([code, *decoder, dim], activation_name, "none", "model.activation")

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x), each (B, code)."""
        h = self.body(x.flatten(1))
        return self.mean(h), self.logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.in_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def negative_log_likelihood(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per image, in nats, from the decoder's logits."""
        if self.reconstruction == "bernoulli":
            nll = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        else:
            error = torch.sigmoid(logits) - targets
            nll = error.pow(2) / (2 * self.sigma ** 2) + 0.5 * math.log(2 * math.pi * self.sigma ** 2)
        return nll.flatten(1).sum(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


@register("vae")
def vae(
    code: int,
    encoder: Sequence[int] = (512,),
    decoder: Sequence[int] | None = None,
    activation: str = "relu",
    reconstruction: str = "bernoulli",
    sigma: float = 0.1,
) -> VariationalAutoencoder:
    return VariationalAutoencoder(code, encoder, decoder, activation, reconstruction, sigma)
