"""Evidence beyond one sample: spreads over seeds, the rule that calls a difference, the linear probe."""

from __future__ import annotations

import json
import statistics
import subprocess

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from aerun.errors import UserError
from aerun.evaluate import evaluate, pca_name
from aerun.models import build
from aerun.probe import probe_accuracy
from aerun.claims import Ledger, compare, error_ratio, p_text, trend
from aerun.report.measure import nearest_sse, side_channel
from aerun.report.plan import report_seeds
from aerun.report.parts.pca_vs_ae import zero_code_note
from aerun.stats import Spread, holm, welch, welch_p
from aerun.train import train

from conftest import SMOKE


# --------------------------------------------------------------------------- statistics


def test_welch_against_a_hand_computed_example_and_untested_cases():
    # a: 1, 2, 3; b: 10, 11, 12 -> difference -9, standard error sqrt(1/3 + 1/3), 4 degrees of freedom;
    # t = -11.02, two-sided p = 3.85e-4; the 95 % interval is -9 ± 2.776 * 0.8165 (t table: 2.776 at 4 df)
    test = welch(Spread.of([1, 2, 3]), Spread.of([10, 11, 12]))
    assert test.difference == -9 and test.p == pytest.approx(3.85e-4, rel=1e-2)
    assert (test.ci_low, test.ci_high) == pytest.approx((-9 - 2.7764 * 0.8165, -9 + 2.7764 * 0.8165), abs=1e-3)
    assert welch_p(Spread.of([1.0]), Spread.of([2.0, 2.1])) is None and welch(Spread.of([1.0]), Spread.of([2.0])).untested
    exact = Spread.of([13.87] * 3)
    assert exact.sd == 0 and exact.text() == "13.87"
    assert Spread.of([13.87, 13.87 + 2e-15, 13.87 - 1e-15]).text() == "13.87"  # PCA refitted: rounding, not spread
    assert welch_p(exact, Spread.of([15.5, 15.8, 16.1])) < 0.05  # one deterministic side: the other's spread decides
    # two sides without spread: no test (a t of 0/0), said as what it is, never "p = 0"
    both = welch(exact, Spread.of([14.0] * 3))
    assert both.p is None and "no spread on either side" in both.untested
    assert "every seed" in compare("A", exact, "B", Spread.of([14.0] * 3)) and "p =" not in compare(
        "A", exact, "B", Spread.of([14.0] * 3))


def test_holm_against_a_worked_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept at 0.06 (step-down)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]  # capped at 1; untested left out
    assert holm([]) == [] and holm([0.01]) == [0.01]


def test_the_interval_covers_the_true_difference_95_times_in_100():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        a, b = rng.normal(10.0, 1.0, 3), rng.normal(8.0, 3.0, 3)  # three seeds a side, unequal spreads
        test = welch(Spread.of(a.tolist()), Spread.of(b.tolist()))
        covered += test.ci_low <= 2.0 <= test.ci_high
    assert covered / 2000 == pytest.approx(0.95, abs=0.015)


def test_a_ledger_adjusts_each_part_on_its_own_and_names_only_what_survives():
    ledger = Ledger()
    ledger.start("one")
    strong = ledger.compare("A", Spread.of([1.0, 1.1, 0.9]), "B", Spread.of([5.0, 5.1, 4.9]))
    weak = [ledger.compare(f"C{i}", Spread.of([1.0, 1.1, 0.9]), "D", Spread.of([1.3, 1.4, 1.2])) for i in range(4)]
    ledger.close()
    ledger.start("two")
    alone = ledger.compare("C", Spread.of([1.0, 1.1, 0.9]), "D", Spread.of([1.3, 1.4, 1.2]))  # Welch p = 0.021
    ledger.close()
    assert weak[0].test.p < 0.05 < weak[0].p_adjusted  # called alone, not among five tests
    assert alone.p_adjusted == alone.test.p and alone.resolved and not weak[0].resolved
    assert str(weak[0]).startswith("3 seeds do not resolve C0 against D") and "Holm-adjusted p =" in str(weak[0])
    assert str(strong).startswith("Over 3 seeds A has the lower SSE/image") and "95 % CI [" in str(strong)
    assert ledger.tested("one") == 5 and ledger.tested("two") == 1
    assert set(strong.as_dict()) >= {"part", "metric", "a", "b", "n", "mean_a", "sd_a", "difference", "ci_low",
                                     "ci_high", "p", "p_adjusted", "resolved"}


