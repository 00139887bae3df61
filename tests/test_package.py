"""aerun as a package: a wheel built from the checkout carries conf/ and works from any folder, outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The wheel built from this checkout, installed (without dependencies) into a folder of its own: the wheel,
    and the environment of an interpreter that sees that folder and this environment's dependencies, but not
    the checkout (the base interpreter, so the editable install's .pth is not read)."""
    where = tmp_path_factory.mktemp("package")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(where / "dist"), str(ROOT)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (where / "dist").glob("aerun-*.whl")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                           str(where / "site"), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": f"{where / 'site'}{os.pathsep}{sysconfig.get_paths()['purelib']}",
           "AERUN_DATA_DIR": str(where / "data")}
    return wheel, env


def test_a_wheel_carries_every_config_file_of_the_checkout(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"aerun/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert len(expected) > 40 and expected <= names


def test_an_installed_wheel_trains_evaluates_and_plots_from_another_folder(installed, tmp_path):
    _, env = installed
    python = getattr(sys, "_base_executable", sys.executable)
    elsewhere = tmp_path / "my-experiments"
    elsewhere.mkdir()

    def aerun(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-m", "aerun", *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)

    where = subprocess.run([python, "-c", "import aerun, aerun.compose as c; print(aerun.__file__); print(c.CONF_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    module, conf = where.stdout.split()
    assert not Path(module).is_relative_to(ROOT) and Path(conf) == Path(module).parent / "conf"

    trained = aerun("model=shallow", "model.hidden=16", "dataset=synthetic", "epochs=1", "batch_size=64",
                    "device=cpu")
    assert trained.returncode == 0, trained.stderr
    (run,) = (elsewhere / "outputs" / "shallow").iterdir()  # under ./outputs of the folder it ran in
    assert aerun("eval", f"run={run}").returncode == 0
    assert json.loads((run / "eval.json").read_text())["model"]["name"] == "shallow"
    plotted = aerun("plot", f"run={run}")
    assert plotted.returncode == 0, plotted.stderr
    assert list((run / "figures").glob("*.png"))
    assert not (ROOT / "outputs" / "shallow" / run.name).exists()
