"""`aerun eval samples=N`: FID, precision and recall of a model's samples in a cached classifier's features, checked
against independent implementations, and the samplers (a family's prior, a Gaussian mixture on its codes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aerun import generation
from aerun.errors import UserError
from aerun.evaluate import evaluate
from aerun.train import train

from conftest import SMOKE


def fid_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """|m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), with scipy's matrix square root."""
    s1, s2 = np.cov(x.T), np.cov(y.T)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_fid_is_the_frechet_distance_of_the_two_gaussians():
    gen = np.random.default_rng(0)
    x = gen.normal(size=(600, 16))
    y = gen.normal(size=(500, 16)) @ gen.normal(size=(16, 16)) * 0.5 + 1.0
    assert generation.fid(torch.tensor(x), torch.tensor(y)) == pytest.approx(fid_by_hand(x, y), rel=1e-6)
    assert generation.fid(torch.tensor(x), torch.tensor(x)) == pytest.approx(0.0, abs=1e-6)


def precision_recall_by_hand(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al.'s definition, written out with full distance matrices."""
    def radii(points):
        d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(points, centres, r):
        d = np.sqrt(((points[:, None] - centres[None]) ** 2).sum(-1))
        return float((d <= r[None]).any(1).mean())

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 60), st.integers(5, 60), st.integers(1, 4), st.floats(0, 3), st.integers(0, 2**16))
def test_precision_and_recall_are_kynkaanniemis(n_real, n_fake, k, shift, seed):
    gen = np.random.default_rng(seed)
    real, fake = gen.normal(size=(n_real, 3)), gen.normal(size=(n_fake, 3)) + shift
    if min(n_real, n_fake) <= k:
        return
    found = generation.precision_recall(torch.tensor(real), torch.tensor(fake), k)
    assert found == pytest.approx(precision_recall_by_hand(real, fake, k), abs=1e-12)


def test_precision_and_recall_tell_coverage_from_realism():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    assert generation.precision_recall(real, real.clone()) == (1.0, 1.0)
    collapsed = real[:2000] * 0.05  # every sample near the middle: realistic, covering little
    precision, recall = generation.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2
    far = real + 100.0
    assert generation.precision_recall(real, far) == (0.0, 0.0)


def test_the_mixture_is_fitted_as_scikit_learns_and_samples_its_own_moments():
    from sklearn.mixture import GaussianMixture

    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], dtype=torch.float64)
    x = torch.cat([centres[i] + torch.randn(400, 2, generator=gen, dtype=torch.float64) * (0.5 + 0.3 * i)
                   for i in range(3)])
    mixture = generation.fit_mixture(x, 3, torch.Generator().manual_seed(1), tol=1e-9, iterations=500)
    reference = GaussianMixture(3, covariance_type="full", tol=1e-9, max_iter=500, random_state=0).fit(x.numpy())
    assert float(mixture.log_likelihood(x).mean()) == pytest.approx(reference.score(x.numpy()), rel=1e-6)
    assert np.sort(mixture.means.numpy(), axis=0) == pytest.approx(np.sort(reference.means_, axis=0), abs=1e-5)
    drawn = mixture.sample(60000, torch.Generator().manual_seed(2))
    assert drawn.mean(0).tolist() == pytest.approx(x.mean(0).tolist(), abs=0.05)
    assert torch.cov(drawn.T).flatten().tolist() == pytest.approx(torch.cov(x.T).flatten().tolist(), abs=0.3)


TINY_VAE = ["model=vae", "model.encoder=[32]", "model.decoder=[32]"]


