"""One place for every default and type (aerun.schema); checkpoints from before a key existed still work;
what a family is, asked of the family, never of the object."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from aerun import checkpoint as ckpt
from aerun.evaluate import evaluate
from aerun.models import families
from aerun.plot import plot
from aerun.schema import first_difference
from aerun.schema import DEFAULTS, TrainConfig
from aerun.train import train

from conftest import SMOKE

AERUN = Path(__file__).resolve().parent.parent / "aerun"
CONF = AERUN.parent / "conf"


def test_every_top_level_term_weight_has_its_type_and_default_in_the_schema():
    keys = {t.key for cls in families().values() for t in cls.terms if t.top_level}
    assert keys == {"sparsity", "contractive"}  # a family's own weights live under model. (model.beta)
    assert keys <= set(DEFAULTS)
    assert {f.name: f.type for f in fields(TrainConfig) if f.name in keys} == dict.fromkeys(keys, "float")


def test_train_yaml_sets_no_top_level_default_of_its_own():
    """A default written in conf/train.yaml as well as in the schema would be two places for one number."""
    own = OmegaConf.load(CONF / "train.yaml")
    assert set(own) <= {"defaults", "hydra"}, set(own)


def test_the_composed_config_is_typed_and_takes_its_defaults_from_the_schema(make_cfg):
    cfg = make_cfg("train", ["model=shallow"])
    plain = {key: value for key, value in DEFAULTS.items() if not str(value).startswith("${")}
    assert {key: cfg[key] for key in plain} == plain and cfg.dataset.binarize == "none"
    assert make_cfg("train", ["model=sparse"]).sparsity == 4e-6  # a preset still sets what it sets


def test_the_training_noise_follows_the_seed_unless_set(make_cfg):
    """Each seed of a spread draws its own training noise; seed 0 the stream it always drew (noise_seed 1)."""
    assert [make_cfg("train", [f"seed={seed}"]).noise_seed for seed in (0, 1, 2)] == [1, 2, 3]
    assert make_cfg("train", ["seed=2", "noise_seed=7"]).noise_seed == 7


def test_a_checkpoint_from_before_a_key_existed_evaluates_plots_resumes_and_is_reused(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16", "epochs=1"])
    train(cfg, tmp_path)
    path = tmp_path / ckpt.CHECKPOINT
    state = torch.load(path, weights_only=True)
    newer = ("augment_shift", "logger", "contractive", "lr_schedule")
    for key in newer:
        del state["config"][key]
    del state["sha256"]  # written before aerun checksummed its checkpoints, too
    torch.save(state, path)
    loaded = ckpt.load(path)["config"]
    assert {key: loaded[key] for key in newer} == {key: DEFAULTS[key] for key in newer}
    assert evaluate(tmp_path, "unused", "cpu")["epoch"] == 1
    assert "reconstructions.png" in {p.name for p in plot(tmp_path, "unused", "cpu")}
    config = OmegaConf.create(ckpt.load(path)["config"])
    config.epochs = 2
    train(config, tmp_path, resume=True)
    assert ckpt.load(path)["epoch"] == 2
    # the report compares a stored config with the one it wants: a key the run predates is no difference
    wanted = OmegaConf.to_container(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16"]), resolve=True)
    state = torch.load(path, weights_only=True)
    for key in newer:
        del state["config"][key]
    del state["sha256"]  # written before aerun checksummed its checkpoints, too
    torch.save(state, path)
    assert first_difference(ckpt.load(path)["config"], wanted) is None


FAMILY_TESTS = [
    (r"\bhasattr\((model|m|self\.model|clone)\b", "asks the object what it has"),
    (r"isinstance\([^)]*(PCA|MLPAutoencoder|ConvAutoencoder|VariationalAutoencoder|WinnerTakeAll|VectorQuantised)",
     "tests the object's class"),
    (r"builder\s*(==|!=|in)\s*[\"'(]", "compares a builder name"),
    (r"[\"'](pca|mlp|conv|vae|wta|vqvae)[\"']\s*(==|!=|in)\b", "compares a builder name"),
]


@pytest.mark.parametrize("pattern, what", FAMILY_TESTS, ids=[w for _, w in FAMILY_TESTS])
def test_no_module_outside_the_models_package_asks_what_family_a_model_is(pattern, what):
    found = [f"{path.relative_to(AERUN)}:{n}" for path in AERUN.rglob("*.py") if "models" not in path.parts
             for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not found, f"{what}: {found}"


def test_the_readmes_table_of_keys_gives_the_defaults_a_run_gets(make_cfg):
    """The defaults a newcomer reads in the README's "What you can set", pinned against the composed config (not
    against the schema they come from)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("## What you can set", 1)[1].split("\n\n", 2)[1]
    cfg = make_cfg("train", [])
    checked = 0
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        keys = [k for k in re.findall(r"`([\w.]+)(=NAME)?`", cells[0]) if not k[1] and not k[0].startswith("hydra.")]
        defaults = [d.strip().strip("`") for d in cells[-1].split(",")]
        if len(keys) != len(defaults) or any(d in ("none", "") for d in defaults):
            continue
        for (key, _), documented in zip(keys, defaults):
            value = OmegaConf.select(cfg, key)
            if isinstance(value, bool):
                assert documented == str(value).lower(), key
            elif isinstance(value, (int, float)):
                assert float(documented) == value, key
            else:
                assert documented == str(value), key
            checked += 1
    assert checked >= 9  # epochs, batch_size, seed, device, precision, cuda_graphs, sparsity, contractive, ...


@pytest.mark.parametrize("preset, weight, kept", [("vae", 4.0, 4.0), ("vae", 1.0, 1.0), ("shallow", 1.0, None)])
def test_a_run_from_when_beta_was_top_level_keeps_its_weight_under_model(make_cfg, tmp_path, preset, weight, kept):
    """Checkpoints written before `beta` moved to `model.beta` held it at the top level, for every family."""
    from aerun.models import build, builder_args
    from aerun.objective import Objective

    small = ["model.encoder=[16]", "model.decoder=[16]"] if preset == "vae" else ["model.hidden=16"]
    overrides = [*SMOKE, f"model={preset}", *small, "epochs=1",
                 *([f"model.beta={weight}"] if preset == "vae" else [])]
    train(make_cfg("train", overrides), tmp_path)
    path = tmp_path / ckpt.CHECKPOINT
    state = torch.load(path, weights_only=True)
    state["config"]["model"].pop("beta", None)
    state["config"]["beta"] = weight  # as the schema stored it then
    del state["sha256"]
    torch.save(state, path)
    config = ckpt.load(path)["config"]
    assert "beta" not in config and config["model"].get("beta") == kept
    model = build(config["model"]["builder"], **builder_args(config["model"]))
    assert Objective.of(OmegaConf.create(config), model).weights.get("kl") == kept
    wanted = OmegaConf.to_container(make_cfg("train", [*overrides[:-1], "epochs=2", *overrides[-1:]]
                                             if preset == "vae" else [*overrides, "epochs=2"]), resolve=True)
    assert ckpt.run_state(tmp_path, wanted, "this test's", "-").action == "resume"  # the same run, one epoch on
