"""Trackers (`logger=`): MLflow against a real SQLite store and a real `mlflow server` on 127.0.0.1, W&B with its real
client offline (what it wrote read back from its own files), TensorBoard's events; one tracker run per run, per sweep
job, continued on resume; a tracker that cannot start is one line before training; one from another package is
found through the `aerun.loggers` entry points."""

from __future__ import annotations

import csv
import glob
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from aerun import checkpoint as ckpt
from aerun import failures, loggers
from aerun.errors import UserError
from conftest import SMOKE

TINY = [*SMOKE, "model=shallow", "model.hidden=8"]


@pytest.fixture(autouse=True)
def in_its_folder(tmp_path, monkeypatch):
    """Each test in its own folder: MLflow puts a SQLite store's artifacts in ./mlruns, W&B its settings in ./wandb."""
    monkeypatch.chdir(tmp_path)


def epoch_rows(run: Path) -> list[dict[str, float]]:
    with open(run / "loss_epoch.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def recorded_id(run: Path, name: str) -> str:
    return json.loads((run / loggers.RECORD).read_text())[name]["id"]


def metric_table(client, run_id: str, names) -> list[dict[str, float]]:
    """Each epoch's metrics as MLflow holds them, one dict per step."""
    steps: dict[int, dict[str, float]] = {}
    for name in names:
        for m in client.get_metric_history(run_id, name):
            steps.setdefault(m.step, {})[name] = m.value
    return [steps[s] for s in sorted(steps)]


# --------------------------------------------------------------------------- MLflow


def test_mlflow_holds_the_config_every_epoch_and_the_files_and_a_resumed_run_goes_on_in_it(make_cfg, tmp_path):
    from aerun.evaluate import evaluate
    from aerun.plot import plot
    from aerun.train import train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tmp_path / "run"
    tracked = [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "dataset.val_size=64"]
    train(make_cfg("train", [*tracked, "epochs=2"]), run)
    client = mlflow_client(uri)
    run_id = recorded_id(run, "mlflow")
    held = client.get_run(run_id)
    assert held.info.status == "FINISHED" and held.info.run_name == f"{tmp_path.name}/run"
    assert held.data.params["model.hidden"] == "8" and held.data.params["dataset.val_size"] == "64"
    assert held.data.params["optimizer.lr"] == "0.0003" and held.data.params["epochs"] == "2"
    rows = epoch_rows(run)
    assert {"val_loss", "train_penalty", "seconds"} <= set(rows[0])
    assert metric_table(client, run_id, rows[0]) == rows  # every column, every epoch, the values of the CSV

    train(make_cfg("train", [*tracked, "epochs=3"]), run, resume=True)
    assert recorded_id(run, "mlflow") == run_id  # the same tracker run, not a second one
    assert len(client.search_runs([held.info.experiment_id])) == 1
    rows = epoch_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and metric_table(client, run_id, rows[0]) == rows
    assert client.get_run(run_id).data.tags["aerun.resumed_with"] == "epochs=3"

    evaluate(run, "unused", "cpu")
    figures = plot(run, "unused", "cpu")
    sent = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"eval.json", "eval.md", "figures/reconstructions.png"} <= sent
    assert len([p for p in figures if p.parent == run / "figures"]) == len(client.list_artifacts(run_id, "figures"))
    local = client.download_artifacts(run_id, "eval.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == json.loads((run / "eval.json").read_text())
    assert client.get_run(run_id).info.status == "FINISHED"  # eval and plot leave it as training did


def test_a_run_interrupted_is_killed_in_mlflow_and_its_epochs_up_to_there_are_kept(make_cfg, tmp_path, monkeypatch):
    import aerun.train
    from aerun.train import train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = []
    real = aerun.train.train_epoch

    def second_epoch_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(aerun.train, "train_epoch", second_epoch_interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("train", [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]), run)
    client = mlflow_client(uri)
    held = client.get_run(recorded_id(run, "mlflow"))
    assert held.info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(held.info.run_id, "train_loss")] == [1]


