"""A family written outside aerun: the example of docs/extending.md, installed as a package of its own, trains,
evaluates, plots, resumes and benches with no edit to aerun; a broken one is one line naming its entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

EXTENDING = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
SMOKE = ["dataset=synthetic", "epochs=2", "batch_size=64", "device=cpu"]


def readme_example(heading: str = "## Writing your own family") -> dict[str, str]:
    """The code blocks of a section of docs/extending.md ("Writing your own family"): the module, the preset, the
    pyproject lines."""
    section = EXTENDING.read_text().split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"```(python|yaml|toml)\n(.*?)```", section, re.S)[::-1])  # the first of each kind
    assert set(blocks) == {"python", "yaml", "toml"}, "docs/extending.md's example lost a block"
    return blocks


def install(site: Path, package: str, modules: dict[str, str], entry_points: dict[str, str],
            group: str = "aerun.models") -> None:
    """A distribution as pip leaves it in site-packages: its modules and a dist-info with its entry points."""
    (site / package).mkdir(parents=True, exist_ok=True)
    (site / package / "__init__.py").write_text("")
    for name, source in modules.items():
        (site / package / f"{name}.py").write_text(source)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


def docs_package(tmp_path: Path, heading: str, group: str, conf_group: str) -> tuple[str, dict, Path]:
    """A docs/extending.md example (its module, pyproject entry point and preset) installed in a folder of its own:
    its registered name, the environment that finds it, and the search-path folder holding its preset."""
    blocks = readme_example(heading)
    (name, target), = tomllib.loads(blocks["toml"])["project"]["entry-points"][group].items()
    package, module = target.split(".")
    install(tmp_path / "site", package, {module: blocks["python"]}, {name: target}, group=group)
    conf = tmp_path / "my-conf"
    (conf / conf_group).mkdir(parents=True)
    (conf / conf_group / f"{name}.yaml").write_text(blocks["yaml"])
    return name, {**os.environ, "PYTHONPATH": str(tmp_path / "site")}, conf


@pytest.fixture
def outside(tmp_path):
    """The documented family installed in a folder of its own, its preset in another: (environment, search path)."""
    blocks = readme_example()
    points = tomllib.loads(blocks["toml"])["project"]["entry-points"]["aerun.models"]
    (name, target), = points.items()
    package, module = target.split(".")
    site = tmp_path / "site"
    install(site, package, {module: blocks["python"]}, {name: target})
    conf = tmp_path / "my-conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / f"{name}.yaml").write_text(blocks["yaml"])
    env = {**os.environ, "PYTHONPATH": str(site)}
    return env, f"hydra.searchpath=[file://{conf}]"


def aerun(exe, *args, env, cwd):
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_the_readme_family_trains_evaluates_plots_and_resumes_from_outside(aerun_exe, outside, tmp_path):
    env, searchpath = outside
    run = tmp_path / "run"
    done = aerun(aerun_exe, "model=tied", searchpath, *SMOKE, f"hydra.run.dir={run}", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = aerun(aerun_exe, "eval", f"run={run}", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["model"]["name"] == "tied" and evaluation["model"]["builder"] == "tied"
    assert evaluation["model"]["code_dim"] == 16 and evaluation["pca"]["k"] == 16
    # the linear tied AE is a linear map of rank 16: it cannot beat PCA-16, and it has learnt something
    first = float((run / "loss_epoch.csv").read_text().splitlines()[1].split(",")[2])
    assert evaluation["pca"]["sse_per_image"] <= evaluation["model"]["sse_per_image"] * 1.0001
    assert evaluation["model"]["mse"] < first
    plotted = aerun(aerun_exe, "plot", f"run={run}", env=env, cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert {"reconstructions.png", "loss_epoch.png", "manifold_code.png"} <= {p.name for p in (run / "figures").iterdir()}
    resumed = aerun(aerun_exe, "train", f"resume={run}", "epochs=3", env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [line.split(",")[0] for line in (run / "loss_epoch.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    # without the package, its checkpoint names what is missing in one line
    alone = aerun(aerun_exe, "eval", f"run={run}", env={**env, "PYTHONPATH": ""}, cwd=tmp_path)
    assert alone.returncode == 2 and "unknown model builder 'tied'" in alone.stderr
    assert alone.stderr.count("\n") == 1


def test_a_preset_on_the_search_path_is_a_choice_and_a_sweep_value(aerun_exe, outside, tmp_path):
    env, searchpath = outside
    done = aerun(aerun_exe, "-m", "model=tied,shallow", searchpath, *SMOKE, "epochs=1",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    jobs = [yaml.safe_load((tmp_path / "sweep" / job / ".hydra" / "config.yaml").read_text()) for job in ("0", "1")]
    assert [job["model"]["builder"] for job in jobs] == ["tied", "mlp"]
    assert all((tmp_path / "sweep" / job / "checkpoints" / "last.pt").is_file() for job in ("0", "1"))
    missing = aerun(aerun_exe, "model=tied", *SMOKE, env=env, cwd=tmp_path)  # no search path: not a choice
    assert missing.returncode == 2 and "model=tied is not a choice; allowed:" in missing.stderr


@pytest.mark.mnist
def test_bench_takes_a_family_from_outside(aerun_exe, outside, tmp_path, mnist_dir):
    env, searchpath = outside
    done = aerun(aerun_exe, "bench", "presets=[tied]", "reference=false", "repeats=1", "device=cpu", searchpath,
                 f"paths.data_dir={mnist_dir}", f"hydra.run.dir={tmp_path / 'bench'}", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = json.loads((tmp_path / "bench" / "bench.json").read_text())["presets"]["tied"]
    assert row["gflop_per_epoch"] > 0 and row["aerun_s"] > 0


BROKEN = {
    "import": ("import no_such_module_anywhere\n", "could not be imported: ModuleNotFoundError"),
    "twice": ("from aerun.models import register\nfrom aerun.models.mlp import MLPAutoencoder\n"
              "register('mlp')(type('Other', (MLPAutoencoder,), {}))\n", "the family name 'mlp' is registered twice"),
    "not_a_family": ("from torch import nn\nfrom aerun.models import register\n"
                     "@register('plain')\nclass Plain(nn.Module):\n    pass\n", "is not a subclass of aerun.models.Autoencoder"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_plugin_is_one_line_naming_its_entry_point(aerun_exe, tmp_path, kind):
    source, fragment = BROKEN[kind]
    site = tmp_path / "site"
    install(site, "brokenpkg", {"family": source}, {"broken": "brokenpkg.family"})
    done = aerun(aerun_exe, "model=shallow", *SMOKE, env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("aerun: error: the aerun.models entry point 'broken' (brokenpkg.family, from brokenpkg")
    assert fragment in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_readme_dataset_trains_evaluates_and_plots_from_outside(aerun_exe, tmp_path):
    """The documented scikit-learn digits, installed as a package of their own: an 8x8 data set aerun never saw."""
    name, env, conf = docs_package(tmp_path, "## Writing your own dataset", "aerun.datasets", "dataset")
    run = tmp_path / "run"
    done = aerun(aerun_exe, f"dataset={name}", f"hydra.searchpath=[file://{conf}]", "model=conv_deconv", "epochs=2",
                 "device=cpu", f"hydra.run.dir={run}", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("eval", "plot"):
        finished = aerun(aerun_exe, command, f"run={run}", env=env, cwd=tmp_path)
        assert finished.returncode == 0, finished.stderr
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["dataset"] == "sk_digits" and evaluation["n_images"] == 297 and evaluation["shape"] == [1, 8, 8]
    assert evaluation["model"]["code_dim"] == 16  # 16 channels of 1x1 after three poolings of 8x8
    assert evaluation["pixels_probe_accuracy"] > 0.8  # the digits' labels came through: chance is 0.1
    assert (run / "figures" / "reconstructions.png").is_file()


def test_a_broken_dataset_plugin_is_one_line_naming_its_entry_point(aerun_exe, tmp_path):
    site = tmp_path / "site"
    source = ("from aerun.data import Dataset, register_dataset\n"
              "@register_dataset('mnist')\nclass Other(Dataset):\n    pass\n")
    install(site, "brokendata", {"sets": source}, {"broken": "brokendata.sets"}, group="aerun.datasets")
    done = aerun(aerun_exe, "dataset=synthetic", *SMOKE[1:], env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("aerun: error: the aerun.datasets entry point 'broken' (brokendata.sets, from brokendata")
    assert "the data set name 'mnist' is registered twice" in done.stderr and done.stderr.count("\n") == 1
