"""What a data set is, the registry that finds data sets (aerun's own and any installed package's), and a split
as training and evaluation read it.

A data set is a subclass of `Dataset`, registered under a short name with `@register_dataset(name)`: the
`name:` of its preset in conf/dataset/. Given its config node (`dataset.*`) and the data folder, it gives
each split as `Images`: uint8 pixels (N, C, H, W), labels where it has them, and the names of its classes.
Data sets of other packages are found through the entry-point group `aerun.datasets`, as families are
through `aerun.models`.

`load_split` turns a data set's split into a `Split` on the training device: the pixels stay uint8 (a
quarter of float32's memory) and become floats in [0, 1] batch by batch (`floats`), so memory grows with
the data as stored. The whole split as floats (`Split.images`) is there for small splits and figures.
"""

from __future__ import annotations

import functools
import json
import math
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from aerun import plugins
from aerun.errors import UserError

log = logging.getLogger(__name__)

ENTRY_POINTS = "aerun.datasets"
IMAGE_SHAPE = (1, 28, 28)  # the MNIST-like sets', and what a checkpoint written before shapes were stored holds
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Images:
    """One split of a data set as it is stored: uint8 pixels (N, C, H, W), int64 labels (N,) or None, and the
    class names where the data set has them (label k is `classes[k]`)."""

    pixels: torch.Tensor
    labels: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None

    @classmethod
    def of(cls, pixels: Any, labels: Any = None, classes: Sequence[str] | None = None, where: str = "") -> "Images":
        """From numpy arrays or tensors, checked: one line naming `where` for pixels that are not uint8
        (N, C, H, W) with C 1 or 3, or labels that do not match them."""
        pixels = torch.as_tensor(np.asarray(pixels)) if not isinstance(pixels, torch.Tensor) else pixels
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[1] not in (1, 3):
            raise UserError(f"{where or 'a data set'} gives pixels of dtype {pixels.dtype} and shape "
                            f"{tuple(pixels.shape)}; a data set gives uint8 (N, C, H, W) with C = 1 or 3")
        if len(pixels) == 0:
            raise UserError(f"{where or 'a data set'} has no images")
        if labels is not None:
            labels = torch.as_tensor(np.asarray(labels)).long().flatten()
            if len(labels) != len(pixels):
                raise UserError(f"{where or 'a data set'} has {len(pixels)} images and {len(labels)} labels; "
                                "give one label per image")
            if (labels < 0).any():
                raise UserError(f"{where or 'a data set'} has a negative label; labels are 0, 1, 2, ...")
        return cls(pixels, labels, tuple(classes) if classes is not None else None)


class Dataset:
    """The base class of every data set. A data set writes `load(split)` for "train" and "test"; the rest has
    defaults. `self.cfg` is its `dataset.*` config node, `self.data_dir` the data folder (paths.data_dir)."""

    # what `aerun data` and the checks before training read: files under data_dir that aerun fetches (True), or
    # files the user gives (dataset.path) or nothing at all (False)
    fetched: ClassVar[bool] = False

    def __init__(self, cfg: Mapping[str, Any], data_dir: Path | str) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)

    def load(self, split: str) -> Images:
        raise NotImplementedError(f"{type(self).__name__} does not define load(split)")

    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image: what a family is built for. Default: read off the test split."""
        return tuple(int(s) for s in load_images(self.cfg, "test", self.data_dir).pixels.shape[1:])

    def prepare(self) -> str:
        """Fetch or decode what `load` reads, for `aerun data`; a line saying where it is."""
        self.load("train")
        return f"{self.cfg['name']}: ready"

    def key(self) -> str:
        """What names the loaded data in this process's cache: the config node and the data folder."""
        node = {k: v for k, v in dict(self.cfg).items() if k not in NOT_THE_DATA}
        return json.dumps(node, sort_keys=True, default=str) + "|" + str(self.data_dir.resolve())


# Keys of the dataset node that choose how a split is used (loaded once, then binarised, held out, filtered)
HOW_USED = ("showcase", "binarize", "val_size")
NOT_THE_DATA = (*HOW_USED, "classes")


# --------------------------------------------------------------------------- the registry


DATASETS: dict[str, type[Dataset]] = {}


