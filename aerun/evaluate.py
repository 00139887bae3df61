"""Evaluation of checkpoints: reconstruction error of a model and of PCA with the same code size.

Errors are on the [0, 1] pixel scale: SSE per image is the sum of squared pixel
errors of one image, MSE = SSE / pixels, PSNR = 10 log10(1 / MSE) (peak 1).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch
import yaml
from torch import nn

from aerun import atomic, generation, loggers, ood
from aerun import checkpoint as ckpt
from aerun.data import IMAGE_SHAPE, data_key, floats, load_split, shape_text, showcase
from aerun.errors import UserError
from aerun.models import PCA, Autoencoder, family
from aerun.noise import corrupt, generator
from aerun.perimage import features, reconstruct
from aerun.probe import Fit, probe
from aerun.runs import find_runs
from aerun.stats import Spread

CLEAN = ("none", 0.0)  # the noise of an evaluation on the test images as they are
T = TypeVar("T")


# --------------------------------------------------------------------------- runs and sweeps


def is_sweep(path: Path, runs: list[Path]) -> bool:
    return runs != [Path(path)]


def job_labels(runs: list[Path]) -> list[str]:
    """Label each job by the command-line overrides that differ between jobs (e.g. `model.hidden=64`)."""
    overrides = []
    for run in runs:
        file = run / ".hydra" / "overrides.yaml"
        overrides.append(yaml.safe_load(file.read_text()) or [] if file.exists() else [])
    common = set.intersection(*(set(o) for o in overrides)) if overrides else set()
    labels = [" ".join(o for o in job if o not in common) for job in overrides]
    return [label or run.name for label, run in zip(labels, runs)]


# --------------------------------------------------------------------------- metrics


def code_statistics(codes: torch.Tensor) -> dict[str, Any]:
    """How sparse the code is (assignment part 3): per-unit means, exact zeros, L1 per image."""
    return {
        "mean_activation": codes.mean(0).tolist(),
        "fraction_zero": (codes == 0).double().mean().item(),
        "mean_l1": codes.abs().sum(1).mean().item(),
    }


def noisy_test_inputs(images: torch.Tensor, noise: tuple[str, float], seed: int) -> torch.Tensor:
    """The corrupted test split: one realisation per (noise, level, seed), the same for every model.

    Drawn on the CPU and then moved, so the realisation (and every noisy metric) is the same on any device.
    """
    if noise[0] == "none" or noise[1] == 0:
        return images
    return corrupt(floats(images.cpu()), *noise, generator(seed, "cpu")).to(images.device)


def summarise(sse: torch.Tensor, pixels: int) -> dict[str, float]:
    mean_sse = sse.mean().item()
    mse = mean_sse / pixels
    return {"sse_per_image": mean_sse, "mse": mse, "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else math.inf}


_PCA_CACHE: dict[tuple, PCA] = {}


def fitted_pca(dataset: Mapping[str, Any], k: int, data_dir: Path | str, device: torch.device | str) -> PCA:
    """PCA with k components fitted on the training split.

    The full basis is fitted once per data set and process; every k is its top-k slice.
    k is capped at the number of pixels: an overcomplete code is compared with the full basis.
    """
    key = (data_key(dataset, data_dir), str(device))
    if key not in _PCA_CACHE:
        train = load_split(dataset, "train", data_dir, device)
        _PCA_CACHE[key] = PCA(math.prod(train.shape), train.shape).to(device).fit(train.pixels).eval()
    k = min(k, _PCA_CACHE[key].code_dim)
    return _PCA_CACHE[key].top(k)


_PROBE_CACHE: dict[tuple, tuple[float, Fit]] = {}


def code_probe(model: nn.Module, dataset: Mapping[str, Any], data_dir: Path | str,
               device: torch.device | str) -> tuple[float, Fit]:
    """Test accuracy of the linear probe on what a model gives it to read (its `features`; see aerun.probe), and
    how the probe's fit ended."""
    train = load_split(dataset, "train", data_dir, device)
    test = load_split(dataset, "test", data_dir, device)
    return probe(features(model, train.pixels), train.labels, features(model, test.pixels), test.labels,
                 train.n_classes)




