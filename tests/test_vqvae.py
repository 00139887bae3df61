"""model=vqvae: the vector-quantised AE (van den Oord et al., 2017), its codebook, its terms, its dead codes."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from aerun.evaluate import evaluate
from aerun.models import build
from aerun.objective import Objective, loss_terms
from aerun.plot import plot
from aerun.train import ITER_LOG, train

from conftest import SMOKE


def small(**kwargs):
    torch.manual_seed(0)
    return build("vqvae", channels=(4, 8), embedding_dim=3, codebook_size=6, **kwargs)


def test_each_vector_is_replaced_by_its_nearest_codebook_entry():
    model = small().eval()
    x = torch.rand(5, 1, 28, 28)
    rows = model.vectors(model.encoder(x))  # (5 * 49, 3)
    by_hand = torch.cdist(rows, model.codebook).argmin(1)
    assert torch.equal(model.nearest(rows), by_hand)
    code = model.encode(x).view(5, 3, 7, 7).permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(code, model.codebook[by_hand])  # the code is made of entries
    assert model.code_dim == 3 * 7 * 7
    assert torch.allclose(model(x)[0], model.decode(model.encode(x)), atol=1e-6)  # an entry decodes as itself


def test_the_terms_and_the_straight_through_gradient():
    model = small().train()
    x = torch.rand(4, 1, 28, 28)
    reconstruction, terms = loss_terms(model, x, x, Objective({"codebook": 1.0, "commitment": 0.25}))
    rows = model.vectors(model.encoder(x))
    chosen = model.codebook[model.nearest(rows)]
    distance = (chosen - rows).pow(2).mean().item()
    assert terms["codebook"].item() == pytest.approx(distance, rel=1e-5)
    assert terms["commitment"].item() == pytest.approx(0.25 * distance, rel=1e-5)
    reconstruction.backward(retain_graph=True)
    assert model.codebook.grad is None or model.codebook.grad.abs().sum() == 0  # no gradient through the lookup...
    assert model.encoder[0].weight.grad.abs().sum() > 0  # ...but the decoder's reaches the encoder (straight through)
    model.zero_grad()
    terms["codebook"].backward()
    used = model.nearest(rows).unique()
    moved = model.codebook.grad.abs().sum(1) > 0
    assert set(moved.nonzero().flatten().tolist()) == set(used.tolist())  # only the chosen entries move
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())


def test_the_codebook_starts_at_encoder_outputs_and_dead_entries_are_restarted():
    model = small(restart_every=3).train()
    images = torch.rand(64, 1, 28, 28)
    model.start_from_data(images)
    with torch.no_grad():
        rows = model.vectors(model.encoder(images))
    assert all((rows - entry).abs().sum(1).min() == 0 for entry in model.codebook)  # each entry is a data point

    assert torch.sigmoid(model.decoder[-2].bias).item() == pytest.approx(images.mean().item(), rel=1e-5)
    twin = small(quantize=False)
    twin.start_from_data(images)  # the twin's output starts at the mean pixel too; it has no codebook to draw
    assert torch.sigmoid(twin.decoder[-2].bias).item() == pytest.approx(images.mean().item(), rel=1e-5)

    x = torch.rand(8, 1, 28, 28)
    model.usage.fill_(5.0)
    model.usage[[1, 4]] = 0.0  # two entries no vector chose for a long time
    model.steps.fill_(2)
    before = model.codebook.detach().clone()
    loss_terms(model, x, x, Objective.defaults(model), torch.Generator().manual_seed(7))
    batch = model.vectors(model.encoder(x)).detach()
    for dead in (1, 4):
        assert not torch.equal(model.codebook[dead], before[dead])
        assert (batch - model.codebook[dead]).abs().sum(1).min() < 1e-6  # moved onto a vector of this batch
    assert torch.equal(model.codebook[[0, 2, 3, 5]], before[[0, 2, 3, 5]])
    assert int(model.steps) == 3


def test_perplexity_and_used_codes_are_counted_over_every_position():
    model = small().eval()
    images = torch.rand(10, 1, 28, 28)
    counts = model.code_usage(images)
    assert counts.sum() == 10 * 49
    p = counts.double() / counts.sum()
    expected = math.exp(-(p[p > 0] * p[p > 0].log()).sum().item())
    vq = model.measures(images, 0)
    assert vq == {"perplexity": pytest.approx(expected), "used_codes": int((counts > 0).sum()), "codebook_size": 6,
                  "positions": 49}
    with torch.no_grad():
        model.codebook[1:] = 1e6  # every vector nearest entry 0: one entry used, perplexity 1
    assert model.measures(images, 0)["used_codes"] == 1
    assert model.measures(images, 0)["perplexity"] == pytest.approx(1.0)


def test_vqvae_trains_resumes_exactly_and_reports_its_codebook(straight_and_resumed, tmp_path):
    a, b = straight_and_resumed([*SMOKE, "model=vqvae", "model.codebook_size=16", "model.restart_every=5"])
    assert int(a["steps"]) == 32 and all(torch.equal(a[k], b[k]) for k in a)  # restarts included
    with open(tmp_path / "straight" / ITER_LOG, newline="") as f:
        steps = list(csv.DictReader(f))
    assert list(steps[0]) == ["step", "epoch", "loss", "penalty", "codebook", "commitment"]
    assert all(float(r["commitment"]) == pytest.approx(0.25 * float(r["codebook"]), rel=1e-3) for r in steps)
    vq = evaluate(tmp_path / "straight", "unused", "cpu")["model"]["vq"]
    assert vq["codebook_size"] == 16 and 1 <= vq["used_codes"] <= 16 and 1 <= vq["perplexity"] <= vq["used_codes"]
    assert "entries used on the test split" in (tmp_path / "straight" / "eval.md").read_text()
    assert "code_usage.png" in {p.name for p in plot(tmp_path / "straight", "unused", "cpu")}


def test_the_twin_is_the_same_network_without_its_codebook(make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=vqvae", "model.quantize=false", "epochs=1"]), tmp_path)
    with open(tmp_path / ITER_LOG, newline="") as f:
        assert list(next(csv.DictReader(f))) == ["step", "epoch", "loss", "penalty"]
    result = json.loads(json.dumps(evaluate(tmp_path, "unused", "cpu")))
    assert "vq" not in result["model"] and result["model"]["code_dim"] == 16 * 7 * 7
    twin, quantised = build("vqvae", quantize=False), build("vqvae")
    assert [p.shape for p in twin.parameters()] == [p.shape for p in quantised.parameters()]