def test_eval_samples_measures_a_vaes_prior_and_any_decoders_mixture(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(generation, "_CLASSIFIERS", {})
    train(make_cfg("train", [*SMOKE, *TINY_VAE]), tmp_path / "vae")
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16"]), tmp_path / "shallow")
    vae = evaluate(tmp_path / "vae", "unused", "cpu", samples=200)["generation"]
    shallow = evaluate(tmp_path / "shallow", "unused", "cpu", samples=200)["generation"]
    assert (vae["sampler"], shallow["sampler"]) == ("prior", "gmm") and shallow["components"] == 10
    for g in (vae, shallow):
        assert g["n"] == 200 and g["k"] == 3 and g["features"]["test_accuracy"] > 0.5
        assert 0 <= g["precision"] <= 1 and 0 <= g["recall"] <= 1
        assert g["fid_real"] < g["fid"]  # two epochs of training are far from the training images' floor
    # the floor is the data's own: the same for both runs of the same data set
    assert (vae["fid_real"], vae["precision_real"], vae["recall_real"]) == (
        shallow["fid_real"], shallow["precision_real"], shallow["recall_real"])
    saved = json.loads((tmp_path / "vae" / "eval.json").read_text())["generation"]
    assert saved == vae and "not the Inception FID" in (tmp_path / "vae" / "eval.md").read_text()
    assert (tmp_path / "vae" / "figures" / "samples_prior.png").is_file()
    assert (tmp_path / "shallow" / "figures" / "samples_gmm.png").is_file()
    again = evaluate(tmp_path / "shallow", "unused", "cpu", samples=200)["generation"]
    assert again == shallow  # the seed fixes the mixture, the samples and the images compared


@pytest.mark.parametrize("overrides, sampler, n, message", [
    (["model=shallow", "model.hidden=16"], "prior", 100, "sampler=prior draws codes from a family's prior, and "
                                                         "model=shallow has none; use sampler=gmm"),
    (["model=conv_unpool", "model.channels=[2,2,2]"], "gmm", 100, "model=conv_unpool's decoder does not take any code"),
    (TINY_VAE, "prior", 100000, "samples=100000 is not allowed; it must be more than 3 and at most the"),
])
def test_a_sampler_a_family_cannot_use_is_one_line(make_cfg, tmp_path, overrides, sampler, n, message):
    train(make_cfg("train", [*SMOKE, *overrides, "epochs=1"]), tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("=", "=")):
        evaluate(tmp_path, "unused", "cpu", samples=n, sampler=sampler)


def test_the_classifier_is_trained_once_per_data_and_read_back(tmp_path, monkeypatch):
    gen = np.random.default_rng(0)
    x = (gen.random((300, 12, 12)) * 255).astype(np.uint8)
    y = gen.integers(0, 3, 300)
    x[y == 1, :6] = 255  # three classes a classifier can tell apart
    x[y == 2, 6:] = 0
    np.savez(tmp_path / "a.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    dataset = {"name": "npz", "path": str(tmp_path / "a.npz")}
    monkeypatch.setattr(generation, "_CLASSIFIERS", {})
    model, info = generation.classifier(dataset, tmp_path, "cpu")
    written = list((tmp_path / "classifiers").glob("npz-*.pt"))
    assert [p.name for p in written] == [info["file"]] and info["test_accuracy"] > 0.6  # chance: 1/3
    monkeypatch.setattr(generation, "_CLASSIFIERS", {})

    def refuse(*args):
        raise AssertionError("trained again")

    monkeypatch.setattr(generation, "train_classifier", refuse)
    again, info_again = generation.classifier(dataset, tmp_path, "cpu")
    assert info_again == info
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    np.savez(tmp_path / "b.npz", x_train=x[:199], y_train=y[:199], x_test=x[200:], y_test=y[200:])
    with pytest.raises(AssertionError, match="trained again"):  # other images: another classifier
        generation.classifier({**dataset, "path": str(tmp_path / "b.npz")}, tmp_path, "cpu")


def test_eval_samples_is_refused_in_one_line_before_any_work(make_cfg, tmp_path, refused):
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1"]), tmp_path)
    for args, message in ((["samples=-1"], "samples=-1 is not allowed"),
                          (["samples=10", "sampler=vine"], "sampler='vine' is not allowed; allowed: auto, prior, gmm"),
                          (["samples=10", "noise=gaussian"], "samples= compares samples with clean test images")):
        err = refused("eval", f"run={tmp_path}", *args)
        assert message in err, err
    assert not (tmp_path / "eval.json").exists()


def test_a_one_class_runs_samples_meet_its_own_class(make_cfg, tmp_path, monkeypatch):
    from aerun.data import load_split

    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1", "dataset.classes=[1]"]), tmp_path)
    ones = len(load_split({"name": "synthetic", "n_train": 1024, "n_test": 256, "seed": 0, "classes": [1]}, "test",
                          "unused", "cpu"))
    assert 3 < ones < 256
    with pytest.raises(UserError, match=f"at most the {ones} test images"):
        evaluate(tmp_path, "unused", "cpu", samples=ones + 1)
    assert evaluate(tmp_path, "unused", "cpu", samples=ones)["generation"]["n"] == ones
