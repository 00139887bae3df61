"""`aerun report`: every part trained, evaluated and written up; complete runs reused, stopped ones resumed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from aerun import checkpoint as ckpt
from aerun.document import Document
from aerun.errors import UserError
from aerun.report import chosen_parts, compare, registered, trend
from aerun.schema import first_difference
from aerun.stats import Spread
from conftest import unavailable

TINY = 'train_overrides=["dataset=synthetic","epochs=1","batch_size=64"]'


def report(exe, root: Path, *args: str, overrides: str = TINY):
    return subprocess.run([exe, "report", f"dir={root}", overrides, "ood=[noise]", "device=cpu", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    import shutil
    import sys

    beside = Path(sys.executable).parent / "aerun"
    exe = str(beside) if beside.exists() else shutil.which("aerun")
    root = tmp_path_factory.mktemp("report") / "report"
    done = report(exe, root)
    assert done.returncode == 0, done.stderr
    for name in ("report.json", "report.md", "index.html"):  # later tests write other reports into the same folder
        shutil.copy(root / name, root.parent / f"first-{name}")
    return exe, root, done


@pytest.mark.slow
def test_the_report_answers_every_part_with_figures_that_exist(full_report):
    _, root, done = full_report
    n_jobs = 22  # the assignment's 20 and the controls of parts 3 and 4
    assert f"job {n_jobs}/{n_jobs}" in done.stdout and "part 6/6 conv" in done.stdout
    markdown = (root.parent / "first-report.md").read_text()  # report.md: rewritten by the later tests
    for part in registered().values():
        assert f"## {part.title}" in markdown
    assert "## Beyond the assignment" in markdown and "aerun report beyond=true" in markdown
    families = markdown.split("## Beyond the assignment: other families, each beside its twin")[1]
    assert "These models are not trained yet: `aerun report beyond=true` trains them" in families
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(figures) >= 15
    missing = [f for f in figures if not (root / f).is_file()]
    assert not missing, missing
    page = (root.parent / "first-index.html").read_text()
    assert page.count("<img ") == len(figures)
    assert "report written" in done.stdout and str((root / "index.html").resolve()) in done.stdout


def test_the_numbers_in_the_report_are_the_evaluated_ones(full_report):
    _, root, _ = full_report
    markdown = (root.parent / "first-report.md").read_text()  # report.md: rewritten by the later tests
    sweep = json.loads((root / "runs" / "pca_vs_ae" / "eval.json").read_text())
    deep = next(j for j in sweep["jobs"] if j["model"]["name"] == "deep")
    row = next(line for line in markdown.splitlines() if line.startswith("| deep AE"))
    assert f"| {deep['model']['sse_per_image']:.4g} |" in row
    conv = json.loads((root / "runs" / "conv" / "eval.json").read_text())
    for job in conv["jobs"]:
        line = next(l for l in markdown.splitlines() if l.startswith(f"| {job['model']['name']} |"))
        assert f"{job['model']['sse_per_image']:.4g}" in line
    best = min(conv["jobs"], key=lambda j: j["model"]["sse_per_image"])["model"]["name"]
    assert f"Ranking by mean final test error in this run: {best} " in markdown


def test_a_second_report_reuses_complete_runs(full_report):
    exe, root, _ = full_report
    checkpoint = root / "runs" / "pca_vs_ae" / "1" / "checkpoints" / "last.pt"
    before = checkpoint.stat().st_mtime_ns
    done = report(exe, root, "parts=[pca_vs_ae]")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("reused (complete)") == 2 and "training" not in done.stdout
    assert checkpoint.stat().st_mtime_ns == before
    assert "[report] evaluations: 0 made here" in done.stdout  # the first report's eval.json, of the same checkpoints
    assert "## 2. " not in (root / "report.md").read_text()


@pytest.mark.slow
def test_more_epochs_resume_a_run_and_another_config_is_refused(full_report):
    exe, root, _ = full_report
    more = 'train_overrides=["dataset=synthetic","epochs=2","batch_size=64"]'
    done = report(exe, root, "parts=[manifold]", overrides=more)
    assert done.returncode == 0, done.stderr
    assert "resuming at epoch 1" in done.stdout
    history = (root / "runs" / "manifold" / "0" / "loss_epoch.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2"]
    # the first report's eval.json was of the epoch-1 checkpoint: evaluated again, not reused
    assert json.loads((root / "runs" / "manifold" / "0" / "eval.json").read_text())["epoch"] == 2

    other = 'train_overrides=["dataset=synthetic","epochs=2","batch_size=32"]'
    done = report(exe, root, "parts=[manifold]", overrides=other)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "batch_size differs" in done.stderr and "Traceback" not in done.stderr


def test_unknown_part_is_one_line(aerun_exe, tmp_path):
    done = report(aerun_exe, tmp_path / "r", "parts=[sparse,gan]")
    assert done.returncode == 2 and "parts has 'gan'; allowed:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
    done = report(aerun_exe, tmp_path / "r", "beyond=maybe")
    assert done.returncode == 2 and "beyond='maybe' is not allowed; it must be true or false" in done.stderr
    assert not (tmp_path / "r").exists()


def test_chosen_parts_train_what_the_sections_compare_against():
    written, trained = chosen_parts(["sparse"], beyond=False)
    assert [p.key for p in written] == ["sparse"] and [p.key for p in trained] == ["standard", "sparse"]
    _, trained = chosen_parts(["beyond"], beyond=True)
    assert [p.key for p in trained] == ["pca_vs_ae", "standard", "beyond"]
    written, trained = chosen_parts(["families"], beyond=False)
    assert [p.key for p in written] == ["families"] and [p.key for p in trained] == ["pca_vs_ae", "standard"]
    _, trained = chosen_parts(["families"], beyond=True)
    assert [p.key for p in trained] == ["pca_vs_ae", "standard", "families"]
    with pytest.raises(UserError, match="allowed: pca_vs_ae"):
        chosen_parts(["nope"], beyond=False)


def test_observations_name_the_winner_and_the_margin():
    one = Spread.of
    assert compare("PCA", one([13.9]), "AE", one([15.8])).startswith(
        "In this run PCA has the lower SSE/image: 13.9 against 15.8 for AE (AE's error is 14 % larger)")
    assert "A's error is 5.0 times B's" in compare("A", one([10.0]), "B", one([2.0]))
    assert (trend([one([3]), one([2]), one([1])]), trend([one([1]), one([3]), one([2])])) == (
        "falls in this run", "does not move in one direction in this run")


def test_first_difference_ignores_where_and_how_long():
    a = {"epochs": 1, "device": "cpu", "paths": {"data_dir": "x"}, "model": {"hidden": 64}, "seed": 0}
    b = {"epochs": 9, "device": "cuda", "paths": {"data_dir": "y"}, "model": {"hidden": 64}, "seed": 0}
    assert first_difference(a, b) is None
    assert first_difference(a, {**b, "model": {"hidden": 128}}) == "model.hidden"
    assert first_difference(a, {**b, "sparsity": 0.1}) == "sparsity"


def test_document_renders_the_same_content_twice_and_escapes_html():
    doc = Document("T <1>")
    doc.heading("Part")
    doc.text("uses `aerun report` & **bold**")
    doc.table(["a", "b"], [[1, 0.123456]])
    doc.figure("runs/x.png", "a figure")
    md, page = doc.markdown(), doc.html()
    assert "| 1 | 0.1235 |" in md and "![a figure](runs/x.png)" in md
    assert "<title>T &lt;1&gt;</title>" in page and "<code>aerun report</code> &amp; <b>bold</b>" in page
    assert "<td>0.1235</td>" in page and '<img src="runs/x.png"' in page


def test_moves_are_judged_by_the_share_that_is_digit_like():
    from aerun.report.parts.manifold import manifold_notes

    notes = manifold_notes([0.1, 500.0], [[(0.9, 9.0), (0.0, 1.2e6)], [(0.7, 11.0), (0.0, 1.1e6)]], "Code noise")
    assert notes[0].startswith("Code noise 0.1: 80 % are digit-like (± 14 over 2 seeds); their mean SSE")
    assert notes[1].startswith("Code noise 500: none is digit-like")
    assert manifold_notes([0.1], [[(1.0, 9.0)]], "x")[0].startswith("x 0.1: every one is digit-like")


@pytest.mark.mnist
def test_the_yardstick_accepts_held_out_digits_and_rejects_every_non_digit_control(mnist_dir):
    """Calibrated on training images only, it is judged on images it never saw (ASSIGNMENT.md part 5's question)."""
    import torch

    from aerun.data import load_split
    from aerun.yardstick import Yardstick, controls

    stick = Yardstick.of({"name": "mnist"}, mnist_dir, "cpu")
    found = {c["set"]: c for c in controls(stick, {"name": "mnist"}, mnist_dir, "cpu")}
    assert found["held-out test images"]["share"] >= 0.8 and found["held-out test images"]["passed"]
    for name in ("filled discs", "bars", "blobs", "uniform noise"):
        assert found[name]["share"] <= 0.05 and found[name]["passed"], (name, found[name])
    fashion = found["Fashion-MNIST test images"]
    assert fashion["passed"] or fashion["note"].startswith("not measured: data file missing")
    for name in ("held-out test images rotated 90°", "held-out test images mirrored"):
        assert 0 <= found[name]["share"] <= 1 and found[name]["passed"] is None  # reported, no bound
    test = load_split({"name": "mnist"}, "test", mnist_dir, "cpu").images[:1000]
    blurred = torch.nn.functional.avg_pool2d(test, 3, stride=1, padding=1)  # a reconstruction's blur: still digits
    assert stick.share(blurred) >= 0.5
    assert not stick.judge(torch.zeros(1, 1, 28, 28)).item()  # the blank image


def test_report_json_carries_every_comparison_and_every_table(full_report):
    _, root, _ = full_report
    saved = json.loads((root.parent / "first-report.json").read_text())
    claims, tables = saved["claims"], saved["tables"]
    checked = saved["yardstick"]["synthetic"]["controls"]  # part 5's yardstick, with its controls
    assert [c["set"] for c in checked] == ["held-out test images", "filled discs", "bars", "blobs", "uniform noise",
                                           "held-out test images rotated 90°", "held-out test images mirrored"]
    assert all(0 <= c["share"] <= 1 and c["n"] == (256 if "held-out" in c["set"] else 1000) for c in checked)
    assert [c["bound"] for c in checked] == [">= 0.8", *["<= 0.05"] * 4, None, None]
    assert {c["part"] for c in claims} >= {"pca_vs_ae", "standard", "sparse", "denoising", "manifold", "conv"}
    conv = [c for c in claims if c["part"] == "conv" and c["metric"] == "SSE/image"]
    assert {(c["a"], c["b"]) for c in conv} == {("conv_unpool", "conv_deconv"), ("conv_unpool", "conv_unpool_deconv"),
                                                ("conv_deconv", "conv_unpool_deconv")}  # every pair, none picked
    sparse = [c for c in claims if c["part"] == "sparse" and c["b"] == "the control"]
    assert len(sparse) == 6  # each λ against the same-width control, on SSE and on the probe
    denoising = [(c["metric"], c["a"], c["b"], tuple(sorted(c["context"].items()))) for c in claims
                 if c["part"] == "denoising"]
    assert denoising and len(set(denoising)) == len(denoising)  # no two alike: each names its noise and level
    assert all({"noise", "level"} <= set(c[3] and dict(c[3])) for c in denoising)
    markdown = (root.parent / "first-report.md").read_text()
    row = next(t for t in tables if t["section"].startswith("6."))["rows"][0]
    assert f"| {' | '.join(row.values())} |" in markdown  # the same cells as the page shows


@pytest.mark.slow
def test_the_comparisons_are_the_same_whatever_the_numbers(full_report, tmp_path):
    exe, root, _ = full_report
    other = tmp_path / "other"
    overrides = 'train_overrides=["dataset=synthetic","epochs=1","batch_size=64","seed=3","optimizer.lr=1e-3"]'
    done = report(exe, other, "parts=[conv]", overrides=overrides)
    assert done.returncode == 0, done.stderr

    def planned(claims):
        return [(c["part"], c["metric"], c["a"], c["b"]) for c in claims if c["part"] == "conv"]

    first = json.loads((root.parent / "first-report.json").read_text())["claims"]
    assert planned(first) and planned(json.loads((other / "report.json").read_text())["claims"]) == planned(first)


@pytest.mark.slow
def test_a_spread_never_mixes_run_lengths(full_report, tmp_path):
    exe, root, _ = full_report
    mixed = tmp_path / "mixed"
    two = 'train_overrides=["dataset=synthetic","epochs=2","batch_size=64"]'
    assert report(exe, mixed, "parts=[manifold]", overrides=two).returncode == 0
    done = report(exe, mixed, "parts=[manifold]", "seeds=2")  # epochs=1 now, beside a 2-epoch seed 0
    assert done.returncode == 2 and "is trained to epoch 2, more than epochs=1: a run is not cut short, and a spread must not mix run lengths" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_families_section_sets_each_family_beside_its_twin(aerun_exe, tmp_path):
    root = tmp_path / "r"
    done = report(aerun_exe, root, "parts=[families]", "beyond=true")
    assert done.returncode == 0, done.stderr
    assert "part 3/3 families" in done.stdout and "job 14/14" in done.stdout  # 2 + 3 + (5 + 4 twins) jobs
    markdown = (root / "report.md").read_text()
    section = markdown.split("## Beyond the assignment: other families, each beside its twin")[1]
    sweep = json.loads((root / "runs" / "families" / "eval.json").read_text())
    vae = next(j for j in sweep["jobs"] if j["model"]["name"] == "vae")
    row = next(line for line in section.splitlines() if line.startswith("| vae |"))
    assert f"| {vae['model']['sse_per_image']:.4g} |" in row
    lines = section.splitlines()
    for name in ("deep AE (part 1)", "vae twin", "vae2d", "shallow AE 128 (part 2)", "contractive twin", "contractive",
                 "wta twin", "wta", "vqvae twin", "vqvae"):
        assert any(line.startswith(f"| {name} |") for line in lines), name
    for family, twin in (("vae", "vae twin"), ("wta", "wta twin"), ("vqvae", "vqvae twin")):  # each compared with its twin
        assert any(family in line and twin in line and "SSE/image" in line for line in lines), family
    assert f"negative elbo {vae['model']['variational']['negative_elbo']:.4g}" in section
    vq = next(j for j in sweep["jobs"] if j["model"]["name"] == "vqvae")["model"]["vq"]
    assert f"used codes {vq['used_codes']}" in section
    assert "| 500 |" in section and "Code noise 500: In this run" in section
    # the assignment's model of a family's code size is set beside it in a table, never tested against it
    assert "| family | SSE/image | the assignment's model of its code size | its SSE/image |" in section
    assert "for reference:" not in section
    # the presets chosen on the test split are named where they are used; the contractive AE was searched
    told = next(line for line in lines if "Chosen by looking at the test split" in line)
    assert "the VAE's depth" in told and "winner-take-all" in told and "contractive" not in told.split("Chosen")[1]
    twin = json.loads((root / "runs" / "contractive_twin" / "eval.json").read_text())["jobs"][0]
    assert ckpt.load(Path(twin["run_dir"]) / ckpt.CHECKPOINT)["config"]["optimizer"]["lr"] == 8.0e-3  # its own rate
    claims = json.loads((root / "report.json").read_text())["claims"]
    assert not [c for c in claims if c["part"] == "families" and "(part " in c["b"]]
    twin = json.loads((root / "runs" / "vae_twin" / "eval.json").read_text())
    assert twin["jobs"][0]["model"]["code_dim"] == vae["model"]["code_dim"] == 30
    assert "vq" not in json.loads((root / "runs" / "vqvae_twin" / "eval.json").read_text())["jobs"][0]["model"]
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section)
    assert {Path(f).name for f in figures} >= {"code_noise_vae.png", "samples.png", "latent_map.png", "code_usage.png"}
    assert all((root / f).is_file() for f in figures)


