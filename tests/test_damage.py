"""Nothing silently wrong: a damaged checkpoint is found by its checksum, named, and recovered from the
previous one; every file aerun writes is whole or absent, a full disk included."""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import random
import shutil
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from aerun import atomic
from aerun import checkpoint as ckpt
from aerun.errors import EnvironmentFailure, UserError
from aerun.evaluate import evaluate
from aerun.plot import plot
from aerun.train import train

from conftest import SMOKE, unavailable

RUN = [*SMOKE, "model=shallow", "model.hidden=16", "epochs=3"]


def records(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of each tensor's bytes in a torch checkpoint (a zip archive, one record per storage)."""
    found = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size >= 8:
                f.seek(info.header_offset + 26)
                name_length, extra_length = struct.unpack("<HH", f.read(4))
                found.append((info.header_offset + 30 + name_length + extra_length, info.file_size))
    return found


def differs(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return not torch.equal(a, b)
    if isinstance(a, dict):
        return any(differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return any(differs(x, y) for x, y in zip(a, b))
    return a != b


def damage(path: Path, part: str) -> None:
    """Overwrite four bytes in the middle of one tensor of `part` ("model" or "optimizer"): the file still
    loads, one of its numbers is different."""
    raw = path.read_bytes()
    original = torch.load(path, weights_only=True)
    for offset, size in records(path):
        broken = bytearray(raw)
        broken[offset + size // 2: offset + size // 2 + 4] = b"\x12\x34\x56\x78"
        path.write_bytes(bytes(broken))
        loaded = torch.load(path, weights_only=True)  # it loads: only the checksum can tell
        if differs(original[part], loaded[part]) and not differs(
                {k: v for k, v in original.items() if k != part}, {k: v for k, v in loaded.items() if k != part}):
            return
    raise AssertionError(f"no tensor record of {part} found in {path}")


def aerun(exe, *args, cwd):
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line(done) -> str:
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """A run of RUN trained straight through, once for the module."""
    from aerun.compose import compose_config

    where = tmp_path_factory.mktemp("straight")
    train(compose_config("train", RUN), where)
    return where


@pytest.mark.slow
@pytest.mark.parametrize("how", ["model", "optimizer", "truncated"])
def test_a_damaged_checkpoint_is_named_and_the_run_resumes_from_the_previous_one(aerun_exe, straight, tmp_path, how):
    run = tmp_path / "run"
    shutil.copytree(straight, run)  # the same run: training is deterministic
    last = run / ckpt.CHECKPOINT
    assert ckpt.read(run / ckpt.PREVIOUS)["epoch"] == 2  # the checkpoint before the last is kept
    if how == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        damage(last, how)
    for command in ("eval", "plot"):
        done = aerun(aerun_exe, command, f"run={run}", cwd=tmp_path)
        line = one_line(done)
        assert done.returncode == 1
        assert ("fails its checksum" if how != "truncated" else "is unreadable") in line
        assert f"{run / ckpt.PREVIOUS} (epoch 2), is intact" in line and f"aerun train resume={run}" in line
    assert not (run / "eval.json").exists()  # nothing was evaluated from a damaged model

    done = aerun(aerun_exe, "train", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"continuing from {run / ckpt.PREVIOUS} (epoch 2)" in (run / "train.log").read_text()
    a, b = (ckpt.read(path / ckpt.CHECKPOINT) for path in (straight, run))
    assert b["epoch"] == 3 and all(torch.equal(a["model"]["state"][k], b["model"]["state"][k]) for k in a["model"]["state"])
    history = (run / "loss_epoch.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in history] == ["1", "2", "3"]  # epoch 3's first rows were cut back


def test_both_checkpoints_damaged_and_a_checkpoint_from_before_checksums(make_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    train(make_cfg("train", [*RUN, "epochs=2"]), run)
    damage(run / ckpt.CHECKPOINT, "model")
    damage(run / ckpt.PREVIOUS, "model")
    with pytest.raises(EnvironmentFailure, match="and no intact previous checkpoint"):
        ckpt.load(run / ckpt.CHECKPOINT)
    with pytest.raises(EnvironmentFailure, match="fails its checksum .*, and checkpoint .*previous.pt fails its checksum"):
        train(make_cfg("train", [*RUN, "epochs=2"]), run, resume=True)

    old = tmp_path / "old"
    train(make_cfg("train", [*RUN, "epochs=1"]), old)
    state = torch.load(old / ckpt.CHECKPOINT, weights_only=True)
    del state["sha256"]  # as aerun wrote checkpoints before checksums
    torch.save(state, old / ckpt.CHECKPOINT)
    with caplog.at_level(logging.INFO, logger="aerun.checkpoint"):
        evaluate(old, "unused", "cpu")
        evaluate(old, "unused", "cpu")
    said = [r for r in caplog.records if "written before aerun checksummed" in r.getMessage()]
    assert len(said) == 1  # said once, not at every load


def test_the_checksum_covers_every_number_and_nothing_else():
    state = {"format": 1, "model": {"state": {"w": torch.arange(6.0).view(2, 3)}}, "optimizer": {"state": {0: {
        "step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
        "epoch": 1, "step": 3, "config": {"seed": 0}}
    reference = ckpt.content_digest(state)
    assert reference == ckpt.content_digest({**state, "sha256": "anything"})  # the digest leaves itself out
    for change in ({"epoch": 2}, {"config": {"seed": 1}},
                   {"model": {"state": {"w": torch.arange(6.0).view(3, 2)}}},          # the same numbers, reshaped
                   {"model": {"state": {"w": torch.arange(6).view(2, 3)}}},            # the same values, as integers
                   {"model": {"state": {"w": torch.arange(6.0).view(2, 3) + 1e-7}}}):  # one bit of one number
        assert ckpt.content_digest({**state, **change}) != reference, change


@pytest.mark.slow
def test_the_report_resumes_a_job_whose_checkpoint_is_damaged(aerun_exe, tmp_path):
    root = tmp_path / "r"
    overrides = 'train_overrides=["dataset=synthetic","epochs=2","batch_size=64"]'
    first = aerun(aerun_exe, "report", f"dir={root}", overrides, "parts=[manifold]", "device=cpu", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    damage(root / "runs" / "manifold" / "0" / ckpt.CHECKPOINT, "optimizer")
    again = aerun(aerun_exe, "report", f"dir={root}", overrides, "parts=[manifold]", "device=cpu", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "manifold seed 0: resuming at epoch 1" in again.stdout  # not reused as if whole
    assert ckpt.read(root / "runs" / "manifold" / "0" / ckpt.CHECKPOINT)["epoch"] == 2


def test_a_state_that_holds_non_finite_values_is_named_not_blamed_on_the_learning_rate(make_cfg, tmp_path):
    run = tmp_path / "run"
    train(make_cfg("train", [*RUN, "epochs=1"]), run)
    state = ckpt.read(run / ckpt.CHECKPOINT)
    next(iter(state["optimizer"]["state"].values()))["exp_avg"].view(-1)[0] = float("nan")
    ckpt.save(state, run / ckpt.CHECKPOINT)  # a whole file: its checksum is right, its numbers are not
    config = OmegaConf.create(state["config"])
    config.epochs = 2
    with pytest.raises(EnvironmentFailure, match=r"holds non-finite values in its optimizer state \(.*exp_avg\)"):
        train(config, run, resume=True)

    state = ckpt.read(run / ckpt.CHECKPOINT)
    for v in state["optimizer"]["state"].values():
        v["exp_avg"].zero_()
    weight = state["model"]["state"]["encoder.0.weight"]
    weight.fill_(3e38)  # finite, but the first step overflows
    ckpt.save(state, run / ckpt.CHECKPOINT)
    with pytest.raises(UserError, match="the first step after resuming from .*last.pt \\(epoch 1\\)") as caught:
        train(config, run, resume=True)
    assert "try a smaller optimizer.lr" not in str(caught.value)


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def disk(tmp_path):
    """A small file system of its own (tmpfs, root only), to fill up."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        unavailable("TMPFS", f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> None:
    """Write until the file system is full, so the next write fails with ENOSPC (unbuffered: closing the file has
    nothing left to write, whatever room the last write found)."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def left_over(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


@pytest.mark.slow
def test_every_writer_leaves_the_previous_file_whole_on_a_full_disk(aerun_exe, make_cfg, disk):
    run = disk / "run"
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1"]), run)
    evaluate(run, "unused", "cpu")
    plot(run, "unused", "cpu")
    before = {p: p.read_bytes() for p in (run / "eval.json", run / "eval.md", run / "figures" / "reconstructions.png",
                                          run / ckpt.CHECKPOINT)}
    fill(disk)
    with pytest.raises(OSError) as full:
        atomic.write_json(run / "eval.json", {"a": "x" * 100000})
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        ckpt.save(ckpt.read(run / ckpt.CHECKPOINT), run / ckpt.CHECKPOINT)
    done = aerun(aerun_exe, "eval", f"run={run}", cwd=disk.parent)
    assert done.returncode == 1 and "the disk is full" in one_line(done)
    done = aerun(aerun_exe, "plot", f"run={run}", cwd=disk.parent)
    assert done.returncode == 1 and "the disk is full" in one_line(done)
    assert {p: p.read_bytes() for p in before} == before  # every previous file as it was
    assert json.loads((run / "eval.json").read_text())["epoch"] == 1
    assert not left_over(disk)  # and no half-written temporary file beside them
    assert not (run / ckpt.PREVIOUS).exists() or ckpt.read(run / ckpt.PREVIOUS)


# --------------------------------------------------------------------------- killed at random moments


def epochs_written(run: Path) -> int:
    path = run / "loss_epoch.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.slow
def test_killed_at_random_moments_and_resumed_it_ends_as_a_run_that_never_stopped(aerun_exe, make_cfg, tmp_path):
    # 20 epochs: each kill lands within about two epochs of the last, so four always come before the end, on a
    # loaded machine too (where epochs run faster or slower than the straight run's measured one)
    overrides = [*SMOKE, "dataset.n_train=4096", "batch_size=32", "model=shallow", "model.hidden=32", "epochs=20"]
    train(make_cfg("train", overrides), tmp_path / "straight")
    with open(tmp_path / "straight" / "loss_epoch.csv", newline="") as f:  # what an epoch and its save take here
        epoch_s = max(float(row["seconds"]) for row in csv.DictReader(f)) + 0.05
    run, rng, kills = tmp_path / "chaos", random.Random(20261202), 0
    command = [aerun_exe, *overrides, f"hydra.run.dir={run}"]
    while True:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills < 4:  # wait for the next epoch to begin, then kill -9 at a random moment of it (or of its save)
            start = epochs_written(run)
            while proc.poll() is None and epochs_written(run) == start:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, epoch_s))  # a moment of that epoch, however fast epochs are here
        if kills < 4 and proc.poll() is None:
            proc.kill()
            proc.wait()
            kills += 1
        else:
            assert proc.wait(timeout=300) == 0, proc.stderr.read()
            break
        if (run / ckpt.CHECKPOINT).exists():
            command = [aerun_exe, "train", f"resume={run}"]
    assert kills == 4
    a, b = (ckpt.read(path / ckpt.CHECKPOINT) for path in (tmp_path / "straight", run))
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (20, 20 * 128)
    assert all(torch.equal(a["model"]["state"][k], b["model"]["state"][k]) for k in a["model"]["state"])
    assert all(torch.equal(x, y) for x, y in zip(a["optimizer"]["state"][0].values(), b["optimizer"]["state"][0].values()))
    for name in ("loss_iter.csv", "loss_epoch.csv"):  # the histories too, cut back at every kill and written again
        straight, chaos = ([line.split(",")[:4] for line in (p / name).read_text().splitlines()]
                           for p in (tmp_path / "straight", run))
        assert straight == chaos, name


def test_resumed_through_the_command_line_it_ends_weight_for_weight_as_a_straight_run(aerun_exe, make_cfg, tmp_path):
    overrides = [*SMOKE, "model=shallow", "model.hidden=16", "noise=gaussian", "noise.level=0.3", "augment_shift=1"]
    train(make_cfg("train", [*overrides, "epochs=3"]), tmp_path / "straight")
    run = tmp_path / "cli"
    assert aerun(aerun_exe, *overrides, "epochs=1", f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    done = aerun(aerun_exe, "train", f"resume={run}", "epochs=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    a, b = (ckpt.read(path / ckpt.CHECKPOINT) for path in (tmp_path / "straight", run))
    assert b["epoch"] == 3 and all(torch.equal(a["model"]["state"][k], b["model"]["state"][k]) for k in a["model"]["state"])
