"""The arithmetic behind `aerun bench` and the learning-rate schedule (no timings asserted)."""

from __future__ import annotations

import math

import pytest

from aerun.bench import table, training_flops
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
    result = {"device": "cpu", "threads": 2, "matmul_gflops": 100.0, "repeats": 3, "presets": {
        "deep": {"reference_s": 12.0, "aerun_s": 3.0, "bound_s": 2.4, "speedup": 4.0, "fraction_of_bound": 0.8}}}
    text = table(result)
    assert "deep" in text and "4.00" in text and "0.80" in text and "100.0 GFLOP/s" in text


def test_cosine_schedule_starts_at_the_base_rate_and_decays_monotonically():
    rates = [learning_rate(1e-3, "cosine", e, 10) for e in range(1, 11)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0
    assert rates[5] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert learning_rate(1e-3, "constant", 7, 10) == 1e-3
