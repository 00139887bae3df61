"""A sweep run again over its folder continues: jobs kept by their overrides, resumed, extended, checked."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
import yaml

from aerun import checkpoint as ckpt
from aerun.sweep import MANIFEST, check_same_sweep, identity, job_key
from aerun.errors import UserError

BASE = ["dataset=synthetic", "batch_size=64", "device=cpu"]


# One compute thread in every process, the launchers' workers too (joblib gives each fewer threads than the parent
# would take): the sums of a product then add in one order, so a sweep's weights match a straight run's.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(exe, *args, cwd):
    return subprocess.run([exe, "-m", *BASE, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)


def weights(folder):
    state = ckpt.load(folder / ckpt.CHECKPOINT)
    return state["epoch"], state["model"]["state"]


def same_weights(a, b):
    (epoch_a, state_a), (epoch_b, state_b) = weights(a), weights(b)
    return epoch_a == epoch_b and state_a.keys() == state_b.keys() and all(
        torch.equal(state_a[k], state_b[k]) for k in state_a)


def hidden_of(folder):
    return ckpt.load(folder / ckpt.CHECKPOINT)["model"]["code_dim"]


def test_identity_keeps_what_makes_another_run():
    job = ["model.hidden=8", "epochs=3", "device=cpu", "paths.data_dir=/d", "hydra.sweep.dir=/s", "seed=1"]
    assert identity(job) == ("model.hidden=8", "seed=1")
    assert identity(job, keep={"epochs"}) == ("epochs=3", "model.hidden=8", "seed=1")
    assert job_key(["epochs=1", "model.hidden=8", "epochs=2", "hydra/launcher=joblib"]) == ("epochs=2", "model.hidden=8")


def test_another_sweep_is_named_by_its_key(tmp_path):
    old = [["model.hidden=8", "optimizer.lr=0.01"], ["model.hidden=16", "optimizer.lr=0.01"]]
    check_same_sweep(old, [["model.hidden=32", "optimizer.lr=0.01"]], tmp_path)  # a new value: a new job
    check_same_sweep(old, [["model.hidden=8", "optimizer.lr=0.01"], ["model.hidden=8", "optimizer.lr=0.1"]],
                     tmp_path)  # a key swept now that had one value: its old value keeps its jobs
    with pytest.raises(UserError, match=r"^optimizer.lr=0.1 differs from the optimizer.lr=0.01"):
        check_same_sweep(old, [["model.hidden=8", "optimizer.lr=0.1"]], tmp_path)
    with pytest.raises(UserError, match=r"^sparsity was not set on the jobs"):
        check_same_sweep(old, [["model.hidden=8", "optimizer.lr=0.01", "sparsity=1"]], tmp_path)


@pytest.mark.slow
def test_a_sweep_run_again_continues_and_ends_as_a_straight_one(aerun_exe, tmp_path):
    sweep, straight = tmp_path / "sweep", tmp_path / "straight"
    done = run(aerun_exe, "model=shallow", "model.hidden=8,16", "epochs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[sweep]" not in done.stdout  # a new folder: nothing to continue

    # longer, with a value added, through the joblib launcher: two resumed, one new, each keeping its folder
    done = run(aerun_exe, "model=shallow", "model.hidden=8,16,32", "epochs=2", "hydra/launcher=joblib",
               f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"[sweep] continuing {sweep}: 3 jobs, 0 complete, 2 to resume, 1 new" in done.stdout
    assert [hidden_of(sweep / j) for j in "012"] == [8, 16, 32]
    jobs = yaml.safe_load((sweep / MANIFEST).read_text())["jobs"]
    assert "model.hidden=32" in jobs["2"] and "epochs=2" in jobs["2"] and "model.hidden=8" in jobs["0"]

    done = run(aerun_exe, "model=shallow", "model.hidden=8,16,32", "epochs=2", f"hydra.sweep.dir={straight}",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for job in "012":
        assert same_weights(sweep / job, straight / job), job

    # again, in another order, in submitit's processes (as on Slurm): nothing trains or is rewritten, each job
    # keeps its folder
    before = {j: (sweep / j / ckpt.CHECKPOINT).stat().st_mtime_ns for j in "012"}
    done = run(aerun_exe, "model=shallow", "model.hidden=32,8", "epochs=2", "hydra/launcher=submitit_local",
               f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"[sweep] continuing {sweep}: 2 jobs, 2 complete, 0 to resume, 0 new" in done.stdout
    assert {j: (sweep / j / ckpt.CHECKPOINT).stat().st_mtime_ns for j in "012"} == before
    assert not (sweep / "3").exists()


@pytest.mark.slow
def test_a_changed_sweep_is_refused_in_one_line_naming_the_key(aerun_exe, tmp_path):
    sweep = tmp_path / "sweep"
    presets = tmp_path / "presets" / "model"
    presets.mkdir(parents=True)
    preset = {"name": "mine", "builder": "mlp", "hidden": 8, "code": 8, "encoder": [], "decoder": [],
              "activation": "relu", "code_activation": "relu", "output_activation": "sigmoid"}
    (presets / "mine.yaml").write_text(yaml.safe_dump(preset))
    same = ["model=mine", "seed=0,1", f"hydra.searchpath=[file://{tmp_path / 'presets'}]", f"hydra.sweep.dir={sweep}"]
    done = run(aerun_exe, *same, "epochs=2", "optimizer.lr=0.01", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    before = sorted(p.name for p in sweep.iterdir())
    for change, named in [
        (["epochs=2", "optimizer.lr=0.05"], "optimizer.lr=0.05 differs from the optimizer.lr=0.01 the jobs in"),
        (["epochs=2", "optimizer.lr=0.01", "sparsity=0.001"], "sparsity was not set on the jobs in"),
        (["epochs=1", "optimizer.lr=0.01"], "is trained to epoch 2, more than epochs=1"),
    ]:
        done = run(aerun_exe, *same, *change, cwd=tmp_path)
        message = done.stderr.strip()
        assert done.returncode == 2 and message.startswith("aerun: error: ") and "\n" not in message, done.stderr
        assert named in message, message
    (presets / "mine.yaml").write_text(yaml.safe_dump({**preset, "code_activation": "sigmoid"}))  # edited under it
    done = run(aerun_exe, *same, "epochs=2", "optimizer.lr=0.01", cwd=tmp_path)
    assert done.returncode == 2 and "holds a run whose model.code_activation differs" in done.stderr, done.stderr
    assert sorted(p.name for p in sweep.iterdir()) == before


@pytest.mark.slow
def test_a_sweep_stopped_midway_finishes_as_one_that_never_stopped(aerun_exe, tmp_path):
    sweep, straight = tmp_path / "sweep", tmp_path / "straight"
    # 20 epochs: stopped as job 0's first checkpoint appears, job 0 is always mid-run (to resume), never done
    args = ["model=shallow", "model.hidden=8,16", "epochs=20", "dataset.n_train=2048"]
    process = subprocess.Popen([aerun_exe, "-m", *BASE, *args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while not (sweep / "0" / ckpt.CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # as Slurm or a closed terminal would stop it
    process.communicate(timeout=120)
    assert process.returncode != 0 and not (sweep / "1" / ckpt.CHECKPOINT).exists()

    done = run(aerun_exe, *args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("[sweep]"))
    assert line.endswith("0 complete, 1 to resume, 1 new"), line
    done = run(aerun_exe, *args, f"hydra.sweep.dir={straight}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for job in "01":
        assert same_weights(sweep / job, straight / job), job


@pytest.mark.slow
def test_a_second_sweep_on_a_folder_being_swept_is_refused_in_one_line(aerun_exe, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["model=shallow", "model.hidden=8,16", "epochs=20", "dataset.n_train=2048", f"hydra.sweep.dir={sweep}"]
    first = subprocess.Popen([aerun_exe, "-m", *BASE, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while not (sweep / "0" / ckpt.CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first sweep ended before the second could meet it"
    os.kill(first.pid, signal.SIGSTOP)  # paused mid-sweep, its lock held, however fast its epochs are here
    try:
        second = run(aerun_exe, *args, cwd=tmp_path)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    lines = second.stderr.strip().splitlines()
    assert second.returncode != 0 and len(lines) == 1, second.stderr
    assert f"{sweep} is being swept by process {first.pid}; wait for it to end" in lines[0]
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err  # the first sweep went on untouched, and ends whole
    assert all((sweep / job / ckpt.CHECKPOINT).exists() for job in "01")
    assert ckpt.read(sweep / "1" / ckpt.CHECKPOINT)["epoch"] == 20
    again = run(aerun_exe, *args, cwd=tmp_path)  # the lock went with the first process
    assert again.returncode == 0 and "2 complete" in again.stdout, again.stderr
