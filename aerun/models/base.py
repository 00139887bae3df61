"""What a model family is, and the registry that finds families: aerun's own and any installed package's.

A family is a subclass of `Autoencoder`, registered under a short name with `@register(name)`. Its
`__init__` arguments are what a preset in `conf/model/` sets (`builder: NAME` and the arguments), and
what a checkpoint stores, so a model is rebuilt from its checkpoint alone. Everything else aerun needs
to know about a family is declared on its class and has a default, so a family that only writes
`encode` and `decode` trains, evaluates, plots and benches:

- `fitted`: fitted in closed form by `fit(images)` (PCA) instead of trained by gradient descent;
- `terms`: the regularisers it trains with (`Term`: name, the config key of its weight, what a warning
  calls it), computed by `loss` (default: the MSE per pixel, plus the L1 and contractive terms any
  family can take);
- `measures_key` and `measures()`: what `eval.json` gains under `model.<measures_key>`;
- `figures`: which of the optional figures apply (FIGURES), with the methods that draw them;
- `reconstruction_name`: how the training log names its reconstruction term, and `collapse`, what a
  health warning calls an output that no longer depends on its input;
- `graphable`: its training step may be captured as a CUDA graph (aerun.graphs): `loss` draws no random
  numbers, never waits on the host and runs the same kernels every step. Off unless a family says so.

Families of other packages are found through the entry-point group `aerun.models`: each entry names a
module that registers families when imported, and every such module is imported before a family is
looked up (`family`), so `eval`, `plot` and `resume` rebuild a plugin's model from its checkpoint alone.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aerun.data.base import IMAGE_SHAPE, shape_text
from aerun import plugins
from aerun.errors import UserError
from aerun.objective import CONTRACTIVE, L1, Term, jacobian_norm, l1

ENTRY_POINTS = "aerun.models"

# The figures a family may declare (its `figures`), beyond those every model gets (reconstructions,
# loss curves, noisy inputs, inputs that are not digits):
FILTERS = "filters"          # `encoder_filters()`: each code unit's input weights, as an image
ACTIVATIONS = "activations"  # the code drawn as a map per digit: a code whose units are features
KERNELS = "kernels"          # `kernels()`: every convolution kernel, encoder and decoder
CODE_SPACE = "code_space"    # `decode` takes any code: noise in the code, interpolations, a 2-d code drawn whole
SAMPLES = "samples"          # `prior(n, generator)`: codes to decode from nothing
CODE_USAGE = "code_usage"    # `code_usage(images)`: how often each entry of a codebook is used
FIGURES = (FILTERS, ACTIVATIONS, KERNELS, CODE_SPACE, SAMPLES, CODE_USAGE)


class Autoencoder(nn.Module):
    """The base class of every family: images (B, C, H, W) in [0, 1] -> a code (B, code_dim) -> images.

    A family writes `encode` and `decode` (and sets `self.code_dim`, else it is measured on one image);
    `forward` is written once, here. A family whose decoder needs more than the code (the unpooling
    decoders need the encoder's pooling indices) overrides `encode_with_side` and `decode_with_side`.

    The image shape (C, H, W) comes from the data: a family whose `__init__` takes `in_shape` is built with the
    data's and passes it on to `Autoencoder.__init__`, which sets `self.in_shape`; one that does not take it is
    built for 1×28×28 only.
    """

    in_shape: tuple[int, ...] = IMAGE_SHAPE
    fitted: ClassVar[bool] = False
    graphable: ClassVar[bool] = False
    terms: ClassVar[tuple[Term, ...]] = (L1, CONTRACTIVE)
    measures_key: ClassVar[str | None] = None
    figures: ClassVar[frozenset[str]] = frozenset({ACTIVATIONS, CODE_SPACE})
    reconstruction_name: ClassVar[str] = "MSE"
    collapse: ClassVar[str] = "dead ReLU units"  # what a health warning calls an output that ignores its input
    code_dim: int

    def __init__(self, in_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        if in_shape is not None:
            self.in_shape = tuple(int(s) for s in in_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define encode(x)")

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define decode(h)")

    def encode_with_side(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The code, and whatever else the decoder of this family reads (None for most)."""
        return self.encode(x), None

    def decode_with_side(self, h: torch.Tensor, side: Any) -> torch.Tensor:
        return self.decode(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction (B, C, H, W), code (B, code_dim))."""
        h, side = self.encode_with_side(x)
        return self.decode_with_side(h, side), h.flatten(1)

    # ------------------------------------------------------------------ training

    def fit(self, images: torch.Tensor) -> "Autoencoder":
        """A fitted family's closed-form fit on the training images (`fitted = True`)."""
        raise NotImplementedError(f"{type(self).__name__} is trained, not fitted")

    def start_from_data(self, images: torch.Tensor) -> None:
        """Before the first training step, with the training images at hand (e.g. an output bias); none here."""

    def active_terms(self) -> tuple[Term, ...]:
        """The terms this instance trains with: its family's `terms`, unless a constructor argument turns
        some off (a VQ-VAE without its codebook, the twin it is compared with)."""
        return self.terms

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, weights: Mapping[str, float],
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the reconstruction term, {term name: its weighted value}) for one batch.

        `weights` holds the weight of each active term of `terms` (aerun.objective.Objective). Here:
        the mean squared error per pixel, and the L1 and contractive terms where they are active.
        """
        recon, code = self(inputs)
        return F.mse_loss(recon, targets), self.common_terms(inputs, code, weights)

    def common_terms(self, inputs: torch.Tensor, code: torch.Tensor,
                     weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """The regularisers any family can take, for a batch and its code: the L1 penalty (assignment
        part 3) and the contractive one (Rifai et al., 2011), where they are active (aerun.objective)."""
        terms = {}
        if L1.name in weights:
            terms[L1.name] = weights[L1.name] * l1(code)
        if CONTRACTIVE.name in weights:
            terms[CONTRACTIVE.name] = weights[CONTRACTIVE.name] * self.jacobian_norm(inputs).mean()
        return terms

    def jacobian_norm(self, inputs: torch.Tensor) -> torch.Tensor:
        """||dh/dx||_F^2 per image, h = encode(x), differentiable in the weights: by autograd here, one
        backward pass per code unit; a family with a closed form overrides this."""
        return jacobian_norm(self.encode, inputs)

    # ------------------------------------------------------------------ evaluation and figures

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the linear probe reads: the code, unless a family's own paper reads something else."""
        return self.encode(x).flatten(1)

    @torch.no_grad()
    def measures(self, images: torch.Tensor, seed: int, **options: Any) -> dict[str, Any]:
        """The family's own measures on the test images, under `model.<measures_key>` in eval.json. `options` are
        what `aerun eval` was asked for (iw_samples=K); a family ignores those it has no use for."""
        return {}

    # the names among anomaly_scores' that are a negative log-likelihood in nats per image (aerun.ood corrects them
    # for the input's complexity)
    likelihood_scores: tuple[str, ...] = ()

    @torch.no_grad()
    def anomaly_scores(self, images: torch.Tensor, seed: int, **options: Any) -> dict[str, torch.Tensor]:
        """The family's own per-image scores of how unusual each image is (higher: more), besides the reconstruction
        error every family has (aerun.ood). `images`: floats (N, C, H, W); `options` as for `measures`."""
        return {}

    @classmethod
    def measures_text(cls, measures: Mapping[str, Any]) -> str:
        """The family's measures as a sentence of eval.md."""
        return f"{cls.measures_key}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in measures.items()) + "."

    def encoder_filters(self) -> torch.Tensor | None:
        """(units, C, H, W): the input weights of each first-layer unit, for `filters` figures."""
        return None

    def kernels(self) -> list[tuple[str, torch.Tensor]]:
        """(layer name, weight (out, in, k, k)) of every convolution, for `kernels` figures."""
        return []

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n codes drawn from the family's prior, on the CPU, for `samples` figures."""
        raise NotImplementedError(f"{type(self).__name__} has no prior to sample")

    def code_usage(self, images: torch.Tensor) -> torch.Tensor:
        """How many times each codebook entry is used over `images`, for `code_usage` figures."""
        raise NotImplementedError(f"{type(self).__name__} has no codebook")

    def side_information(self) -> dict[str, int] | None:
        """What the decoder receives beside the code, per image, where it receives anything:
        {"values": how many numbers, "bits": how many bits they carry}."""
        return None

    @property
    def bounded_output(self) -> bool:
        """Whether every output pixel lies in [0, 1] by construction (a sigmoid output)."""
        return False


