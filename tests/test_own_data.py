"""Your own images: a folder of colour photographs of an odd size, an npz of arrays and CIFAR-10's files train,
evaluate and plot with an MLP, a conv AE and the VAE, in colour; the folder's layouts, sizes, channels and cache;
bad input as one line naming the file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from imagedata import CLASSES, cifar_checks, cifar_files, image_arrays, photo_folder

from aerun import checkpoint as ckpt
from aerun.data import clear_caches, data_shape, load_split
from aerun.data import folder as folder_module
from aerun.errors import UserError

FAST = ["epochs=6", "batch_size=8", "optimizer.lr=3e-3", "device=cpu"]
MODELS = {"shallow": ["model.hidden=32"], "conv_deconv": [], "vae": ["model.code=8"]}


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def photos(tmp_path):
    return photo_folder(tmp_path / "photos")


def node(**keys):
    return {"name": "folder", "test_fraction": 0.2, **keys}


def colour_pixels(png: Path) -> float:
    """The share of a figure's pixels whose red, green and blue differ by more than 30 levels: 0 for a grey one."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return float(((rgb.max(2) - rgb.min(2)) > 30).mean())


def train_evaluate_plot(make_cfg, run: Path, data: list[str], model: str) -> dict:
    from aerun.evaluate import evaluate
    from aerun.plot import plot
    from aerun.train import train

    cfg = make_cfg("train", [*data, f"model={model}", *MODELS[model], *FAST])
    train(cfg, run)
    result = evaluate(run, cfg.paths.data_dir, "cpu")
    written = {p.name for p in plot(run, cfg.paths.data_dir, "cpu")}
    assert "reconstructions.png" in written
    return result


