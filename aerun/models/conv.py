"""The convolutional autoencoder of assignment part 6, with one of three upsampling schemes."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from aerun.data.base import IMAGE_SHAPE
from aerun.errors import UserError
from aerun.models.base import KERNELS, Autoencoder, register
from aerun.models.layers import activation as make_activation

UPSAMPLERS = ("unpool", "deconv", "unpool_deconv")
OUTPUT_BIASES = ("data_mean", "default")
# Max-pooling commutes with a nondecreasing activation, and for these two pooling first gives the same values and
# gradients, bit for bit (a test compares them), with the activation on a quarter of the values. Only the indices
# can differ: a window of values <= 0 is all zeros after a ReLU, so the textbook order records its first cell,
# while pooling first records its largest. A `deconv` decoder never reads the indices; an unpooling one puts its
# own values there, so it keeps the textbook order, as do sigmoid and tanh (which can round neighbours to one value).
POOL_FIRST = frozenset({"relu", "none"})
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
                        f"allowed; it takes 1 to {levels} widths, one per 2x2 pooling of a {in_shape[1]}x{in_shape[2]} image")
    bad = [w for w in channels if not isinstance(w, int) or isinstance(w, bool) or w <= 0]
    if bad:
        raise UserError(f"model.channels has width {bad[0]!r}; channel widths are positive integers")


@register("conv")
class ConvAutoencoder(Autoencoder):
    """Encoder: [conv 3x3 (stride 1) - ReLU - 2x2 max-pool] per entry of `channels` (28 -> 14 -> 7 -> 3). Any
    C×H×W with min(H, W) >= 2^len(channels) works: an odd side is undone exactly (2s + 1), H and W each on its own.
    The decoder mirrors it, then one last 3x3 convolution maps to the output: 2 * len(channels) + 1
    convolutional layers in all.

    - unpool: max-unpooling at the recorded indices, then a 3x3 convolution;
    - deconv: a stride-2 transposed convolution does the upsampling;
    - unpool_deconv: max-unpooling, then a stride-1 transposed convolution.

    Unpooling uses the indices and input sizes recorded by this forward pass (the decoder's side
    information), so any batch size works, and the 7 -> 3 floor is undone exactly; such a decoder cannot
    decode a code alone.

    The output layer is one convolution with a single bias shared by every pixel. With PyTorch's
    default initialisation that bias is as likely negative as positive, and the layer's input is
    small, so under a ReLU output 4 of 10 seeds start with every output pixel at 0, where no gradient
    flows and the network never trains. `output_bias="data_mean"` (the presets' choice) starts the
    bias at the training images' mean pixel instead, set by `start_from_data` before the first step;
    `"default"` keeps PyTorch's draw.
    """

    figures = frozenset({KERNELS})
    graphable = True

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 16),
        upsample: str = "unpool",
        activation: str = "relu",
        output_activation: str = "relu",
        output_bias: str = "data_mean",
        in_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__(in_shape)
        if upsample not in UPSAMPLERS:
            raise UserError(f"model.upsample={upsample!r} is not allowed; allowed: {', '.join(UPSAMPLERS)}")
        if output_bias not in OUTPUT_BIASES:
            raise UserError(f"model.output_bias={output_bias!r} is not allowed; allowed: {', '.join(OUTPUT_BIASES)}")
        self.output_bias = output_bias
        self.output_activation = output_activation
        self.upsample = upsample
        check_channels(channels, self.in_shape)
        widths = [self.in_shape[0], *channels]
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        # mirror: channels[-1] -> ... -> channels[0], then channels[0] -> channels[0] before the output layer
        back = [*reversed(channels), channels[0]]
        sizes = [tuple(self.in_shape[1:])]  # (H, W) before each pooling: 28x28, 14x14, 7x7 for MNIST
        for _ in channels[1:]:
            sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
        self.decoder = nn.ModuleList(
            self._up_layer(a, b, odd=(h % 2 == 1, w % 2 == 1))
            for a, b, (h, w) in zip(back[:-1], back[1:], reversed(sizes))
        )
        self.output = nn.Conv2d(channels[0], self.in_shape[0], 3, padding=1)
        # in place: every activation here follows a convolution or a pooling, whose backward passes do not read
        # their outputs (conv_unpool's step 4-7 % faster, measured; see docs/results.md)
        self.act = make_activation(activation, "model.activation", inplace=True)
        self.out_act = make_activation(output_activation, "model.output_activation", inplace=True)
        self.pool_first = activation in POOL_FIRST and upsample == "deconv"
        self.code_shape = (channels[-1], *(s // 2 ** len(channels) for s in self.in_shape[1:]))
        self.code_dim = math.prod(self.code_shape)
        # oneDNN's convolutions run about twice as fast on channels-last tensors (measured on CPU)
        self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def start_from_data(self, images: torch.Tensor) -> None:
        """Before the first step: the output bias such that a zero input to the layer gives the mean pixel."""
        if self.output_bias == "data_mean":
            mean = min(max(images.mean().item(), 1e-3), 1 - 1e-3)
            self.output.bias.fill_(START_AT[self.output_activation](mean))

    def _up_layer(self, n_in: int, n_out: int, odd: tuple[bool, bool]) -> nn.Module:
        if self.upsample == "unpool":
            return nn.Conv2d(n_in, n_out, 3, padding=1)
        if self.upsample == "unpool_deconv":
            return nn.ConvTranspose2d(n_in, n_out, 3, padding=1)
        # stride 2 doubles a side; an odd side before pooling (7 -> 3) needs 2s + 1: each of H and W on its own
        pad = tuple(0 if o else 1 for o in odd)
        return nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=pad, output_padding=pad)

    def encode_with_side(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        """The code as feature maps (B, C, 3, 3), channels-last as the decoder reads it, and, per pooling,
        its indices and the size before it."""
        x = x.contiguous(memory_format=torch.channels_last)
        pooled = []
        for conv in self.encoder:
            x = conv(x)
            if not self.pool_first:
                x = self.act(x)
            size = x.shape
            x, indices = self.pool(x)
            if self.pool_first:
                x = self.act(x)
            pooled.append((indices, size))
        return x, pooled

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_with_side(x)[0].flatten(1)

    def decode_with_side(self, h: torch.Tensor, side: Any) -> torch.Tensor:
        if h.dim() == 2:  # a flat code, as encode() gives it
            h = h.view(-1, *self.code_shape).contiguous(memory_format=torch.channels_last)
        steps = reversed(side) if side is not None else [None] * len(self.decoder)
        for layer, pooled in zip(self.decoder, steps):
            if self.upsample != "deconv":
                if pooled is None:
                    raise UserError(f"the {self.upsample} decoder unpools at the encoder's pooling indices and "
                                    "cannot decode a code alone")
                indices, size = pooled
                h = self.unpool(h, indices, output_size=size)
            h = self.act(layer(h))
        return self.out_act(self.output(h))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decode_with_side(h, None)

    def kernels(self) -> list[tuple[str, torch.Tensor]]:
        layers = [(f"encoder {i + 1}", c.weight) for i, c in enumerate(self.encoder)]
        layers += [(f"decoder {i + 1}, {type(c).__name__}", c.weight) for i, c in enumerate(self.decoder)]
        return [*layers, ("output", self.output.weight)]

    @torch.no_grad()
    def side_information(self) -> dict[str, int] | None:
        """An unpooling decoder receives, beside the code, the encoder's max-pooling indices per image; each
        picks one of its window's cells (4 for 2x2), so it carries log2(4) = 2 bits. None for `deconv`."""
        if self.upsample == "deconv":
            return None
        device = next(self.parameters()).device
        _, pooled = self.encode_with_side(torch.zeros((1, *self.in_shape), device=device))
        side = self.pool.kernel_size if isinstance(self.pool.kernel_size, int) else self.pool.kernel_size[0]
        values = sum(indices.numel() for indices, _ in pooled)
        return {"values": values, "bits": values * (side * side - 1).bit_length()}

    @property
    def bounded_output(self) -> bool:
        return self.output_activation == "sigmoid"