def cached_probe(what: str, dataset: Mapping[str, Any], data_dir: Path | str, device: torch.device | str,
                 model: nn.Module) -> tuple[float, Fit]:
    """A probe whose codes depend on the data set alone (PCA-k, raw pixels): fitted once per process."""
    key = (what, data_key(dataset, data_dir))
    if key not in _PROBE_CACHE:
        _PROBE_CACHE[key] = code_probe(model, dataset, data_dir, device)
    return _PROBE_CACHE[key]


class Pixels(Autoencoder):
    """The identity 'autoencoder': raw pixels as the code, the reference line of every probe table."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return h.view(-1, *self.in_shape)


# Keys that do not change what a run is: where it ran, where its data lives, what it logged besides
# its CSVs. `seed` is what repeats of one setting differ in.
NOT_A_SETTING = ("paths", "device", "logger")
SEEDS = ("seed", "noise_seed")  # what repeats of one setting differ in (the noise stream follows the seed)


def setting_digest(config: Mapping[str, Any]) -> str:
    """A short name for a run's setting: its config without its seeds and NOT_A_SETTING keys."""
    kept = {k: v for k, v in config.items() if k not in (*NOT_A_SETTING, *SEEDS)}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def eval_name(noise: tuple[str, float]) -> str:
    """eval.json for clean inputs; eval-gaussian-0.5.json and the like for corrupted ones."""
    return "eval" if noise[0] == "none" or noise[1] == 0 else f"eval-{noise[0]}-{noise[1]:g}"


@functools.cache
def code_digest() -> str:
    """SHA-256 of aerun's own source files: an evaluation made by other code is never taken for this code's."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def provenance(digest: str | None, device: torch.device | str, iw_samples: int) -> dict[str, Any]:
    """What an evaluation was made of and by, besides its noise: the checkpoint (by the SHA-256 it carries),
    aerun's code, the device and the importance samples. The data are verified by their SHA-256 on every read."""
    return {"checkpoint": digest, "code": code_digest(), "device": str(torch.device(device)), "iw_samples": iw_samples}


