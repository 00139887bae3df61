"""The variational and contractive AEs, and the one place for a model's own loss term (aerun.objective)."""

from __future__ import annotations

import csv
import math
import json

import pytest
import torch
from torch.distributions import Normal, kl_divergence as torch_kl

from aerun import checkpoint as ckpt
from aerun.evaluate import evaluate
from aerun.models import build
from aerun.objective import Objective, kl_divergence, loss_terms, reparameterise
from aerun.plot import plot
from aerun.train import EPOCH_LOG, ITER_LOG, mean_mse, train

from conftest import SMOKE


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_vae_shapes_and_its_code_is_the_posterior_mean():
    torch.manual_seed(0)
    model = build("vae", code=7, encoder=(32,)).eval()
    x = torch.rand(5, 1, 28, 28)
    mean, logvar = model.posterior(x)
    assert mean.shape == logvar.shape == (5, 7)
    recon, code = model(x)
    assert recon.shape == x.shape and code.shape == (5, 7)
    assert torch.equal(code, mean) and torch.equal(model.encode(x), mean)
    assert torch.equal(recon, torch.sigmoid(model.decode_logits(mean)))
    assert model.code_dim == 7


def test_kl_term_matches_the_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mean, logvar = torch.randn(6, 4), torch.randn(6, 4)
    expected = torch_kl(Normal(mean, (0.5 * logvar).exp()), Normal(torch.zeros(4), torch.ones(4))).sum(1)
    assert torch.allclose(kl_divergence(mean, logvar), expected, atol=1e-6)
    # a known Gaussian: N(1, 1) against N(0, 1) is 0.5 nats per dimension; N(0, 1) against itself is 0
    assert kl_divergence(torch.ones(1, 3), torch.zeros(1, 3)).item() == pytest.approx(1.5)
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max().item() == 0


