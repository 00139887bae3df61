"""Bad input gets one line and exit 2; interrupted runs resume exactly; no run overwrites another."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from aerun import checkpoint as ckpt
from aerun.errors import UserError
from aerun.train import train

from conftest import SMOKE


def run(exe, *args, cwd, **kwargs):
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


def assert_one_line(done, *fragments, status=2):
    assert done.returncode == status, (done.returncode, done.stderr)
    message = done.stderr.strip()
    assert "\n" not in message and "Traceback" not in done.stderr and message.startswith("aerun: error: ")
    for fragment in fragments:
        assert fragment in message


BAD_TRAIN = [
    (["model=nope"], "model=nope is not a choice; allowed: contractive, conv_deconv, conv_unpool, conv_unpool_deconv, deep"),
    (["optimizer=rmsprop"], "allowed: adam, adamw, sgd"),
    (["dataset=cifar"], "allowed: cifar10, fashion_mnist, folder, kmnist, mnist, npz, synthetic"),
    (["noise=speckle"], "noise=speckle is not a choice; allowed: gaussian, masking, none, salt_pepper"),
    (["noise=salt_pepper", "noise.level=1.5"], "it is a fraction of pixels, 0..1"),
    (["noise=gaussian", "noise.level=-0.1"], "noise.level=-0.1"),
    (["model=conv_unpool", "model.upsample=bilinear"], "allowed: unpool, deconv, unpool_deconv"),
    (["experiment=nope"], "experiment=nope is not a choice; allowed: contractive_twin, conv, deep_best, denoising, denoising_control"),
    (["lr_schedule=step"], "allowed: constant, cosine"),
    (["logger=comet"], "logger=comet is not a choice; allowed: csv, mlflow, tensorboard, wandb"),
    (["logger=[tensorboard,comet]"], "logger=comet is not a choice; allowed: csv, mlflow, tensorboard, wandb"),
    (["augment_shift=9"], "augment_shift=9 is not allowed; it must be an integer from 0 to 4"),
    (["-m", "hydra/launcher=nope"], "hydra/launcher=nope is not a choice; allowed: basic, joblib, slurm, submitit_local"),
    (["epochs=0"], "epochs=0 is not allowed; it must be a positive integer"),
    (["epochs=ten"], "epochs='ten'"),
    (["batch_size=-4"], "batch_size=-4"),
    (["optimizer.lr=0"], "optimizer.lr=0 is not allowed; it must be a finite number > 0"),
    (["sparsity=-1e-6"], "sparsity=-1e-06"),
    (["contractive=-0.5"], "contractive=-0.5 is not allowed; it must be a finite number >= 0"),
    (["model=vae", "model.beta=-1"], "model.beta=-1 is not allowed"),
    (["model=deep", "+model.beta=4"], "model.beta=4 sets the KL weight of the vae family, and model=deep (family mlp) "
                                      "has no such"),
    (["model=vae", "beta=4"], "beta is model.beta now (it belongs to the model's family): give model.beta=4"),
    (["model=pca", "sparsity=0.1"], "sparsity=0.1 sets the sparsity penalty of the families conv, mlp"),
    (["model=vae", "model.reconstruction=poisson"], "allowed: bernoulli, gaussian"),
    (["model=vae", "model.sigma=0"], "model.sigma=0 is not allowed; it must be a positive number"),
    (["model=shallow", "model.hidden=0"], "model.hidden=0"),
    (["model.output_activation=softplus"], "allowed: relu, sigmoid, tanh, none"),
    (["device=tpu"], "allowed: auto, cpu, cuda, mps"),
    (["seed=-3"], "seed=-3"),
    (["epoch=3"], "epoch is not a config key"),
    (["epochs=["], "cannot read the command line"),
    (["model=shallow", "model.hidden=8,16"], "is a sweep; add -m"),
    (["-m", "model=shallow", "model.hidden=8,-16"], "model.hidden=-16"),
]
if not torch.cuda.is_available():
    BAD_TRAIN.append((["device=cuda"], "no CUDA GPU"))
if not (torch.backends.mps.is_available()):
    BAD_TRAIN.append((["device=mps"], "device=mps but this machine has no Apple-silicon GPU (mps)"))


@pytest.mark.slow
@pytest.mark.parametrize("args, fragment", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_training_input_is_one_line_before_any_work(aerun_exe, tmp_path, args, fragment):
    done = run(aerun_exe, *args, "dataset=synthetic", cwd=tmp_path)
    assert_one_line(done, fragment)
    assert not (tmp_path / "outputs").exists(), "nothing may be written for bad input"


def damaged_runs(root: Path, good: Path) -> dict[str, Path]:
    """Run folders whose checkpoint is missing, truncated, garbage, of an unknown builder or a newer format."""
    raw = (good / ckpt.CHECKPOINT).read_bytes()
    state = torch.load(good / ckpt.CHECKPOINT, weights_only=True)
    runs = {name: root / name for name in ("empty", "truncated", "garbage", "unknown", "newer")}
    for path in runs.values():
        (path / "checkpoints").mkdir(parents=True)
    (runs["truncated"] / ckpt.CHECKPOINT).write_bytes(raw[: len(raw) // 2])
    (runs["garbage"] / ckpt.CHECKPOINT).write_bytes(b"not a checkpoint")
    ckpt.save({**state, "model": {**state["model"], "builder": "transformer"}}, runs["unknown"] / ckpt.CHECKPOINT)
    ckpt.save({**state, "format": ckpt.FORMAT + 1}, runs["newer"] / ckpt.CHECKPOINT)
    runs["missing"] = root / "missing"
    return runs


BAD_RUNS = {  # fragment, exit status: 2 for bad input, 1 for a damaged file (the environment failed it)
    "missing": ("is not a directory", 2),
    "empty": ("holds no checkpoints/last.pt", 2),
    "truncated": ("is unreadable", 1),
    "garbage": ("is unreadable", 1),
    "unknown": ("unknown model builder 'transformer'; registered: conv, mlp, pca", 2),
    "newer": ("upgrade aerun", 2),
}


@pytest.mark.slow
def test_bad_eval_and_plot_input_is_one_line(aerun_exe, make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=pca"]), tmp_path / "good")
    runs = damaged_runs(tmp_path, tmp_path / "good")
    for name, (fragment, status) in BAD_RUNS.items():
        assert_one_line(run(aerun_exe, "eval", f"run={runs[name]}", cwd=tmp_path), fragment, status=status)
    for name in ("missing", "truncated"):  # plot reads runs through the same checks
        fragment, status = BAD_RUNS[name]
        assert_one_line(run(aerun_exe, "plot", f"run={runs[name]}", cwd=tmp_path), fragment, status=status)
    assert_one_line(run(aerun_exe, "plot", cwd=tmp_path), "needs run=DIR")


@pytest.mark.parametrize("extra", [[], ["lr_schedule=cosine"], ["augment_shift=2"]], ids=["constant", "cosine", "shift"])
def test_resumed_run_is_bitwise_equal_to_a_straight_run(make_cfg, tmp_path, extra):
    overrides = [*SMOKE, "model=shallow", "model.hidden=16", "epochs=3", *extra]
    train(make_cfg("train", overrides), tmp_path / "straight")

    train(make_cfg("train", [*overrides, "epochs=1"]), tmp_path / "resumed")
    config = OmegaConf.create(ckpt.load(tmp_path / "resumed" / ckpt.CHECKPOINT)["config"])
    config.epochs = 3
    train(config, tmp_path / "resumed", resume=True)

    a = ckpt.load(tmp_path / "straight" / ckpt.CHECKPOINT)
    b = ckpt.load(tmp_path / "resumed" / ckpt.CHECKPOINT)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (3, 48)
    for key, tensor in a["model"]["state"].items():
        assert torch.equal(tensor, b["model"]["state"][key]), key
    for name in ("loss_iter.csv", "loss_epoch.csv"):
        straight = [line.split(",")[:4] for line in (tmp_path / "straight" / name).read_text().splitlines()]
        resumed = [line.split(",")[:4] for line in (tmp_path / "resumed" / name).read_text().splitlines()]
        assert straight == resumed, name


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path, monkeypatch):
    import aerun.train

    calls = {"n": 0}
    real = aerun.train.loss_terms

    def diverging(*args, **kwargs):  # the 20th step (4th of epoch 2) goes non-finite
        calls["n"] += 1
        mse, penalty = real(*args, **kwargs)
        return (mse * float("nan"), penalty) if calls["n"] >= 20 else (mse, penalty)

    monkeypatch.setattr(aerun.train, "loss_terms", diverging)
    with pytest.raises(UserError, match=r"non-finite at epoch 2, step 20; the last good checkpoint \(epoch 1\)"):
        train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16"]), tmp_path)
    kept = ckpt.load(tmp_path / ckpt.CHECKPOINT)
    assert (kept["epoch"], kept["step"]) == (1, 16)
    assert all(torch.isfinite(t).all() for t in kept["model"]["state"].values())
    epochs = (tmp_path / "loss_epoch.csv").read_text().splitlines()
    assert len(epochs) == 2  # header and epoch 1: the diverged epoch is not recorded


def slow_run(exe, cwd, run_dir):
    """A synthetic run long enough to be stopped in the middle."""
    args = ["model=deep", "dataset=synthetic", "dataset.n_train=4096", "batch_size=32", "epochs=500",
            "device=cpu", f"hydra.run.dir={run_dir}"]
    return subprocess.Popen([exe, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(run_dir: Path, n: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ckpt.load(run_dir / ckpt.CHECKPOINT)["epoch"] >= n:
                return
        except UserError:  # not written yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} did not reach {n} epochs")


@pytest.mark.slow
def test_sigkill_leaves_a_checkpoint_that_loads_and_resumes(aerun_exe, tmp_path):
    run_dir = tmp_path / "killed"
    proc = slow_run(aerun_exe, tmp_path, run_dir)
    wait_for_epochs(run_dir, 2, proc)
    time.sleep(0.3)  # somewhere inside a later epoch, or inside a checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_epochs = ckpt.load(run_dir / ckpt.CHECKPOINT)["epoch"]
    assert done_epochs >= 2
    done = run(aerun_exe, "train", f"resume={run_dir}", f"epochs={done_epochs + 1}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    resumed = ckpt.load(run_dir / ckpt.CHECKPOINT)
    assert resumed["epoch"] == done_epochs + 1
    epochs = [line.split(",")[0] for line in (run_dir / "loss_epoch.csv").read_text().splitlines()[1:]]
    assert epochs == [str(e) for e in range(1, done_epochs + 2)]


def test_sigterm_stops_with_a_resume_hint(aerun_exe, tmp_path):
    run_dir = tmp_path / "stopped"
    proc = slow_run(aerun_exe, tmp_path, run_dir)
    wait_for_epochs(run_dir, 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"aerun train resume={run_dir}" in stderr and "Traceback" not in stderr
    assert ckpt.load(run_dir / ckpt.CHECKPOINT)["epoch"] >= 1
    assert not list((run_dir / "checkpoints").glob("*.tmp"))


def test_runs_started_together_get_distinct_directories(aerun_exe, tmp_path):
    args = [aerun_exe, *SMOKE, "model=pca"]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    runs = list((tmp_path / "outputs" / "pca").iterdir())
    assert len(runs) == 2 and all((r / ckpt.CHECKPOINT).is_file() for r in runs)


def test_an_existing_run_is_never_overwritten(aerun_exe, tmp_path):
    run_dir = tmp_path / "mine"
    assert run(aerun_exe, *SMOKE, "model=pca", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    done = run(aerun_exe, *SMOKE, "model=deep", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_one_line(done, "already holds a trained run", f"resume={run_dir}")
    assert before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_a_damaged_data_file_is_named_with_what_to_do(aerun_exe, tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 20)  # a truncated download
    done = run(aerun_exe, "data", f"paths.data_dir={tmp_path / 'data'}", cwd=tmp_path)
    assert_one_line(done, f"{raw / 't10k-labels-idx1-ubyte'} has SHA-256", "delete it and run `aerun data`")


def test_resuming_a_checkpoint_of_another_version_is_one_line(aerun_exe, make_cfg, tmp_path):
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1"]), tmp_path / "old")
    state = torch.load(tmp_path / "old" / ckpt.CHECKPOINT, weights_only=True)
    del state["config"]["noise"]  # as if written before the noise group existed
    ckpt.save(state, tmp_path / "old" / ckpt.CHECKPOINT)
    done = run(aerun_exe, "train", f"resume={tmp_path / 'old'}", "epochs=2", cwd=tmp_path)
    assert_one_line(done, "does not fit this aerun", "noise")


@pytest.mark.parametrize("args", [["model=nope"], ["epochs=abc"], ["--help"], ["eval", "run={tmp}/nothing"],
                                  ["eval", "run={tmp}"], ["plot"], ["plot", "run={tmp}"]])
@pytest.mark.slow
def test_a_mistyped_command_line_and_the_help_are_answered_without_loading_torch(args, tmp_path):
    """Importing torch takes about 2 s; a typo in a key, a choice or a type, or a folder that holds no run,
    needs none of it."""
    import sys

    args = [a.format(tmp=tmp_path) for a in args]
    script = ("import sys\nfrom aerun.cli import main\n"
              f"sys.argv = ['aerun', *{args!r}]\n"
              "try:\n    main()\nexcept SystemExit as stop:\n    code = stop.code\n"
              "print('torch loaded:', 'torch' in sys.modules, 'exit:', code, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "torch loaded: False" in done.stderr, done.stderr
    assert ("exit: 0" if args == ["--help"] else "exit: 2") in done.stderr
