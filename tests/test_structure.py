"""eval.json's structure, pinned: every field a run's evaluation writes, with its type (values masked). Scripts and
the report read these names; a field renamed, dropped or retyped fails here, and a field added must be added here
(and to docs/guide.md's "Metrics")."""

from __future__ import annotations

import json

from aerun.evaluate import evaluate
from aerun.train import train

EVAL_JSON = {
    "checkpoint": "str", "dataset": "str", "epoch": "int", "n_images": "int", "precision": "str", "run_dir": "str",
    "seed": "int", "setting": "str", "shape": "list", "split": "str", "step": "int", "pixels_probe_accuracy": "float",
    "model.builder": "str", "model.name": "str", "model.code_dim": "int", "model.fitted": "bool", "pca.fitted": "bool",
    "model.code.fraction_zero": "float", "model.code.mean_activation": "list", "model.code.mean_l1": "float",
    "model.mse": "float", "model.psnr_db": "float", "model.sse_per_image": "float", "model.showcase_sse": "list",
    "model.probe_accuracy": "float", "model.probe_fit.converged": "bool", "model.probe_fit.gradient_norm": "float",
    "model.probe_fit.iterations": "int",
    "pca.k": "int", "pca.lossless": "bool", "pca.mse": "float", "pca.psnr_db": "float", "pca.sse_per_image": "float",
    "pca.showcase_sse": "list", "pca.probe_accuracy": "float", "pca.probe_fit.converged": "bool",
    "pca.probe_fit.gradient_norm": "float", "pca.probe_fit.iterations": "int",
    "noise.level": "float", "noise.name": "str", "noise.seed": "int",
    "trained_with_noise.level": "float", "trained_with_noise.name": "str",
    "provenance.checkpoint": "str", "provenance.code": "str", "provenance.device": "str", "provenance.iw_samples": "int",
    "showcase.indices": "list", "showcase.labels": "list",
}


def structure(value, prefix: str = "") -> dict[str, str]:
    """Each leaf's dotted path and its JSON type."""
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            found.update(structure(item, f"{prefix}{key}."))
        return found
    return {prefix.rstrip("."): type(value).__name__}


def test_eval_json_has_the_pinned_fields_and_types(make_cfg, tmp_path):
    cfg = make_cfg("train", ["dataset=synthetic", "epochs=1", "batch_size=64", "device=cpu", "model=shallow",
                             "model.hidden=16"])
    train(cfg, tmp_path / "run")
    evaluate(tmp_path / "run", cfg.paths.data_dir, "cpu")
    written = structure(json.loads((tmp_path / "run" / "eval.json").read_text()))
    missing = sorted(set(EVAL_JSON) - set(written))
    added = sorted(set(written) - set(EVAL_JSON))
    retyped = sorted(k for k in set(EVAL_JSON) & set(written) if EVAL_JSON[k] != written[k])
    assert (missing, added, retyped) == ([], [], [])
