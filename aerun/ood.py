"""Telling unusual inputs apart: out-of-distribution (`aerun eval ood=NAME`) and one-class anomaly scores.

Every score is higher for an input the model finds more unusual:

- `sse`: the reconstruction's sum of squared pixel errors (every family);
- the family's own (`Autoencoder.anomaly_scores`): a VAE's `negative_elbo` (nats, one sample of z, as its
  measures) and, with `iw_samples`, `nll_iw`, the importance-weighted bound on -log p(x);
- `NAME_minus_png` for each of those that is a likelihood (`Autoencoder.likelihood_scores`): the score in bits
  minus the input's PNG length in bits (Serrà et al., ICLR 2020: a complex input costs a likelihood model many
  bits whether or not it is unusual; its compressed length says how many it would cost any model);
- `mahalanobis`: the squared Mahalanobis distance of the input's code from a Gaussian fitted to the training
  split's codes (the family's features, those the linear probe reads).

How well a score tells the two sets apart is the usual trio, with the unusual inputs as positives: AUROC (the
probability that an unusual input scores above a usual one, ties counting half), AUPR (average precision) and FPR95
(the share of usual inputs flagged at the threshold that flags 95 % of the unusual ones). The per-image scores are
written beside eval.json (`ood_NAME.npz`, `anomaly.npz`: arrays `SCORE_in`, `SCORE_out`) so anyone can recompute
them, and a figure shows their histograms and ROC curves.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from aerun import atomic
from aerun.data import datasets, floats, load_split, shape_text
from aerun.errors import UserError
from aerun.perimage import features, reconstruct

TPR = 0.95
MAHALANOBIS_RIDGE = 1e-6  # times the mean code variance, added to the covariance's diagonal (a singular one inverts)


# --------------------------------------------------------------------------- how well a score separates two sets


def ranked(inside: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flagging everything at or above each distinct score, highest first: how many inside and how many outside
    images are flagged (cumulative counts, one per threshold)."""
    scores = np.concatenate([inside, outside])
    positive = np.concatenate([np.zeros(len(inside)), np.ones(len(outside))])
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last index of each run of equal scores
    flagged_out = np.cumsum(positive)[last]
    return last + 1 - flagged_out, flagged_out


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside score > an inside one) + P(equal) / 2: the Mann-Whitney statistic over n_in * n_out."""
    ranks = rankdata(np.concatenate([inside, outside]))  # ties get their mean rank
    n_in, n_out = len(inside), len(outside)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def aupr(inside: np.ndarray, outside: np.ndarray) -> float:
    """Average precision with the outside images as positives: the sum over distinct thresholds, highest first, of
    the recall gained times the precision there (no interpolation)."""
    flagged_in, flagged_out = ranked(inside, outside)
    precision, recall = flagged_out / (flagged_in + flagged_out), flagged_out / len(outside)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(inside: np.ndarray, outside: np.ndarray, tpr: float = TPR) -> float:
    """The share of inside images flagged at the highest threshold that flags at least `tpr` of the outside ones."""
    k = math.ceil(tpr * len(outside) - 1e-9)  # 0.95 * 20 is 19 here, not 19.000000000000004
    threshold = np.sort(outside)[::-1][k - 1]
    return float(np.mean(inside >= threshold))


def separation(inside: np.ndarray, outside: np.ndarray) -> dict[str, float]:
    return {"auroc": auroc(inside, outside), "aupr": aupr(inside, outside), "fpr95": fpr_at_tpr(inside, outside),
            "mean_in": float(np.mean(inside)), "mean_out": float(np.mean(outside)),
            "n_in": len(inside), "n_out": len(outside)}


# --------------------------------------------------------------------------- the scores


def png_bits(pixels: torch.Tensor) -> np.ndarray:
    """Each uint8 image's length as a PNG at the highest compression level, in bits."""
    from PIL import Image

    out = np.empty(len(pixels))
    array = pixels.cpu().numpy()
    for i, image in enumerate(array):
        buffer = io.BytesIO()
        picture = Image.fromarray(image[0]) if image.shape[0] == 1 else Image.fromarray(image.transpose(1, 2, 0))
        picture.save(buffer, format="PNG", compress_level=9)
        out[i] = 8 * buffer.tell()
    return out


class CodeGaussian:
    """A Gaussian fitted to codes (N, D), in float64: its mean and the inverse of its covariance (ridged)."""

    def __init__(self, codes: torch.Tensor) -> None:
        codes = codes.double().flatten(1)
        self.mean = codes.mean(0)
        centred = codes - self.mean
        covariance = centred.T @ centred / max(1, len(codes) - 1)
        ridge = MAHALANOBIS_RIDGE * float(covariance.diagonal().mean()) + 1e-12
        self.precision = torch.linalg.inv(covariance + ridge * torch.eye(len(self.mean), dtype=torch.float64,
                                                                          device=codes.device))

    def distance(self, codes: torch.Tensor) -> np.ndarray:
        centred = codes.double().flatten(1) - self.mean
        return ((centred @ self.precision) * centred).sum(1).cpu().numpy()


