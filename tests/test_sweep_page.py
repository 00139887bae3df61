"""`aerun eval run=SWEEP` writes the sweep's page: its settings over seeds, figures, claims against a control."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from aerun.sweep_page import swept_keys, write_page

from conftest import unavailable


class Page(HTMLParser):
    """What a browser would load and show: image sources, table cells, the text."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.cells, self.text, self._in_cell = [], [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_cell = tag == "td" or self._in_cell

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_cell:
            self.cells.append(data)


@pytest.fixture(scope="module")
def sweep(aerun_exe, tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    done = subprocess.run([aerun_exe, "-m", "dataset=synthetic", "dataset.val_size=128", "device=cpu", "epochs=1",
                           "batch_size=64", "model=shallow", "model.hidden=8,32", "seed=0,1",
                           f"hydra.sweep.dir={root / 'sweep'}"], capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([aerun_exe, "eval", f"run={root / 'sweep'}", 'compare.control="model.hidden=8"'],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr
    assert f"the sweep's page: {root / 'sweep' / 'index.html'}" in done.stdout
    return root / "sweep"


@pytest.mark.slow
def test_the_page_shows_each_setting_its_figures_and_the_claims_against_the_control(sweep):
    page = Page()
    page.feed((sweep / "index.html").read_text())
    text = "".join(page.text)
    assert {"model.hidden=8", "model.hidden=32"} <= set(page.cells)
    evaluated = json.loads((sweep / "eval.json").read_text())
    sse = {g["label"]: g["model"]["sse_per_image"] for g in evaluated["groups"]}
    assert f"{sse['model.hidden=32']['mean']:.4g}" in text  # the table's mean is eval.json's
    assert page.images and all((sweep / src).is_file() for src in page.images)
    assert "figures/sweep_model_hidden.png" in page.images and "figures/sweep_loss.png" in page.images
    assert "validation SSE/image" in text
    assert "against the control model.hidden=8" in text and "1 comparisons" in text
    assert "Holm-adjusted p" in text and "model.hidden=32" in text.split("Comparisons", 1)[1]
    assert (sweep / "index.md").read_text().count("model.hidden=32") >= 2


def test_labels_from_the_command_line_are_escaped(sweep, tmp_path):
    evaluated = json.loads((sweep / "eval.json").read_text())
    evaluated["groups"][1]["label"] = "model.hidden=<script>alert(1)</script>"
    shutil.copytree(sweep, tmp_path / "copy")
    html = write_page(tmp_path / "copy", evaluated).read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_control_that_names_no_setting_is_one_line(aerun_exe, sweep):
    done = subprocess.run([aerun_exe, "eval", f"run={sweep}", 'compare.control="model.hidden=64"'],
                          capture_output=True, text=True, timeout=600)
    message = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in message and "names 0 settings of this sweep" in message, message


def test_swept_keys_are_those_with_more_than_one_value():
    labels = ["model.hidden=8 optimizer.lr=0.1", "model.hidden=16 optimizer.lr=0.1", "model.hidden=8 seed=1"]
    assert swept_keys(labels) == {"model.hidden": ["8", "16", "8"], "optimizer.lr": ["0.1", "0.1", ""]}


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "firefox")


@pytest.mark.browser
def test_the_page_renders_in_a_headless_browser(sweep, tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        unavailable("BROWSER", f"no headless browser here ({', '.join(BROWSERS)}; `make browser` installs "
                    "chromium); the page's HTML is checked above")
    if "firefox" in browser:
        shot = tmp_path / "page.png"
        done = subprocess.run([browser, "--headless", "--screenshot", str(shot), (sweep / "index.html").as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and shot.stat().st_size > 0, done.stderr
        return
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           (sweep / "index.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = Page()
    page.feed(done.stdout)
    assert {"model.hidden=8", "model.hidden=32"} <= set(page.cells)  # the DOM the browser built


def test_runs_of_one_setting_at_different_epochs_are_never_averaged(make_cfg, tmp_path):
    from aerun.evaluate import evaluate
    from aerun.train import train
    from conftest import SMOKE

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=1", f"seed={seed}"]), sweep / str(seed))
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=2", "seed=0"]), sweep / "0", resume=True)
    groups = evaluate(sweep, "unused", "cpu")["groups"]
    assert sorted((g["label"], g["n"]) for g in groups) == [("shallow (epoch 1)", 1), ("shallow (epoch 2)", 1)]
    train(make_cfg("train", [*SMOKE, "model=shallow", "model.hidden=8", "epochs=2", "seed=1"]), sweep / "1", resume=True)
    groups = evaluate(sweep, "unused", "cpu")["groups"]
    assert [(g["label"], g["n"], g["seeds"]) for g in groups] == [("shallow", 2, [0, 1])]  # now one setting, two seeds
