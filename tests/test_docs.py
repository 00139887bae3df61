"""The documentation: the configuration reference is what the code says, the site builds with --strict, and the
README stays a first-time user's page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_reference_is_what_the_code_and_conf_say(tmp_path):
    written = tmp_path / "reference.md"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "config-reference.py"), str(written)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert written.read_text() == (ROOT / "docs" / "reference.md").read_text(), \
        "docs/reference.md is stale: run `make docs` (or python scripts/config-reference.py) and commit it"


def test_the_reference_names_every_training_key_and_every_preset():
    from aerun.compose import compose_config, group_options

    page = (ROOT / "docs" / "reference.md").read_text()
    cfg = compose_config("train", [])
    for key in ("epochs", "precision", "cuda_graphs", "checkpoint.monitor", "early_stop.patience", "dataset.val_size"):
        assert f"| `{key}` |" in page
    for key in cfg:
        if key not in ("model", "optimizer", "noise", "paths", "dataset", "search", "checkpoint", "early_stop"):
            assert f"| `{key}` |" in page, key
    for name in group_options("model"):
        assert f"| `{name}` |" in page, name


def test_the_site_builds_strictly_with_every_page(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is not installed (pip install -e '.[docs]'; make setup installs it)"
    done = subprocess.run([mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "guide/index.html", "running/index.html", "extending/index.html",
                 "reference/index.html", "results/index.html", "development/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_the_readme_is_a_first_time_users_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    text = "\n".join(lines)
    for needed in ("make demo", "make check", "make test", "make docs", "aerun encode", "aerun export"):
        assert needed in text, needed
