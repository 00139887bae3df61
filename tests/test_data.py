from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from aerun import data
from aerun.data import idx
from aerun.data import IdxDataset, IdxFile, ensure, load_split, read_idx, synthetic
from aerun.errors import UserError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny(tmp_path):
    """A four-file IDX data set of 6 train / 3 test images, its spec, and the bytes of each file."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28)),
        "train_labels": rng.integers(0, 10, 6),
        "test_images": rng.integers(0, 256, (3, 28, 28)),
        "test_labels": rng.integers(0, 10, 3),
    }
    blobs = {k: idx_bytes(v) for k, v in arrays.items()}
    files = {k: IdxFile(f"{k}.idx", hashlib.sha256(b).hexdigest()) for k, b in blobs.items()}

    def fetch_ok(spec, data_dir):
        for key, idx_file in files.items():
            path = spec.raw_dir(data_dir) / idx_file.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blobs[key])

    def make(*fetchers):
        spec = IdxDataset(folder="Tiny", **files, fetchers=fetchers)
        data.register_idx("tiny", spec)
        return spec

    yield make, fetch_ok, arrays, blobs
    data.IDX_DATASETS.pop("tiny", None)
    data.DATASETS.pop("tiny", None)
    data.clear_caches()


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    (tmp_path / "x").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), array)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b[:-5], "header promises"),  # truncated body
        (lambda b: b + b"\0", "header promises"),  # trailing bytes
        (lambda b: b"\x00\x00\x09" + b[3:], "bad magic"),  # not unsigned bytes
        (lambda b: b[:6], "header"),  # truncated header
    ],
)
def test_read_idx_rejects_damaged_files(tmp_path, mangle, message):
    (tmp_path / "x").write_bytes(mangle(idx_bytes(np.zeros((2, 28, 28)))))
    with pytest.raises(UserError, match=message):
        read_idx(tmp_path / "x")


def test_present_files_are_verified_not_fetched(tiny, tmp_path):
    make, fetch_ok, arrays, _ = tiny
    calls = []
    spec = make(lambda s, d: calls.append(d))
    fetch_ok(spec, tmp_path)
    assert ensure("tiny", tmp_path) == spec.raw_dir(tmp_path)
    assert calls == []
    split = load_split({"name": "tiny"}, "test", tmp_path, "cpu")
    assert split.images.shape == (3, 1, 28, 28)
    assert split.images.dtype == torch.float32
    torch.testing.assert_close(split.images[:, 0] * 255, torch.from_numpy(arrays["test_images"]).float())
    assert split.labels.tolist() == arrays["test_labels"].tolist()


def test_corrupted_file_is_an_error_never_used(tiny, tmp_path):
    make, fetch_ok, _, blobs = tiny
    spec = make()
    fetch_ok(spec, tmp_path)
    path = spec.raw_dir(tmp_path) / spec.test_images.name
    damaged = bytearray(blobs["test_images"])
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(UserError, match=r"test_images\.idx has SHA-256 .* expected"):
        load_split({"name": "tiny"}, "test", tmp_path, "cpu")


def test_missing_files_are_fetched_in_order(tiny, tmp_path):
    make, fetch_ok, _, _ = tiny
    tried = []

    def broken(spec, data_dir):
        tried.append("broken")
        raise RuntimeError("mirror unreachable")

    def working(spec, data_dir):
        tried.append("working")
        fetch_ok(spec, data_dir)

    make(broken, working)
    ensure("tiny", tmp_path)
    assert tried == ["broken", "working"]


def test_no_fetcher_works_gives_one_line_with_what_to_do(tiny, tmp_path):
    make, _, _, _ = tiny

    def broken(spec, data_dir):
        raise RuntimeError("mirror unreachable\nmore detail")

    make(broken)
    with pytest.raises(UserError) as err:
        ensure("tiny", tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "mirror unreachable" in message and "place the uncompressed IDX files" in message


def test_fetched_file_with_wrong_digest_is_not_placed(tmp_path):
    src = tmp_path / "fetched"
    src.write_bytes(b"not the real file")
    with pytest.raises(RuntimeError, match="SHA-256"):
        idx._place_verified(src, tmp_path / "raw" / "x", IdxFile("x", "0" * 64))
    assert not (tmp_path / "raw" / "x").exists()


def test_a_download_that_writes_wrong_bytes_is_refused_and_the_next_source_tried(tiny, tmp_path):
    make, fetch_ok, _, blobs = tiny
    tried = []

    def wrong(spec, data_dir):  # as a mirror that serves another file: in place, the right size, one byte off
        tried.append("wrong")
        fetch_ok(spec, data_dir)
        path = spec.raw_dir(data_dir) / spec.test_labels.name
        path.write_bytes(blobs["test_labels"][:-1] + bytes([(blobs["test_labels"][-1] + 1) % 256]))

    make(wrong)
    with pytest.raises(UserError, match=r"wrong bytes \(SHA-256\) for test_labels.idx"):
        ensure("tiny", tmp_path)
    assert not (tmp_path / "Tiny" / "raw" / "test_labels.idx").exists()  # refused, not left to be read
    make(wrong, lambda spec, data_dir: (tried.append("right"), fetch_ok(spec, data_dir)))
    assert ensure("tiny", tmp_path) == tmp_path / "Tiny" / "raw" and tried == ["wrong", "wrong", "right"]


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(UserError, match="unknown dataset 'cifar'; registered: cifar10, fashion_mnist, folder, kmnist, "
                                        "mnist, npz, synthetic"):
        load_split({"name": "cifar"}, "test", Path("."), "cpu")


def test_synthetic_is_deterministic_and_in_range():
    a, la = synthetic(50, seed=3)
    b, lb = synthetic(50, seed=3)
    c, _ = synthetic(50, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert a.shape == (50, 28, 28) and a.dtype == torch.uint8
    assert 0 < a.float().mean() < 128 and set(la.tolist()) <= set(range(10))


def test_gzipped_idx_folder_is_unpacked_and_verified(tiny, tmp_path):
    import gzip

    make, _, arrays, blobs = tiny
    source = tmp_path / "system"
    source.mkdir()
    spec = make()
    for key, idx_file in zip(("train_images", "train_labels", "test_images", "test_labels"), spec.files):
        (source / f"{idx_file.name}.gz").write_bytes(gzip.compress(blobs[key]))
    make(idx.fetch_from_gz_dir(str(source)))
    ensure("tiny", tmp_path / "data")
    assert read_idx(spec.raw_dir(tmp_path / "data") / spec.train_labels.name).tolist() == arrays["train_labels"].tolist()
