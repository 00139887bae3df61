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
from aerun.evaluate import evaluate, noisy_test_inputs
from aerun.gpucheck import resume_exactness
from aerun.noise import corrupt
from aerun.objective import reparameterise
from aerun.plot import plot
from aerun.train import batches, epoch_generator, random_shift, resolve_device, train
from aerun.validate import available_devices

from conftest import SMOKE

pytestmark = pytest.mark.device
ALL = ("cpu", "cuda", "mps")  # every kind aerun trains on; those this machine lacks are skipped, by name
PRESENT = available_devices()

PRESETS = {"shallow": ["model.hidden=16"], "conv_unpool": []}  # each preset's extra overrides


def present(device: str) -> str:
    """`device`, or a skip that says it is missing, so absent GPU coverage shows in the test summary."""
    if device not in PRESENT:
        pytest.skip(f"no {device} device on this machine: this test did not run on {device}")
    return device


def test_auto_picks_the_best_device_present():
    best = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == best  # what torch itself reports, not aerun's own list


@pytest.mark.parametrize("device", ALL)
def test_every_random_draw_is_made_on_the_cpu_and_is_the_same_on_each_device(device):
    device = resolve_device(present(device))
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def draws(on):
        gen = epoch_generator(3, 2)
        images = x.to(on)
        order = torch.cat(list(batches(64, 16, gen, on)))
        return order, random_shift(images, 2, gen), corrupt(images, "salt_pepper", 0.3, gen), \
            corrupt(images, "gaussian", 0.5, gen), reparameterise(torch.zeros(8, 4, device=on),
                                                                     torch.zeros(8, 4, device=on), gen), \
            noisy_test_inputs(images, ("gaussian", 0.5), 3)  # evaluation's noise

    here, on_cpu = draws(device), draws(torch.device("cpu"))
    assert here[0].device.type == device.type and sorted(here[0].tolist()) == list(range(64))
    for a, b in zip(here, on_cpu):
        assert torch.equal(a.cpu(), b)  # the same numbers on this device as on the CPU
    assert not torch.equal(here[0].cpu(), torch.cat(list(batches(64, 16, epoch_generator(4, 2)))))


def test_each_epoch_draws_its_own_order_and_noise():
    x = torch.zeros(256, 1, 28, 28)
    one, two = epoch_generator(5, 1), epoch_generator(5, 2)
    assert not torch.equal(torch.cat(list(batches(256, 64, one))), torch.cat(list(batches(256, 64, two))))
    assert not torch.equal(corrupt(x, "gaussian", 0.5, one), corrupt(x, "gaussian", 0.5, two))
    assert torch.equal(torch.cat(list(batches(256, 64, epoch_generator(5, 2)))),
                       torch.cat(list(batches(256, 64, epoch_generator(5, 2)))))  # and the same again on resume


@pytest.mark.parametrize("device", ALL)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_resumed_run_ends_with_the_weights_of_a_straight_one(tmp_path, device, preset):
    # the measurement `make gpu-check` reports: 3 epochs straight against 1 + 2 resumed
    present(device)
    measured = resume_exactness(tmp_path, "data", presets=(preset,), epochs=3, device=device,
                                extra=("dataset=synthetic", "batch_size=64", *PRESETS[preset]))
    difference = measured["max_weight_difference"][preset]
    if device == "cuda" and preset.startswith("conv"):
        # max-unpooling's and max-pooling's CUDA backward passes add with atomics (no deterministic
        # kernel): the weights may differ by float rounding; the README gives the measured size
        assert difference < 1e-3
    else:
        assert difference == 0


@pytest.mark.parametrize("trained_on, used_on", [pair for pair in itertools.product(ALL, ALL)
                                                 if "cpu" in pair and pair != ("cpu", "cpu")] + [("cpu", "cpu")])
def test_a_checkpoint_from_one_device_is_evaluated_and_resumed_on_another(make_cfg, tmp_path, trained_on, used_on):
    present(trained_on), present(used_on)
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
    state = torch.load(run / ckpt.CHECKPOINT, map_location=lambda storage, _: storage, weights_only=True)
    assert state["epoch"] == 3
    assert all(t.device.type == "cpu" for t in tensors(state))  # weights, optimiser state, RNG: CPU tensors only


def tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors(v)
