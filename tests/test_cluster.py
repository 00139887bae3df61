"""Beyond one process: the watched submitit launchers, the report on any launcher, and real Slurm jobs.

Tests marked `slurm` submit through a Slurm controller (`make slurm-up` starts a local one; CI does)
and skip, saying why, when none answers.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hydra_plugins.aerun_launcher import watched

from conftest import unavailable

TINY = 'train_overrides=["dataset=synthetic","epochs=1","batch_size=64"]'
SLURM_JOB = ["hydra/launcher=slurm", "hydra.launcher.partition=aerun", "hydra.launcher.gpus_per_node=null",
             "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]


# --------------------------------------------------------------------------- watching jobs


@dataclass
class Paths:
    result_pickle: Path
    stderr: Path


class FakeJob:
    """A job whose state moves one step along a script at each poll (each call of done())."""

    def __init__(self, job_id: str, states: list[str], tmp: Path, result: bool = True) -> None:
        self.job_id, self.script, self.state = job_id, list(states), "UNKNOWN"
        self.paths = Paths(tmp / f"{job_id}.pkl", tmp / f"{job_id}.err")
        self.result = result

    def done(self) -> bool:
        if self.script:
            self.state = self.script.pop(0)
        finished = watched.category(self.state) in ("done", "failed")
        if finished and self.result:
            self.paths.result_pickle.touch()
        return finished


def test_watch_prints_the_counts_when_they_change_and_names_the_failed_jobs(tmp_path, monkeypatch):
    monkeypatch.setattr(watched, "POLL_S", 0)
    jobs = [FakeJob("11_0", ["PENDING", "RUNNING", "COMPLETED"], tmp_path),
            FakeJob("11_1", ["PENDING", "PENDING", "RUNNING", "CANCELLED by 0"], tmp_path, result=False)]
    out = io.StringIO()
    with pytest.raises(watched.JobsFailed) as failed:
        watched.watch(jobs, [["model.hidden=8"], ["model.hidden=16"]], "slurm", out)
    assert out.getvalue().splitlines() == [
        "[slurm] 2 jobs: 2 pending, 0 running, 0 done, 0 failed",
        "[slurm] 2 jobs: 1 pending, 1 running, 0 done, 0 failed",
        "[slurm] 2 jobs: 0 pending, 1 running, 1 done, 0 failed",
        "[slurm] 2 jobs: 0 pending, 0 running, 1 done, 1 failed",
    ]
    assert failed.value.lines == [f"job 11_1 (model.hidden=16) ended CANCELLED by 0; its log: {tmp_path / '11_1.err'}"]


def test_a_finished_job_without_a_result_counts_as_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(watched, "POLL_S", 0)
    job = FakeJob("5", ["COMPLETED"], tmp_path, result=False)
    with pytest.raises(watched.JobsFailed, match="job 5"):
        watched.watch([job], [[]], "local", io.StringIO())
    assert watched.category("") == "pending" and watched.category("TIMEOUT") == "failed"


def test_a_requeued_job_is_counted_requeued_not_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(watched, "POLL_S", 0)
    jobs = [FakeJob("7_0", ["RUNNING", "PREEMPTED", "PENDING", "RUNNING", "COMPLETED"], tmp_path),
            FakeJob("7_1", ["RUNNING", "PENDING", "RUNNING", "RUNNING", "COMPLETED"], tmp_path)]  # seen back queued
    out = io.StringIO()
    watched.watch(jobs, [["model.hidden=8"], ["model.hidden=16"]], "slurm", out)
    assert out.getvalue().splitlines() == [
        "[slurm] 2 jobs: 0 pending, 2 running, 0 done, 0 failed",
        "[slurm] 2 jobs: 2 pending, 0 running, 0 done, 0 failed, 2 requeued",
        "[slurm] 2 jobs: 1 pending, 1 running, 0 done, 0 failed, 2 requeued",
        "[slurm] 2 jobs: 0 pending, 2 running, 0 done, 0 failed, 2 requeued",
        "[slurm] 2 jobs: 0 pending, 0 running, 2 done, 0 failed, 2 requeued",
    ]
    assert watched.category("PREEMPTED") == watched.category("REQUEUED") == "requeued"


# --------------------------------------------------------------------------- the report on a launcher


def report(exe, root: Path, *args: str, timeout: int = 600):
    return subprocess.run([exe, "report", f"dir={root}", TINY, "parts=[manifold]", "device=cpu", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_report_runs_its_jobs_through_joblib_and_reuses_them(aerun_exe, tmp_path):
    done = report(aerun_exe, tmp_path, "seeds=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(through the launcher)") == 2 and "[report] 2 jobs to joblib" in done.stdout
    for job in ("0", "0-seed1"):
        history = (tmp_path / "runs" / "manifold" / job / "loss_epoch.csv").read_text().splitlines()
        assert [row.split(",")[0] for row in history[1:]] == ["1"]
    assert "trained with seeds 0–1" in (tmp_path / "report.md").read_text()
    again = report(aerun_exe, tmp_path, "seeds=2", "hydra/launcher=joblib")
    assert again.returncode == 0 and again.stdout.count("reused (complete)") == 2 and "jobs to" not in again.stdout


# --------------------------------------------------------------------------- a real Slurm controller


@pytest.fixture
def slurm():
    if not shutil.which("sinfo"):
        unavailable("SLURM", "no Slurm client here (make slurm-up installs and starts a local cluster)")
    answer = subprocess.run(["sinfo", "-h", "-p", "aerun", "-o", "%a"], capture_output=True, text=True, timeout=30)
    if answer.returncode != 0 or "up" not in answer.stdout:
        unavailable("SLURM", f"no Slurm controller answers with partition aerun ({answer.stderr.strip() or 'down'}); "
                    "make slurm-up starts one")


@pytest.mark.slurm
def test_a_sweep_runs_as_slurm_jobs(slurm, aerun_exe, tmp_path):
    sweep = tmp_path / "sweep"
    done = subprocess.run([aerun_exe, "-m", *SLURM_JOB, "model=shallow", "model.hidden=8,16", "dataset=synthetic",
                           "epochs=1", "device=cpu", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "[slurm] 2 jobs: 0 pending, 0 running, 2 done, 0 failed" in done.stdout
    assert "Bypassing sacct error" not in done.stdout + done.stderr  # the local cluster keeps accounts
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.pt").is_file()
    evaluated = subprocess.run([aerun_exe, "eval", f"run={sweep}"], capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "| model.hidden=8 |" in (sweep / "eval.md").read_text()


@pytest.mark.slurm
def test_a_cancelled_job_is_one_line_with_its_log_and_resumes(slurm, aerun_exe, tmp_path):
    sweep, name = tmp_path / "sweep", f"aerun-cancel-{time.time_ns()}"
    command = [aerun_exe, "-m", *SLURM_JOB, f"hydra.launcher.name={name}", "model=shallow", "model.hidden=8,16",
               "dataset=synthetic", "epochs=5000", "device=cpu", f"hydra.sweep.dir={sweep}"]
    sweeping = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (sweep / "1" / "checkpoints" / "last.pt").exists():
            assert time.time() < deadline and sweeping.poll() is None, "the job never wrote a checkpoint"
            time.sleep(1)
        subprocess.run(["scancel", "--name", name], check=True, timeout=30)
        out, err = sweeping.communicate(timeout=300)
    finally:
        sweeping.kill()
    assert sweeping.returncode == 1, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and all(line.startswith("aerun: error: ") for line in lines)
    cancelled = [line for line in lines if "ended CANCELLED" in line]
    assert len(cancelled) == 2 and "(model.hidden=16)" in " ".join(cancelled)
    log = Path(cancelled[0].rsplit("its log: ", 1)[1])
    assert log.is_file()
    assert "[slurm] 2 jobs:" in out and "2 failed" in out
    kept = len((sweep / "1" / "loss_epoch.csv").read_text().splitlines()) - 1
    resumed = subprocess.run([aerun_exe, "train", f"resume={sweep / '1'}", f"epochs={kept + 1}"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    history = (sweep / "1" / "loss_epoch.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in history] == list(range(1, kept + 2))


@pytest.mark.slurm
def test_a_requeued_job_goes_on_from_its_checkpoint_and_ends_as_a_straight_one(slurm, aerun_exe, tmp_path):
    """`scontrol requeue` on a running job, as preemption or a failed node does: the job runs again by itself,
    resumes its last checkpoint and ends with the weights of a job that never stopped."""
    import torch

    from aerun import checkpoint as ckpt

    name = f"aerun-requeue-{time.time_ns()}"
    job = ["model=shallow", "model.hidden=8", "dataset=synthetic", "dataset.n_train=2048", "epochs=200", "device=cpu"]
    # the same job straight, at the same time (the local node has a CPU for each)
    straight = subprocess.Popen([aerun_exe, "-m", *SLURM_JOB, *job, f"hydra.sweep.dir={tmp_path / 'straight'}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweeping = subprocess.Popen([aerun_exe, "-m", *SLURM_JOB, f"hydra.launcher.name={name}", *job,
                                 f"hydra.sweep.dir={tmp_path / 'requeued'}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (tmp_path / "requeued" / "0" / ckpt.CHECKPOINT).exists():
            assert time.time() < deadline and sweeping.poll() is None, "the job never wrote a checkpoint"
            time.sleep(0.2)
        job_id = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True,
                                timeout=30).stdout.split()[0]
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
        while "PENDING" not in subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                                              text=True, timeout=30).stdout:
            assert time.time() < deadline, "the job never went back to the queue"
            time.sleep(0.5)
        # Slurm holds a requeued job back for a while (its begin time); let it start at once
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
        out, err = sweeping.communicate(timeout=600)
        _, straight_err = straight.communicate(timeout=600)
    finally:
        sweeping.kill()
        straight.kill()
    assert sweeping.returncode == 0, err
    assert "requeued" in out and "1 done, 0 failed, 1 requeued" in out, out
    log = (tmp_path / "requeued" / "0" / "train.log").read_text()
    assert "resuming from epoch" in log, log
    assert straight.returncode == 0, straight_err
    a, b = (ckpt.load(tmp_path / d / "0" / ckpt.CHECKPOINT) for d in ("requeued", "straight"))
    assert a["epoch"] == b["epoch"] == 200
    assert all(torch.equal(a["model"]["state"][k], b["model"]["state"][k]) for k in b["model"]["state"])


@pytest.mark.slurm
def test_the_report_runs_through_slurm(slurm, aerun_exe, tmp_path):
    done = report(aerun_exe, tmp_path, "seeds=2", *SLURM_JOB)
    assert done.returncode == 0, done.stderr
    assert "[report] 2 jobs to slurm" in done.stdout and "2 done, 0 failed" in done.stdout
    assert (tmp_path / "runs" / "manifold" / "0-seed1" / "checkpoints" / "last.pt").is_file()
    assert "trained with seeds 0–1" in (tmp_path / "report.md").read_text()


# --------------------------------------------------------------------------- watching runs as people do


def test_tensorboard_events_carry_what_the_csvs_carry(make_cfg, tmp_path):
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from aerun.train import train
    from conftest import SMOKE

    run = tmp_path / "run"
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "logger=tensorboard"]), run)
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"loss/train_iteration", "loss/train_epoch", "loss/test_epoch", "learning_rate"} <= set(
        events.Tags()["scalars"])
    with open(run / "loss_iter.csv", newline="") as f:
        iterations = list(csv.DictReader(f))
    logged = events.Scalars("loss/train_iteration")
    assert [e.step for e in logged] == [int(r["step"]) for r in iterations]
    assert [e.value for e in logged] == pytest.approx([float(r["loss"]) for r in iterations], rel=1e-5)
    with open(run / "loss_epoch.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    assert [e.value for e in events.Scalars("loss/test_epoch")] == pytest.approx(
        [float(r["test_loss"]) for r in epochs], rel=1e-5)
    images = events.Images("showcase/original_and_reconstruction")
    assert len(images) == len(epochs) == 2
