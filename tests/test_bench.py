"""The arithmetic behind `aerun bench` and the learning-rate schedule (no timings asserted)."""

from __future__ import annotations

import math

import pytest

import torch

from aerun.bench import floor_epoch, floor_steps, summarise, table, training_flops
from aerun.models import build
from aerun.train import learning_rate


def test_training_flops_counts_forward_and_both_gradients():
    model = build("mlp", code=30, encoder=(512, 256, 128), decoder=(128, 256))
    layers = [(784, 512), (512, 256), (256, 128), (128, 30), (30, 128), (128, 256), (256, 784)]
    # the first layer needs no gradient with respect to the images
    per_image = 4 * 784 * 512 + sum(6 * a * b for a, b in layers[1:])
    assert training_flops(model, 60000) == per_image * 60000


def test_training_flops_ignores_non_linear_models():
    assert training_flops(build("pca", k=5), 100) == 0


def test_table_reports_every_preset_with_its_ratios():
    result = {"device": "cpu", "threads": 2, "matmul_gflops": 100.0, "matmul_gflops_probes": [90.0, 100.0],
              "repeats": 3, "presets": {
        "deep": {"reference_s": 12.0, "aerun_s": 3.0, "floor_s": 2.7, "bound_s": 2.4, "speedup": 4.0,
                 "fraction_of_bound": 0.8}}}
    text = table(result)
    assert "deep" in text and "4.00" in text and "0.80" in text and "2.70" in text
    assert "100.0 GFLOP/s (best of 2 probes)" in text


def test_summarise_takes_medians_and_the_bound_at_the_given_throughput():
    epochs = {"reference": [12.0, 10.0, 30.0], "aerun": [2.0, 9.0, 2.5], "floor": [2.0, 1.9, 2.1]}
    row = summarise(epochs, flops=200e9, gflops=100.0)
    assert (row["reference_s"], row["aerun_s"], row["floor_s"]) == (12.0, 2.5, 2.0)
    assert row["bound_s"] == pytest.approx(2.0)
    assert row["speedup"] == pytest.approx(4.8)
    assert row["fraction_of_bound"] == pytest.approx(0.8) and row["floor_of_bound"] == pytest.approx(1.0)
    assert row["aerun_epochs_s"] == [2.0, 9.0, 2.5]


def test_floor_steps_are_the_epochs_products_in_the_training_layouts():
    model = build("mlp", code=3, encoder=(16,), decoder=(8,))
    steps = floor_steps(model, n_images=10, batch_size=4, device=torch.device("cpu"))
    assert len(steps) == 3  # 4 + 4 + the remainder 2
    assert [a.shape[0] for a, _, _ in steps[-1][:1]] == [2]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for operands in steps for a, b, _ in operands)
    assert flops == training_flops(model, 10)
    first = model.encoder[0].weight
    a, b, out = steps[0][0]  # the first layer's forward: images times its weight, transposed
    assert a.shape == (4, 784) and b.data_ptr() == first.data_ptr() and b.stride() == (1, 784)
    assert out.shape == (4, 16)


def test_floor_epoch_steps_the_optimiser_without_moving_the_weights():
    model = build("mlp", code=3, encoder=(16,))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    assert floor_epoch(model, optimizer, 10, 4, torch.device("cpu")) > 0
    assert all(optimizer.state[p]["step"] == 3 for p in model.parameters())
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_cosine_schedule_starts_at_the_base_rate_and_decays_monotonically():
    rates = [learning_rate(1e-3, "cosine", e, 10) for e in range(1, 11)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0
    assert rates[5] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert learning_rate(1e-3, "constant", 7, 10) == 1e-3