# --------------------------------------------------------------------------- the registry


FAMILIES: dict[str, type[Autoencoder]] = {}


def register(name: str) -> Callable[[type[Autoencoder]], type[Autoencoder]]:
    """Register a family under `name`, the `builder:` of its presets. Names are unique."""

    def add(cls: type[Autoencoder]) -> type[Autoencoder]:
        plugins.check_registration(FAMILIES, name, cls, Autoencoder, "family", "register")
        where = cls.__module__
        if cls.measures_key is None:
            cls.measures_key = name  # what eval.json gains, under model.<name>, if the family measures anything
        unknown = sorted(set(cls.figures) - set(FIGURES))
        if unknown:
            raise UserError(f"family {name!r} ({where}) declares the figure {unknown[0]!r}; "
                            f"known figures: {', '.join(FIGURES)}")
        FAMILIES[name] = cls
        return cls

    return add


def load_plugins() -> None:
    """Import every module named in the entry-point group `aerun.models` (once per process): its families register
    themselves; one that fails is one UserError naming its entry point (aerun.plugins)."""
    plugins.load(ENTRY_POINTS)


def family(name: str) -> type[Autoencoder]:
    """The family registered under `name`, plugins included."""
    load_plugins()
    if name not in FAMILIES:
        raise UserError(f"unknown model builder {name!r}; registered: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def families() -> dict[str, type[Autoencoder]]:
    load_plugins()
    return dict(FAMILIES)


SHAPE = "in_shape"  # the constructor argument that comes from the data, never from a preset


def _parameters(cls: type[Autoencoder]) -> dict[str, inspect.Parameter]:
    """The constructor arguments a preset may set (the image shape comes from the data)."""
    return {k: p for k, p in inspect.signature(cls).parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and k != SHAPE}


def takes_shape(cls: type[Autoencoder]) -> bool:
    return SHAPE in inspect.signature(cls).parameters


def _plain(value: Any) -> Any:
    """OmegaConf lists become tuples, so builder arguments are plain and hashable."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return value
    return tuple(_plain(v) for v in value)


def builder_args(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a model preset that its family's constructor takes (the rest, like `name`, describe it)."""
    params = _parameters(family(model_cfg["builder"]))
    return {k: _plain(v) for k, v in model_cfg.items() if k in params}


def check_types(name: str, kwargs: Mapping[str, Any]) -> None:
    """Each argument against the constructor's annotation (int, float, str, bool, a sequence of ints):
    one UserError naming `model.<key>` for a value of another type."""
    cls = family(name)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # annotations that cannot be resolved are not checked
        return
    for key, value in kwargs.items():
        expected = hints.get(key)
        if expected is not None and not _fits(value, expected):
            raise UserError(f"model.{key}={value!r} is not allowed for model builder {name!r}; "
                            f"it must be {_describe(expected)}")


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (Sequence, tuple, list, typing.Sequence) or hint in (Sequence, tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return all(_fits(v, inner[0]) for v in value) if inner else True
    return True  # anything else is the family's to check


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin is not None and args:
        return f"a list of {_describe(args[0])}s"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def build(name: str, in_shape: Sequence[int] = IMAGE_SHAPE, **kwargs: Any) -> Autoencoder:
    """A model of family `name` for images of `in_shape` (C, H, W) with these constructor arguments; unknown or
    mistyped ones, and a shape the family cannot take, are one UserError."""
    cls = family(name)
    params = _parameters(cls)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(f"builder {name!r} takes no argument {unknown[0]!r}; it takes: {', '.join(params)}")
    check_types(name, kwargs)
    in_shape = tuple(int(s) for s in in_shape)
    if takes_shape(cls):
        model = cls(in_shape=in_shape, **kwargs)
    elif in_shape != tuple(cls.in_shape):
        raise UserError(f"model builder {name!r} ({cls.__module__}.{cls.__name__}) is built for "
                        f"{shape_text(cls.in_shape)} images and the data are {shape_text(in_shape)}; its __init__ "
                        "takes no in_shape (see \"Writing your own family\"), so use data of its shape")
    else:
        model = cls(**kwargs)
    if not hasattr(model, "code_dim"):  # measured on one blank image, once
        with torch.no_grad():
            model.code_dim = int(model.encode(torch.zeros(1, *model.in_shape)).flatten(1).shape[1])
    return model
