"""Image data written here, as users hand it to aerun: a folder of colour photographs, an npz of arrays, CIFAR-10's
files in torchvision's on-disk format."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

CLASSES = ("ball", "bar", "ring")
FORMATS = (".png", ".jpg", ".bmp", ".webp")


def picture(label: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A colour picture (H, W, 3) uint8 of one of three kinds: a bright shape of the class on a shaded background,
    placed, sized and coloured at random."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    shade = rng.uniform(20, 90, 3)[None, None] * (0.6 + 0.4 * cols[..., None] / width)
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    r = rng.uniform(0.2, 0.3) * min(height, width)
    distance = np.hypot(rows - cy, cols - cx)
    mask = {0: distance < r, 1: np.abs(rows - cy) < r / 3, 2: np.abs(distance - r) < r / 4}[label]
    colour = rng.uniform(150, 255, 3)
    return np.clip(np.where(mask[..., None], colour, shade), 0, 255).astype(np.uint8)


def photo_folder(root: Path, per_class: int = 12, height: int = 21, width: int = 27, seed: int = 0) -> Path:
    """ROOT/<class>/<i>.<png|jpg|bmp|webp>: colour pictures of an odd size, in class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(picture(label, height, width, rng)).save(root / name / f"{i:03d}{FORMATS[i % 4]}",
                                                                     quality=95)
    return root


def image_arrays(n: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 pictures and their int64 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    return np.stack([picture(int(k), height, width, rng) for k in labels]), labels


def cifar_files(root: Path, per_batch: int = 20, seed: int = 0) -> dict[str, str]:
    """CIFAR-10's files as torchvision reads them (root/cifar-10-batches-py/: five training batches, a test batch,
    batches.meta; pickled dicts of (N, 3072) uint8 rows in CHW order and their labels), with pictures of 32x32.
    Returns each file's MD5, which torchvision checks them against."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for i, name in enumerate(names):
        images, labels = image_arrays(per_batch, 32, 32, seed + i)
        rows = images.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, "labels": labels.tolist(), "data": rows}))
    meta = list(CLASSES) + [f"class{k}" for k in range(3, 10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": meta, "num_vis": 3072}))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in [*names, "batches.meta"]}


def cifar_checks(md5: dict[str, str]) -> dict[str, object]:
    """torchvision's CIFAR10 class attributes that name the files and their MD5s, for these files."""
    return {"train_list": [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)],
            "test_list": [["test_batch", md5["test_batch"]]],
            "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]}}