def test_reparameterised_samples_have_the_posterior_moments_and_follow_the_generator():
    mean, logvar = torch.full((20000, 2), 3.0), torch.full((20000, 2), 2 * torch.tensor(0.5).log().item())
    z = reparameterise(mean, logvar, torch.Generator().manual_seed(1))
    assert z.mean().item() == pytest.approx(3.0, abs=0.02) and z.std().item() == pytest.approx(0.5, abs=0.01)
    again = reparameterise(mean, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(z, again)


def test_vae_loss_is_the_negative_log_likelihood_plus_beta_times_kl():
    torch.manual_seed(0)
    model = build("vae", code=3, encoder=(16,))
    x = torch.rand(4, 1, 28, 28).round()
    objective = Objective({"kl": 2.0})
    reconstruction, terms = loss_terms(model, x, x, objective, torch.Generator().manual_seed(0))
    mean, logvar = model.posterior(x)
    z = reparameterise(mean, logvar, torch.Generator().manual_seed(0))
    bce = torch.nn.functional.binary_cross_entropy(model.decode(z), x, reduction="sum") / 4
    assert reconstruction.item() == pytest.approx(bce.item(), rel=1e-4)
    assert list(terms) == ["kl"] and terms["kl"].item() == pytest.approx(2 * kl_divergence(mean, logvar).mean().item(), rel=1e-5)
    assert objective.names == ("kl",)


def test_gaussian_likelihood_is_the_gaussian_negative_log_density():
    model = build("vae", code=2, encoder=(8,), reconstruction="gaussian", sigma=0.2)
    logits, x = torch.randn(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    expected = -Normal(torch.sigmoid(logits), 0.2).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.negative_log_likelihood(logits, x), expected, rtol=1e-5)


@pytest.mark.parametrize("hidden", ["sigmoid", "relu"])
def test_contractive_penalty_matches_autograds_jacobian(hidden):
    torch.manual_seed(0)
    model = build("mlp", code=6, encoder=() if hidden == "sigmoid" else (12,), code_activation=hidden)
    x = torch.rand(3, 1, 28, 28)
    by_hand = []
    for image in x:
        jac = torch.autograd.functional.jacobian(lambda v: model.encode(v.view(1, 1, 28, 28)).flatten(), image)
        by_hand.append(jac.pow(2).sum().item())
    assert model.jacobian_norm(x).tolist() == pytest.approx(by_hand, rel=1e-4)
    # differentiable in the weights: training can lower it
    model.jacobian_norm(x).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_each_regulariser_is_one_logged_column_and_the_penalty_their_sum(make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=contractive", "model.hidden=16", "sparsity=1e-4", "contractive=1e-3"]), tmp_path)
    steps = rows(tmp_path / ITER_LOG)
    assert list(steps[0]) == ["step", "epoch", "loss", "penalty", "l1", "contractive"]
    for row in steps:
        assert float(row["penalty"]) == pytest.approx(float(row["l1"]) + float(row["contractive"]), rel=1e-4)
        assert float(row["l1"]) > 0 and float(row["contractive"]) > 0
    epochs = rows(tmp_path / EPOCH_LOG)
    assert {"train_l1", "train_contractive"} <= set(epochs[0])


def test_vae_trains_to_a_lower_loss_on_the_synthetic_set(make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=vae", "model.encoder=[64]", "model.decoder=[64]", "epochs=4"]), tmp_path)
    steps = rows(tmp_path / ITER_LOG)
    assert list(steps[0])[-1] == "kl"
    first = float(steps[0]["loss"]) + float(steps[0]["kl"])
    epochs = rows(tmp_path / EPOCH_LOG)
    last = float(epochs[-1]["train_loss"]) + float(epochs[-1]["train_kl"])
    assert last < 0.9 * first, (first, last)  # the negative ELBO per image, in nats


def test_vae_resumes_to_the_same_weights_as_a_straight_run(straight_and_resumed):
    a, b = straight_and_resumed([*SMOKE, "model=vae", "model.encoder=[32]", "model.decoder=[32]"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # the sampled codes came from the epoch's generator


def test_vae_checkpoint_round_trips_with_weights_only_and_its_eval_has_nats(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=vae", "model.encoder=[32]", "model.decoder=[32]", "model.beta=0.5"])
    train(cfg, tmp_path)
    raw = torch.load(tmp_path / ckpt.CHECKPOINT, map_location="cpu", weights_only=True)
    assert raw["model"]["builder"] == "vae" and raw["model"]["args"]["reconstruction"] == "bernoulli"
    model = ckpt.rebuild(raw)
    from aerun.data import load_split

    test = load_split(cfg.dataset, "test", "unused", "cpu")
    last = rows(tmp_path / EPOCH_LOG)[-1]
    assert mean_mse(model, test.images) == pytest.approx(float(last["test_loss"]), rel=1e-5)
    v = evaluate(tmp_path, "unused", "cpu")["model"]["variational"]
    # the same terms by hand: torch.distributions' KL, the Bernoulli log-likelihood written out, at one z per
    # image drawn from a CPU generator seeded with eval's noise_seed (0)
    x = test.images.double()
    with torch.no_grad():
        mean, logvar = model.posterior(test.images)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
        p = torch.sigmoid(model.decoder(z).double()).view_as(x)
    kl = torch_kl(Normal(mean.double(), (0.5 * logvar.double()).exp()), Normal(0.0, 1.0)).sum(1)
    nll = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert v["unit"] == "nats per image"
    assert v["kl"] == pytest.approx(kl.mean().item(), rel=1e-4)
    assert v["reconstruction_nll"] == pytest.approx(nll.mean().item(), rel=1e-4)
    assert v["negative_elbo"] == pytest.approx((kl + nll).mean().item(), rel=1e-4)
    assert v["active_units"] == int((mean.var(0) > 0.01).sum()) and 0 < v["active_units"]
    assert "negative ELBO" in (tmp_path / "eval.md").read_text()
    assert json.loads((tmp_path / "eval.json").read_text())["model"]["variational"] == v


def test_prior_samples_and_the_latent_map_are_drawn_where_they_mean_something(make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=vae2d", "model.encoder=[32]", "model.decoder=[32]", "epochs=1"]),
          tmp_path / "vae2d")
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=2", "epochs=1"]), tmp_path / "plain2d")
    written = {p.relative_to(tmp_path).as_posix() for p in plot(tmp_path / "vae2d", "unused", "cpu")}
    assert {"vae2d/figures/samples.png", "vae2d/figures/latent_map.png"} <= written
    written = {p.relative_to(tmp_path).as_posix() for p in plot(tmp_path / "plain2d", "unused", "cpu")}
    assert "plain2d/figures/latent_map.png" in written  # any 2-d code is drawn whole
    assert "plain2d/figures/samples.png" not in written  # a plain AE has no prior to sample


def test_sparse_preset_keeps_its_penalty_as_typed(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=sparse", "model.hidden=49", "sparsity=4e-6"])
    assert Objective.of(cfg, build("mlp", code=49)).weights == {"l1": 4e-6}
    train(cfg, tmp_path)
    steps = rows(tmp_path / ITER_LOG)
    assert list(steps[0]) == ["step", "epoch", "loss", "penalty", "l1"]
    assert float(steps[0]["l1"]) > 0


def test_the_importance_weighted_nll_of_a_decoder_that_says_one_half_everywhere_is_784_ln_2():
    model = build("vae", code=3, encoder=(8,))
    with torch.no_grad():  # q(z|x) = N(0, I), the prior itself; every pixel's logit 0: p = 0.5 whatever z is
        for layer in (model.mean, model.logvar, model.decoder[-2]):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.rand(5, 1, 28, 28)
    x[:2] = x[:2].round()  # binary or grey, a pixel's Bernoulli NLL at p = 0.5 is ln 2
    for samples in (1, 7, 300):
        nll = model.importance_weighted_nll(x, samples, seed=0)
        assert nll.tolist() == pytest.approx([784 * math.log(2)] * 5, rel=1e-6)  # float32 sums of 784 terms


def test_the_importance_weighted_bound_falls_with_k_and_stays_below_the_elbo(make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=vae", "model.encoder=[64]", "model.decoder=[64]", "model.code=4",
                             "dataset.binarize=dynamic", "epochs=3"]), tmp_path)
    model = ckpt.rebuild(ckpt.load(tmp_path / ckpt.CHECKPOINT))
    from aerun.data import load_split

    test = load_split({"name": "synthetic", "n_test": 256, "seed": 0, "binarize": "static"}, "test", "", "cpu").images
    assert set(test.unique().tolist()) == {0.0, 1.0}
    bound = {k: model.importance_weighted_nll(test, k, seed=3).mean().item() for k in (1, 10, 100)}
    elbo = model.measures(test, 3)["negative_elbo"]
    assert bound[1] == pytest.approx(elbo, rel=0.02)  # one sample: the ELBO's own estimate
    assert bound[100] < bound[10] < bound[1] and bound[100] < elbo  # tighter with more samples, below the ELBO
    v = evaluate(tmp_path, "unused", "cpu", iw_samples=50)["model"]["variational"]
    assert v["binary"] and "bernoulli_floor" not in v and v["iw_samples"] == 50 and v["nll_iw"] < v["negative_elbo"]
    assert "Importance-weighted NLL bound with 50 samples" in (tmp_path / "eval.md").read_text()


def test_binarised_splits_and_the_floor_of_the_bernoulli_on_grey_pixels(make_cfg, tmp_path):
    from aerun.data import load_split

    grey = {"name": "synthetic", "n_train": 1024, "n_test": 256, "seed": 0}
    images = load_split(grey, "train", "", "cpu").images
    static = load_split({**grey, "binarize": "static"}, "train", "", "cpu").images
    assert set(static.unique().tolist()) == {0.0, 1.0} and torch.equal(
        static, load_split({**grey, "binarize": "static"}, "train", "", "cpu").images)  # one draw, kept
    assert static.mean().item() == pytest.approx(images.mean().item(), abs=0.005)  # grey levels as probabilities
    assert torch.equal(load_split({**grey, "binarize": "dynamic"}, "train", "", "cpu").images, images)
    train(make_cfg("train", [*SMOKE, "model=vae", "model.encoder=[32]", "model.decoder=[32]", "epochs=1"]), tmp_path)
    v = evaluate(tmp_path, "unused", "cpu")["model"]["variational"]
    test = load_split(grey, "test", "", "cpu").images.flatten(1).double().clamp(1e-12, 1 - 1e-12)
    entropy = -(test * test.log() + (1 - test) * (1 - test).log()).sum(1).mean().item()
    assert not v["binary"] and v["bernoulli_floor"] == pytest.approx(entropy, rel=1e-6)
    assert v["reconstruction_nll"] > v["bernoulli_floor"]  # no decoder gets under the pixels' own entropy
    assert "not a likelihood" in (tmp_path / "eval.md").read_text()
