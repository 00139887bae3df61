"""precision=32|bf16-mixed|16-mixed: autocast for the forward pass and loss, float32 weights and optimiser state,
recorded with the run; a resume keeps its precision; what a device cannot do is one line."""

from __future__ import annotations

import logging

import pytest
import torch

from aerun import checkpoint as ckpt
from aerun import precision as mixed
from aerun.errors import UserError

SMOKE = ["dataset=synthetic", "epochs=2", "batch_size=64", "device=cpu", "model=shallow", "model.hidden=32"]


def test_bf16_mixed_trains_in_bfloat16_and_keeps_float32_weights(make_cfg, tmp_path):
    from aerun.evaluate import evaluate_run
    from aerun.train import train

    full = train(make_cfg("train", SMOKE), tmp_path / "32")
    half = train(make_cfg("train", [*SMOKE, "precision=bf16-mixed"]), tmp_path / "bf16")
    state = ckpt.load(tmp_path / "bf16" / ckpt.CHECKPOINT)
    assert state["config"]["precision"] == "bf16-mixed"
    assert all(t.dtype == torch.float32 for t in state["model"]["state"].values())
    assert all(t.dtype == torch.float32 for s in state["optimizer"]["state"].values() for t in s.values()
               if isinstance(t, torch.Tensor) and t.is_floating_point())
    weights = ckpt.load(tmp_path / "32" / ckpt.CHECKPOINT)["model"]["state"]
    assert any(not torch.equal(weights[k], state["model"]["state"][k]) for k in weights)  # bfloat16 did run
    assert half["test_loss"] == pytest.approx(full["test_loss"], rel=0.05)  # and the run learnt what float32 did
    assert evaluate_run(tmp_path / "bf16", tmp_path, "cpu")["precision"] == "bf16-mixed"
    assert evaluate_run(tmp_path / "32", tmp_path, "cpu")["precision"] == "32"


def test_a_bf16_run_resumes_exactly(straight_and_resumed):
    straight, resumed = straight_and_resumed([*SMOKE, "precision=bf16-mixed"])
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_resume_at_another_precision_is_refused(make_cfg, tmp_path):
    from aerun.train import train

    train(make_cfg("train", [*SMOKE, "epochs=1", "precision=bf16-mixed"]), tmp_path / "run")
    with pytest.raises(UserError, match=r"trained at precision=bf16-mixed; it resumes at that precision only \(not 32\)"):
        train(make_cfg("train", SMOKE), tmp_path / "run", resume=True)


@pytest.mark.parametrize("value, message", [
    ("16-mixed", "precision=16-mixed needs a CUDA GPU (float16 with a gradient scaler), and this run is on cpu"),
    ("64", "precision='64' is not allowed; allowed: 32, bf16-mixed, 16-mixed"),
])
def test_a_precision_the_device_cannot_run_is_one_line(make_cfg, value, message):
    from aerun.validate import check_train

    with pytest.raises(UserError) as error:
        check_train(make_cfg("train", [*SMOKE, f"precision={value}"]))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_cpu_without_bfloat16_instructions_is_said_once(monkeypatch, caplog):
    monkeypatch.setattr(mixed, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="aerun.precision"):
        mixed.prepare("bf16-mixed", torch.device("cpu"))
        mixed.prepare("32", torch.device("cpu"))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "no bfloat16 instructions" in warned[0]


def test_autocast_runs_products_in_the_precision_asked_for():
    layer = torch.nn.Linear(8, 4)
    x = torch.rand(2, 8)
    with mixed.autocast("bf16-mixed", torch.device("cpu")):
        assert layer(x).dtype == torch.bfloat16
    with mixed.autocast("32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32


def test_the_report_says_a_mixed_precision(make_cfg, tmp_path):
    from aerun.report import report

    cfg = make_cfg("report", [f"dir={tmp_path / 'report'}", "parts=[pca_vs_ae]", "ood=[noise]", "device=cpu",
                              'train_overrides=["dataset=synthetic","epochs=1","precision=bf16-mixed"]'])
    report(cfg)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "trained at precision=bf16-mixed" in text and "evaluated in float32" in text


def test_a_vqvae_restarts_dead_codebook_entries_under_bf16_autocast(make_cfg, tmp_path):
    # the encoder's rows are bfloat16 under autocast and the codebook float32: a restart copies rows in
    from aerun.train import train

    run = tmp_path / "vq"
    train(make_cfg("train", ["dataset=synthetic", "epochs=1", "batch_size=64", "device=cpu", "model=vqvae",
                             "model.restart_every=1", "precision=bf16-mixed"]), run)
    state = ckpt.load(run / ckpt.CHECKPOINT)["model"]["state"]
    assert state["codebook"].dtype == torch.float32 and torch.isfinite(state["codebook"]).all()
    assert int(state["steps"]) > 1  # restarts were due at every step