def test_the_launcher_gets_the_longest_jobs_first_and_the_plan_keeps_its_random_stream(tmp_path):
    import torch

    from aerun.report.jobs import longest_first
    from aerun.report.plan import Sweep, plan_sweep

    sweeps = [Sweep("standard", "standard"), Sweep("pca_vs_ae", "pca_vs_ae"), Sweep("conv", "conv")]
    jobs = [job for sweep in sweeps for setting in plan_sweep(sweep, ["epochs=1"], tmp_path)
            for job in setting.jobs]
    state = torch.get_rng_state()
    ordered = longest_first([(job, job.cfg.epochs) for job in jobs])
    assert torch.equal(torch.get_rng_state(), state)
    name = {id(job): f"{job.cfg.model.name}-{job.cfg.model.get('hidden', '')}" for job in jobs}
    names = [name[id(job)] for job in ordered]
    assert sorted(names) == sorted(name.values())
    # conv_unpool and conv_unpool_deconv count the same FLOPs: the plan's order between them stays
    assert names[:3] == ["conv_unpool-", "conv_unpool_deconv-", "deep-"] and names[-1] == "pca-"
    assert names.index("shallow-256") < names.index("shallow-128") < names.index("shallow-64")


def test_a_saved_evaluation_is_reused_only_for_the_same_checkpoint_noise_device_and_code(full_report, tmp_path):
    import shutil

    from aerun.evaluate import saved_evaluation

    _, root, _ = full_report
    run = tmp_path / "run"
    shutil.copytree(root / "runs" / "pca_vs_ae" / "1", run)
    saved = saved_evaluation(run, "cpu")
    assert saved is not None and saved["run_dir"] == str(run) and saved["model"]["name"] == "deep"
    assert saved_evaluation(run, "cpu", noise_seed=1) is None
    assert saved_evaluation(run, "meta") is None
    assert saved_evaluation(run, "cpu", ("gaussian", 0.5)) is None  # no eval-gaussian-0.5.json
    for key, other in (("checkpoint", "0" * 64), ("code", "another aerun")):
        result = json.loads((run / "eval.json").read_text())
        result["provenance"][key] = other
        (run / "eval.json").write_text(json.dumps(result))
        assert saved_evaluation(run, "cpu") is None