def first_and_last_loss(run: Path) -> tuple[float, float]:
    with open(run / "loss_iter.csv", newline="") as f:
        first = float(next(csv.DictReader(f))["loss"])
    with open(run / "loss_epoch.csv", newline="") as f:
        last = float(list(csv.DictReader(f))[-1]["train_loss"])
    return first, last


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_a_folder_of_colour_photographs_trains_evaluates_and_plots(make_cfg, photos, tmp_path, model):
    run = tmp_path / "run"
    data = ["dataset=folder", f"dataset.path={photos}", f"paths.data_dir={tmp_path / 'data'}"]
    result = train_evaluate_plot(make_cfg, run, data, model)
    assert result["shape"] == [3, 21, 27] and result["n_images"] == 7  # round(36 * 0.2) held out
    assert ckpt.load(run / ckpt.CHECKPOINT)["model"]["in_shape"] == [3, 21, 27]
    assert 0 <= result["model"]["probe_accuracy"] <= 1 and result["showcase"]["labels"] is not None
    first, last = first_and_last_loss(run)
    assert last < first, f"{model} did not learn: {first} -> {last}"
    assert colour_pixels(run / "figures" / "reconstructions.png") > 0.02


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_an_npz_of_colour_arrays_trains_evaluates_and_plots(make_cfg, tmp_path, model):
    x_train, y_train = image_arrays(64, 20, 24, seed=1)
    x_test, y_test = image_arrays(16, 20, 24, seed=2)
    np.savez(tmp_path / "pictures.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    run = tmp_path / "run"
    result = train_evaluate_plot(make_cfg, run, ["dataset=npz", f"dataset.path={tmp_path / 'pictures.npz'}"], model)
    assert result["shape"] == [3, 20, 24] and result["n_images"] == 16
    first, last = first_and_last_loss(run)
    assert last < first
    assert colour_pixels(run / "figures" / "reconstructions.png") > 0.02


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_cifar10_is_read_by_torchvision_from_its_own_files(make_cfg, tmp_path, monkeypatch, model):
    import torchvision.datasets

    md5 = cifar_files(tmp_path / "data")
    for key, value in cifar_checks(md5).items():  # torchvision checks each file against these MD5s
        monkeypatch.setattr(torchvision.datasets.CIFAR10, key, value)
    run = tmp_path / "run"
    result = train_evaluate_plot(make_cfg, run, ["dataset=cifar10", f"paths.data_dir={tmp_path / 'data'}"], model)
    assert result["shape"] == [3, 32, 32] and result["n_images"] == 20
    test = load_split({"name": "cifar10"}, "test", tmp_path / "data", "cpu")
    images, labels = image_arrays(20, 32, 32, seed=5)  # the test batch, as written
    assert torch.equal(test.pixels, torch.from_numpy(images).permute(0, 3, 1, 2))
    assert test.labels.tolist() == labels.tolist() and test.classes[:3] == CLASSES
    assert colour_pixels(run / "figures" / "reconstructions.png") > 0.02


def test_class_subfolders_give_labels_and_the_held_out_draw_is_fixed(photos, tmp_path):
    train = load_split(node(path=str(photos)), "train", tmp_path, "cpu")
    test = load_split(node(path=str(photos)), "test", tmp_path, "cpu")
    assert (len(train), len(test)) == (29, 7) and train.classes == CLASSES and test.classes == CLASSES
    assert sorted(torch.cat([train.labels, test.labels]).tolist()) == sorted([0] * 12 + [1] * 12 + [2] * 12)
    clear_caches()
    again = load_split(node(path=str(photos)), "test", tmp_path / "elsewhere", "cpu")  # decoded anew: same draw
    assert torch.equal(again.pixels, test.pixels)
    half = load_split(node(path=str(photos), test_fraction=0.5), "test", tmp_path, "cpu")
    assert len(half) == 18


def test_train_and_test_subfolders_are_the_splits_and_a_flat_folder_has_no_labels(tmp_path):
    photo_folder(tmp_path / "split" / "train", per_class=4)
    photo_folder(tmp_path / "split" / "test", per_class=2, seed=1)
    test = load_split(node(path=str(tmp_path / "split")), "test", tmp_path, "cpu")
    assert len(test) == 6 and test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    flat = tmp_path / "flat"
    flat.mkdir()
    for picture in (tmp_path / "split" / "train").rglob("*.png"):
        picture.rename(flat / f"{picture.parent.name}-{picture.name}")
    split = load_split(node(path=str(flat)), "train", tmp_path, "cpu")
    assert split.labels is None and split.classes is None and len(split) == 2  # 3 images: 1 held out


def test_size_scales_to_cover_then_crops_the_centre_and_channels_convert(tmp_path):
    from PIL import Image

    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)  # left half red, right half blue
    wide[:, 20:] = (0, 0, 255)
    (tmp_path / "one").mkdir()
    for i in range(2):
        Image.fromarray(wide).save(tmp_path / "one" / f"{i}.png")
    split = load_split(node(path=str(tmp_path / "one"), size=[10, 10]), "train", tmp_path, "cpu")
    image = split.pixels[0]  # 20x40 -> 10x20 (cover 10x10) -> the centre 10x10: five red columns, five blue
    assert image.shape == (3, 10, 10)
    assert (image[0, :, :4] == 255).all() and (image[2, :, 6:] == 255).all() and (image[0, :, 6:] == 0).all()
    grey = load_split(node(path=str(tmp_path / "one"), channels=1), "train", tmp_path, "cpu")
    expected = Image.fromarray(wide).convert("L")  # Pillow's ITU-R 601-2 luma
    assert grey.pixels.shape == (1, 1, 20, 40) and torch.equal(grey.pixels[0, 0], torch.from_numpy(np.array(expected)))
    assert data_shape(node(path=str(tmp_path / "one"), channels=1, size=[8, 12]), tmp_path) == (1, 8, 12)


def test_the_cache_is_read_the_second_time_and_a_changed_folder_is_read_again(photos, tmp_path, monkeypatch):
    first = load_split(node(path=str(photos)), "train", tmp_path, "cpu").pixels.clone()
    clear_caches()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again, though the folder did not change")

    with monkeypatch.context() as patched:
        patched.setattr(folder_module, "decode", no_decoding)
        assert torch.equal(load_split(node(path=str(photos)), "train", tmp_path, "cpu").pixels, first)
        clear_caches()
        victim = sorted((photos / "ball").glob("*.png"))[0]
        victim.write_bytes((photos / "bar" / "001.jpg").read_bytes())  # same name, other content
        with pytest.raises(AssertionError, match="decoded again"):
            load_split(node(path=str(photos)), "train", tmp_path, "cpu")
    changed = load_split(node(path=str(photos)), "train", tmp_path, "cpu").pixels
    assert not torch.equal(changed, first)


