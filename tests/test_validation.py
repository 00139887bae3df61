"""dataset.val_size=N: N training images held out, the same for every model, never trained on, measured."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import torch

from aerun import checkpoint as ckpt
from aerun.data import load_split
from aerun.errors import UserError
from aerun.evaluate import evaluate, features
from aerun.probe import probe_accuracy
from aerun.train import mean_mse, train
from aerun.validate import check_train

from conftest import SMOKE

SYNTHETIC = {"name": "synthetic", "n_train": 1024, "n_test": 256, "seed": 0}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_held_out_images_are_one_fixed_draw_apart_from_training():
    whole = load_split(SYNTHETIC, "train", "unused", "cpu")
    val = load_split({**SYNTHETIC, "val_size": 100}, "val", "unused", "cpu")
    rest = load_split({**SYNTHETIC, "val_size": 100}, "train", "unused", "cpu")
    assert (len(val), len(rest)) == (100, 924)
    flat = whole.images.flatten(1)
    index_of = {tuple(row.tolist()): i for i, row in enumerate(flat)}
    held = {index_of[tuple(row.tolist())] for row in val.images.flatten(1)}
    kept = {index_of[tuple(row.tolist())] for row in rest.images.flatten(1)}
    assert held.isdisjoint(kept) and held | kept == set(range(1024))
    assert held != set(range(100))  # a draw, not the first images
    again = load_split({**SYNTHETIC, "val_size": 100, "binarize": "none"}, "val", "other", "cpu")
    assert torch.equal(again.images, val.images)  # the same draw for every model and run
    assert torch.equal(val.labels, whole.labels[sorted(held)])
    binary = load_split({**SYNTHETIC, "val_size": 100, "binarize": "dynamic"}, "val", "unused", "cpu")
    assert set(binary.images.unique().tolist()) <= {0.0, 1.0}  # drawn once, as the test split is
    with pytest.raises(UserError, match="no validation split"):
        load_split(SYNTHETIC, "val", "unused", "cpu")


@pytest.mark.parametrize("size", ["-1", "1024"])
def test_a_validation_split_that_cannot_be_is_one_line(make_cfg, size):
    with pytest.raises(UserError, match=f"^dataset.val_size={size} is not allowed"):
        check_train(make_cfg("train", [*SMOKE, f"dataset.val_size={size}"]))


def test_training_logs_the_validation_loss_and_never_trains_on_it(make_cfg, tmp_path, caplog):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "dataset.val_size=960"])
    with caplog.at_level(logging.INFO, logger="aerun.train"):
        train(cfg, tmp_path)
    assert "64 train / 960 validation / 256 test images" in caplog.text
    iters, epochs = rows(tmp_path / "loss_iter.csv"), rows(tmp_path / "loss_epoch.csv")
    assert len(iters) == 2  # 64 training images, one batch of 64 per epoch: the 960 held out are never drawn
    assert [float(r["val_loss"]) > 0 for r in epochs] == [True, True]
    model = ckpt.rebuild(ckpt.load(tmp_path / ckpt.CHECKPOINT), "cpu")
    val = load_split(cfg.dataset, "val", "unused", "cpu")
    assert float(epochs[-1]["val_loss"]) == pytest.approx(mean_mse(model, val.images), rel=1e-5)

    result = evaluate(tmp_path, "unused", "cpu")
    assert result["validation"]["n_images"] == 960
    assert result["validation"]["mse"] == pytest.approx(mean_mse(model, val.images), rel=1e-5)
    assert json.loads((tmp_path / "eval.json").read_text())["validation"]["n_images"] == 960


def test_a_search_on_the_probe_logs_its_validation_accuracy_each_epoch(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "dataset.val_size=960",
                             "search.metric=val_probe"])
    train(cfg, tmp_path)
    epochs = rows(tmp_path / "loss_epoch.csv")
    model = ckpt.rebuild(ckpt.load(tmp_path / ckpt.CHECKPOINT), "cpu")
    fitted, val = load_split(cfg.dataset, "train", "unused", "cpu"), load_split(cfg.dataset, "val", "unused", "cpu")
    expected = probe_accuracy(features(model, fitted.images), fitted.labels, features(model, val.images), val.labels)
    assert [0 < float(r["val_probe"]) <= 1 for r in epochs] == [True, True]
    assert float(epochs[-1]["val_probe"]) == pytest.approx(expected, abs=1e-6)