def register_dataset(name: str) -> Callable[[type[Dataset]], type[Dataset]]:
    """Register a data set under `name`, its presets' `name:`. Names are unique."""
    return plugins.registered(DATASETS, name, Dataset, "data set", "register_dataset")


def load_plugins() -> None:
    """Import every module named in the entry-point group `aerun.datasets` (once per process): its data sets register
    themselves; one that fails is one UserError naming its entry point (aerun.plugins)."""
    plugins.load(ENTRY_POINTS)


def datasets() -> dict[str, type[Dataset]]:
    load_plugins()
    return dict(DATASETS)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_keys(node: Mapping[str, Any]) -> None:
    """The dataset keys every data set shares, checked before any image is read: one line for a bad value."""
    size, channels = node.get("size"), node.get("channels")
    if size is not None and (len(size) != 2 or not all(_whole(v) and v > 0 for v in size)):
        raise UserError(f"dataset.size={list(size)} is not allowed; give [H, W], two positive integers")
    if channels not in (None, 1, 3):
        raise UserError(f"dataset.channels={channels} is not allowed; allowed: 1 (grey), 3 (RGB)")
    fraction = node.get("test_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise UserError(f"dataset.test_fraction={fraction} is not allowed; it must lie between 0 and 1")
    classes = node.get("classes")
    if classes is not None and (not classes or not all(_whole(k) and k >= 0 for k in classes)):
        raise UserError(f"dataset.classes={list(classes)} is not allowed; give labels 0, 1, 2, ... to keep")


def dataset(cfg: Mapping[str, Any], data_dir: Path | str) -> Dataset:
    """The data set a `dataset` config node names, plugins included, its shared keys checked (`check_keys`)."""
    load_plugins()
    name = cfg["name"]
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))  # cfg.path and cfg["path"] alike
    check_keys(node)
    return DATASETS[name](node, data_dir)


def data_shape(cfg: Mapping[str, Any], data_dir: Path | str) -> tuple[int, int, int]:
    """(C, H, W) of a data set's images, what a model of it is built for."""
    return tuple(int(s) for s in dataset(cfg, data_dir).shape())


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


# --------------------------------------------------------------------------- splits on the device


# What one evaluation batch holds at most: 4096 MNIST images (3.2 M values; 13 MB as floats), fewer larger ones.
BATCH_VALUES = 4096 * 784


def data_key(dataset: Mapping[str, Any], data_dir: Path | str) -> str:
    """A data set's config and folder as one string: what a process caches work on a data set by."""
    return json.dumps(dict(dataset), sort_keys=True, default=str) + str(Path(data_dir).resolve())


