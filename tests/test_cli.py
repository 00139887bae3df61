"""The installed `aerun` command, end to end in subprocesses, on synthetic data."""

from __future__ import annotations

import pytest

import json
import os
import subprocess

from conftest import SMOKE


def run(exe, *args, cwd):
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sweep_train_eval_plot(aerun_exe, tmp_path):
    sweep = tmp_path / "sweep"
    done = run(aerun_exe, "-m", *SMOKE, "model=shallow", "model.hidden=8,32", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (sweep / "0" / "checkpoints" / "last.pt").is_file() and (sweep / "1" / "checkpoints" / "last.pt").is_file()

    done = run(aerun_exe, "eval", f"run={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = json.loads((sweep / "eval.json").read_text())
    assert [job["label"] for job in table["jobs"]] == ["model.hidden=8", "model.hidden=32"]
    assert [job["model"]["code_dim"] for job in table["jobs"]] == [8, 32]
    assert (sweep / "1" / "eval.json").is_file()
    assert "model.hidden=32" in done.stdout

    done = run(aerun_exe, "plot", f"run={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("reconstructions.png", "loss_iter.png", "loss_epoch.png", "filters.png", "activations.png"):
        assert (sweep / "figures" / name).is_file() and (sweep / "0" / "figures" / name).is_file()
    assert not (tmp_path / ".hydra").exists(), "eval/plot must not write a run directory of their own"


def test_eval_without_run_is_one_line_and_exit_2(aerun_exe, tmp_path):
    done = run(aerun_exe, "eval", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "needs run=DIR" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_experiment_declares_its_own_sweep(aerun_exe, tmp_path):
    sweep = tmp_path / "standard"
    done = run(aerun_exe, "-m", "experiment=standard", "dataset=synthetic", "epochs=1", "device=cpu",
               f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from aerun import checkpoint as ckpt

    codes = [ckpt.load(sweep / job / ckpt.CHECKPOINT)["model"]["code_dim"] for job in ("0", "1", "2")]
    assert codes == [64, 128, 256]


@pytest.mark.slow
def test_sweeps_run_on_hydra_launchers(aerun_exe, tmp_path):
    """Parallel local jobs (joblib) and submitit's local executor, the same code path as its Slurm one."""
    for launcher in ("joblib", "submitit_local"):
        sweep = tmp_path / launcher
        done = run(aerun_exe, "-m", f"hydra/launcher={launcher}", *SMOKE, "epochs=1", "model=shallow",
                   "model.hidden=8,16", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        from aerun import checkpoint as ckpt

        assert [ckpt.load(sweep / j / ckpt.CHECKPOINT)["model"]["code_dim"] for j in ("0", "1")] == [8, 16]


def test_the_slurm_launcher_config_composes(make_cfg):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from aerun.compose import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 120)


def test_a_reader_that_stops_early_gets_no_error(aerun_exe):
    # `aerun --help | head -3`, at its most abrupt: the reading end is closed before aerun writes a byte
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([aerun_exe, "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 0 and done.stderr == ""


def test_a_model_preset_that_sets_training_keys_says_so_in_the_runs_first_line(tmp_path, monkeypatch):
    import sys

    from aerun import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    said = {}
    for name, args in (("preset", []), ("given", ["epochs=1", "optimizer.lr=0.002"])):
        monkeypatch.setattr(sys, "argv", ["aerun", "model=conv_deconv", "dataset=synthetic", "device=cpu",
                                          "model.channels=[2,2,2]", *args, f"hydra.run.dir={name}"])
        try:
            cli.main()
        except SystemExit as ended:
            assert ended.code in (0, None)
        said[name] = (tmp_path / name / "train.log").read_text().splitlines()
    # conf/model/conv_deconv.yaml sets epochs: 5 and optimizer.lr: 1.0e-3 besides its model node
    assert said["preset"][0].endswith("model=conv_deconv also sets epochs=5, optimizer.lr=0.001 "
                                      "(conf/model/conv_deconv.yaml); give any of them on the command line to change it")
    assert "also sets" not in "\n".join(said["given"])  # both given: nothing is set behind the user's back


def test_the_plot_commands_part_5_levels_are_the_reports():
    from omegaconf import OmegaConf

    from aerun.compose import CONF_DIR
    from aerun.plot import CODE_NOISE, PIXEL_NOISE

    plot = OmegaConf.load(CONF_DIR / "plot.yaml")
    assert (tuple(plot.pixel_noise), tuple(plot.code_noise)) == (PIXEL_NOISE, CODE_NOISE)
    assert PIXEL_NOISE == (0.3, 0.5, 0.8, 0.9) and CODE_NOISE == (0.1, 0.5, 0.8, 500.0)  # ASSIGNMENT.md part 5


def test_aerun_train_builds_its_model_once(tmp_path, monkeypatch):
    """The command line's check, train()'s check and the training itself share one model."""
    import sys

    from aerun import cli
    from aerun.models.base import Autoencoder

    built = []
    init = Autoencoder.__init__

    def counted(self, *args, **kwargs):
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Autoencoder, "__init__", counted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["aerun", "model=shallow", "model.hidden=8", "dataset=synthetic", "device=cpu",
                                      "epochs=1", "hydra.run.dir=run"])
    try:
        cli.main()
    except SystemExit as ended:
        assert ended.code in (0, None)
    assert built == ["MLPAutoencoder"]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
