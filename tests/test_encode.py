"""`aerun encode`: a run's codes of a split, with the labels and each image's position in the data set's split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aerun import checkpoint as ckpt
from aerun.data import floats, load_split
from aerun.encode import encode_run
from aerun.errors import UserError
from aerun.train import train

RUN = ["dataset=synthetic", "epochs=1", "batch_size=64", "device=cpu"]


def trained(make_cfg, tmp_path, *overrides):
    run = tmp_path / "run"
    cfg = make_cfg("train", [*RUN, *overrides])
    train(cfg, run)
    return run, cfg


def model_of(run):
    model = ckpt.rebuild(ckpt.load(run / ckpt.CHECKPOINT), "cpu").eval()
    return model


@pytest.mark.parametrize("preset", [["model=shallow", "model.hidden=16"], ["model=conv_unpool"], ["model=vae"]])
def test_the_test_codes_are_the_models_codes_of_every_test_image_in_order(make_cfg, tmp_path, preset):
    run, cfg = trained(make_cfg, tmp_path, *preset)
    done = encode_run(run, "test", cfg.paths.data_dir, "cpu")
    saved = np.load(done["path"])
    test = load_split(cfg.dataset, "test", cfg.paths.data_dir, "cpu")
    with torch.no_grad():
        expected = model_of(run).encode(floats(test.pixels)).flatten(1)  # the whole split at once, not batched
    assert saved["codes"].dtype == np.float32 and saved["codes"].shape == tuple(expected.shape)
    assert np.allclose(saved["codes"], expected.numpy(), atol=1e-6)
    assert (saved["labels"] == test.labels.numpy()).all() and (saved["indices"] == np.arange(len(test))).all()
    assert int(saved["epoch"]) == 1 and done["path"] == run / "codes-test.npz"


def test_held_out_and_class_subsets_give_each_images_position_in_the_data_sets_split(make_cfg, tmp_path):
    run, cfg = trained(make_cfg, tmp_path, "model=shallow", "model.hidden=16", "dataset.val_size=50",
                       "dataset.classes=[1,3]")
    saved = np.load(encode_run(run, "val", cfg.paths.data_dir, "cpu")["path"])
    whole = load_split({"name": "synthetic", "n_train": cfg.dataset.n_train, "n_test": cfg.dataset.n_test,
                        "seed": cfg.dataset.seed}, "train", cfg.paths.data_dir, "cpu")  # every training image
    index = torch.from_numpy(saved["indices"])
    assert len(index) == 50 and set(whole.labels[index].tolist()) <= {1, 3}
    assert (whole.labels[index].numpy() == saved["labels"]).all()
    with torch.no_grad():  # the codes are those of the images at those positions
        expected = model_of(run).encode(floats(whole.pixels[index])).flatten(1)
    assert np.allclose(saved["codes"], expected.numpy(), atol=1e-6)


def test_a_split_the_run_does_not_have_is_one_line(make_cfg, tmp_path):
    run, cfg = trained(make_cfg, tmp_path, "model=shallow", "model.hidden=16")
    for split, said in (("val", "trained without a validation split"), ("dev", "split='dev' is not allowed")):
        with pytest.raises(UserError) as caught:
            encode_run(run, split, cfg.paths.data_dir, "cpu")
        assert said in str(caught.value) and "\n" not in str(caught.value)
    assert not list(run.glob("codes-*.npz"))
