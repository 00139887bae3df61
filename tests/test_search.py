"""`aerun -m hydra/sweeper=optuna`: a search on the validation split that continues to its total and prunes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.utils import JobStatus

from aerun import checkpoint as ckpt
from aerun.train import train
from hydra_plugins.aerun_search.search import INTERRUPTED, SearchSweeperImpl, optuna
from optuna.trial import TrialState

from conftest import SMOKE

SEARCH = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0", "dataset=synthetic", "batch_size=64",
          "device=cpu", "model=shallow", "search.pruner=none", "optimizer.lr=interval(1e-3,1e-2)",
          "model.hidden=choice(8,16)"]


def search(exe, *args, cwd):
    return subprocess.run([exe, *SEARCH, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def study(sweep):
    return optuna.load_study(study_name="aerun", storage=f"sqlite:///{sweep}/study.db")


@pytest.mark.slow
def test_a_search_continues_to_its_total_and_reruns_the_trial_it_stopped_in(aerun_exe, tmp_path):
    sweep = tmp_path / "search"
    args = ["dataset.val_size=256", "epochs=2", f"hydra.sweep.dir={sweep}"]
    done = search(aerun_exe, "hydra.sweeper.n_trials=2", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[search] study aerun in " in done.stdout and "0 of 2 trials done, 2 to go" in done.stdout
    assert [t.state for t in study(sweep).trials] == [TrialState.COMPLETE] * 2

    # stopped while its third trial trains (a slower one: more epochs on more images)
    slow = ["dataset.val_size=256", "dataset.n_train=4096", "epochs=50", f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen([aerun_exe, *SEARCH, "hydra.sweeper.n_trials=4", *slow], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (sweep / "2" / ckpt.CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode != 0
    assert study(sweep).trials[2].state == TrialState.RUNNING

    # again, shorter: the running trial is failed and rerun with its parameters; four finished in all
    done = search(aerun_exe, "hydra.sweeper.n_trials=4", "dataset.n_train=4096", "epochs=2", *slow[:1],
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 of 4 trials done, 1 interrupted to rerun, 2 to go" in done.stdout
    trials = study(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert trials[2].user_attrs[INTERRUPTED] and trials[3].params == trials[2].params
    assert (sweep / "4" / ckpt.CHECKPOINT).is_file() and (sweep / "optimization_results.yaml").is_file()
    assert "[search] best: trial " in done.stdout

    done = search(aerun_exe, "hydra.sweeper.n_trials=4", *args, cwd=tmp_path)  # its total reached: nothing to do
    assert done.returncode == 0 and "4 of 4 trials done, 0 to go" in done.stdout, done.stderr
    assert len(study(sweep).trials) == 5

    done = subprocess.run([aerun_exe, "eval", f"run={sweep}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    page = (sweep / "index.md").read_text().split("## The search", 1)[1]
    best = study(sweep).best_trial
    assert f"Best trial: {best.number}, objective {best.value:.6g}" in page
    assert "| 2 | fail | - |" in page and "| parameter | importance |" in page
    shares = [float(line.split("|")[2]) for line in page.splitlines() if line.startswith(("| model.hidden |",
                                                                                            "| optimizer.lr |"))]
    assert len(shares) == 2 and abs(sum(shares) - 1) < 1e-3


@pytest.mark.parametrize("args, named", [
    (["epochs=1"], "a search is tuned on a validation split, never on the test split"),
    (["epochs=1", "dataset.val_size=64", "search.metric=test_loss"], "search.metric=test_loss is not allowed"),
    (["epochs=1", "dataset.val_size=64", "model.hiden=choice(8,16)"], "model.hiden is not a config key"),
    (["epochs=1", "dataset.val_size=64", "hydra.sweeper.direction=maximize"],
     "hydra.sweeper.direction=maximize would search for the worst val_loss"),
])
@pytest.mark.slow
def test_a_search_that_would_read_the_test_split_or_cannot_run_is_one_line(aerun_exe, tmp_path, args, named):
    done = search(aerun_exe, *args, f"hydra.sweep.dir={tmp_path / 'search'}", cwd=tmp_path)
    message = done.stderr.strip()
    assert done.returncode == 2 and message.startswith("aerun: error: ") and "\n" not in message, done.stderr
    assert named in message
    assert not (tmp_path / "search").exists()


def test_a_pruned_trial_stops_after_the_epoch_it_is_pruned_at(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "epochs=3", "model=shallow", "dataset.val_size=256"])
    told = []
    summary = train(cfg, tmp_path, after_epoch=lambda epoch, measures: told.append((epoch, measures)) or epoch == 1)
    assert summary["pruned_at"] == 1 and ckpt.load(tmp_path / ckpt.CHECKPOINT)["epoch"] == 1
    assert len(told) == 1 and set(told[0][1]) == {"val_loss"} and told[0][1]["val_loss"] > 0


@pytest.mark.slow
def test_a_search_on_the_validation_probe_maximises_it(aerun_exe, tmp_path):
    sweep = tmp_path / "search"
    done = search(aerun_exe, "hydra.sweeper.n_trials=2", "search.metric=val_probe", "dataset.val_size=256",
                  "epochs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    studied = study(sweep)
    values = [t.value for t in studied.trials]
    assert studied.direction == optuna.study.StudyDirection.MAXIMIZE and all(0 < v <= 1 for v in values)
    assert studied.best_value == max(values) and "[search] trial 0: val_probe " in done.stdout


def test_the_sweeper_tells_optuna_what_each_trial_returned():
    studied = optuna.create_study()
    sweeper = SearchSweeperImpl(None, "minimize", None, None, 3, 1, None, None, None)
    outcomes = [{"metric": "val_loss", "value": 0.5}, {"pruned_at": 2}, {"failed": "the loss became non-finite"}]
    for outcome in outcomes:
        trial = studied.ask()
        trial.report(0.9, 1)
        sweeper._tell(studied, trial, SimpleNamespace(status=JobStatus.COMPLETED, return_value=outcome))
    assert [t.state for t in studied.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert studied.best_value == 0.5


@pytest.mark.parametrize("metric, values, best, last", [
    ("val_loss", [0.5, 0.3, 0.4, 0.3], (0.3, 2), (0.3, 4)),    # lowest; of a tie the first, as best.pt keeps it
    ("val_probe", [0.8, 0.9, 0.85], (0.9, 2), (0.85, 3)),       # highest
])
def test_a_trial_returns_its_best_epoch_when_the_best_checkpoint_follows_the_search_metric(tmp_path, metric, values,
                                                                                           best, last):
    from aerun import search as searching

    rows = ["epoch,step,train_loss,train_penalty,test_loss,seconds," + metric]
    rows += [f"{e},{e * 10},0.1,0,0.2,1.0,{v}" for e, v in enumerate(values, 1)]
    (tmp_path / "loss_epoch.csv").write_text("\n".join(rows) + "\n")
    chosen = searching.result({}, tmp_path, metric, best=True)
    assert (chosen["value"], chosen["epoch"]) == best and chosen["metric"] == metric
    chosen = searching.result({}, tmp_path, metric)
    assert (chosen["value"], chosen["epoch"]) == last


@pytest.mark.slow
def test_a_search_with_best_checkpoints_scores_each_trial_by_its_best_epoch_and_its_page_says_so(aerun_exe, tmp_path):
    import csv
    import json

    sweep = tmp_path / "search"
    done = search(aerun_exe, "hydra.sweeper.n_trials=2", "dataset.val_size=256", "epochs=3", "optimizer.lr=0.05",
                  "checkpoint.monitor=val_loss", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for trial in study(sweep).trials:
        with open(sweep / str(trial.number) / "loss_epoch.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        kept = ckpt.read(sweep / str(trial.number) / ckpt.BEST)["epoch"]
        assert trial.value == min(float(r["val_loss"]) for r in rows) == float(rows[kept - 1]["val_loss"])
        assert trial.user_attrs["epoch"] == kept
    evaluated = subprocess.run([aerun_exe, "eval", f"run={sweep}", "checkpoint=best"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    page = (sweep / "index.md").read_text()
    assert "each run's best checkpoint (`checkpoint=best`" in page and "| at epoch |" in page
    jobs = json.loads((sweep / "eval.json").read_text())["jobs"]
    assert [(j["checkpoint"], j["epoch"]) for j in jobs] == [
        ("best", ckpt.read(Path(j["run_dir"]) / ckpt.BEST)["epoch"]) for j in jobs]