PROBE = """<!doctype html><html><body><iframe id="f" src="{page}" style="width:1200px;height:800px"></iframe>
<script>
document.getElementById('f').addEventListener('load', () => {{
  const images = [...document.getElementById('f').contentDocument.images];
  const out = document.createElement('pre');
  out.id = 'images';
  out.textContent = images.map(i => (i.complete && i.naturalWidth > 0 ? 'loaded ' : 'broken ') + i.getAttribute('src'))
                          .join('\\n');
  document.body.appendChild(out);
}});
</script></body></html>"""


def images_as_a_browser_loads_them(page: Path) -> list[str]:
    """Each <img> of `page` as a headless chromium loads it: 'loaded SRC' or 'broken SRC'."""
    import shutil

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        unavailable("BROWSER", "no headless chromium here (`make browser` installs it)")
    probe = page.with_name(f".probe-{page.stem}.html")  # beside the page: the same file:// folder
    probe.write_text(PROBE.format(page=page.name))
    try:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                               "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert done.returncode == 0, done.stderr
    found = re.search(r'<pre id="images">(.*?)</pre>', done.stdout, re.S)
    assert found, "the page did not load in the browser"
    return [line for line in found.group(1).splitlines() if line]


@pytest.mark.browser
def test_every_image_of_the_report_page_loads_in_a_headless_browser(full_report, tmp_path):
    _, root, _ = full_report
    shown = images_as_a_browser_loads_them(root / "index.html")
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', (root / "index.html").read_text())
    assert sources and [line.split(" ", 1)[1] for line in shown] == sources  # every image the page has
    assert all(line.startswith("loaded ") for line in shown), [s for s in shown if not s.startswith("loaded ")]
    # the probe tells a missing figure apart
    (tmp_path / "there.png").write_bytes((root / sources[0]).read_bytes())
    (tmp_path / "page.html").write_text('<img src="there.png"><img src="missing.png">')
    assert images_as_a_browser_loads_them(tmp_path / "page.html") == ["loaded there.png", "broken missing.png"]


