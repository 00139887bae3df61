"""A sweep's page: `aerun eval run=SWEEP` writes SWEEP/index.html and index.md beside eval.json.

What a reader of any sweep wants at a glance: each setting with its spread over seeds, the metric
against each swept key, the loss curves, the comparisons with a control the user names
(`compare.control="model.hidden=64"`: every other setting against it, Welch's test, Holm's adjustment
over all of them, a winner named only where the adjusted p < 0.05), and for a search its trials and
best configuration. Every label comes from the command line and is escaped in the HTML (aerun.document).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from aerun import atomic
from aerun.document import Document
from aerun.errors import UserError
from aerun.runs import read_csv
from aerun.claims import Ledger
from aerun.stats import RULE, Spread

FIGURES = "figures"


def swept_keys(labels: Sequence[str]) -> dict[str, list[str]]:
    """Each key the settings' labels give more than one value (seeds aside), with each setting's value."""
    tokens = [dict(t.split("=", 1) for t in label.split() if "=" in t) for label in labels]
    keys = [k for k in dict.fromkeys(k for t in tokens for k in t) if k.lstrip("+~") != "seed"]
    return {k: [t.get(k, "") for t in tokens] for k in keys if len({t.get(k) for t in tokens}) > 1}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _validation(job: Mapping[str, Any]) -> float | None:
    return job.get("validation", {}).get("sse_per_image")


def metric_figure(path: Path, key: str, values: list[str], groups: list[dict[str, Any]],
                  validation: list[Spread | None]) -> Path:
    """SSE/image (mean, and the seeds' standard deviation as a bar) against one swept key."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    numbers = [_number(v) for v in values]
    numeric = all(n is not None for n in numbers)
    xs = numbers if numeric else [sorted(set(values)).index(v) for v in values]
    spreads = [Spread.of(g["model"]["sse_per_image"]["values"]) for g in groups]
    ax.errorbar(xs, [s.mean for s in spreads], yerr=[s.sd or 0 for s in spreads], fmt="o", capsize=3,
                label="test SSE/image" + (" (mean ± sd over seeds)" if any(s.n > 1 for s in spreads) else ""))
    if any(v is not None for v in validation):
        kept = [(x, v) for x, v in zip(xs, validation) if v is not None]
        ax.errorbar([x for x, _ in kept], [v.mean for _, v in kept], yerr=[v.sd or 0 for _, v in kept], fmt="s",
                    mfc="none", capsize=3, label="validation SSE/image")
    if numeric and min(numbers) > 0 and max(numbers) / min(numbers) >= 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(sorted(set(values)))), sorted(set(values)))
    ax.set_xlabel(key)
    ax.set_ylabel("SSE per image")
    ax.legend(fontsize=8)
    return atomic.write_png(fig, path)


