"""`make gpu-check`'s logic, on a machine without CUDA: its one line, its table, its resume measure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from aerun import gpucheck

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: make gpu-check measures it")
def test_without_cuda_gpu_check_is_one_line_and_success(capsys):
    done = subprocess.run(["bash", "scripts/gpu-check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip().startswith("gpu-check: no CUDA GPU here") and "\n" not in done.stdout.strip()
    assert gpucheck.main(["--out", "unused"]) == 0
    assert capsys.readouterr().out.startswith("gpu-check: no CUDA GPU here")
    assert not (ROOT / "unused").exists()


def test_the_table_has_a_row_per_step_and_marks_failures_and_skips():
    results = {
        "device": "NVIDIA H100", "torch": "2.11.0",
        "device_tests": {"status": 0, "seconds": 41.0, "summary": "12 passed in 40.1s"},
        "bench": {"status": 0, "seconds": 95.0, "result": {"presets": {
            "deep": {"aerun_s": 0.21, "bound_s": 0.002, "fraction_of_bound": 0.01, "bound_precision": "float32"},
            "conv_unpool": {"aerun_s": 0.9, "bound_s": 0.01, "fraction_of_bound": 0.011, "bound_precision": "tf32"}}}},
        "bench_bf16": {"status": 0, "seconds": 60.0, "result": {"presets": {
            "deep": {"aerun_s": 0.105, "bound_s": 0.002, "fraction_of_bound": 0.02, "bound_precision": "float32"}}}},
        "report": {"status": 1, "seconds": 80.0, "training_seconds": 61.5},
        "resume": None,
        "graphs": {"status": 0, "seconds": 12.0, "presets": {"deep": {
            "eager_s": 0.4, "graphed_s": 0.1, "graphed_over_eager": 0.25, "max_weight_difference": 0.0}}},
    }
    lines = gpucheck.table(results).splitlines()
    assert lines[0] == "gpu-check on NVIDIA H100 (torch 2.11.0)"
    assert any(l.startswith("device tests") and " ok " in l and "12 passed" in l for l in lines)
    assert any("deep" in l and "0.210" in l and "fraction_of_bound 0.01" in l for l in lines)
    assert any("conv_unpool" in l and "tf32" in l for l in lines)
    assert any(l.startswith("aerun report") and "FAILED" in l and "training 61.5 s" in l for l in lines)
    assert any(l.startswith("bench precision=bf16-mixed") and " ok " in l for l in lines)
    assert any("deep" in l and "0.105" in l and "bf16-mixed/32 0.50" in l for l in lines)
    assert any(l.startswith("resume exactness") and "skipped" in l for l in lines)
    assert any(l.startswith("CUDA graphs") and " ok " in l for l in lines)
    assert any("deep" in l and "0.400 -> 0.100 (x0.25)" in l and "differ by 0" in l for l in lines)
    # a step not asked for (--steps) has no row at all
    assert not any(l.startswith("device tests") for l in gpucheck.table({"device": "cpu"}).splitlines())


def test_an_unknown_step_is_one_line_and_exit_2(capsys):
    assert gpucheck.main(["--steps", "bench,benhc", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no step benhc" in err and "device_tests" in err
    assert not (ROOT / "unused").exists()


def test_a_dry_run_on_the_cpu_runs_only_the_steps_asked_for(tmp_path, capsys):
    assert gpucheck.main(["--device", "cpu", "--steps", "graphs", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "gpu-check.json").read_text())
    assert set(written) == {"device", "torch", "graphs"} and written["device"] == "cpu"
    assert written["graphs"]["note"] == "CUDA graphs need a CUDA device" and written["graphs"]["presets"] == {}
    assert "CUDA graphs need a CUDA device" in capsys.readouterr().out


def test_resume_exactness_measures_the_weight_difference(tmp_path):
    measured = gpucheck.resume_exactness(tmp_path, "data", presets=("shallow",), device="cpu",
                                         extra=("dataset=synthetic", "batch_size=64", "model.hidden=16"))
    assert measured["max_weight_difference"] == {"shallow": 0.0}
    text = gpucheck.table({"resume": measured})
    assert "shallow" in text and "(bitwise equal)" in text
