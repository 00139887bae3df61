"""The arithmetic behind `aerun bench` and the learning-rate schedule (no timings asserted)."""

from __future__ import annotations

import math

import pytest

from aerun.bench import summarise, table, training_flops
from aerun.models import build
from aerun.train import learning_rate


def test_training_flops_counts_forward_and_both_gradients():
    model = build("mlp", code=30, encoder=(512, 256, 128), decoder=(128, 256))
    layers = [(784, 512), (512, 256), (256, 128), (128, 30), (30, 128), (128, 256), (256, 784)]
    # the first layer needs no gradient with respect to the images
    per_image = 4 * 784 * 512 + sum(6 * a * b for a, b in layers[1:])
    assert training_flops(model, 60000) == per_image * 60000


def test_training_flops_of_a_conv_ae_are_its_convolutions_forward_and_backward():
    model = build("conv", channels=(8,), upsample="unpool")  # conv 1->8 at 28x28, pool, unpool, conv 8->8, out 8->1
    forward = [2 * 9 * 1 * 8 * 784, 2 * 9 * 8 * 8 * 784, 2 * 9 * 8 * 1 * 784]
    # backward: weight gradients of all three, input gradients of all but the first
    assert training_flops(model, 10) == (sum(forward) * 2 + sum(forward[1:])) * 10


def test_training_flops_ignores_fitted_models():
    assert training_flops(build("pca", k=5), 100) == 0


def test_table_reports_every_preset_with_its_ratios():
    result = {"device": "cuda", "device_name": "H100", "threads": 2, "matmul_gflops": 100.0,
              "tf32_matmul_gflops": 400.0, "matmul_gflops_probes": [90.0, 100.0], "repeats": 3, "presets": {
        "deep": {"reference_s": 12.0, "aerun_s": 3.0, "bound_s": 2.4, "speedup": 4.0, "fraction_of_bound": 0.8,
                 "gflop_per_epoch": 62.0, "bound_precision": "float32"},
        "conv_unpool": {"reference_s": 5.0, "aerun_s": 2.0, "bound_s": 1.1, "speedup": 2.5,
                        "fraction_of_bound": 0.55, "gflop_per_epoch": 440.0, "bound_precision": "tf32"}}}
    text = table(result)
    assert "deep" in text and "4.00" in text and "0.80" in text and "conv_unpool (tf32)" in text
    assert "H100" in text and "float32 matmul 100.0 GFLOP/s, TF32 400.0 (best of 2 probes)" in text


def test_summarise_takes_medians_and_the_bound_at_the_given_throughput():
    epochs = {"reference": [12.0, 10.0, 30.0], "aerun": [2.0, 9.0, 2.5]}
    row = summarise(epochs, flops=200e9, gflops=100.0)
    assert (row["reference_s"], row["aerun_s"]) == (12.0, 2.5)
    assert row["bound_s"] == pytest.approx(2.0) and row["gflop_per_epoch"] == pytest.approx(200.0)
    assert row["speedup"] == pytest.approx(4.8)
    assert row["fraction_of_bound"] == pytest.approx(0.8) and row["bound_precision"] == "float32"
    assert row["aerun_epochs_s"] == [2.0, 9.0, 2.5]


def test_cosine_schedule_starts_at_the_base_rate_and_decays_monotonically():
    rates = [learning_rate(1e-3, "cosine", e, 10) for e in range(1, 11)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0
    assert rates[5] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert learning_rate(1e-3, "constant", 7, 10) == 1e-3
