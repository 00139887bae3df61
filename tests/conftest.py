"""Shared fixtures: configs composed as the CLI composes them, shrunk to synthetic data."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from aerun.compose import CONF_DIR

SMOKE = ["dataset=synthetic", "epochs=2", "batch_size=64", "device=cpu"]


@pytest.fixture(autouse=True)
def root_logging_restored():
    """A test that runs the CLI in-process leaves Hydra's logging set-up behind (handlers writing to that test's
    captured, then closed, streams): each test ends with the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def make_cfg():
    """compose(command, overrides) with the project's conf/, clearing Hydra's global state after."""

    def make(command: str = "train", overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=command, overrides=overrides or [])

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def refused(monkeypatch, capfd):
    """refused(*args): the one line `aerun ARGS`, run in-process, ends with; its exit must be the user-error one."""
    from aerun import cli, failures

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")

    def run(*args: str) -> str:
        monkeypatch.setattr(sys, "argv", ["aerun", *args])
        with pytest.raises(SystemExit) as ended:
            cli.main()
        err = capfd.readouterr().err.strip()
        assert ended.value.code == failures.EXIT_USER_ERROR and len(err.splitlines()) == 1, err
        return err

    return run


@pytest.fixture
def straight_and_resumed(make_cfg, tmp_path):
    """train(overrides) straight for 2 epochs, and 1 + 1 resumed: the two checkpoints' model states."""

    def run(overrides: list[str]) -> tuple[dict, dict]:
        from aerun import checkpoint as ckpt
        from aerun.train import train

        train(make_cfg("train", overrides), tmp_path / "straight")
        train(make_cfg("train", [*overrides, "epochs=1"]), tmp_path / "resumed")
        train(make_cfg("train", overrides), tmp_path / "resumed", resume=True)
        return tuple(ckpt.load(tmp_path / name / ckpt.CHECKPOINT)["model"]["state"] for name in ("straight", "resumed"))

    return run


@pytest.fixture(scope="session")
def aerun_exe() -> str:
    """The installed console script, next to this interpreter (the venv's) or on PATH."""
    beside = Path(sys.executable).parent / "aerun"
    exe = str(beside) if beside.exists() else shutil.which("aerun")
    assert exe, "the aerun console script is not installed (pip install -e .)"
    return exe


def unavailable(what: str, why: str) -> None:
    """Skip a test that needs `what` (MNIST, SLURM) where it is missing, saying why; where the environment
    says it must be there (`AERUN_REQUIRE_<WHAT>=1`, as CI sets), fail instead: a skip is not a pass."""
    if os.environ.get(f"AERUN_REQUIRE_{what}", "") not in ("", "0"):
        pytest.fail(f"{why}, and AERUN_REQUIRE_{what} is set: this test must run here")
    pytest.skip(why)


def mnist_path() -> Path:
    """The MNIST that `make check` fetched."""
    where = os.environ.get("AERUN_TEST_MNIST")
    if not where:
        unavailable("MNIST", "AERUN_TEST_MNIST is not set (make check sets it after `aerun data`)")
    return Path(where)


@pytest.fixture
def mnist_dir() -> Path:
    """The MNIST that `make check` fetched; a plain pytest run without it skips these tests (marked `mnist`)."""
    return mnist_path()


def pytest_collection_modifyitems(items):
    """A test that reads the real MNIST is marked `mnist` (out of `make test`'s fast loop), whether or not it says so."""
    for item in items:
        if "mnist_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mnist)
