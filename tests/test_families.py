"""The assignment's families beyond the spine: sparse penalty, noise, evaluation under noise, figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aerun.evaluate import evaluate, noisy_test_inputs
from aerun.models import build
from aerun.noise import corrupt, generator
from aerun.plot import plot
from aerun.objective import Objective, loss_terms
from aerun.train import train

from conftest import SMOKE


def test_sparsity_penalty_is_lambda_times_the_l1_sum_over_batch_and_units():
    torch.manual_seed(0)
    model = build("mlp", code=5)
    x = torch.rand(4, 1, 28, 28)
    mse, terms = loss_terms(model, x, x, Objective({"l1": 0.25}))
    penalty = terms["l1"]
    recon, code = model(x)
    by_hand = 0.25 * sum(abs(v) for row in code.tolist() for v in row)
    assert penalty.item() == pytest.approx(by_hand, rel=1e-6)
    assert mse.item() == pytest.approx(((recon - x) ** 2).mean().item(), rel=1e-6)
    assert loss_terms(model, x, x, Objective.defaults(model))[1] == {}  # no penalty term without a weight


def test_salt_and_pepper_hits_the_asked_fraction_with_zeros_and_ones():
    x = torch.full((200, 1, 28, 28), 0.5)
    y = corrupt(x, "salt_pepper", 0.3, generator(0, "cpu"))
    hit = y != 0.5
    assert hit.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert set(y[hit].unique().tolist()) == {0.0, 1.0}
    assert (y[hit] == 1).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_gaussian_noise_has_the_asked_std_and_masking_the_asked_fraction():
    x = torch.rand(200, 1, 28, 28)
    noise = corrupt(x, "gaussian", 0.8, generator(0, "cpu")) - x
    assert noise.std().item() == pytest.approx(0.8, rel=0.02) and abs(noise.mean().item()) < 0.01
    masked = corrupt(torch.ones(200, 1, 28, 28), "masking", 0.4, generator(0, "cpu"))
    assert (masked == 0).float().mean().item() == pytest.approx(0.4, abs=0.01)


def test_noise_is_a_function_of_its_seed():
    x = torch.rand(8, 1, 28, 28)
    a, b, c = (corrupt(x, "gaussian", 0.5, generator(s, "cpu")) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(noisy_test_inputs(x, ("salt_pepper", 0.3), 7), noisy_test_inputs(x, ("salt_pepper", 0.3), 7))
    assert corrupt(x, "none", 0.9, generator(0, "cpu")) is x


def test_denoising_training_and_noisy_evaluation(make_cfg, tmp_path):
    common = [*SMOKE, "model=shallow", "model.hidden=32"]
    train(make_cfg("train", [*common, "noise=gaussian", "noise.level=0.5"]), tmp_path / "den")
    train(make_cfg("train", common), tmp_path / "std")
    noisy = {name: evaluate(tmp_path / name, "unused", "cpu", ("gaussian", 0.5), 0) for name in ("den", "std")}
    clean = evaluate(tmp_path / "den", "unused", "cpu")
    assert (tmp_path / "den" / "eval-gaussian-0.5.json").is_file() and (tmp_path / "den" / "eval.json").is_file()
    assert json.loads((tmp_path / "den" / "eval.json").read_text())["noise"]["name"] == "none"
    assert noisy["den"]["trained_with_noise"] == {"name": "gaussian", "level": 0.5}
    # the same noisy inputs for both models, so PCA (same k, same data) scores the same under both
    assert noisy["den"]["pca"]["sse_per_image"] == noisy["std"]["pca"]["sse_per_image"]
    assert noisy["den"]["model"]["sse_per_image"] > clean["model"]["sse_per_image"]


def test_code_statistics_in_eval(make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=sparse", "model.hidden=49", "sparsity=1e-3"]), tmp_path)
    code = evaluate(tmp_path, "unused", "cpu")["model"]["code"]
    from aerun import checkpoint as ckpt
    from aerun.data import load_split

    model = ckpt.rebuild(ckpt.load(tmp_path / ckpt.CHECKPOINT))
    with torch.no_grad():  # by hand, in numpy: the ReLU of the encoder's one linear layer
        x = load_split({"name": "synthetic", "n_test": 256, "seed": 0}, "test", "", "cpu").images.flatten(1).numpy()
        layer = model.encoder[0]
        h = np.maximum(x @ layer.weight.numpy().T + layer.bias.numpy(), 0)
    assert code["fraction_zero"] == pytest.approx((h == 0).mean()) and 0 < code["fraction_zero"] < 1
    assert code["mean_l1"] == pytest.approx(np.abs(h).sum(1).mean(), rel=1e-5)
    assert code["mean_activation"] == pytest.approx(h.mean(0).tolist(), rel=1e-4, abs=1e-7)


def names(paths):
    return {p.relative_to(p.parents[1]).as_posix() for p in paths}


@pytest.mark.slow
def test_every_family_gets_its_figures(make_cfg, tmp_path):
    runs = {
        "std": [*SMOKE, "model=shallow", "model.hidden=64"],
        "sparse": [*SMOKE, "model=sparse", "model.hidden=64"],
        "den": [*SMOKE, "model=shallow", "model.hidden=64", "noise=salt_pepper", "noise.level=0.3"],
        "manifold": [*SMOKE, "model=manifold"],
        "conv": [*SMOKE, "model=conv_unpool"],
    }
    for name, overrides in runs.items():
        train(make_cfg("train", overrides), tmp_path / name)
    common = {"reconstructions.png", "loss_iter.png", "loss_epoch.png"}

    sparse = names(plot(tmp_path / "sparse", "unused", "cpu", baseline=tmp_path / "std", ood="noise"))
    assert sparse == {f"figures/{n}" for n in common | {"filters.png", "activations.png", "ood_noise.png"}}
    den = names(plot(tmp_path / "den", "unused", "cpu", baseline=tmp_path / "std"))
    assert "figures/denoising.png" in den
    manifold = names(plot(tmp_path / "manifold", "unused", "cpu"))
    assert {"figures/manifold_pixel.png", "figures/manifold_code.png", "figures/manifold_interpolation.png"} <= manifold
    conv = names(plot(tmp_path / "conv", "unused", "cpu"))
    assert conv == {f"figures/{n}" for n in common | {"conv_filters.png"}}
    # the standard AE, trained without noise, gets a denoising figure when asked for one
    asked = names(plot(tmp_path / "std", "unused", "cpu", noise=("gaussian", 0.5)))
    assert "figures/denoising.png" in asked