def test_a_cache_interrupted_while_written_is_never_used(photos, tmp_path, monkeypatch):
    calls = []

    def failing_save(file, array):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        np.lib.format.write_array(file, np.asanyarray(array))

    monkeypatch.setattr(folder_module.np, "save", failing_save)
    with pytest.raises(OSError):
        load_split(node(path=str(photos)), "train", tmp_path, "cpu")
    caches = list((tmp_path / "folders").iterdir())
    assert len(caches) == 1 and not (caches[0] / "manifest.json").exists()
    assert not [p for p in caches[0].iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    clear_caches()
    assert len(load_split(node(path=str(photos)), "train", tmp_path, "cpu")) == 29


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW", "float"])
def test_npz_arrays_of_every_layout_give_the_same_images(tmp_path, layout):
    x, _ = image_arrays(6, 8, 10)
    grey = x[..., 0]
    given = {"NHW": grey, "NHWC": x, "NCHW": x.transpose(0, 3, 1, 2), "float": x / 255.0}[layout]
    np.savez(tmp_path / "a.npz", x_train=given, x_test=given[:2])
    split = load_split({"name": "npz", "path": str(tmp_path / "a.npz")}, "train", tmp_path, "cpu")
    expected = grey[:, None] if layout == "NHW" else x.transpose(0, 3, 1, 2)
    assert split.labels is None and torch.equal(split.pixels, torch.from_numpy(np.ascontiguousarray(expected)))


def bad_folder(tmp_path: Path, kind: str) -> tuple[dict, str]:
    """A folder that cannot be used, and what its one line must say."""
    root = tmp_path / kind
    if kind == "empty":
        root.mkdir()
        return node(path=str(root)), f"dataset.path={root} holds no images"
    if kind == "not_images":
        root.mkdir()
        (root / "notes.txt").write_text("hello")
        return node(path=str(root)), "holds no images (.png, .jpg, .jpeg, .bmp, .webp); it holds 1 other files, e.g. notes.txt"
    if kind == "one_image":
        photo_folder(root, per_class=1)
        for extra in [*(root / "bar").iterdir(), *(root / "ring").iterdir()]:
            extra.unlink()
        return node(path=str(root)), "holds one image"
    photo_folder(root, per_class=3)
    if kind == "truncated":
        victim = root / "bar" / "001.jpg"
        victim.write_bytes(victim.read_bytes()[:200])
        return node(path=str(root)), f"{victim} cannot be"
    if kind == "mixed_sizes":
        photo_folder(root, per_class=1, height=30, width=30)  # overwrites 000.png of each class at another size
        return node(path=str(root)), "pixels and"
    raise ValueError(kind)


BAD = ["empty", "not_images", "one_image", "truncated", "mixed_sizes"]


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_folder_is_one_line_naming_it_and_nothing_is_cached(tmp_path, kind):
    cfg, expected = bad_folder(tmp_path, kind)
    with pytest.raises(UserError) as error:
        load_split(cfg, "train", tmp_path / "data", "cpu")
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not list((tmp_path / "data").rglob("*.npy")) and not list((tmp_path / "data").rglob("manifest.json"))


@pytest.mark.parametrize("arrays, expected", [
    ({"x_test": np.zeros((2, 8, 8), np.uint8)}, "has no x_train; it holds x_test"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_train": np.zeros(3, np.int64), "y_test": np.zeros(2, np.int64)}, "x_train has 4 images and y_train 3 labels"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_train": np.zeros(4, np.int64)}, "has y_train only; give both labels or neither"),
    ({"x_train": np.full((4, 8, 8), 2.0), "x_test": np.zeros((2, 8, 8))}, "holds floats outside [0, 1]"),
    ({"x_train": np.zeros((4, 5, 8, 8), np.uint8), "x_test": np.zeros((2, 5, 8, 8), np.uint8)}, "has shape (4, 5, 8, 8)"),
])
def test_a_bad_npz_is_one_line(tmp_path, arrays, expected):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError) as error:
        load_split({"name": "npz", "path": str(tmp_path / "bad.npz")}, "train", tmp_path, "cpu")
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_run_meets_only_data_of_its_shape(make_cfg, photos, tmp_path):
    from aerun.evaluate import evaluate
    from aerun.train import train

    run = tmp_path / "run"
    data_dir = tmp_path / "data"
    train(make_cfg("train", ["dataset=folder", f"dataset.path={photos}", f"paths.data_dir={data_dir}",
                             "model=shallow", "model.hidden=8", *FAST]), run)
    for picture in photos.rglob("*.*"):  # the folder now holds smaller pictures
        picture.unlink()
    photo_folder(photos, height=20, width=20)
    clear_caches()
    with pytest.raises(UserError, match=r"trained on images of 3×21×27 and folder gives 3×20×20"):
        evaluate(run, data_dir, "cpu")


