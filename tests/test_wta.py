"""model=wta: the fully connected winner-take-all autoencoder (Makhzani & Frey, 2015), its lifetime sparsity."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aerun.errors import UserError
from aerun.evaluate import evaluate
from aerun.models import build

from conftest import SMOKE


def test_in_training_each_unit_keeps_its_largest_share_of_the_batch():
    torch.manual_seed(0)
    model = build("wta", code=12, sparsity_rate=0.25).train()
    x = torch.rand(20, 1, 28, 28)
    h = model.features(x)
    code = model.encode(x)
    k = math.ceil(0.25 * 20)  # 5 of 20 images per unit
    for unit in range(12):
        kept = code[:, unit].nonzero().flatten().tolist()
        positive = (h[:, unit] > 0).sum().item()
        assert len(kept) == min(k, positive)
        assert set(kept) == set(h[:, unit].topk(len(kept)).indices.tolist())  # the largest, by value
        assert torch.equal(code[kept, unit], h[kept, unit])  # kept as they are, not rescaled


def test_only_the_kept_activations_pass_a_gradient():
    torch.manual_seed(1)
    model = build("wta", code=8, sparsity_rate=0.1).train()
    x = torch.rand(30, 1, 28, 28)
    h = model.features(x)
    h.retain_grad()
    model.lifetime_sparse(h).sum().backward()
    assert torch.equal(h.grad != 0, model.lifetime_sparse(h.detach()) != 0)


def test_at_test_time_the_code_is_cut_at_the_running_threshold_and_the_probe_reads_every_activation():
    torch.manual_seed(2)
    model = build("wta", code=6, sparsity_rate=0.2).train()
    a, b = torch.rand(10, 1, 28, 28), torch.rand(10, 1, 28, 28)
    cuts = [model.features(x).topk(2, dim=0).values[-1].detach() for x in (a, b)]  # k = ceil(0.2 * 10) = 2
    model.encode(a), model.encode(b)
    assert torch.allclose(model.threshold, 0.9 * cuts[0] + 0.1 * cuts[1])  # the first batch's cut, then a running mean
    model.eval()
    x = torch.rand(7, 1, 28, 28)
    h = model.features(x)
    assert torch.equal(model.encode(x), h * (h >= model.threshold))  # any batch size, no batch statistics
    assert torch.equal(model.encode(x[:1]), model.encode(x)[:1])
    assert (h > 0).float().mean() > (model.encode(x) > 0).float().mean()  # the probe's features are denser


def test_rate_one_is_the_plain_relu_autoencoder_with_a_linear_decoder():
    torch.manual_seed(3)
    model = build("wta", code=10, sparsity_rate=1.0).train()
    x = torch.rand(9, 1, 28, 28)
    assert torch.equal(model.encode(x), model.features(x))
    with pytest.raises(UserError, match=r"model.sparsity_rate=0 is not allowed; .* in \(0, 1\]"):
        build("wta", sparsity_rate=0)
    with pytest.raises(UserError, match="model.sparsity_rate=1.5"):
        build("wta", sparsity_rate=1.5)


def test_wta_trains_resumes_exactly_and_reports_its_probe(straight_and_resumed, tmp_path):
    a, b = straight_and_resumed([*SMOKE, "model=wta", "model.code=64"])
    assert set(a) >= {"threshold", "batches"} and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["batches"]) == 2 * 16  # every training step moved the threshold
    result = evaluate(tmp_path / "straight", "unused", "cpu")
    assert result["model"]["builder"] == "wta" and result["model"]["code_dim"] == 64
    epochs = (tmp_path / "straight" / "loss_epoch.csv").read_text().splitlines()
    assert float(epochs[-1].split(",")[4]) < float(epochs[1].split(",")[4])  # the test MSE fell
    assert json.loads((tmp_path / "straight" / "eval.json").read_text())["model"]["probe_accuracy"] > 0.5