def batch_rows(shape: Sequence[int], values: int = BATCH_VALUES) -> int:
    """How many images of `shape` (C, H, W) an evaluation batch takes: 4096 of MNIST's, fewer of larger ones."""
    return max(1, values // max(1, math.prod(shape)))


def floats(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as floats in [0, 1] (v / 255, as every number aerun has published was computed); a float
    tensor is returned as it is."""
    return pixels.float().div_(255) if pixels.dtype == torch.uint8 else pixels


@dataclass(frozen=True)
class Split:
    pixels: torch.Tensor                 # uint8 (N, C, H, W): on the device, or in host memory where it would not fit
    labels: torch.Tensor | None          # int64 (N,), on the device; None for a data set without labels
    classes: tuple[str, ...] | None = None
    index: torch.Tensor | None = None    # int64 (N,) on the CPU: each image's position in the data set's own
    #                                      split (dataset.classes and dataset.val_size keep a subset); None: 0..N-1

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @property
    def positions(self) -> torch.Tensor:
        """Each image's position in the data set's own split (`aerun encode` writes them as `indices`)."""
        return self.index if self.index is not None else torch.arange(len(self))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape[1:])

    @property
    def n_classes(self) -> int:
        """How many classes a probe on these labels tells apart: the named classes, else the largest label + 1."""
        if self.classes:
            return len(self.classes)
        return int(self.labels.max()) + 1 if self.labels is not None else 0

    @property
    def images(self) -> torch.Tensor:
        """The whole split as float32 in [0, 1] on the device, made anew at each call: for small splits and
        figures; training and evaluation read `pixels` batch by batch."""
        return self.take(slice(None))

    def take(self, index: Any) -> torch.Tensor:
        """Some images (an index, a list of them or a slice) as floats in [0, 1], on the device."""
        return floats(self.pixels[index])


BINARIZE = ("none", "dynamic", "static")
BINARY_SEED = 20161  # the one Bernoulli draw of a statically binarised split, the same for every model and run
VAL_SEED = 52361     # which training images a validation split holds out: one draw, the same for every model


def load_images(cfg: Mapping[str, Any], split: str, data_dir: Path | str) -> Images:
    """A split of a data set as stored (uint8, on the CPU), kept per process by what names the data."""
    source = dataset(cfg, data_dir)
    key = (type(source), source.key(), split)
    if key not in _IMAGES:
        images = source.load(split)
        if not isinstance(images, Images):
            kind = type(source)
            raise UserError(f"data set {cfg['name']!r} ({kind.__module__}.{kind.__name__}) gave "
                            f"{type(images).__name__} for split {split!r}; load() returns aerun.data.Images")
        while len(_IMAGES) >= 8:  # the report holds MNIST train and test and a few others
            _IMAGES.pop(next(iter(_IMAGES)))
        _IMAGES[key] = images
    return _IMAGES[key]


_IMAGES: dict[tuple, Images] = {}


def clear_caches() -> None:
    """Forget every split loaded in this process (tests that rewrite a data set's files call this)."""
    _IMAGES.clear()
    for cached in (_held_out, _binarized, _on_device):
        cached.cache_clear()


def load_split(dataset: Mapping, split: str, data_dir: Path | str, device: torch.device | str) -> Split:
    """Load one split of the data set described by a `dataset` config node onto `device`.

    `dataset.binarize`: none, grey pixels in [0, 1]; static, one Bernoulli draw of each pixel (its grey level
    the probability), fixed by BINARY_SEED, for both splits; dynamic, grey training images that training
    binarises afresh every epoch (aerun.train), and the test split drawn once, as static. A node without the key
    (one written before it existed, or a bare {"name": ...}) means none.

    `dataset.val_size=N`: split `val` is N training images held out (one draw from VAL_SEED and the data set's
    seed, the same for every model), and `train` is the rest; drawn once when binarised, as the test split is.

    `dataset.classes=[k, ...]`: only the images of those classes, in every split.
    """
    if split not in (*SPLITS, "val"):
        raise UserError(f"unknown split {split!r}; known: {', '.join(SPLITS)}, val")
    val_size = int(dataset.get("val_size") or 0)
    if split == "val" and not val_size:
        raise UserError("this run has no validation split; train with dataset.val_size=N to hold out N images")
    source = "test" if split == "test" else "train"
    mode = dataset.get("binarize") or "none"
    if mode not in BINARIZE:
        raise UserError(f"dataset.binarize={mode!r} is not allowed; allowed: {', '.join(BINARIZE)}")
    plain = OmegaConf.to_container(dataset, resolve=True) if isinstance(dataset, DictConfig) else dict(dataset)
    node = json.dumps({k: v for k, v in plain.items() if k not in HOW_USED}, sort_keys=True, default=str)
    key = (node, source, str(Path(data_dir).resolve()))
    drawn_once = mode == "static" or (mode == "dynamic" and split != "train")
    if source == "train" and val_size:
        return _held_out(key, drawn_once, val_size, int(dataset.get("seed") or 0), split == "val", str(device))
    return _binarized(key, str(device)) if drawn_once else _on_device(key, str(device))


@functools.lru_cache(maxsize=4)
def _held_out(key: tuple, drawn_once: bool, val_size: int, seed: int, val: bool, device: str) -> Split:
    """The validation images of a training split, or the training images without them."""
    whole = _binarized(key, device) if drawn_once else _on_device(key, device)
    if not 0 < val_size < len(whole):
        raise UserError(f"dataset.val_size={val_size} is not allowed: the training split has {len(whole)} images; "
                        f"hold out between 1 and {len(whole) - 1}")
    order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(VAL_SEED + seed))
    kept = (order[:val_size] if val else order[val_size:]).sort().values
    index = kept.to(whole.pixels.device)
    labels = whole.labels[index] if whole.labels is not None else None
    return Split(pixels=whole.pixels[index], labels=labels, classes=whole.classes, index=whole.positions[kept])


@functools.lru_cache(maxsize=4)
def _binarized(key: tuple, device: str) -> Split:
    """A split's one Bernoulli draw: drawn on the CPU from BINARY_SEED (and the split), so the same on every
    device; kept as uint8 0 and 255."""
    grey = _on_device(key, device)
    gen = torch.Generator().manual_seed(BINARY_SEED + SPLITS.index(key[1]))
    drawn = torch.rand(grey.pixels.shape, generator=gen) < floats(grey.pixels.cpu())
    return Split(pixels=(drawn.to(torch.uint8) * 255).to(device), labels=grey.labels, classes=grey.classes,
                 index=grey.index)


# Keep a split in host memory rather than on a GPU where it would take more than this share of the free memory;
# batches are then copied over one at a time (from pinned memory, so the copy overlaps the step).
DEVICE_SHARE = 0.5


@functools.lru_cache(maxsize=8)
def _on_device(key: tuple, device: str) -> Split:
    node, split = json.loads(key[0]), key[1]
    images = load_images(node, split, key[2])
    pixels = images.pixels
    classes = node.get("classes")
    labels, index = images.labels, None
    if classes is not None:
        pixels, labels, index = only_classes(images, classes, node["name"], split)
    target = torch.device(device)
    if target.type == "cuda":
        free, _ = torch.cuda.mem_get_info(target)
        if pixels.numel() > DEVICE_SHARE * free:
            log.info("the %s split (%.1f GB as uint8) stays in host memory: batches are copied to %s one by one",
                     split, pixels.numel() / 1e9, device)
            return Split(pixels.pin_memory(), labels.to(target) if labels is not None else None, images.classes, index)
    return Split(pixels.to(target), labels.to(target) if labels is not None else None, images.classes, index)


def only_classes(images: Images, classes: Sequence[int], name: str,
                 split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The images of the given classes only (dataset.classes), their labels, and their positions in the split."""
    if images.labels is None:
        raise UserError(f"dataset.classes={list(classes)} needs labels, and {name} has none; drop dataset.classes")
    wanted = torch.tensor([int(k) for k in classes])
    keep = torch.isin(images.labels, wanted)
    if not keep.any():
        raise UserError(f"dataset.classes={list(classes)}: the {split} split of {name} has no image of these classes; "
                        f"its labels run from {int(images.labels.min())} to {int(images.labels.max())}")
    return images.pixels[keep], images.labels[keep], keep.nonzero().flatten()


def showcase(dataset: Mapping[str, Any], test: Split) -> list[int]:
    """The test images that figures and tables show: `dataset.showcase` where given, else the first image of each
    class (up to ten classes), else the first ten. The given indices are positions in the data set's whole test
    split: a split of some classes only (dataset.classes) shows those of its images, or, holding none of them, the
    first of each class it has."""
    given = dataset.get("showcase")
    if given:
        chosen = [int(i) for i in given]
        if test.index is not None:  # a subset: the given positions it holds, where they are in it
            where = {int(position): i for i, position in enumerate(test.positions.tolist())}
            chosen = [where[i] for i in chosen if i in where]
        elif max(chosen) >= len(test) or min(chosen) < 0:
            raise UserError(f"dataset.showcase index {max(chosen)} is past the test split's {len(test)} images")
        if chosen:
            return chosen
    if test.labels is not None:
        labels = test.labels.cpu()
        firsts = [int((labels == k).nonzero()[0]) for k in labels.unique().tolist()[:10]]
        if len(firsts) >= 2:
            return sorted(firsts)
    return list(range(min(10, len(test))))


def label_names(split: Split, index: Sequence[int]) -> list[str]:
    """What a figure calls the showcase images: their class names, their labels, or their index."""
    if split.labels is None:
        return [f"#{i}" for i in index]
    labels = split.labels[list(index)].tolist()
    if split.classes:
        return [split.classes[k] if 0 <= k < len(split.classes) else str(k) for k in labels]
    return [str(k) for k in labels]