@pytest.mark.slow
def test_a_report_interrupted_and_run_again_ends_as_a_straight_one(full_report, tmp_path):
    """Stopped in the middle of the report's jobs (SIGTERM, which aerun takes as Ctrl-C), then the same command:
    the finished jobs are reused, the rest trained, and every number of report.json is the straight report's."""
    import signal
    import time

    exe, _, _ = full_report
    root = tmp_path / "report"
    started = subprocess.Popen([exe, "report", f"dir={root}", TINY, "ood=[noise]", "device=cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list(root.glob("runs/*/*/checkpoints/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into the jobs: some finished, one in training
    started.send_signal(signal.SIGTERM)  # as Ctrl-C (a SIGINT is ignored where the tests run in the background)
    out, err = started.communicate(timeout=300)
    assert started.returncode == 130, err
    assert not (root / "report.json").exists()  # nothing half-written in its place
    done = report(exe, root)
    assert done.returncode == 0, done.stderr
    assert "reused (complete)" in done.stdout
    straight = json.loads((full_report[1].parent / "first-report.json").read_text())["claims"]
    again = json.loads((root / "report.json").read_text())["claims"]

    def numbers(claims):
        return [(c["part"], c["metric"], c["a"], c["b"], c["mean_a"], c["mean_b"], c["p"]) for c in claims]
    assert numbers(again) == numbers(straight)


REPORT_JSON = {"seconds": "float", "training_seconds": "float", "seeds": "int", "evaluations": "dict",
               "left_out": "dict", "jobs": "dict", "claims": "list", "tables": "list",
               "yardstick": "dict"}  # part 5's, by data set (a report with parts that judge digit-likeness)
CLAIM = {"part": {"str"}, "metric": {"str"}, "a": {"str"}, "b": {"str"}, "n": {"int"}, "mean_a": {"float"},
         "mean_b": {"float"}, "sd_a": {"float", "NoneType"}, "sd_b": {"float", "NoneType"}, "difference": {"float"},
         "ci_low": {"float", "NoneType"}, "ci_high": {"float", "NoneType"}, "p": {"float", "NoneType"},
         "p_adjusted": {"float", "NoneType"}, "resolved": {"bool", "NoneType"}, "untested": {"str", "NoneType"},
         "higher_is_better": {"bool"}, "context": {"dict"}}
# what each part of the assignment compares (the metrics of its claims), with the default parts and one seed
COMPARED = {"pca_vs_ae": {"SSE/image", "probe accuracy"}, "standard": {"SSE/image", "SSE/image on noise inputs",
                                                                    "probe accuracy"},
            "sparse": {"SSE/image", "probe accuracy"}, "denoising": {"SSE/image", "probe accuracy"},
            "manifold": {"probe accuracy"}, "conv": {"SSE/image", "probe accuracy", "test SSE after one epoch"}}


def test_report_json_has_the_pinned_structure(full_report):
    """report.json's fields and types, each claim's fields, and which metrics each part compares (values masked):
    a field renamed, dropped or retyped, or a part that stops comparing something, fails here."""
    _, root, _ = full_report
    saved = json.loads((root.parent / "first-report.json").read_text())
    assert {k: type(v).__name__ for k, v in saved.items()} == REPORT_JSON
    assert {k: type(v).__name__ for k, v in saved["yardstick"]["synthetic"].items()} == {
        "classifier": "dict", "features": "str", "pixels": "str", "controls": "list"}
    assert all(set(c) == {"set", "n", "share", "bound", "passed"} for c in saved["yardstick"]["synthetic"]["controls"])
    assert set(saved["evaluations"]) == {"made", "reused"} and all(isinstance(v, int) for v in saved["evaluations"].values())
    assert all(isinstance(settings, list) and all(isinstance(runs, list) and all(isinstance(r, str) for r in runs)
                                                   for runs in settings) for settings in saved["jobs"].values())
    # each sweep's settings, each a list of its seeds' run folders
    for claim in saved["claims"]:
        assert set(claim) == set(CLAIM) and all(type(claim[k]).__name__ in CLAIM[k] for k in CLAIM), claim
    compared: dict[str, set[str]] = {}
    for claim in saved["claims"]:
        compared.setdefault(claim["part"], set()).add(claim["metric"])
    assert compared == COMPARED
    for table in saved["tables"]:
        assert set(table) == {"section", "rows"} and isinstance(table["section"], str)
        assert all(isinstance(row, dict) and all(isinstance(v, str) for v in row.values()) for row in table["rows"])


@pytest.mark.slow  # installs a package and runs a report, as test_plugins' family
def test_the_docs_report_part_from_another_package_trains_and_writes_its_section(aerun_exe, tmp_path):
    """docs/extending.md's part, installed as a package of its own: chosen alone, and last among every part."""
    from test_plugins import docs_package

    name, env, conf = docs_package(tmp_path, "## Writing your own report part", "aerun.report_parts", "experiment")
    root = tmp_path / "r"
    done = subprocess.run([aerun_exe, "report", f"dir={root}", TINY, "device=cpu", f"parts=[{name}]", "seeds=3",
                           f"hydra.searchpath=[file://{conf}]"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "part 1/1 widths · job 6/6 · widths model.hidden=64 seed 2" in done.stdout  # two widths, three seeds
    markdown = (root / "report.md").read_text()
    assert "## Beyond the assignment: how wide a code" in markdown and "| 16 |" in markdown and "| 64 |" in markdown
    claims = json.loads((root / "report.json").read_text())["claims"]
    assert [(c["part"], c["a"], c["b"], c["n"]) for c in claims] == [("widths", "64 units", "16 units", 3)]
    assert sorted(p.name for p in (root / "runs" / "widths").iterdir() if p.is_dir()) == [
        "0", "0-seed1", "0-seed2", "1", "1-seed1", "1-seed2"]
    every = subprocess.run([aerun_exe, "report", f"dir={tmp_path / 'all'}", "parts=[nope]",
                            f"hydra.searchpath=[file://{conf}]"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
    assert every.returncode == 2 and every.stderr.strip().endswith("conv, beyond, families, widths"), every.stderr


def test_a_part_registered_twice_or_needing_an_unknown_part_is_one_line(monkeypatch):
    from aerun.report import parts
    from aerun.report.plan import Sweep

    monkeypatch.setattr(parts, "_PARTS", dict(parts._PARTS))

    def section(doc, ctx):
        pass

    with pytest.raises(UserError, match="the report part 'sparse' is registered twice: by aerun.report.parts.sparse "
                                        "and by test_report; rename one of them"):
        parts.part("sparse", "Again", [Sweep("sparse", "sparse")])(section)
    parts.part("early", "Before part 2", [Sweep("early", "standard")], order=1.5)(section)
    parts.part("mine", "Without an order", [Sweep("mine", "standard")])(section)
    written, trained = parts.chosen_parts(None, beyond=False)  # null: every part, in order
    assert [p.key for p in written] == ["pca_vs_ae", "early", "standard", "sparse", "denoising", "manifold", "conv",
                                        "beyond", "families", "mine"]
    assert "beyond" not in [p.key for p in trained] and "families" not in [p.key for p in trained]
    parts.part("lonely", "Needs a ghost", [Sweep("lonely", "standard")], needs=("ghost",))(section)
    with pytest.raises(UserError, match="the report part 'lonely' compares against a part 'ghost' that no module "
                                        "registers"):
        parts.chosen_parts(["lonely"], beyond=False)
