"""Every failure is one line; one writer per run; a failed write loses nothing; no network dead at birth."""

from __future__ import annotations

import csv
import errno
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from aerun import checkpoint as ckpt
from aerun import cli, failures, runlock
from aerun.compose import compose_config
from aerun.data import load_split
from aerun.models import build, builder_args
from aerun.objective import Objective
from aerun.train import History, epoch_generator, health_warning, train, train_epoch

from conftest import SMOKE, mnist_path

CONV = ["conv_unpool", "conv_deconv", "conv_unpool_deconv"]
MLP = ["deep", "shallow", "sparse", "manifold"]


def one_line(stderr: str) -> str:
    message = stderr.strip()
    assert "Traceback" not in stderr and "\n" not in message and message.startswith("aerun: error: "), stderr
    return message


def run_patched(patch: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`aerun ARGS` in a fresh interpreter after running `patch` (a simulated failure)."""
    code = f"import sys\n{patch}\nfrom aerun.cli import main\nsys.argv = ['aerun', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


# --------------------------------------------------------------------------- one line, traceback to the log

CRASH = "import aerun.train\naerun.train.mean_mse = lambda *a: 1 / 0"


def test_unexpected_error_is_one_line_with_the_traceback_in_the_run_log(tmp_path):
    done = run_patched(CRASH, ["dataset=synthetic", "epochs=1", "hydra.run.dir=run"], tmp_path)
    assert done.returncode == failures.EXIT_FAILED
    message = one_line(done.stderr)
    assert "unexpected ZeroDivisionError: division by zero" in message and "AERUN_DEBUG=1" in message
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"traceback in {tmp_path / 'run' / 'train.log'}" in message
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError" in log

    shown = run_patched(CRASH, ["dataset=synthetic", "epochs=1", "hydra.run.dir=run2"], tmp_path, AERUN_DEBUG="1")
    assert shown.returncode == failures.EXIT_FAILED
    assert "Traceback (most recent call last)" in shown.stderr
    assert shown.stderr.strip().splitlines()[-1].startswith("aerun: error: unexpected ZeroDivisionError")


def test_describe_names_cause_and_remedy_of_os_errors():
    full = failures.describe(OSError(errno.ENOSPC, "No space left on device", "/data/x"))
    assert full.startswith("No space left on device (/data/x); the disk is full")
    assert "read-only" in failures.describe(OSError(errno.EROFS, "Read-only file system", "/x"))
    assert failures.exit_status(OSError(errno.ENOSPC, "full")) == failures.EXIT_FAILED


# --------------------------------------------------------------------------- a failed write loses nothing

FULL_DISK_ON_EPOCH_2 = """
import errno, torch, aerun.checkpoint
calls = []
real = torch.save
def save(obj, f, *a, **k):
    calls.append(1)
    if len(calls) == 2:
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", getattr(f, "name", "?"))
    return real(obj, f, *a, **k)
aerun.checkpoint.torch.save = save
"""


def epochs_in(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return sorted({int(row["epoch"]) for row in csv.DictReader(f)})


def test_full_disk_during_a_checkpoint_keeps_the_last_one_and_resumes_exactly(tmp_path, make_cfg, monkeypatch):
    overrides = [*SMOKE, "model=shallow", "model.hidden=16", "epochs=3"]
    train(make_cfg("train", overrides), tmp_path / "straight")

    done = run_patched(FULL_DISK_ON_EPOCH_2, [*overrides, "hydra.run.dir=full"], tmp_path)
    assert done.returncode == failures.EXIT_FAILED
    message = one_line(done.stderr)
    assert "could not write epoch 2" in message and "No space left on device" in message
    assert f"continue with: aerun train resume={tmp_path / 'full'}" in message
    run = tmp_path / "full"
    assert ckpt.load(run / ckpt.CHECKPOINT)["epoch"] == 1  # the previous checkpoint, intact and loadable
    assert epochs_in(run / "loss_epoch.csv") == epochs_in(run / "loss_iter.csv") == [1]
    assert not list((run / "checkpoints").glob(".*tmp")), "the partial file is removed"

    config = OmegaConf.create(ckpt.load(run / ckpt.CHECKPOINT)["config"])
    train(config, run, resume=True)
    a, b = (ckpt.load(p / ckpt.CHECKPOINT)["model"]["state"] for p in (tmp_path / "straight", run))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert epochs_in(run / "loss_epoch.csv") == [1, 2, 3]


# --------------------------------------------------------------------------- one writer per run

HOLDER = "import sys, time; from aerun import runlock\nwith runlock.hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)"


def test_a_second_writer_is_refused_naming_the_holder_until_it_dies(tmp_path, make_cfg, aerun_exe):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "epochs=1"])
    run = tmp_path / "run"
    train(cfg, run)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg.epochs = 2
        with pytest.raises(runlock.RunBusy, match=f"is being trained by process {holder.pid}"):
            train(cfg, run, resume=True)
        done = subprocess.run([aerun_exe, "train", f"resume={run}", "epochs=2"], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == failures.EXIT_FAILED
        assert f"process {holder.pid}" in one_line(done.stderr)
        assert ckpt.load(run / ckpt.CHECKPOINT)["epoch"] == 1  # readers see the last complete checkpoint
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train(cfg, run, resume=True)  # kill -9 released the lock
    assert ckpt.load(run / ckpt.CHECKPOINT)["epoch"] == 2


def test_two_reports_over_one_folder_are_refused(tmp_path, aerun_exe):
    (tmp_path / "report").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "report")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([aerun_exe, "report", f"dir={tmp_path / 'report'}", "parts=[pca_vs_ae]",
                               'train_overrides=["dataset=synthetic","epochs=1"]', "ood=[]"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == failures.EXIT_FAILED
        assert f"written by another `aerun report` by process {holder.pid}" in one_line(done.stderr)
        assert not (tmp_path / "report" / "runs").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# --------------------------------------------------------------------------- no network dead at birth


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_split(compose_config("train", []).dataset, "train", mnist_path(), "cpu").images[:2560]


def short_training(preset: str, seed: int, images: torch.Tensor, *overrides: str) -> float:
    """Build a preset as `aerun train` does, train 40 steps of 64 images; the last steps' loss over the
    loss of always answering the mean pixel. (lr 3e-3, three times the presets', keeps this short.)"""
    cfg = compose_config("train", [f"model={preset}", *overrides])
    torch.manual_seed(seed)
    model = build(cfg.model.builder, **builder_args(cfg.model))
    model.start_from_data(images)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    record = train_epoch(model, optimizer, images, batch_size=64, generator=epoch_generator(seed, 1),
                         objective=Objective.defaults(model), desc="")
    return record[-5:, 0].mean().item() / (images - images.mean()).pow(2).mean().item()


@pytest.mark.mnist
@pytest.mark.parametrize("preset", CONV)
def test_seeds_0_to_9_of_each_conv_preset_train(digits, preset):
    ratios = [short_training(preset, seed, digits) for seed in range(10)]
    assert max(ratios) < 0.8, ratios  # measured 0.55-0.63 (deconv) and 0.19-0.27 (the unpooling ones)


@pytest.mark.mnist
def test_the_default_output_bias_starts_seed_1_dead(digits):
    """The cause the presets avoid: with PyTorch's draw, seed 1's output is 0 everywhere and nothing learns."""
    assert short_training("conv_unpool", 1, digits, "model.output_bias=default") > 1.1


@pytest.mark.mnist
@pytest.mark.parametrize("preset", MLP)
def test_mlp_presets_start_with_live_outputs(digits, preset):
    """Their ReLU outputs have a bias per pixel: at least 40 % of them are live at birth for seeds 0-9."""
    cfg = compose_config("train", [f"model={preset}"])
    for seed in range(10):
        torch.manual_seed(seed)
        model = build(cfg.model.builder, **builder_args(cfg.model))
        with torch.no_grad():
            pre = model.decoder[:-1](model.encode(digits[:1024]))
        assert (pre > 0).any(0).float().mean() > 0.4, (preset, seed)


# --------------------------------------------------------------------------- no silent divergence


def test_a_dead_network_ends_with_a_warning_naming_the_learning_rate(make_cfg, tmp_path, monkeypatch, caplog):
    import aerun.validate

    def dead(builder, **kwargs):
        model = build(builder, **kwargs)
        torch.nn.init.constant_(model.decoder[-2].bias, -100.0)  # every output pixel below zero
        return model

    monkeypatch.setattr(aerun.validate, "build", dead)  # what check_train builds is what trains
    summary = train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "noise=gaussian",
                                       "noise.level=0.5"]), tmp_path / "dead")
    assert "output no longer depends on its input" in summary["warning"]
    assert "optimizer.lr=0.0003" in summary["warning"] and "noise=gaussian, level 0.5" in summary["warning"]
    assert any("warning: the network's output" in r.getMessage() for r in caplog.records)


