"""`make gpu-check`'s logic, on a machine without CUDA: its one line, its table, its resume measure."""

from __future__ import annotations

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


def test_resume_exactness_measures_the_weight_difference(tmp_path):
    measured = gpucheck.resume_exactness(tmp_path, "data", presets=("shallow",), device="cpu",
                                         extra=("dataset=synthetic", "batch_size=64", "model.hidden=16"))
    assert measured["max_weight_difference"] == {"shallow": 0.0}
    text = gpucheck.table({"resume": measured})
    assert "shallow" in text and "(bitwise equal)" in text