def test_a_tie_stays_a_tie_a_clear_gap_is_called_one_seed_is_this_run():
    tie = compare("conv_unpool", Spread.of([2.231, 2.25, 2.21]), "conv_unpool_deconv", Spread.of([2.226, 2.24, 2.23]))
    assert tie.startswith("3 seeds do not resolve conv_unpool against conv_unpool_deconv: SSE/image")
    assert "95 % CI [" in tie and "has the lower" not in tie
    gap = compare("PCA-30", Spread.of([13.87] * 3), "the deep AE", Spread.of([15.5, 15.8, 16.1]))
    assert gap.startswith("Over 3 seeds PCA-30 has the lower SSE/image: 13.87 against 15.8 ± 0.3 for the deep AE")
    assert "Welch p = " in gap
    single = compare("A", Spread.of([2.226]), "B", Spread.of([2.231]))
    assert single.startswith("In this run A has the lower SSE/image: 2.226 against 2.231 for B")
    accuracy = compare("A", Spread.of([0.95, 0.951, 0.949]), "B", Spread.of([0.90, 0.91, 0.905]), "probe accuracy",
                       higher_is_better=True, unit="%")
    assert accuracy.startswith("Over 3 seeds A has the higher probe accuracy: 95.0 % ± 0.1 against 90.5 % ± 0.5")


def test_trends_name_the_steps_the_seeds_resolve():
    s = Spread.of
    assert trend([s([9.7, 9.8, 9.6]), s([5.8, 5.7, 5.9]), s([2.3, 2.4, 2.2])]) == \
        "falls at every step (each step resolved by the 3 seeds)"
    open_step = trend([s([9.7, 9.8, 9.6]), s([5.8, 5.7, 5.9]), s([5.75, 5.6, 5.9])], ["64", "128", "256"])
    assert open_step == "falls in the means; the 3 seeds resolve the step from 64 to 128, not the step from 128 to 256"
    assert trend([s([1.0]), s([2.0])]) == "rises in this run"
    wiggle = trend([s([1.0, 1.1, 1.05]), s([5.0, 5.1, 5.05]), s([4.9, 5.0, 5.1])], ["a", "b", "c"])
    assert wiggle.startswith("does not move in one direction") and "resolve the step from a to b" in wiggle


def test_wording_says_only_what_the_numbers_show():
    # "2.5 times the error", not "2.5 times larger"
    assert error_ratio("B", 5.0, "A", 2.0) == "B's error is 2.5 times A's"
    assert error_ratio("B", 10.04, "A", 10.0) == "B's error is 0.4 % larger"
    assert p_text(float("nan")) == "p undefined" and p_text(1e-9) == "p < 0.0001"
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


def test_the_probe_records_how_its_fit_ended(caplog):
    from aerun import probe as module

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 20, generator=gen)
    y = (x[:, :3] @ torch.tensor([1.0, -2.0, 0.5]) + torch.randn(500, generator=gen) > 0).long() + (x[:, 3] > 1).long()
    _, easy = module.probe(x, y, x, y, classes=3)  # L-BFGS meets its own tolerance before its 50 steps
    assert easy.converged and easy.iterations < module.MAX_ITER and easy.gradient_norm < 1e-3
    module._WARNED.clear()
    with caplog.at_level("WARNING", logger="aerun.probe"):
        _, cut = module.probe(x, y, x, y, classes=3, max_iter=2)
    assert not cut.converged and cut.iterations <= 2 and cut.gradient_norm > 100 * easy.gradient_norm
    assert any("stopped at its limit of 2 L-BFGS iterations" in r.getMessage() for r in caplog.records)


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
    assert groups[0]["model"]["sse_per_image"]["sd"] == pytest.approx(statistics.stdev(jobs))  # sample sd, n - 1
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


@pytest.mark.slow
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


def test_only_a_fitted_side_makes_a_spread_free_difference_exact():
    from aerun.claims import Claim

    fitted = Spread.of([13.87] * 3, fitted=True)  # PCA: the same in every seed by construction
    tied = Spread.of([14.0] * 3)                  # a trained model whose seeds happened to agree (a share in steps)
    assert Claim("p", "SSE/image", "PCA", fitted, "AE", tied).resolved  # exact beside the fitted side
    chance = Claim("p", "share", "A", Spread.of([0.5] * 3), "B", tied)
    assert not chance.resolved and chance.test.p is None and "happened to give the same value" in chance.test.untested


def test_two_seeds_a_side_never_resolve_a_difference_three_can():
    from aerun.claims import Ledger

    ledger = Ledger()
    two = ledger.compare("A", Spread.of([1.0, 1.01]), "B", Spread.of([2.0, 2.01]))
    three = ledger.compare("C", Spread.of([1.0, 1.01, 0.99]), "D", Spread.of([2.0, 2.01, 1.99]))
    ledger.close()
    assert two.p_adjusted < 0.05 and not two.resolved  # Welch alone would call it at about one degree of freedom
    assert "2 seeds do not resolve A against B" in str(two) and "a difference needs 3 seeds a side" in str(two)
    assert three.resolved and str(three).startswith("Over 3 seeds C has the lower SSE/image")
    beside_pca = ledger.compare("PCA", Spread.of([1.5] * 2, fitted=True), "E", Spread.of([2.0, 2.01, 1.99]))
    ledger.close()
    assert beside_pca.trained_seeds == 3  # the fitted side's count is no seed count