def test_a_healthy_run_has_no_warning_and_a_grown_loss_has_one(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "optimizer.lr=1e-2"])
    assert train(cfg, tmp_path / "ok")["warning"] is None
    short = train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "epochs=1"]), tmp_path / "short")
    assert "no better than the mean training image's" in short["warning"] and "epochs=1" in short["warning"]

    (tmp_path / "grown").mkdir()
    history = History(tmp_path / "grown")  # a run whose loss went from 0.1 to 0.2
    history.append(1, 0, torch.tensor([[0.1], [0.3]]), 0.2, 1.0)  # one column: the reconstruction term
    history.append(2, 2, torch.tensor([[0.2], [0.2]]), 0.2, 1.0)
    model = build(cfg.model.builder, **builder_args(cfg.model))
    warning = health_warning(cfg, model, torch.rand(8, 1, 28, 28), history)
    assert warning.startswith("the training loss ended at 0.2, above its first step's 0.1")


# --------------------------------------------------------------------------- generated bad command lines

# (key, valid value) pairs that each bad value below is substituted into; base presets choose the model.
NUMBERS = {"epochs": "1", "batch_size": "64", "seed": "0", "noise_seed": "1", "sparsity": "0.0", "contractive": "0.0",
           "optimizer.lr": "0.001", "augment_shift": "0", "model.hidden": "16", "noise.level": "0.1"}
