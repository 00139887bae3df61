"""Evidence beyond one sample: spreads over seeds, the rule that calls a difference, the linear probe."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from aerun.errors import UserError
from aerun.evaluate import evaluate, pca_name
from aerun.models import build
from aerun.probe import probe_accuracy
from aerun.report.claims import compare, error_ratio, is_better, trend
from aerun.report.measure import nearest_sse, side_channel
from aerun.report.plan import report_seeds
from aerun.report.sections import zero_code_note
from aerun.stats import Spread, t_two_sided_p, welch_p
from aerun.train import train

from conftest import SMOKE


# --------------------------------------------------------------------------- statistics


def test_t_distribution_matches_its_tables():
    # two-sided 5 % critical values of Student's t: 12.706 (1 df), 4.303 (2), 2.228 (10), 1.960 (normal)
    for t, df in ((12.706, 1), (4.303, 2), (2.228, 10), (1.960, 1e7)):
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)


def test_welch_needs_two_seeds_and_handles_a_deterministic_side():
    assert welch_p(Spread.of([1.0]), Spread.of([2.0, 2.1])) is None
    # t = 9 / sqrt(2/3) with 4 degrees of freedom
    assert welch_p(Spread.of([1, 2, 3]), Spread.of([10, 11, 12])) == pytest.approx(3.85e-4, rel=1e-2)
    exact = Spread.of([13.87] * 3)
    assert exact.sd == 0 and exact.text() == "13.87"
    assert Spread.of([13.87, 13.87 + 2e-15, 13.87 - 1e-15]).text() == "13.87"  # PCA refitted: rounding, not spread
    assert welch_p(exact, Spread.of([15.5, 15.8, 16.1])) < 0.05
    assert welch_p(exact, exact) == 1.0


def test_a_tie_stays_a_tie_a_clear_gap_is_called_one_seed_is_this_run():
    tie = compare("conv_unpool", Spread.of([2.231, 2.25, 2.21]), "conv_unpool_deconv", Spread.of([2.226, 2.24, 2.23]))
    assert tie.startswith("3 seeds do not resolve conv_unpool against conv_unpool_deconv: SSE/image")
    assert "a difference of" in tie and "0.1 %" in tie and "has the lower" not in tie
    gap = compare("PCA-30", Spread.of([13.87] * 3), "the deep AE", Spread.of([15.5, 15.8, 16.1]))
    assert gap.startswith("Over 3 seeds PCA-30 has the lower SSE/image: 13.87 against 15.8 ± 0.3 for the deep AE")
    assert "Welch p = " in gap
    single = compare("A", Spread.of([2.226]), "B", Spread.of([2.231]))
    assert single.startswith("In this run A has the lower SSE/image: 2.226 against 2.231 for B")
    accuracy = compare("A", Spread.of([0.95, 0.951, 0.949]), "B", Spread.of([0.90, 0.91, 0.905]), "probe accuracy",
                       higher_is_better=True, unit="%")
    assert accuracy.startswith("Over 3 seeds A has the higher probe accuracy: 95.0 % ± 0.1 against 90.5 % ± 0.5")


def test_trends_are_called_only_where_every_step_is_resolved():
    s = Spread.of
    assert trend([s([9.7, 9.8, 9.6]), s([5.8, 5.7, 5.9]), s([2.3, 2.4, 2.2])]) == \
        "falls at every step (each step resolved by the 3 seeds)"
    open_step = trend([s([9.7, 9.8, 9.6]), s([5.8, 5.7, 5.9]), s([5.75, 5.6, 5.9])], ["64", "128", "256"])
    assert open_step == "falls in the means, but the 3 seeds do not resolve the step from 128 to 256"
    assert trend([s([1.0]), s([2.0])]) == "rises in this run"
    assert trend([s([1.0, 1.1]), s([2.0, 2.1]), s([1.5, 1.6])]).startswith("does not move in one direction")


def test_wording_says_only_what_the_numbers_show():
    # "too much sparsity hurts" needs a resolved gap: never from one seed, never from 10.04 against 10.0
    assert not is_better(Spread.of([10.0]), Spread.of([10.04]))
    assert not is_better(Spread.of([10.0, 10.1, 9.9]), Spread.of([10.04, 10.0, 10.1]))
    assert is_better(Spread.of([4.4, 4.5, 4.3]), Spread.of([19.9, 20.1, 19.7]))
    # "2.5 times the error", not "2.5 times larger"
    assert error_ratio("B", 5.0, "A", 2.0) == "B's error is 2.5 times A's"
    assert error_ratio("B", 10.04, "A", 10.0) == "B's error is 0.4 % larger"
    # how many code numbers carry a digit is computed, never assumed
    assert zero_code_note("the deep AE", Spread.of([0.0]), 30).startswith("None of the deep AE's code activations")
    assert "on average 12.0 of its 30 code numbers" in zero_code_note("the deep AE", Spread.of([0.6]), 30)
    # the PCA a model is compared with names its k; the full basis says it is lossless
    assert pca_name(30) == "PCA-30" and pca_name(1156) == "PCA-1156 (lossless)"


def test_report_seeds_are_checked():
    assert report_seeds(1, []) is None and report_seeds(3, []) == [0, 1, 2]
    for bad in (0, -2, "3", True, 1.5):
        with pytest.raises(UserError, match="must be a positive integer"):
            report_seeds(bad, [])
    with pytest.raises(UserError, match="train_overrides sets seed"):
        report_seeds(2, ["seed=4"])


# --------------------------------------------------------------------------- measurements


def test_the_probe_reads_the_class_and_ignores_scale():
    from aerun.data import load_split

    dataset = {"name": "synthetic", "n_train": 1024, "n_test": 256, "seed": 0}
    train_split, test = load_split(dataset, "train", "", "cpu"), load_split(dataset, "test", "", "cpu")
    x, xt = train_split.images.flatten(1), test.images.flatten(1)
    accuracy = probe_accuracy(x, train_split.labels, xt, test.labels)
    assert accuracy > 0.5  # ten classes: chance is 0.1
    assert probe_accuracy(x, train_split.labels, xt, test.labels) == accuracy  # deterministic
    assert probe_accuracy(3 * x + 1, train_split.labels, 3 * xt + 1, test.labels) == pytest.approx(accuracy, abs=0.01)
    noise = torch.rand_like(x), torch.rand_like(xt)
    assert probe_accuracy(*noise[:1], train_split.labels, noise[1], test.labels) < 0.3


def test_unpooling_decoders_receive_the_pooling_indices_counted_from_the_model():
    side = side_channel(build("conv", channels=(8, 16, 16), upsample="unpool"))
    assert side == {"values": 8 * 14 * 14 + 16 * 7 * 7 + 16 * 3 * 3, "bits": 2 * 2496, "code": 144}
    assert side_channel(build("conv", channels=(8, 16, 16), upsample="unpool_deconv"))["values"] == 2496
    assert side_channel(build("conv", channels=(8, 16, 16), upsample="deconv")) is None


def test_nearest_training_image_distance():
    reference = torch.zeros(5, 1, 2, 2)
    reference[3] = 1.0
    images = torch.stack([torch.full((1, 2, 2), 0.9), torch.full((1, 2, 2), 0.2)])
    assert nearest_sse(images, reference).tolist() == pytest.approx([4 * 0.01, 4 * 0.04], abs=1e-6)


def test_evaluation_noise_is_one_cpu_draw_from_its_seed():
    from aerun.evaluate import noisy_test_inputs

    x = torch.rand(4, 1, 28, 28)
    by_hand = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy_test_inputs(x, ("gaussian", 0.5), 3), by_hand)
    assert noisy_test_inputs(x, ("none", 0.0), 3) is x  # (each device's draw: tests/test_devices.py)


# --------------------------------------------------------------------------- runs


def test_eval_groups_jobs_that_differ_only_in_seed(make_cfg, tmp_path):
    sweep = tmp_path / "sweep"
    for i, (hidden, seed) in enumerate((h, s) for h in (8, 16) for s in (0, 1, 2)):
        cfg = make_cfg("train", [*SMOKE, "epochs=1", "model=shallow", f"model.hidden={hidden}", f"seed={seed}"])
        run = sweep / str(i)
        train(cfg, run)
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.hidden={hidden}", f"seed={seed}"]))
    result = evaluate(sweep, "", "cpu")
    groups = result["groups"]
    assert [(g["label"], g["n"], g["seeds"]) for g in groups] == [
        ("model.hidden=8", 3, [0, 1, 2]), ("model.hidden=16", 3, [0, 1, 2])]
    jobs = [j["model"]["sse_per_image"] for j in result["jobs"][:3]]
    assert groups[0]["model"]["sse_per_image"]["mean"] == pytest.approx(sum(jobs) / 3)
    assert groups[0]["model"]["sse_per_image"]["sd"] == pytest.approx(Spread.of(jobs).sd)
    assert len(set(jobs)) == 3  # the seeds really differ
    assert groups[0]["pca"]["sse_per_image"]["sd"] == 0  # PCA does not depend on the seed
    assert [j["model"]["probe_accuracy"] for j in result["jobs"]] == [
        json.loads((sweep / str(i) / "eval.json").read_text())["model"]["probe_accuracy"] for i in range(6)]
    markdown = (sweep / "eval.md").read_text()
    assert "## Over seeds: mean ± standard deviation" in markdown and "| model.hidden=8 | 3 | 0,1,2 |" in markdown
    assert json.loads((sweep / "eval.json").read_text())["groups"][1]["label"] == "model.hidden=16"


def test_a_cosine_run_cannot_be_resumed_to_another_length(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "lr_schedule=cosine"])
    train(cfg, tmp_path / "run")
    longer = OmegaConf.merge(cfg, {"epochs": 4})
    with pytest.raises(UserError, match="followed a 2-epoch cosine schedule, at rates a 4-epoch run"):
        train(longer, tmp_path / "run", resume=True)
    constant = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8"])
    train(constant, tmp_path / "flat")
    assert train(OmegaConf.merge(constant, {"epochs": 3}), tmp_path / "flat", resume=True)["epochs"] == 3


def test_added_seeds_train_only_the_new_seeds(aerun_exe, tmp_path):
    tiny = 'train_overrides=["dataset=synthetic","epochs=1","batch_size=64"]'

    def report(*args):
        return subprocess.run([aerun_exe, "report", f"dir={tmp_path}", tiny, "parts=[manifold]", "device=cpu", *args],
                              capture_output=True, text=True, timeout=600)

    assert report().returncode == 0
    first = tmp_path / "runs" / "manifold" / "0" / "checkpoints" / "last.pt"
    before = first.stat().st_mtime_ns
    done = report("seeds=3")
    assert done.returncode == 0, done.stderr
    assert "seed 0: reused (complete)" in done.stdout
    assert "seed 1: training 1 epochs" in done.stdout and "seed 2: training 1 epochs" in done.stdout
    assert first.stat().st_mtime_ns == before
    assert sorted(p.name for p in (tmp_path / "runs" / "manifold").iterdir() if p.name[0].isdigit()) == [
        "0", "0-seed1", "0-seed2"]
    markdown = (tmp_path / "report.md").read_text()
    assert "trained with seeds 0–2" in markdown and "Welch's t-test" in markdown and " ± " in markdown
    done = report("seeds=2", 'train_overrides=["dataset=synthetic","epochs=1","batch_size=64","seed=5"]')
    assert done.returncode == 2 and "train_overrides sets seed" in done.stderr and "Traceback" not in done.stderr
