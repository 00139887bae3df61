"""Out-of-distribution and one-class anomaly scores (`aerun eval ood=NAME`, `dataset.classes=[k]`): the separation
measures agree with scikit-learn's, the written per-image scores give back eval.json's numbers, and every score a
family has is there, oriented so that the unusual inputs score higher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from aerun import ood
from conftest import SMOKE

TINY_VAE = [*SMOKE, "model=vae", "model.encoder=[32]", "model.code=4", "epochs=3"]


def sklearn_separation(inside, outside):
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    scores = np.r_[inside, outside]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)  # every threshold, as the definition reads
    return {"auroc": roc_auc_score(truth, scores), "aupr": average_precision_score(truth, scores),
            "fpr95": fpr[np.argmax(tpr >= ood.TPR)]}


scores_of = st.lists(st.integers(0, 12), min_size=1, max_size=60).map(lambda v: np.array(v, dtype=float) / 4)


@settings(max_examples=200, deadline=None)
@given(inside=scores_of, outside=scores_of)
def test_auroc_aupr_and_fpr95_agree_with_scikit_learn_ties_included(inside, outside):
    ours = ood.separation(inside, outside)
    theirs = sklearn_separation(inside, outside)
    assert ours["auroc"] == pytest.approx(theirs["auroc"], abs=1e-12)
    assert ours["aupr"] == pytest.approx(theirs["aupr"], abs=1e-12)
    assert ours["fpr95"] == pytest.approx(theirs["fpr95"], abs=1e-12)
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    fpr, tpr, _ = roc_curve(truth, np.r_[inside, outside], drop_intermediate=False)
    assert np.allclose(ood.roc(inside, outside), (fpr, tpr))  # the figure's curve is scikit-learn's


def test_the_mahalanobis_distance_is_the_textbook_one():
    gen = np.random.default_rng(0)
    codes = gen.normal(size=(500, 3)) @ np.array([[2.0, 0, 0], [0.5, 1.0, 0], [0.1, -0.3, 0.2]])
    fitted = ood.CodeGaussian(torch.tensor(codes))
    inverse = np.linalg.inv(np.cov(codes, rowvar=False))
    points = gen.normal(size=(20, 3))
    centred = points - codes.mean(0)
    expected = np.einsum("ni,ij,nj->n", centred, inverse, centred)
    assert fitted.distance(torch.tensor(points)) == pytest.approx(expected, rel=1e-4)


def test_a_plain_image_costs_fewer_png_bits_than_noise():
    flat = torch.full((1, 1, 28, 28), 7, dtype=torch.uint8)
    noise = torch.randint(0, 256, (1, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    bits = ood.png_bits(torch.cat([flat, noise]))
    assert bits[0] < 1000 < 28 * 28 * 8 <= bits[1]  # noise does not compress; a flat image nearly vanishes


def test_ood_scores_of_a_vae_are_all_there_recomputable_and_tell_noise_apart(make_cfg, tmp_path):
    from aerun.evaluate import evaluate
    from aerun.train import train

    run = tmp_path / "run"
    train(make_cfg("train", TINY_VAE), run)
    result = evaluate(run, "unused", "cpu", ood_kind="noise")
    found = result["ood"]["noise"]
    assert set(found) == {"sse", "negative_elbo", "negative_elbo_minus_png", "mahalanobis"}
    written = np.load(run / "ood_noise.npz")
    for name, measured in found.items():
        s_in, s_out = written[f"{name}_in"], written[f"{name}_out"]
        assert (len(s_in), len(s_out)) == (measured["n_in"], measured["n_out"]) == (256, 10000)
        theirs = sklearn_separation(s_in, s_out)
        assert {k: measured[k] for k in theirs} == pytest.approx(theirs, abs=1e-12)
    # uniform noise is nothing like the blobs it learnt: reconstruction error and likelihood both say so
    assert found["sse"]["auroc"] > 0.99 and found["negative_elbo"]["auroc"] > 0.99
    assert found["sse"]["mean_out"] > found["sse"]["mean_in"]
    assert (run / "figures" / "ood_noise_scores.png").stat().st_size > 10000
    assert "## Out of distribution: noise" in (run / "eval.md").read_text()
    assert json.loads((run / "eval.json").read_text())["ood"]["noise"]["sse"]["auroc"] == found["sse"]["auroc"]


def test_a_one_class_run_scores_the_other_classes_as_anomalies(make_cfg, tmp_path):
    from aerun.data import load_split
    from aerun.evaluate import evaluate
    from aerun.train import train

    run = tmp_path / "run"
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "dataset.classes=[3]", "epochs=30",
                             "batch_size=16", "optimizer.lr=3e-3"]), run)
    result = evaluate(run, "unused", "cpu")
    labels = load_split(make_cfg("train", SMOKE).dataset, "test", "unused", "cpu").labels
    assert set(result["anomaly"]) == {"sse", "mahalanobis"}  # a plain AE has no likelihood
    sse = result["anomaly"]["sse"]
    assert (sse["n_in"], sse["n_out"]) == (int((labels == 3).sum()), int((labels != 3).sum()))
    written = np.load(run / "anomaly.npz")
    assert sse["auroc"] == pytest.approx(sklearn_separation(written["sse_in"], written["sse_out"])["auroc"], abs=1e-12)
    assert sse["auroc"] > 0.8  # trained on one kind of figure, it reconstructs the others worse
    assert (run / "figures" / "anomaly_scores.png").exists()
    # the preset's showcase positions are the whole test split's: the run shows those of them that are its class
    threes = [p for p in range(10) if labels[p] == 3]
    expected = [int((labels[:p] == 3).sum()) for p in threes] or [0]  # their places among the threes
    assert result["showcase"] == {"indices": expected, "labels": [3] * len(expected)}


BAD_OOD = [
    (["ood=nope"], "ood='nope' is not allowed; allowed: none, noise, "),
    (["ood=noise", "noise=gaussian", "noise.level=0.3"], "ood=noise scores clean inputs; leave noise=gaussian out"),
]


def test_a_bad_ood_request_is_one_line(make_cfg, tmp_path, refused):
    from aerun.train import train

    run = tmp_path / "run"
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1"]), run)
    for args, said in BAD_OOD:
        err = refused("eval", f"run={run}", *args)
        assert said in err, err
    assert not (run / "eval.json").exists()
