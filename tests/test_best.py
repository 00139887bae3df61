"""checkpoint.monitor keeps checkpoints/best.pt; early_stop.patience ends a run that stopped improving; eval and plot
read either checkpoint; resume always goes on from the last."""

from __future__ import annotations

import csv
import logging

import pytest

from aerun import checkpoint as ckpt
from aerun import train as training
from aerun.errors import UserError
from aerun.runs import BEST, checkpoint_path

RUN = ["dataset=synthetic", "batch_size=64", "device=cpu", "model=shallow", "model.hidden=16", "dataset.val_size=64"]


def epoch_rows(run):
    with open(run / "loss_epoch.csv", newline="") as f:
        return list(csv.DictReader(f))


def scripted(monkeypatch, values):
    """checkpoint.monitor's value at each epoch, in order: what decides the best epoch and the stop."""
    values = iter(values)
    monkeypatch.setattr(training, "monitored", lambda *args: next(values))


def test_best_pt_holds_the_epoch_of_the_lowest_val_loss(make_cfg, tmp_path):
    run = tmp_path / "run"
    result = training.train(make_cfg("train", [*RUN, "epochs=4", "checkpoint.monitor=val_loss"]), run)
    rows = epoch_rows(run)
    lowest = min(rows, key=lambda row: float(row["val_loss"]))  # read from the CSV, not from aerun's own choice
    best, last = ckpt.read(run / BEST), ckpt.read(run / ckpt.CHECKPOINT)
    assert best["epoch"] == int(lowest["epoch"]) == last["best"]["epoch"] == result["best"]["epoch"]
    assert last["epoch"] == 4 and last["best"]["value"] == pytest.approx(float(lowest["val_loss"]), rel=1e-5)
    assert ckpt.content_digest(best) == best[ckpt.DIGEST]  # checksummed like last.pt


def test_early_stopping_ends_the_run_at_patience_and_the_run_counts_as_complete(make_cfg, tmp_path, monkeypatch,
                                                                                caplog):
    run = tmp_path / "run"
    overrides = [*RUN, "epochs=8", "checkpoint.monitor=val_loss", "early_stop.patience=2"]
    scripted(monkeypatch, [3.0, 2.0, 2.5, 2.0, 1.0])  # epoch 2 is best; epochs 3 and 4 do not beat it (2.0 ties)
    with caplog.at_level(logging.INFO, logger="aerun.train"):
        result = training.train(make_cfg("train", overrides), run)
    assert result["stopped_early"] == 4 and result["epochs"] == 4
    last = ckpt.read(run / ckpt.CHECKPOINT)
    assert last["epoch"] == 4 and last["stopped_early"] is True and ckpt.read(run / BEST)["epoch"] == 2
    assert [row["epoch"] for row in epoch_rows(run)] == ["1", "2", "3", "4"]
    said = [r.getMessage() for r in caplog.records if "stopped early" in r.getMessage()]
    assert len(said) == 1 and "epoch 4" in said[0] and "(epoch 2)" in said[0] and "2 epochs" in said[0]
    assert ckpt.finished(last, 8, fitted=False) and not ckpt.finished({"epoch": 4}, 8, fitted=False)
    again = training.train(make_cfg("train", overrides), run, resume=True)  # complete: nothing more to train
    assert again["test_loss"] is None and ckpt.read(run / ckpt.CHECKPOINT)["epoch"] == 4


def test_a_resumed_run_goes_on_from_the_last_checkpoint_keeping_its_best(make_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    overrides = [*RUN, "checkpoint.monitor=val_loss"]
    scripted(monkeypatch, [1.0, 2.0])
    training.train(make_cfg("train", [*overrides, "epochs=2"]), run)
    best_bytes = (run / BEST).read_bytes()
    scripted(monkeypatch, [3.0, 4.0])  # never better than epoch 1's 1.0, which the checkpoint remembers
    training.train(make_cfg("train", [*overrides, "epochs=4"]), run, resume=True)
    assert ckpt.read(run / ckpt.CHECKPOINT)["epoch"] == 4  # from last.pt (epoch 2), not from best.pt (epoch 1)
    assert (run / BEST).read_bytes() == best_bytes and ckpt.read(run / ckpt.CHECKPOINT)["best"]["epoch"] == 1
    scripted(monkeypatch, [0.5])
    training.train(make_cfg("train", [*overrides, "epochs=5"]), run, resume=True)
    assert ckpt.read(run / BEST)["epoch"] == 5


def test_eval_and_plot_read_the_best_checkpoint_when_asked(make_cfg, tmp_path, monkeypatch):
    from aerun.evaluate import evaluate
    from aerun.plot import plot

    run = tmp_path / "run"
    scripted(monkeypatch, [2.0, 1.0, 3.0])
    training.train(make_cfg("train", [*RUN, "epochs=3", "checkpoint.monitor=train_loss"]), run)
    data_dir = make_cfg("train", RUN).paths.data_dir
    best = evaluate(run, data_dir, "cpu", which="best")
    assert (best["checkpoint"], best["epoch"]) == ("best", 2)
    assert "the best checkpoint" in (run / "eval.md").read_text()
    last = evaluate(run, data_dir, "cpu")
    assert (last["checkpoint"], last["epoch"]) == ("last", 3)
    assert best["model"]["sse_per_image"] != last["model"]["sse_per_image"]  # two different models were read
    assert plot(run, data_dir, "cpu", which="best")


def test_a_run_without_a_best_checkpoint_is_one_line_for_checkpoint_best(make_cfg, tmp_path):
    run = tmp_path / "run"
    training.train(make_cfg("train", [*RUN, "epochs=1"]), run)
    assert checkpoint_path(run, "last") == run / ckpt.CHECKPOINT
    for which, said in (("best", "no best checkpoint"), ("first", "checkpoint='first' is not allowed")):
        with pytest.raises(UserError) as caught:
            checkpoint_path(run, which)
        assert said in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("overrides, said", [
    (["checkpoint.monitor=test_loss"], "never chooses on the test split"),
    (["checkpoint.monitor=val_loss", "dataset.val_size=0"], "add dataset.val_size=N"),
    (["checkpoint.monitor=train_kl"], "not a column this run logs"),
    (["early_stop.patience=3"], "name one, e.g. checkpoint.monitor=val_loss"),
    (["early_stop.patience=-1", "checkpoint.monitor=val_loss"], "early_stop.patience=-1 is not allowed"),
])
def test_a_monitor_or_patience_that_cannot_work_is_one_line(make_cfg, overrides, said):
    from aerun.validate import check_train

    with pytest.raises(UserError) as caught:
        check_train(make_cfg("train", [*RUN, *overrides]))
    assert said in str(caught.value) and "\n" not in str(caught.value)