def saved_evaluation(run_dir: Path, device: torch.device | str, noise: tuple[str, float] = CLEAN,
                     noise_seed: int = 0, iw_samples: int = 0) -> dict[str, Any] | None:
    """The run's eval*.json where it is an evaluation of its present checkpoint with this noise and noise seed,
    on this device, by this aerun; None otherwise (absent, unreadable, or made of anything else). The checkpoint
    is read only when everything else matches."""
    try:
        saved = json.loads((Path(run_dir) / f"{eval_name(noise)}.json").read_text())
        made, digest = (saved["provenance"], saved["noise"]), saved["provenance"]["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wanted = provenance(digest, device, iw_samples), {"name": noise[0], "level": noise[1], "seed": noise_seed}
    if digest is None or made != wanted:  # None: a checkpoint written before checkpoints were checksummed
        return None
    if ckpt.load(Path(run_dir) / ckpt.CHECKPOINT).get(ckpt.DIGEST) != digest:  # retrained or resumed since
        return None
    return {**saved, "run_dir": str(run_dir)}


def evaluate_run(
    run_dir: Path, data_dir: Path | str, device: torch.device | str,
    noise: tuple[str, float] = ("none", 0.0), noise_seed: int = 0, iw_samples: int = 0, which: str = "last",
    ood_kind: str = "none", ood_path: str | None = None, samples: int = 0, sampler: str = "auto",
) -> dict[str, Any]:
    """Metrics of one run's checkpoint (`which`: last, or best) on its data set's test split, with PCA at the same
    code size.

    With a noise, the inputs are corrupted and the errors measured against the clean images. With `ood_kind` (a data
    set, or noise), how well each score tells that data set's test images from the run's (`ood`); for a run trained
    on some classes only (dataset.classes), how well they tell the other classes' test images apart (`anomaly`).
    With `samples` (N > 0), how like the test images N of its samples are (`generation`, aerun.generation).
    """
    checkpoint = ckpt.load(ckpt.checkpoint_path(run_dir, which))
    model = ckpt.rebuild(checkpoint, device)
    dataset = checkpoint["config"]["dataset"]
    test = load_split(dataset, "test", data_dir, device)
    check_shape(model, test.shape, run_dir, dataset["name"])
    pca = fitted_pca(dataset, model.code_dim, data_dir, device)
    shown = showcase(dataset, test)
    pixels = math.prod(test.shape)
    inputs = noisy_test_inputs(test.pixels, noise, noise_seed)
    trained_on = checkpoint["config"]["noise"]
    result: dict[str, Any] = {
        "dataset": dataset["name"],
        "split": "test",
        "n_images": len(test),
        "run_dir": str(run_dir),
        "seed": checkpoint["config"]["seed"],
        "setting": setting_digest(checkpoint["config"]),
        "checkpoint": which,
        "epoch": checkpoint["epoch"],
        "step": checkpoint["step"],
        "trained_with_noise": {"name": trained_on["name"], "level": trained_on["level"]},
        "precision": checkpoint["config"].get("precision", "32"),  # of training; evaluation is float32
        "noise": {"name": noise[0], "level": noise[1], "seed": noise_seed},
        "shape": list(test.shape),
        "showcase": {"indices": shown, "labels": test.labels[shown].tolist() if test.labels is not None else None},
        "provenance": provenance(checkpoint.get(ckpt.DIGEST), device, iw_samples),
    }
    for key, m, name in (("model", model, checkpoint["model"]["name"]), ("pca", pca, None)):
        sse, codes = reconstruct(m, inputs, test.pixels)
        entry = ({"name": name, "builder": checkpoint["model"]["builder"], "code_dim": model.code_dim} if name
                 else {"k": pca.code_dim, "lossless": pca.code_dim >= pixels})
        entry["fitted"] = bool(m.fitted)  # fitted in closed form: the same in every seed (aerun.stats.Spread)
        result[key] = {**entry, **summarise(sse, pixels), "showcase_sse": sse[shown].tolist()}
        if name:
            result[key]["code"] = code_statistics(codes)
    if int(dataset.get("val_size") or 0):  # the held-out training images, measured as the test split is
        val = load_split(dataset, "val", data_dir, device)
        sse, _ = reconstruct(model, noisy_test_inputs(val.pixels, noise, noise_seed), val.pixels)
        result["validation"] = {"n_images": len(val), **summarise(sse, pixels)}
    clean = inputs is test.pixels  # the probes and the family's measures read clean images; noisy: reconstruction
    if clean:
        add_probes(result, model, pca, dataset, test, data_dir, device)
        measures = model.measures(test.images, noise_seed, **({"iw_samples": iw_samples} if iw_samples else {}))
        if measures:
            result["model"][model.measures_key] = measures
    if clean and (ood_kind != "none" or dataset.get("classes") is not None):
        result.update(detections(model, dataset, test, Path(run_dir), data_dir, device, ood_kind, ood_path,
                                 noise_seed, iw_samples))
    if clean and samples:
        result["generation"], drawn = generation.measure(model, checkpoint["model"]["name"], dataset, data_dir,
                                                         device, samples, sampler, noise_seed)
        generation.figure(drawn, test.pixels, result["generation"],
                          Path(run_dir) / "figures" / f"samples_{result['generation']['sampler']}.png",
                          f"{checkpoint['model']['name']}: {samples} samples against the test images")
    return result


def add_probes(result: dict[str, Any], model: Autoencoder, pca: PCA, dataset: Mapping[str, Any], test: Any,
               data_dir: Path | str, device: torch.device | str) -> None:
    """The linear probe's test accuracy on the model's code, PCA's and the raw pixels' (or why there is none)."""
    if test.labels is None:
        result["probe"] = f"no probe: {dataset['name']} has no labels"
        return
    accuracy, fit = code_probe(model, dataset, data_dir, device)
    result["model"]["probe_accuracy"], result["model"]["probe_fit"] = accuracy, fit.as_dict()
    if pca.code_dim < math.prod(test.shape):  # the whole basis is the pixels rotated: nothing to compare or fit
        accuracy, fit = cached_probe(f"pca-{pca.code_dim}", dataset, data_dir, device, pca)
        result["pca"]["probe_accuracy"], result["pca"]["probe_fit"] = accuracy, fit.as_dict()
    result["pixels_probe_accuracy"] = cached_probe("pixels", dataset, data_dir, device, Pixels(test.shape))[0]


def detections(model: Autoencoder, dataset: Mapping[str, Any], test: Any, run_dir: Path, data_dir: Path | str,
               device: torch.device | str, ood_kind: str, ood_path: str | None, seed: int, iw_samples: int
               ) -> dict[str, Any]:
    """`ood`: each score's separation of another data set's test images from the run's; `anomaly`, for a run
    trained on some classes: of the other classes' test images from its own. The per-image scores and a figure are
    written beside eval.json (aerun.ood)."""
    gaussian = ood.training_gaussian(model, dataset, data_dir, device)
    found: dict[str, Any] = {}
    figures = run_dir / "figures"
    own = f"{dataset['name']} test images" + (f" of classes {list(dataset['classes'])}" if dataset.get("classes")
                                              is not None else "")
    if ood_kind != "none":
        name, outside = ood.other_images(ood_kind, data_dir, device, seed, model.in_shape, path=ood_path)
        summary, arrays = ood.compare(model, test.pixels, outside, gaussian, seed, iw_samples)
        ood.write_scores(run_dir / f"ood_{ood_kind}.npz", arrays)
        ood.figure(arrays, summary, figures / f"ood_{ood_kind}_scores.png",
                   f"{own} (in) against {name} (out)", "in", "out")
        found["ood"] = {ood_kind: summary}
    if dataset.get("classes") is not None:
        every = load_split({**dataset, "classes": None}, "test", data_dir, device)
        others = ~torch.isin(every.labels, torch.tensor(list(dataset["classes"]), device=every.labels.device))
        summary, arrays = ood.compare(model, test.pixels, every.pixels[others.to(every.pixels.device)], gaussian,
                                      seed, iw_samples)
        ood.write_scores(run_dir / "anomaly.npz", arrays)
        ood.figure(arrays, summary, figures / "anomaly_scores.png",
                   f"{own} (normal) against the other classes' (anomalous)", "normal", "anomalous")
        found["anomaly"] = summary
    return found


def check_shape(model: Autoencoder, shape: tuple[int, ...], run_dir: Path | str, name: str) -> None:
    """A model meets images of the shape it was built for, or one line saying both."""
    if tuple(shape) != tuple(model.in_shape):
        raise UserError(f"{run_dir} was trained on images of {shape_text(model.in_shape)} and {name} gives "
                        f"{shape_text(shape)}: a model reads images of its own shape only")


def evaluate(
    path: Path, data_dir: Path | str, device: torch.device | str,
    noise: tuple[str, float] = ("none", 0.0), noise_seed: int = 0, iw_samples: int = 0, control: str | None = None,
    which: str = "last", ood_kind: str = "none", ood_path: str | None = None, samples: int = 0,
    sampler: str = "auto",
) -> dict[str, Any]:
    """Evaluate a run, or every job of a sweep; write eval.json and eval.md beside each, and for a sweep its
    page, index.html and index.md (aerun.sweep_page), comparing every setting with `control` if named.

    With a noise the files are named after it (eval-gaussian-0.5.json, ...), so a
    clean evaluation is never overwritten by a noisy one.
    """
    path = Path(path)
    runs = find_runs(path)
    name = eval_name(noise)
    results = []
    for run in runs:
        result = evaluate_run(run, data_dir, device, noise, noise_seed, iw_samples, which, ood_kind, ood_path,
                              samples, sampler)
        loggers.attach(run, [atomic.write_json(run / f"{name}.json", result),
                             atomic.write_text(run / f"{name}.md", run_markdown(result))])
        results.append(result)
    if not is_sweep(path, runs):
        return results[0]
    sweep = write_sweep(path, runs, results, name)
    if name == "eval":  # the page reads the clean evaluation
        from aerun.sweep_page import write_page

        write_page(path, sweep, control)
    return sweep


def write_sweep(path: Path, runs: list[Path], results: list[dict[str, Any]], name: str = "eval") -> dict[str, Any]:
    """The sweep's own eval.json and eval.md: every job, and every setting with its spread over seeds."""
    labels = job_labels(runs)
    sweep = {"sweep_dir": str(path), "jobs": [{"label": label, **r} for label, r in zip(labels, results)],
             "groups": [group_summary(label, members) for label, members in seed_groups(labels, results)]}
    atomic.write_json(path / f"{name}.json", sweep)
    atomic.write_text(path / f"{name}.md", sweep_markdown(sweep))
    return sweep


def without_seed(label: str) -> str:
    return " ".join(t for t in label.split() if not t.startswith("seed="))


def group_by_setting(items: Sequence[T], setting: Callable[[T], str], seed: Callable[[T], int]) -> list[list[T]]:
    """Items of runs that differ only in their seed, together, in order of first appearance, lowest seed first."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(setting(item), []).append(item)
    return [sorted(group, key=seed) for group in groups.values()]


def seed_groups(labels: list[str], results: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The jobs of a sweep by setting, each group labelled by its overrides without the seed. Runs of one setting
    evaluated at different epochs (one extended, one stopped early, a best checkpoint) are separate groups, their
    labels saying the epoch: a spread holds runs that differ in their seed alone."""
    groups = group_by_setting(list(zip(labels, results)),
                              lambda lr: f"{lr[1].get('setting') or lr[1]['run_dir']}@{lr[1].get('epoch')}",
                              lambda lr: lr[1].get("seed") or 0)
    named = []
    for group in groups:
        label, first = group[0]
        name = without_seed(label)
        if name in ("", Path(first["run_dir"]).name):  # no override tells it apart: its model's name
            name = first["model"]["name"]
        named.append((name, [result for _, result in group]))
    repeated = {name for name, _ in named if sum(n == name for n, _ in named) > 1}
    return [(f"{name} (epoch {members[0].get('epoch')})" if name in repeated else name, members)
            for name, members in named]


METRICS = ("sse_per_image", "mse", "psnr_db", "probe_accuracy")


def group_summary(label: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation and n of every metric over a setting's seeds."""
    summary: dict[str, Any] = {"label": label, "n": len(members), "seeds": [m.get("seed") for m in members],
                               "runs": [m["run_dir"] for m in members]}
    for key in ("model", "pca"):
        entry = {k: v for k, v in members[0][key].items() if k in ("name", "code_dim", "k")}
        for metric in METRICS:
            if all(metric in m[key] for m in members):
                entry[metric] = Spread.of([m[key][metric] for m in members]).as_dict()
        summary[key] = entry
    summary["model"]["fraction_zero"] = Spread.of([m["model"]["code"]["fraction_zero"] for m in members]).as_dict()
    return summary


# --------------------------------------------------------------------------- markdown


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells) + " |"


def metrics_table(rows: list[tuple[str, int, Mapping[str, float]]]) -> list[str]:
    lines = [_row(["model", "code", "SSE/image", "MSE", "PSNR (dB)"]), _row(["---"] * 5)]
    lines += [_row([name, code, m["sse_per_image"], m["mse"], m["psnr_db"]]) for name, code, m in rows]
    return lines


def run_markdown(result: Mapping[str, Any]) -> str:
    model, pca = result["model"], result["pca"]
    pca_label = pca_name(pca["k"], pca.get("lossless"))
    lines = [
        f"# Evaluation of {result['run_dir']}",
        "",
        f"{result['dataset']} {result['split']} split, {result['n_images']} images, after epoch {result['epoch']}"
        + (" (the best checkpoint)" if result.get("checkpoint") == "best" else "") + ". "
        "SSE is the sum of squared pixel errors per image on the [0, 1] scale"
        + (f", inputs corrupted by {result['noise']['name']} noise at level {result['noise']['level']:g} "
           "and errors measured against the clean images." if result["noise"]["name"] != "none" else "."),
        "",
        f"Code: {model['code']['fraction_zero']:.1%} of the activations are exactly zero; "
        f"mean L1 norm per image {model['code']['mean_l1']:.4g}.",
        "",
        *([family(model["builder"]).measures_text(model[key]), ""]
          if "builder" in model and (key := family(model["builder"]).measures_key) in model else []),
        *([f"Linear probe (logistic regression on the training split's codes), test accuracy: "
           f"{model['name']} {model['probe_accuracy']:.2%}, "
           + (f"{pca_label} {pca['probe_accuracy']:.2%}, " if "probe_accuracy" in pca else "")
           + f"raw pixels {result['pixels_probe_accuracy']:.2%}.", ""] if "probe_accuracy" in model else []),
        *([f"Linear probe: none ({result['dataset']} has no labels).", ""] if "probe" in result else []),
        *metrics_table([(model["name"], model["code_dim"], model), (pca_label, pca["k"], pca)]),
        "",
        "## Showcase images",
        "",
        _row(["test index", "label", f"{model['name']} SSE", f"{pca_label} SSE"]),
        _row(["---"] * 4),
    ]
    shown = result["showcase"]
    labels = shown["labels"] or ["-"] * len(shown["indices"])
    for i, label, a, b in zip(shown["indices"], labels, model["showcase_sse"], pca["showcase_sse"]):
        lines.append(_row([i, label, a, b]))
    for title, summary in [*((f"Out of distribution: {name}", s) for name, s in result.get("ood", {}).items()),
                           *((("Anomalies: the other classes", result["anomaly"]),) if "anomaly" in result else ())]:
        first = next(iter(summary.values()))
        lines += ["", f"## {title}", "", f"{first['n_in']} usual and {first['n_out']} unusual images; each score is "
                  "higher for a more unusual image, and the unusual ones are the positives.", "",
                  _row(["score", "AUROC", "AUPR", "FPR at 95 % TPR", "mean in", "mean out"]), _row(["---"] * 6)]
        lines += [_row([name, f"{v['auroc']:.4f}", f"{v['aupr']:.4f}", f"{v['fpr95']:.4f}", v["mean_in"],
                        v["mean_out"]]) for name, v in summary.items()]
    if "generation" in result:
        lines += ["", *generation_markdown(result["generation"])]
    return "\n".join(lines) + "\n"


def generation_markdown(g: Mapping[str, Any]) -> list[str]:
    """eval.md's section on samples: the measures beside their floor, and what they were measured in."""
    drawn = ("the prior" if g["sampler"] == "prior" else
             f"a mixture of {g['components']} Gaussians fitted to {g['codes_fitted']} training codes")
    return ["## Samples", "",
            f"{g['n']} codes drawn from {drawn} (seed {g['seed']}), decoded, against {g['n']} test images; the floor "
            f"is {g['n']} training images against the same test images. Measured in the features of "
            f"{g['features']['name']} (test accuracy {g['features']['test_accuracy']:.2%}): this FID is not the "
            "Inception FID of the literature and cannot be compared with it.", "",
            _row(["", "FID", f"precision (k={g['k']})", f"recall (k={g['k']})"]), _row(["---"] * 4),
            _row(["samples", g["fid"], g["precision"], g["recall"]]),
            _row(["training images (floor)", g["fid_real"], g["precision_real"], g["recall_real"]])]


def pca_name(k: int, lossless: bool | None = None) -> str:
    """PCA-30; PCA-784 is the whole basis, which reconstructs exactly and compares nothing. `lossless` says it for
    any shape (an evaluation's pca.lossless); without it, k is compared with MNIST's 784 pixels."""
    whole = lossless if lossless is not None else k >= math.prod(IMAGE_SHAPE)
    return f"PCA-{k}" + (" (lossless)" if whole else "")


def _probe_cell(entry: Mapping[str, Any]) -> Any:
    return entry.get("probe_accuracy", "-")


def sweep_markdown(sweep: Mapping[str, Any]) -> str:
    header = ["job", "model", "code", "SSE/image", "MSE", "PSNR (dB)", "probe acc.", "PCA same k",
              "PCA SSE/image", "PCA probe acc.", "zero code", "epochs"]
    lines = [f"# Evaluation of sweep {sweep['sweep_dir']}", "", _row(header), _row(["---"] * len(header))]
    for job in sweep["jobs"]:
        m, p = job["model"], job["pca"]
        lines.append(_row([job["label"], m["name"], m["code_dim"], m["sse_per_image"], m["mse"], m["psnr_db"],
                           _probe_cell(m), pca_name(p["k"], p.get("lossless")), p["sse_per_image"], _probe_cell(p),
                           f"{m['code']['fraction_zero']:.1%}", job["epoch"]]))
    groups = sweep.get("groups", [])
    if any(g["n"] > 1 for g in groups):
        header = ["setting", "n", "seeds", "SSE/image", "PSNR (dB)", "probe acc.", "PCA same k", "PCA SSE/image"]
        lines += ["", "## Over seeds: mean ± standard deviation", "", _row(header), _row(["---"] * len(header))]
        for g in groups:
            m, p = g["model"], g["pca"]
            spread = [Spread.of(m[k]["values"]).text() if k in m else "-" for k in ("sse_per_image", "psnr_db",
                                                                                  "probe_accuracy")]
            lines.append(_row([g["label"], g["n"], ",".join(str(s) for s in g["seeds"]), *spread,
                               pca_name(p["k"]), Spread.of(p["sse_per_image"]["values"]).text()]))
    return "\n".join(lines) + "\n"
