"""Every device present: randomness, checkpoints across devices, exact resume (marked `device`).

Parametrised over the devices this machine has (cpu; cuda and mps where present), so
`make gpu-check` runs the same tests on a GPU with `pytest -m device`.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from aerun import checkpoint as ckpt
from aerun.evaluate import evaluate
from aerun.gpucheck import resume_exactness
from aerun.noise import corrupt
from aerun.plot import plot
from aerun.train import batches, epoch_generator, random_shift, resolve_device, train
from aerun.validate import available_devices

from conftest import SMOKE

pytestmark = pytest.mark.device
DEVICES = available_devices()

PRESETS = {"shallow": ["model.hidden=16"], "conv_unpool": []}  # each preset's extra overrides


def test_auto_picks_the_best_device_present():
    assert resolve_device("auto").type == DEVICES[0]
    assert DEVICES[-1] == "cpu"


@pytest.mark.parametrize("device", DEVICES)
def test_every_random_draw_is_a_function_of_its_seed_on_each_device(device):
    device = resolve_device(device)
    x = torch.rand(64, 1, 28, 28, device=device)

    def draws():
        gen = epoch_generator(3, 2, device)
        order = torch.cat(list(batches(64, 16, gen)))
        return order, random_shift(x, 2, gen), corrupt(x, "salt_pepper", 0.3, gen), corrupt(x, "gaussian", 0.5, gen)

    first, again = draws(), draws()
    assert first[0].device.type == device.type and sorted(first[0].tolist()) == list(range(64))
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], torch.cat(list(batches(64, 16, epoch_generator(4, 2, device)))))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_resumed_run_ends_with_the_weights_of_a_straight_one(tmp_path, device, preset):
    # the measurement `make gpu-check` reports: 3 epochs straight against 1 + 2 resumed
    measured = resume_exactness(tmp_path, "data", presets=(preset,), epochs=3, device=device,
                                extra=("dataset=synthetic", "batch_size=64", *PRESETS[preset]))
    difference = measured["max_weight_difference"][preset]
    if device == "cuda" and preset.startswith("conv"):
        # max-unpooling's and max-pooling's CUDA backward passes add with atomics (no deterministic
        # kernel): the weights may differ by float rounding; the README gives the measured size
        assert difference < 1e-3
    else:
        assert difference == 0


@pytest.mark.parametrize("trained_on, used_on", list(itertools.product(DEVICES, DEVICES)))
def test_a_checkpoint_from_one_device_is_evaluated_and_resumed_on_another(make_cfg, tmp_path, trained_on, used_on):
    run = tmp_path / "run"
    train(make_cfg("train", [*SMOKE[:-1], f"device={trained_on}", "model=shallow", "model.hidden=16"]), run)
    data_dir = make_cfg("train", SMOKE).paths.data_dir
    evaluate(run, data_dir, resolve_device(used_on))
    assert (run / "eval.json").exists()
    figures = plot(run, data_dir, used_on)
    assert figures and all(f.exists() for f in figures)
    config = OmegaConf.create(ckpt.load(run / ckpt.CHECKPOINT)["config"])
    config.epochs, config.device = 3, used_on
    train(config, run, resume=True)
    state = ckpt.load(run / ckpt.CHECKPOINT)
    assert state["epoch"] == 3 and all(t.device.type == "cpu" for t in state["model"]["state"].values())
