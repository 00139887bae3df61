"""One smoke run on the real MNIST that `make check` fetched (skipped without it)."""

from __future__ import annotations

import pytest

from aerun.data import load_split
from aerun.evaluate import evaluate
from aerun.train import train


@pytest.mark.mnist
def test_one_epoch_on_mnist_beats_the_mean_image(make_cfg, mnist_dir, tmp_path):
    cfg = make_cfg("train", ["model=shallow", "epochs=1", "device=cpu", f"paths.data_dir={mnist_dir}"])
    train(cfg, tmp_path)
    result = evaluate(tmp_path, mnist_dir, "cpu")

    train_set = load_split(cfg.dataset, "train", mnist_dir, "cpu")
    test_set = load_split(cfg.dataset, "test", mnist_dir, "cpu")
    assert (len(train_set), len(test_set)) == (60000, 10000)
    assert result["showcase"]["labels"] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    # predicting the training mean image for every test digit: the floor any autoencoder must beat
    mean_sse = (test_set.images - train_set.images.mean(0)).pow(2).flatten(1).sum(1).mean().item()
    assert result["model"]["sse_per_image"] < 0.8 * mean_sse
    assert result["pca"]["sse_per_image"] < result["model"]["sse_per_image"] * 2
    assert result["n_images"] == 10000