def test_a_new_mlflow_store_leaves_the_runs_log_as_it_was(make_cfg, tmp_path):
    """MLflow migrates a new SQLite store with Alembic, whose script reconfigures logging from a file: the run's
    train.log must go on receiving every epoch's line."""
    import logging

    from aerun.train import train

    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "train.log")
    before = (list(root.handlers), root.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        train(make_cfg("train", [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'new.db'}"]),
              tmp_path / "run")
        assert handler in root.handlers and root.level == logging.INFO
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(before[1])
    said = (tmp_path / "train.log").read_text()
    assert "epoch 1/2" in said and "epoch 2/2" in said and "alembic" not in said and "Running upgrade" not in said


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server on 127.0.0.1 (its own SQLite store and artifact folder): its URL."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--artifacts-destination", str(tmp_path / "artifacts")],
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer in 120 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_a_sweep_is_one_mlflow_experiment_with_one_run_per_job_on_a_real_server(aerun_exe, mlflow_server, tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    done = subprocess.run([aerun_exe, "-m", *TINY, "model.hidden=4,8", "logger=mlflow", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow_client(mlflow_server)
    experiment = client.get_experiment_by_name("aerun/sweep")  # the sweep folder, relative to where it ran
    assert experiment is not None
    held = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["model.hidden"] for r in held) == ["4", "8"]
    for r in held:
        job = sweep / r.info.run_name
        assert r.info.status == "FINISHED" and recorded_id(job, "mlflow") == r.info.run_id
        assert r.data.tags["aerun.sweep"] == "sweep"
        rows = epoch_rows(job)
        assert metric_table(client, r.info.run_id, rows[0]) == rows
    evaluated = subprocess.run([aerun_exe, "eval", f"run={sweep}"], capture_output=True, text=True, env=env,
                               cwd=tmp_path, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    for r in held:
        assert "eval.json" in {a.path for a in client.list_artifacts(r.info.run_id)}


def test_a_tracking_server_that_does_not_answer_is_one_line_before_training(tmp_path, monkeypatch, capfd):
    from aerun import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    monkeypatch.setattr(sys, "argv", ["aerun", *TINY, "logger=mlflow", "hydra.run.dir=run"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    err = capfd.readouterr().err.strip()
    assert ended.value.code == failures.EXIT_USER_ERROR
    assert len(err.splitlines()) == 1 and f"the MLflow server at {down} does not answer" in err
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "loss_epoch.csv").exists()


def test_a_tracker_whose_package_is_missing_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails as where it is not installed
    with pytest.raises(UserError, match=r"logger=wandb needs the wandb package; install it with pip install "
                                        r"'aerun\[wandb\]'"):
        loggers.check({"wandb": {}})


def test_an_unknown_logger_is_refused_naming_those_there_are(make_cfg):
    with pytest.raises(UserError, match=r"logger='comet' is not a logger; allowed: csv, mlflow, tensorboard, wandb"):
        loggers.check("comet")
    assert loggers.selected(make_cfg("train", []).logger) == {}  # csv: no tracker
    assert set(loggers.selected(make_cfg("train", ["logger=[tensorboard,mlflow]"]).logger)) == {"tensorboard", "mlflow"}
    assert loggers.selected("mlflow") == {"mlflow": {"tracking_uri": None, "experiment": "aerun"}}  # a resume's name


# --------------------------------------------------------------------------- W&B, offline


def wandb_records(run: Path) -> list:
    """Every record of every offline W&B run under a run folder, read from the run-*.wandb files W&B wrote (its
    transaction log: a 7-byte header, then 32 KiB blocks of records, each with a 7-byte header of checksum,
    length and type: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    found = []
    for path in sorted(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))):
        data = Path(path).read_bytes()
        assert data[:4] == b":W&B"
        pos, pending = 7, b""
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            if left < 7:
                pos += left
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            if kind == 0 and length == 0:  # the rest of a block, unused
                pos += left
                continue
            chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):
                record = pb.Record()
                record.ParseFromString(pending)
                found.append(record)
    return found


def key_of(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B writes a key as one or the other


def test_wandb_offline_writes_the_config_every_epoch_and_eval_and_a_resume_keeps_its_id(make_cfg, tmp_path,
                                                                                        monkeypatch):
    from aerun.evaluate import evaluate
    from aerun.train import train

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # nothing of W&B's outside the test's folder
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    run = tmp_path / "run"
    train(make_cfg("train", [*TINY, "logger=wandb"]), run)
    run_id = recorded_id(run, "wandb")
    train(make_cfg("train", [*TINY, "logger=wandb", "epochs=3"]), run, resume=True)
    assert recorded_id(run, "wandb") == run_id
    evaluate(run, "unused", "cpu")
    records = wandb_records(run)
    starts = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert len(starts) == 3 and {s.run_id for s in starts} == {run_id}  # train, resume, eval: one W&B run
    # W&B names an offline run's folder by the second it started: the three folders' order on disk is not
    # necessarily the runs' order, so the records are matched by what they hold
    configs = [{key_of(u): json.loads(u.value_json) for u in s.config.update} for s in starts]
    trained = [c for c in configs if "epochs" in c]  # eval's reopening sends no config
    assert sorted(c["epochs"] for c in trained) == ["2", "3"] and {c["model.hidden"] for c in trained} == {"8"}
    assert {s.project for s in starts} == {"aerun"}
    history = sorted(({key_of(i): json.loads(i.value_json) for i in r.history.item}
                      for r in records if r.WhichOneof("record_type") == "history"), key=lambda h: h["_step"])
    rows = epoch_rows(run)
    assert [{k: h[k] for k in rows[0]} for h in history] == rows  # every column of every epoch, once
    assert [h["_step"] for h in history] == [1, 2, 3]
    files = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"eval.json", "eval.md"} <= files


def test_a_sweep_job_is_grouped_by_its_sweep_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "multirun" / "a" / "3").mkdir(parents=True)
    (tmp_path / "outputs" / "multirun" / "a" / "multirun.yaml").write_text("{}\n")
    (tmp_path / "outputs" / "deep" / "t").mkdir(parents=True)
    job = loggers.describe(Path("outputs/multirun/a/3"), {"model": {"hidden": 8}, "seed": 0})
    assert (job.name, job.group, job.params) == ("3", "outputs/multirun/a", {"model.hidden": "8", "seed": "0"})
    alone = loggers.describe(Path("outputs/deep/t"), {})
    assert (alone.name, alone.group) == ("deep/t", None)


# --------------------------------------------------------------------------- any tracker, from any package


@pytest.mark.slow  # installs a package and runs three aerun processes, as test_plugins' family
def test_the_docs_tracker_from_another_package_trains_resumes_and_gets_evals_files(aerun_exe, tmp_path):
    """docs/extending.md's tracker, installed as a package of its own and found through its entry point."""
    from test_plugins import docs_package

    name, env, conf = docs_package(tmp_path, "## Writing your own tracker", "aerun.loggers", "logger")
    run = tmp_path / "run"

    def aerun(*args):
        done = subprocess.run([aerun_exe, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    aerun(*TINY, f"hydra.searchpath=[file://{conf}]", f"logger={name}", f"hydra.run.dir={run}")
    aerun("train", f"resume={run}", "epochs=3")
    aerun("eval", f"run={run}")
    told = [json.loads(line) for line in (tmp_path / "notebook.jsonl").read_text().splitlines()]
    assert [t["event"] for t in told] == ["start", "epoch", "epoch", "finish", "start", "epoch", "finish",
                                          "start", "files", "finish"]
    assert told[0] == {"event": "start", "name": f"{tmp_path.name}/run", "resume_id": None, "hidden": "8"}
    assert told[4]["resume_id"] == f"{tmp_path.name}/run"  # the id it returned, back on resume
    assert [t["metrics"] for t in told if t["event"] == "epoch"] == epoch_rows(run)
    assert told[7]["resume_id"] == told[4]["resume_id"] and told[8]["names"] == ["eval.json", "eval.md"]


FAILING_TRACKER = '''
import json

from aerun.loggers import Tracker, register_logger


@register_logger("flaky")
class Flaky(Tracker):
    def start(self, run, resume_id):
        return None

    def epoch(self, epoch):
        with open(self.options["path"], "a") as f:
            f.write(json.dumps(epoch.epoch) + "\\n")
        raise ConnectionError("the notebook went away")
'''


def test_a_tracker_that_fails_mid_run_is_one_warning_and_the_run_trains_on(make_cfg, tmp_path, monkeypatch, caplog):
    from omegaconf import open_dict

    from aerun.train import train

    namespace: dict = {}
    monkeypatch.setattr(loggers, "LOGGERS", dict(loggers.LOGGERS))  # the registration ends with the test
    exec(compile(FAILING_TRACKER, "flaky.py", "exec"), namespace)
    cfg = make_cfg("train", TINY)
    with open_dict(cfg):
        cfg.logger = {"flaky": {"path": str(tmp_path / "told.jsonl")}}
    run = tmp_path / "run"
    with caplog.at_level("WARNING", logger="aerun.loggers"):
        train(cfg, run)
    assert "logger=flaky could not record epoch 1 (the notebook went away); the run goes on without it" in (
        caplog.text)
    told = [json.loads(line) for line in (tmp_path / "told.jsonl").read_text().splitlines()]
    assert told == [1]  # nothing after the failure: dropped, not retried each epoch
    assert ckpt.load(run / ckpt.CHECKPOINT)["epoch"] == 2 and len(epoch_rows(run)) == 2


def test_wandb_online_without_a_login_is_one_line_before_any_epoch(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no W&B settings of this machine's user
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(UserError, match=r"^logger=wandb could not start \(.*API key.*\); check its settings "
                                        r"\(logger.wandb.\*\) or leave wandb out of logger=$"):
        loggers.Trackers.open({"wandb": {"mode": "online", "project": "aerun"}}, run, {"seed": 0})
    assert not (run / loggers.RECORD).exists()


def test_a_resume_may_add_trackers_from_the_command_line(make_cfg, tmp_path, monkeypatch, capfd):
    from aerun import cli
    from aerun.train import train

    run = tmp_path / "run"
    train(make_cfg("train", [*TINY, "epochs=1"]), run)
    assert not (run / loggers.RECORD).exists()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["aerun", "train", f"resume={run}", "epochs=2", "logger=[tensorboard,mlflow]",
                                      f"logger.mlflow.tracking_uri={uri}"])
    try:
        cli.main()
    except SystemExit as ended:
        assert ended.code in (0, None), capfd.readouterr().err
    run_id = recorded_id(run, "mlflow")
    assert [m.step for m in mlflow_client(uri).get_metric_history(run_id, "test_loss")] == [2]  # from the resume on
    assert list(run.glob("events.out.tfevents.*"))