NAMES = {"model": "shallow", "optimizer": "adam", "noise": "gaussian", "dataset": "synthetic",
         "lr_schedule": "constant", "logger": "csv", "device": "cpu", "model.activation": "relu",
         "model.output_activation": "relu"}
WRONG_TYPES = ["abc", "[1,2]", "true", "{a:1}", "1.5e", "null"]
OUT_OF_RANGE = {"epochs": ["0", "-1", "nan"], "batch_size": ["0", "-64"], "seed": ["-1", "99999999999999999999"],
                "noise_seed": ["-2", "4294967296"], "sparsity": ["-1e-6", "nan", "inf"],
                "contractive": ["-1e-3", "nan", "inf"],
                "optimizer.lr": ["0", "-0.001", "inf", "nan"], "augment_shift": ["5", "-1"],
                "model.hidden": ["0", "-16"], "noise.level": ["-0.1", "nan", "inf"]}


def bad_command_lines(count: int, seed: int = 0) -> list[tuple[list[str], str]]:
    """Valid overrides with one value mutated into an invalid one; each with the text the error must name."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        args = [f"{k}={v}" for k, v in {**NAMES, **NUMBERS}.items()]
        kind = rng.choice(["type", "range", "name", "key", "path"])
        if kind in ("type", "range"):
            key = rng.choice(sorted(NUMBERS))
            bad = rng.choice(WRONG_TYPES if kind == "type" else OUT_OF_RANGE[key])
        elif kind == "name":
            key, bad = rng.choice(sorted(NAMES)), rng.choice(["nope", "Adam", "cuda9", "relu6"])
        elif kind == "key":
            key, bad = rng.choice(["epoch", "optimiser.lr", "model.hiden", "seeds"]), "1"
            args.append(f"{key}={bad}")
            cases.append((args, key))
            continue
        else:
            key, bad = rng.choice([("hydra.run.dir", "afile"), ("hydra.run.dir", "afile/run"),
                                   ("paths.data_dir", "afile/data")])
            if key == "paths.data_dir":
                args = [a for a in args if not a.startswith("dataset=")] + ["dataset=mnist"]
        args = [a for a in args if not a.startswith(f"{key}=")] + [f"{key}={bad}"]
        cases.append((args, key.split(".")[0] if kind == "name" else key))
    return cases


@pytest.mark.slow
def test_generated_bad_command_lines_each_get_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file where a folder should be")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # main() sets it; restored after the test
    cases = bad_command_lines(60)
    assert len({tuple(a) for a, _ in cases}) > 30
    for args, named in cases:
        monkeypatch.setattr(sys, "argv", ["aerun", *args])
        with pytest.raises(SystemExit) as ended:
            cli.main()
        err = capfd.readouterr().err
        assert ended.value.code == failures.EXIT_USER_ERROR, (args, err)
        assert named in one_line(err), (named, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"], "nothing may be written for bad input"


def test_a_first_epoch_gone_non_finite_says_no_epoch_was_finished(make_cfg, tmp_path, monkeypatch):
    import aerun.train

    real = aerun.train.loss_terms
    monkeypatch.setattr(aerun.train, "loss_terms", lambda *a, **k: (real(*a, **k)[0] * float("nan"), real(*a, **k)[1]))
    with pytest.raises(aerun.train.UserError, match=r"non-finite at epoch 1, step 1; no epoch was finished"):
        train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16"]), tmp_path / "run")
    assert not (tmp_path / "run" / ckpt.CHECKPOINT).exists()


def test_an_interrupt_during_a_checkpoint_save_comes_after_it_whole(tmp_path, monkeypatch):
    """Ctrl-C while torch.save writes: delivered once the checkpoint is whole, as a KeyboardInterrupt (the resume
    hint), never as the half-written zip writer's RuntimeError that masked it."""
    import os
    import signal

    import torch

    from aerun import checkpoint as ckpt

    real = torch.save

    def interrupted_save(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the checkpoint is being written
        for _ in range(1000):  # bytecode boundaries at which Python would deliver it, were it not held
            pass
        return real(obj, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    kept = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, even where SIGINT came ignored
    path = tmp_path / "checkpoints" / "last.pt"
    path.parent.mkdir()
    state = {"epoch": 3, "weights": torch.randn(64, 64)}
    try:
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(state, path)
    finally:
        signal.signal(signal.SIGINT, kept)
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 3 and ckpt.content_digest(saved) == saved[ckpt.DIGEST]  # whole, its checksum right