def scores(model: Any, pixels: torch.Tensor, gaussian: CodeGaussian, seed: int, iw_samples: int = 0
           ) -> dict[str, np.ndarray]:
    """Every score the model has, per image of `pixels` (uint8 (N, C, H, W) of the model's shape)."""
    found = {"sse": reconstruct(model, pixels)[0].cpu().numpy()}
    own = model.anomaly_scores(floats(pixels), seed, **({"iw_samples": iw_samples} if iw_samples else {}))
    found.update({name: value.double().cpu().numpy() for name, value in own.items()})
    if any(name in own for name in model.likelihood_scores):
        bits = png_bits(pixels)
        for name in model.likelihood_scores:
            if name in own:
                found[f"{name}_minus_png"] = found[name] / math.log(2) - bits
    found["mahalanobis"] = gaussian.distance(features(model, pixels))
    return found


def training_gaussian(model: Any, dataset: Mapping[str, Any], data_dir: Path | str, device: Any) -> CodeGaussian:
    """The Gaussian of the codes of the split the run trained on (its classes only, for a one-class run)."""
    return CodeGaussian(features(model, load_split(dataset, "train", data_dir, device).pixels))


def compare(model: Any, inside: torch.Tensor, outside: torch.Tensor, gaussian: CodeGaussian, seed: int,
            iw_samples: int) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Each score's separation of `outside` from `inside`, and the per-image arrays (SCORE_in, SCORE_out)."""
    s_in = scores(model, inside, gaussian, seed, iw_samples)
    s_out = scores(model, outside, gaussian, seed, iw_samples)
    summary = {name: separation(s_in[name], s_out[name]) for name in s_in}
    arrays = {**{f"{k}_in": v for k, v in s_in.items()}, **{f"{k}_out": v for k, v in s_out.items()}}
    return summary, arrays


# --------------------------------------------------------------------------- the inputs


def kinds() -> list[str]:
    """What `ood=` takes: none, noise, or any registered data set."""
    return ["none", "noise", *sorted(datasets())]


def check_kind(kind: str) -> None:
    if kind not in kinds():
        raise UserError(f"ood={kind!r} is not allowed; allowed: {', '.join(kinds())}")


def fit_shape(images: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Images (n, C, H, W) made (n, *shape): grey repeated into RGB or RGB made grey (ITU-R 601-2 luma, as Pillow),
    then scaled bilinearly to H×W."""
    channels, height, width = shape
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] == 3 and channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
        images = (images * luma).sum(1, keepdim=True)
    if tuple(images.shape[2:]) != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    return images.contiguous()


def other_images(kind: str, data_dir: Path | str, device: Any, seed: int, shape: Sequence[int], n: int | None = None,
                 path: str | None = None) -> tuple[str, torch.Tensor]:
    """Inputs unlike the training data, uint8 of the models' shape: `n` uniform noise images, or another data set's
    test split (its first `n` where given; `path` for one read from a folder or file), made that shape where its
    own differs. With a description."""
    from aerun.noise import generator

    check_kind(kind)
    if kind == "noise":
        count = n or 10000
        pixels = torch.randint(0, 256, (count, *shape), generator=generator(seed, "cpu"), dtype=torch.uint8)
        return f"{count} images of uniform noise", pixels.to(device)
    other = load_split({"name": kind, **({"path": path} if path else {})}, "test", data_dir, device)
    chosen = other.pixels[:n] if n else other.pixels
    name = f"{kind} test images" + (f" 0-{len(chosen) - 1}" if n else f" (all {len(chosen)})")
    if tuple(other.shape) == tuple(shape):
        return name, chosen
    name += f", {shape_text(other.shape)} made {shape_text(shape)}"
    made = torch.cat([fit_shape(floats(x), shape) for x in chosen.split(1024)])
    return name, (made * 255).round().to(torch.uint8)


# --------------------------------------------------------------------------- what is written


def write_scores(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic.write_bytes(path, buffer.getvalue())


def roc(inside: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from flagging nothing to flagging everything."""
    flagged_in, flagged_out = ranked(inside, outside)
    return np.r_[0.0, flagged_in / len(inside)], np.r_[0.0, flagged_out / len(outside)]


def figure(arrays: Mapping[str, np.ndarray], summary: Mapping[str, Mapping[str, float]], out: Path, title: str,
           inside: str, outside: str) -> Path:
    """Each score's histograms in and out, and every score's ROC curve."""
    from matplotlib.figure import Figure

    names = list(summary)
    fig = Figure(figsize=(3.2 * (len(names) + 1), 3.2), layout="constrained")
    axes = fig.subplots(1, len(names) + 1)
    for ax, name in zip(axes, names):
        s_in, s_out = arrays[f"{name}_in"], arrays[f"{name}_out"]
        both = np.concatenate([s_in, s_out])
        low, high = np.percentile(both, [0.5, 99.5])
        bins = np.linspace(low, high if high > low else low + 1, 50)
        ax.hist(np.clip(s_in, low, high), bins=bins, alpha=0.6, density=True, label=inside)
        ax.hist(np.clip(s_out, low, high), bins=bins, alpha=0.6, density=True, label=outside)
        ax.set_title(f"{name}\nAUROC {summary[name]['auroc']:.3f}", fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for name in names:
        fpr, tpr = roc(arrays[f"{name}_in"], arrays[f"{name}_out"])
        ax.plot(fpr, tpr, label=name, lw=1.2)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.axhline(TPR, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("false positive rate (usual inputs flagged)", fontsize=8)
    ax.set_ylabel("true positive rate (unusual flagged)", fontsize=8)
    ax.set_title("ROC", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return atomic.write_png(fig, out)
