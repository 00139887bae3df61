"""train -> checkpoint -> eval -> plot on synthetic data, through the same functions the CLI calls."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from aerun import checkpoint as ckpt
from aerun.data import load_split
from aerun.errors import UserError
from aerun.evaluate import evaluate
from aerun.plot import plot
from aerun.train import train

from conftest import SMOKE


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_writes_history_and_a_self_describing_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=16"])
    train(cfg, tmp_path)

    steps_per_epoch = -(-1024 // 64)
    iters, epochs = rows(tmp_path / "loss_iter.csv"), rows(tmp_path / "loss_epoch.csv")
    assert [int(r["step"]) for r in iters] == list(range(1, 2 * steps_per_epoch + 1))
    assert [int(r["epoch"]) for r in epochs] == [1, 2]
    assert float(epochs[1]["test_loss"]) < float(epochs[0]["test_loss"])

    raw = torch.load(tmp_path / ckpt.CHECKPOINT, weights_only=True)  # plain containers only
    assert raw["model"]["name"] == "shallow" and raw["model"]["builder"] == "mlp"
    assert raw["model"]["args"]["code"] == 16
    assert raw["epoch"] == 2 and raw["step"] == 2 * steps_per_epoch
    assert raw["config"]["batch_size"] == 64 and raw["optimizer"]["state"]
    assert isinstance(raw["rng"]["torch"], torch.Tensor)

    # the model comes back from the checkpoint alone, with the same outputs
    model = ckpt.rebuild(raw)
    test = load_split(cfg.dataset, "test", cfg.paths.data_dir, "cpu")
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(test.images)[0], test.images).item()
    assert mse == pytest.approx(float(epochs[1]["test_loss"]), rel=1e-4)


def test_same_seed_same_weights_other_seed_other_weights(make_cfg, tmp_path):
    states = []
    for seed, name in ((1, "a"), (1, "b"), (2, "c")):
        train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", f"seed={seed}"]), tmp_path / name)
        states.append(ckpt.load(tmp_path / name / ckpt.CHECKPOINT)["model"]["state"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["encoder.0.weight"], states[2]["encoder.0.weight"])


def test_a_run_directory_is_never_overwritten(make_cfg, tmp_path):
    cfg = make_cfg("train", [*SMOKE, "model=pca"])
    train(cfg, tmp_path)
    before = (tmp_path / ckpt.CHECKPOINT).read_bytes()
    with pytest.raises(UserError, match="already holds a trained run"):
        train(cfg, tmp_path)
    assert (tmp_path / ckpt.CHECKPOINT).read_bytes() == before


def test_eval_and_plot_from_checkpoints(make_cfg, tmp_path):
    for preset in ("pca", "deep"):
        train(make_cfg("train", [*SMOKE, f"model={preset}", "model.code_activation=none"] if preset == "deep"
                       else [*SMOKE, f"model={preset}"]), tmp_path / preset)

    deep = evaluate(tmp_path / "deep", "unused", "cpu")
    pca = evaluate(tmp_path / "pca", "unused", "cpu")
    on_disk = json.loads((tmp_path / "deep" / "eval.json").read_text())
    assert on_disk == json.loads(json.dumps(deep))
    assert deep["dataset"] == "synthetic" and deep["split"] == "test" and deep["n_images"] == 256
    assert deep["model"]["name"] == "deep" and deep["model"]["code_dim"] == 30 and deep["pca"]["k"] == 30
    for entry in (deep["model"], deep["pca"]):
        assert entry["mse"] == pytest.approx(entry["sse_per_image"] / 784)
        assert len(entry["showcase_sse"]) == 10
    # a PCA run evaluates to the same numbers as the PCA reference beside it
    assert pca["model"]["sse_per_image"] == pytest.approx(pca["pca"]["sse_per_image"], rel=1e-5)
    assert "| deep | 30 |" in (tmp_path / "deep" / "eval.md").read_text()

    written = plot(tmp_path / "deep", "unused", "cpu")
    names = {p.name for p in written}
    assert names == {"reconstructions.png", "loss_iter.png", "loss_epoch.png", "filters.png", "activations.png",
                     "manifold_pixel.png", "manifold_code.png", "manifold_interpolation.png"}  # a 30-d code
    for path in written:  # pictures, not blank canvases: dark ink and light paper, many grey levels between
        pixels = imread(path)[..., :3].mean(-1)
        assert pixels.shape[0] > 200 and pixels.min() < 0.2 and pixels.max() > 0.95, path.name
        assert len(np.unique(np.round(pixels, 2))) > 20, path.name
    grid = imread(tmp_path / "deep" / "figures" / "reconstructions.png")[..., :3].mean(-1)
    rows = [r for r in range(grid.shape[0]) if (grid[r] < 0.5).mean() > 0.05]  # rows crossing the digits' strips
    assert len(rows) > 50  # the originals, PCA's and the AE's reconstructions, drawn as images


def test_random_shift_moves_each_image_by_at_most_the_given_pixels():
    from aerun.train import random_shift

    x = torch.zeros(200, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    moved = random_shift(x, 2, torch.Generator().manual_seed(0))
    where = (moved[:, 0] == 1).nonzero()[:, 1:] - 14  # (row, col) offset of the one bright pixel
    assert moved.sum().item() == 200 and where.abs().max().item() == 2
    assert len({tuple(o) for o in where.tolist()}) == 25  # every offset in [-2, 2]^2 occurs
    again = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(moved, again) and random_shift(x, 0, torch.Generator()) is x
    edge = torch.zeros(1, 1, 28, 28)
    edge[0, 0, 0, :] = 1.0  # the top row: zeros move in, nothing wraps around
    shifted = random_shift(edge.expand(64, 1, 28, 28), 1, torch.Generator().manual_seed(1))
    assert shifted[:, 0, 27].sum().item() == 0


@pytest.mark.parametrize("preset", ["adam", "adamw", "sgd"])
def test_the_eager_step_is_the_optimisers_own_update_bit_for_bit(make_cfg, preset):
    from hydra.utils import instantiate

    from aerun import eager

    cfg = make_cfg("train", [f"optimizer={preset}", "optimizer.lr=0.01"])
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 12))
    inputs = torch.randn(5, 16, 12)
    states = []
    for fast in (False, True):
        model = copy.deepcopy(base)
        optimizer = eager.build(instantiate(cfg.optimizer), model.parameters())
        for x in inputs:
            optimizer.zero_grad(set_to_none=True)
            (model(x) - x).pow(2).mean().backward()
            eager.step(optimizer) if fast else optimizer.step()
        states.append((model.state_dict(), optimizer.state_dict()["state"]))
    (weights, moments), (fast_weights, fast_moments) = states
    assert all(torch.equal(weights[k], fast_weights[k]) for k in weights)
    assert not torch.equal(weights["0.weight"], base.state_dict()["0.weight"])  # it did train
    for index, state in moments.items():
        assert all(torch.equal(v, fast_moments[index][k]) if torch.is_tensor(v) else v == fast_moments[index][k]
                   for k, v in state.items())


@pytest.mark.slow
def test_a_training_process_does_not_import_the_compiler(tmp_path):
    """torch's optimiser wrappers import torch._dynamo, about 2 s per process; aerun's step goes without them."""
    import subprocess
    import sys

    script = ("import sys\nfrom aerun.compose import compose_config\nfrom aerun.train import train\n"
              f"cfg = compose_config('train', {SMOKE + ['epochs=1', 'model=shallow']!r})\n"
              f"train(cfg, __import__('pathlib').Path({str(tmp_path / 'run')!r}))\n"
              "print('compiler imported:', 'torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "compiler imported: False" in done.stdout
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_one_rule_decides_a_folder_against_the_config_that_asks_for_it(make_cfg, tmp_path):
    """checkpoint.run_state: new, resume, complete, or one line for another config or a longer run."""
    from omegaconf import OmegaConf

    def state(*overrides):
        wanted = OmegaConf.to_container(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", *overrides]),
                                        resolve=True)
        return ckpt.run_state(tmp_path, wanted, "this test's", "choose another folder")

    assert state().action == "new" and state().epochs is None
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8"]), tmp_path)  # 2 epochs
    assert (state().action, state().epochs) == ("complete", 2)
    assert (state("epochs=3").action, state("epochs=3").epochs) == ("resume", 2)
    assert state("epochs=3", "device=auto").action == "resume"  # a reusable change
    with pytest.raises(UserError, match=r"holds a run whose optimizer.lr differs from this test's; .*choose another "
                                        r"folder$"):
        state("optimizer.lr=0.01")
    with pytest.raises(UserError, match="is trained to epoch 2, more than epochs=1: a run is not cut short"):
        state("epochs=1")
    with pytest.raises(UserError, match=r"trained at precision=32; it resumes at that precision only \(not bf16-mixed\)"):
        state("precision=bf16-mixed")
    with pytest.raises(UserError, match="is trained to epoch 2, more than epochs=1"):  # train's resume: the same rule
        train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1"]), tmp_path, resume=True)