def test_the_command_line_names_the_damaged_file_in_one_line(aerun_exe, tmp_path):
    cfg, expected = bad_folder(tmp_path, "truncated")
    done = subprocess.run([aerun_exe, "dataset=folder", f"dataset.path={cfg['path']}", "device=cpu",
                           f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600, env=dict(os.environ))
    assert done.returncode == 2 and done.stderr.startswith("aerun: error: ") and expected in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
    missing = subprocess.run([aerun_exe, "dataset=folder", "device=cpu", f"hydra.run.dir={tmp_path / 'run2'}"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert missing.returncode == 2 and "dataset=folder needs dataset.path=DIR" in missing.stderr
    assert missing.stderr.count("\n") == 1


def test_the_report_runs_the_parts_that_apply_and_says_which_it_left_out(make_cfg, photos, tmp_path):
    from aerun.report import report

    data = f'"dataset=folder","dataset.path={photos}","paths.data_dir={tmp_path / "data"}"'
    cfg = make_cfg("report", [f"dir={tmp_path / 'report'}", f"train_overrides=[{data},\"epochs=1\"]", "beyond=true",
                              "parts=[pca_vs_ae,families]", "ood=[noise]", "device=cpu"])
    report(cfg)
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(written["left_out"]) == ["families"] and "multiples of 4" in written["left_out"]["families"]
    assert set(written["jobs"]) == {"pca_vs_ae", "standard"}  # families' sweeps were never planned, nor trained
    text = (tmp_path / "report" / "report.md").read_text()
    assert "# aerun report: autoencoders on folder" in text and "Left out on folder: Beyond the assignment" in text
    assert "1. PCA versus a deep autoencoder" in text


def test_the_report_refuses_data_without_labels_in_one_line(make_cfg, tmp_path):
    from aerun.report import report

    flat = tmp_path / "flat"
    photo_folder(tmp_path / "classes", per_class=4)
    flat.mkdir()
    for picture in (tmp_path / "classes").rglob("*.*"):
        picture.rename(flat / f"{picture.parent.name}-{picture.name}")
    data = f'"dataset=folder","dataset.path={flat}","paths.data_dir={tmp_path / "data"}"'
    cfg = make_cfg("report", [f"dir={tmp_path / 'report'}", f"train_overrides=[{data},\"epochs=1\"]",
                              "parts=[pca_vs_ae]", "ood=[noise]", "device=cpu"])
    with pytest.raises(UserError, match="compares codes by a linear probe of their labels, and folder has none"):
        report(cfg)
    assert not (tmp_path / "report" / "runs" / "pca_vs_ae" / "0" / "checkpoints").exists()


def test_a_checkpoint_written_before_shapes_were_stored_evaluates_as_before(make_cfg, tmp_path):
    from aerun.evaluate import evaluate_run
    from aerun.train import train

    run = tmp_path / "run"
    train(make_cfg("train", ["dataset=synthetic", "model=shallow", "model.hidden=8", "epochs=1", "device=cpu"]), run)
    now = evaluate_run(run, tmp_path, "cpu")
    state = ckpt.load(run / ckpt.CHECKPOINT)
    del state["model"]["in_shape"], state[ckpt.DIGEST]  # as aerun wrote it before it kept the shape
    ckpt.save(state, run / ckpt.CHECKPOINT)
    assert "in_shape" not in ckpt.load(run / ckpt.CHECKPOINT)["model"]
    before = evaluate_run(run, tmp_path, "cpu")
    assert before["shape"] == [1, 28, 28] and before["model"]["sse_per_image"] == now["model"]["sse_per_image"]