def loss_figure(path: Path, groups: list[dict[str, Any]]) -> Path | None:
    """Each setting's test (and validation) MSE per epoch, its first seed's run."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, group in enumerate(groups):
        history = read_csv(Path(group["runs"][0]) / "loss_epoch.csv")
        if not history or not history.get("epoch"):
            continue
        color = f"C{i % 10}"
        ax.plot(history["epoch"], history["test_loss"], "-", color=color, label=f"{group['label']} test")
        if "val_loss" in history:
            ax.plot(history["epoch"], history["val_loss"], "--", color=color, label=f"{group['label']} validation")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE per pixel")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return atomic.write_png(fig, path)


def control_index(labels: Sequence[str], control: str) -> int:
    """Which of a sweep's settings (by their labels, seeds aside) `control` names: the one with all of its
    overrides; one line naming the settings when it names none or several."""
    wanted = set(control.split())
    found = [i for i, label in enumerate(labels) if wanted <= set(label.split())]
    if len(found) != 1:
        raise UserError(f"compare.control={control!r} names {len(found)} settings of this sweep, not one; "
                        f"its settings: {'; '.join(labels)}")
    return found[0]


def search_section(doc: Document, path: Path) -> None:
    """The trials of an Optuna search in `path`/study.db and its best configuration."""
    try:
        from hydra_plugins.aerun_search.search import optuna
    except ImportError:
        doc.text(f"{path / 'study.db'} is an Optuna study; install aerun's search extra to show its trials.")
        return
    study = optuna.load_study(study_name="aerun", storage=f"sqlite:///{path / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    doc.heading("The search")
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    doc.table(["trial", "state", "objective", "at epoch", *names],
              [[t.number, t.state.name.lower(), t.value if t.value is not None else "-",
                t.user_attrs.get("epoch", "-"), *(t.params.get(n, "-") for n in names)] for t in trials])
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        doc.text(f"Best trial: {best.number}, objective {best.value:.6g} ({study.direction.name.lower()}d), with "
                 + ", ".join(f"`{k}={v}`" for k, v in best.params.items())
                 + f"; its run is `{path / str(best.number)}`. The objective is a validation metric: the test "
                 "metrics above were not used to choose it.")
    if len(complete) >= 2 and names:
        evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
        doc.table(["parameter", "importance"], [[name, value] for name, value in importances.items()])
        doc.text(f"Importance: each parameter's share of the mean decrease in impurity of a random forest fitted to "
                 f"the {len(complete)} completed trials' objectives (Optuna's evaluator, seed 0; Optuna 2.10's "
                 "default, fANOVA, fails with this scikit-learn). With few trials it is a rough guide, not a test.")


def write_page(path: Path, sweep: Mapping[str, Any], control: str | None = None) -> Path:
    """SWEEP/index.html and index.md from a sweep's evaluation (aerun.evaluate.write_sweep)."""
    groups = list(sweep["groups"])
    jobs = list(sweep["jobs"])
    doc = Document(f"Sweep {path}")
    seeds = max(g["n"] for g in groups)
    doc.text(f"{len(jobs)} runs, {len(groups)} settings" + (f", up to {seeds} seeds each" if seeds > 1 else "")
             + ". Test split metrics from `aerun eval`"
             + (", each run's best checkpoint (`checkpoint=best`: the epochs column says which)"
                if jobs and all(job.get("checkpoint") == "best" for job in jobs) else "")
             + f". {RULE}")
    by_run = {job["run_dir"]: job for job in jobs}
    validation = []
    for g in groups:
        values = [_validation(by_run[r]) for r in g["runs"] if r in by_run]
        validation.append(Spread.of(values) if values and all(v is not None for v in values) else None)

    doc.heading("Settings")
    header = ["setting", "n", "SSE/image", "PSNR (dB)", "probe acc.", "epochs"]
    if any(v is not None for v in validation):
        header.insert(3, "validation SSE/image")
    rows = []
    for g, val in zip(groups, validation):
        m = g["model"]
        cells = [g["label"], g["n"], Spread.of(m["sse_per_image"]["values"]).text(),
                 Spread.of(m["psnr_db"]["values"]).text(),
                 Spread.of(m["probe_accuracy"]["values"]).text() if "probe_accuracy" in m else "-",
                 ", ".join(sorted({str(by_run[r]["epoch"]) for r in g["runs"] if r in by_run}))]
        if "validation SSE/image" in header:
            cells.insert(3, val.text() if val is not None else "-")
        rows.append(cells)
    doc.table(header, rows)

    figures = path / FIGURES
    for key, values in swept_keys([g["label"] for g in groups]).items():
        safe = "".join(c if c.isalnum() else "_" for c in key)
        metric_figure(figures / f"sweep_{safe}.png", key, values, groups, validation)
        doc.figure(f"{FIGURES}/sweep_{safe}.png", f"SSE per image against {key}")
    if loss_figure(figures / "sweep_loss.png", groups):
        doc.figure(f"{FIGURES}/sweep_loss.png", "MSE per epoch of each setting (first seed): test solid, "
                   "validation dashed")

    doc.heading("Comparisons")
    if control:
        reference = groups[control_index([g["label"] for g in groups], control)]
        ledger = Ledger()
        ledger.start("sweep")
        claims = [ledger.compare(g["label"], Spread.of(g["model"]["sse_per_image"]["values"]), reference["label"],
                                 Spread.of(reference["model"]["sse_per_image"]["values"]))
                  for g in groups if g is not reference]
        ledger.close()
        doc.text(f"Each setting against the control `{reference['label']}` on the test SSE per image: "
                 f"{len(claims)} comparisons, p-values adjusted together (Holm).")
        doc.items(claims)
    else:
        doc.text("Name a control to compare every setting with it: "
                 "`aerun eval run=SWEEP compare.control=\"KEY=VALUE\"` (one setting's overrides).")
    if (path / "study.db").is_file():
        search_section(doc, path)
    atomic.write_text(path / "index.md", doc.markdown())
    return atomic.write_text(path / "index.html", doc.html())

