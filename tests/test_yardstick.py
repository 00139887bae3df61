"""Part 5's yardstick (aerun.yardstick): its non-digit controls are what they say, and on data it was never
calibrated on it accepts the data set's own images and rejects noise."""

from __future__ import annotations

import math

import pytest
import torch

from aerun import yardstick
from aerun.yardstick import Yardstick, controls, shapes

SYNTHETIC = {"name": "synthetic", "n_train": 1024, "n_test": 256, "seed": 0}


@pytest.mark.parametrize("kind, low, high", [("discs", math.pi * 3 ** 2 - 4, math.pi * 9 ** 2 + 4),
                                             ("bars", 2 * 10 - 2, 5 * 24 + 8), ("noise", 300, 480)])
def test_each_control_shape_is_what_its_name_says(kind, low, high):
    images = shapes(kind, 300, (1, 28, 28), 0)
    ink = images.flatten(1).sum(1)
    assert images.shape == (300, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert low <= ink.min() and ink.max() <= high, (float(ink.min()), float(ink.max()))
    if kind != "noise":  # filled: every pixel is off or fully on
        assert set(images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(images, shapes(kind, 300, (1, 28, 28), 0))
    assert not torch.equal(images, shapes(kind, 300, (1, 28, 28), 1))


def test_a_bar_is_one_straight_run_of_rows_or_columns():
    for image in shapes("bars", 50, (1, 28, 28), 3)[:, 0]:
        rows, cols = image.any(1).nonzero().flatten(), image.any(0).nonzero().flatten()
        assert len(rows) == rows[-1] - rows[0] + 1 and len(cols) == cols[-1] - cols[0] + 1  # contiguous
        assert image.sum() == len(rows) * len(cols)  # a filled rectangle


def test_the_yardstick_accepts_its_data_and_rejects_noise_on_images_it_never_saw(monkeypatch):
    monkeypatch.setattr(yardstick, "PIXEL_CALIBRATION", 512)
    stick = Yardstick.of(SYNTHETIC, "unused", "cpu")
    assert len(stick.centres["features"]) == 1024 and len(stick.centres["pixels"]) == 512  # training images only
    found = {c["set"]: c for c in controls(stick, SYNTHETIC, "unused", "cpu")}
    assert found["held-out test images"]["n"] == 256 and found["held-out test images"]["passed"]
    assert found["uniform noise"]["share"] == 0 and found["filled discs"]["passed"]
    assert found["held-out test images mirrored"]["bound"] is None
    assert not stick.judge(torch.zeros(1, 1, 28, 28)).item()
    text = yardstick.text(stick, list(found.values()))
    assert f"held-out test images {100 * found['held-out test images']['share']:.1f} %;" in text
    # the synthetic data are blobs themselves: the text says the bound that fails, not that every control passed
    assert ("misses its bound on blobs" in text) == (found["blobs"]["passed"] is False)
