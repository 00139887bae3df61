"""`dataset=folder dataset.path=DIR`: a folder of images, decoded once into a uint8 cache.

The layout is torchvision's ImageFolder: class subfolders give labels (`DIR/cat/*.png`, `DIR/dog/*.png`), a flat
folder has none. `DIR/train/` and `DIR/test/` are the splits where both are there; otherwise a fixed draw holds
out `dataset.test_fraction` of the images as the test split, the same on every run. PNG, JPEG, BMP and WebP are
read through Pillow. `dataset.size=[H,W]` scales each image to cover H×W, keeping its aspect ratio, then crops
the centre (without it every image must have one size); `dataset.channels=1|3` converts to grey or RGB (without
it: RGB if any image has colour, grey otherwise).

The decoded pixels are kept under the data folder (`paths.data_dir/folders/<digest>/`) beside a manifest of
every file's name, size and modification time: the next run with the same folder and options reads the cache
(memory-mapped) in seconds, and a folder that changed since is noticed and read again. The manifest is written
last and removed first, so a cache is used only when it is whole.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from aerun import atomic
from aerun.data.base import Dataset, Images, register_dataset
from aerun.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLIT_SEED = 71993  # which images a folder without train/ and test/ holds out for testing: one draw, fixed
MANIFEST = "manifest.json"
CACHE_FORMAT = 1


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(folder: Path) -> tuple[list[Path], list[str] | None, list[int] | None]:
    """The images of one folder (its class subfolders' or its own), their class names and labels."""
    own, classes = _images_in(folder), _subfolders(folder)
    if classes and own:
        raise UserError(f"{folder} holds both images ({own[0].name}, ...) and subfolders ({classes[0].name}, ...); "
                        "put every image in a class subfolder, or none")
    if not classes:
        return own, None, None
    files, labels = [], []
    for label, sub in enumerate(classes):
        found = _images_in(sub)
        files += found
        labels += [label] * len(found)
    return files, [c.name for c in classes], labels


def no_images(folder: Path) -> UserError:
    others = [p for p in folder.rglob("*") if p.is_file()]
    found = f"; it holds {len(others)} other files, e.g. {others[0].name}" if others else " (it is empty)"
    return UserError(f"dataset.path={folder} holds no images ({', '.join(EXTENSIONS)}){found}")


def layout(root: Path, test_fraction: float) -> tuple[dict[str, tuple[list[Path], list[int] | None]], list[str] | None]:
    """({split: (files, labels)}, the class names): names None without class subfolders."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, classes, train_labels = scan(root / "train")
        test, test_classes, test_labels = scan(root / "test")
        for split, files in (("train", train), ("test", test)):
            if not files:
                raise no_images(root / split)
        if (classes is None) != (test_classes is None):
            raise UserError(f"{root}: one of train/ and test/ has class subfolders and the other not; "
                            "give both the same layout")
        if classes is not None:
            unknown = sorted(set(test_classes) - set(classes))
            if unknown:
                raise UserError(f"{root / 'test'} has the class folder {unknown[0]!r}, which train/ lacks; the labels "
                                "of the test images must be classes of the training images")
            test_labels = [classes.index(test_classes[k]) for k in test_labels]
        return {"train": (train, train_labels), "test": (test, test_labels)}, classes
    files, classes, labels = scan(root)
    if not files:
        raise no_images(root)
    if len(files) < 2:
        raise UserError(f"dataset.path={root} holds one image ({files[0].name}); a training and a test split need "
                        "at least two")
    n_test = min(max(1, round(len(files) * test_fraction)), len(files) - 1)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    picked = {"test": sorted(order[:n_test]), "train": sorted(order[n_test:])}
    return {split: ([files[i] for i in index], [labels[i] for i in index] if labels is not None else None)
            for split, index in picked.items()}, classes


def fitted(image: Any, size: tuple[int, int] | None) -> Any:
    """Scaled to cover `size` (H, W) with its aspect ratio kept, then the centre cropped to it."""
    if size is None or (image.height, image.width) == size:
        return image
    from PIL import Image

    height, width = size
    scale = max(height / image.height, width / image.width)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(scaled, Image.Resampling.BILINEAR)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def decode(files: list[Path], size: tuple[int, int] | None, channels: int | None, what: str) -> np.ndarray:
    """uint8 (N, C, H, W) of every file; one line naming the first file that cannot be read or does not fit."""
    from PIL import UnidentifiedImageError

    if channels is None:  # colour if any image has colour
        channels = 1
        for path in files:
            if _mode(path) not in GREY_MODES:
                channels = 3
                break
    mode = "L" if channels == 1 else "RGB"
    out: np.ndarray | None = None
    for i, path in enumerate(tqdm(files, desc=f"decoding {what}", unit="image", leave=False, disable=None)):
        with _opened(path) as image:
            try:
                pixels = np.asarray(fitted(image.convert(mode), size), dtype=np.uint8)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise UserError(f"{path} cannot be decoded ({' '.join(str(exc).split())[:120]}): it is truncated "
                                "or damaged; replace or remove it") from None
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if out is None:
            out = np.empty((len(files), *pixels.shape), dtype=np.uint8)
        elif pixels.shape != out.shape[1:]:
            raise UserError(f"{path} is {pixels.shape[1]}x{pixels.shape[2]} pixels and {files[0]} is "
                            f"{out.shape[2]}x{out.shape[3]}: images of several sizes need dataset.size=[H,W]")
        out[i] = pixels
    return out


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _mode(path: Path) -> str:
    """An image's mode, read from its header alone (a damaged body is found when it is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"{path} cannot be read as an image ({' '.join(str(exc).split())[:120]}); "
                        "replace or remove it") from None


class _opened:
    """An image file opened by Pillow, or one line naming it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Any:
        from PIL import Image, UnidentifiedImageError

        try:
            self.image = Image.open(self.path)
            self.image.load()
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UserError(f"{self.path} cannot be read as an image ({' '.join(str(exc).split())[:120]}); "
                            "replace or remove it") from None
        return self.image

    def __exit__(self, *exc: Any) -> None:
        self.image.close()


def _stat(files: list[Path], root: Path) -> list[list[Any]]:
    return [[str(p.relative_to(root)), (s := p.stat()).st_size, s.st_mtime_ns] for p in files]


@register_dataset("folder")
class Folder(Dataset):
    """A folder of images (see the module's docstring): `dataset.path`, `size`, `channels`, `test_fraction`."""

    def root(self) -> Path:
        path = self.cfg.get("path")
        if not path:
            raise UserError("dataset=folder needs dataset.path=DIR, a folder of images (class subfolders give labels)")
        root = Path(str(path)).expanduser()
        if not root.is_dir():
            raise UserError(f"dataset.path={path} is not a folder; give a folder of images")
        return root.resolve()

    def options(self) -> dict[str, Any]:
        """What the decoded images depend on besides the files (checked by aerun.data.check_keys)."""
        size = self.cfg.get("size")
        return {"size": [int(s) for s in size] if size is not None else None, "channels": self.cfg.get("channels"),
                "test_fraction": float(self.cfg.get("test_fraction") or 0.2)}

    def cache_dir(self, root: Path, options: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps({"root": str(root), **options}, sort_keys=True).encode()).hexdigest()
        return self.data_dir / "folders" / digest[:16]

    def load(self, split: str) -> Images:
        cache = self.decoded()
        pixels = torch.from_numpy(np.load(cache / f"{split}.npy", mmap_mode="c"))
        manifest = json.loads((cache / MANIFEST).read_text())
        labels = np.load(cache / f"{split}_labels.npy") if manifest["classes"] is not None else None
        return Images.of(pixels, labels, manifest["classes"], f"dataset.path={self.cfg['path']}")

    def shape(self) -> tuple[int, int, int]:
        return tuple(json.loads((self.decoded() / MANIFEST).read_text())["shape"])

    def prepare(self) -> str:
        cache = self.decoded()
        manifest = json.loads((cache / MANIFEST).read_text())
        return (f"folder {manifest['source']}: {manifest['counts']['train']} training and {manifest['counts']['test']}"
                f" test images of {'×'.join(map(str, manifest['shape']))}, decoded in {cache}")

    def decoded(self) -> Path:
        """The cache folder of this folder and options, decoded anew where it is missing or the folder changed."""
        root, options = self.root(), self.options()
        splits, classes = layout(root, options["test_fraction"])
        files = {split: _stat(found, root) for split, (found, _) in splits.items()}
        cache = self.cache_dir(root, options)
        manifest_path = cache / MANIFEST
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text())
                if manifest.get("format") == CACHE_FORMAT and manifest["files"] == files:
                    return cache
            except (OSError, ValueError, KeyError):
                pass
        self.write_cache(cache, root, options, splits, classes, files)
        return cache

    def write_cache(self, cache: Path, root: Path, options: dict[str, Any], splits: dict, classes: list[str] | None,
                    files: dict[str, list]) -> None:
        size = tuple(options["size"]) if options["size"] else None
        decoded = {}
        channels = options["channels"]
        for split in ("train", "test"):
            decoded[split] = decode(splits[split][0], size, channels, f"{root.name}/{split}")
            channels = decoded[split].shape[1]  # the test split as the training split
        if decoded["train"].shape[1:] != decoded["test"].shape[1:]:
            raise UserError(f"{root}: the training images are {'×'.join(map(str, decoded['train'].shape[1:]))} and "
                            f"the test images {'×'.join(map(str, decoded['test'].shape[1:]))}: give dataset.size=[H,W]")
        cache.mkdir(parents=True, exist_ok=True)
        (cache / MANIFEST).unlink(missing_ok=True)  # from here until the new one is written, the cache is not used
        for split, pixels in decoded.items():
            with atomic.replacing(cache / f"{split}.npy") as f:
                np.save(f, pixels)
            if classes is not None:
                with atomic.replacing(cache / f"{split}_labels.npy") as f:
                    np.save(f, np.asarray(splits[split][1], dtype=np.int64))
        manifest = {"format": CACHE_FORMAT, "source": str(root), "options": options, "classes": classes,
                    "shape": list(decoded["train"].shape[1:]),
                    "counts": {split: len(pixels) for split, pixels in decoded.items()}, "files": files}
        atomic.write_json(cache / MANIFEST, manifest)

