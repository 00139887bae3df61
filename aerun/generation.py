"""How like the data a model's samples are: `aerun eval run=DIR samples=N`.

A model that can draw codes decodes N of them: a VAE from its prior (`sampler=prior`), any family whose decoder
takes any code from a Gaussian mixture fitted to its training codes (`sampler=gmm`; Ghosh et al., 2020, call this
ex-post density estimation). The samples are compared with N test images in the features of a small classifier
that aerun trains once per data set on its training split and caches beside the data
(`<data_dir>/classifiers/`):

- FID: the Fréchet distance between Gaussians fitted to the two sets of features (torchmetrics'
  FrechetInceptionDistance, given these features instead of Inception's). It is *not* the Inception FID of the
  literature, and is never to be set beside one: eval.json names the features it was measured in;
- precision and recall (Kynkäänniemi et al., 2019): the share of samples inside the k-nearest-neighbour balls of
  the test images' features (how many samples look real), and the share of test images inside the samples' balls
  (how much of the data the samples cover), k = 3;
- `fid_real`, `precision_real`, `recall_real`: the same measures between N training images and the N test images,
  the floor a perfect sampler would reach at this N (FID is biased upwards at small N).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from aerun import atomic
from aerun.data import batch_rows, data_key, floats, load_split
from aerun.data.base import Split
from aerun.errors import UserError
from aerun.models import CODE_SPACE, SAMPLES, Autoencoder
from aerun.noise import generator
from aerun.perimage import encode, features  # features: any model's `features`, here the classifier's

log = logging.getLogger(__name__)

SAMPLERS = ("auto", "prior", "gmm")
K = 3                   # the neighbours of precision and recall (Kynkäänniemi et al.'s k)
FEATURES = 128          # the classifier's penultimate layer, the features every measure reads
CLASSIFIER_EPOCHS = 3   # Adam at 1e-3, batches of 128, seed 0: MNIST's test accuracy 97.9 % (docs/results.md)
CLASSIFIER_VERSION = 1  # in the cached file's name: raise it when the classifier or its training changes
GMM_CODES = 20_000      # training codes the mixture is fitted to (the first ones, in the split's order)
GMM_ITERATIONS = 200
_CLASSIFIERS: dict[str, tuple["Classifier", dict[str, Any]]] = {}  # by the data's digest and by its config


class Classifier(nn.Module):
    """Two convolutions (32 and 64 channels, 3x3, each followed by ReLU and 2x2 max-pooling), an adaptive pool to
    4x4 (any image size), a 128-d ReLU layer (the features) and the class logits."""

    num_features = FEATURES  # what torchmetrics' FID reads for a feature extractor of one's own

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def data_digest(split: Split) -> str:
    """The training split's pixels and labels, by SHA-256: a cached classifier is of exactly these images."""
    digest = hashlib.sha256(split.pixels.cpu().numpy().tobytes())
    digest.update(split.labels.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def train_classifier(train: Split, test: Split, device: torch.device | str) -> tuple[Classifier, dict[str, Any]]:
    """The feature classifier, trained on the training split (seed 0), with its test accuracy."""
    gen = generator(0, "cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Classifier(train.shape[0], max(train.n_classes, test.n_classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    labels = train.labels.to(device)
    for epoch in range(CLASSIFIER_EPOCHS):
        model.train()
        for rows in torch.randperm(len(train), generator=gen).split(128):
            with torch.enable_grad():  # also when asked for inside an evaluation's no_grad
                loss = nn.functional.cross_entropy(model(floats(train.pixels[rows].to(device))),
                                                   labels[rows.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
        log.info("feature classifier: epoch %d/%d", epoch + 1, CLASSIFIER_EPOCHS)
    model.eval()
    with torch.no_grad():
        guesses = torch.cat([model(floats(x.to(device))).argmax(1).cpu() for x in test.pixels.split(1024)])
    accuracy = float((guesses == test.labels.cpu()).float().mean())
    return model, {"test_accuracy": accuracy, "epochs": CLASSIFIER_EPOCHS, "features": FEATURES}


def classifier(dataset: Mapping[str, Any], data_dir: Path | str, device: torch.device | str
               ) -> tuple[Classifier, dict[str, Any]]:
    """The data set's feature classifier: read from `<data_dir>/classifiers/` when trained before on the same
    training images, else trained now (about a minute for MNIST on two CPU cores) and written there."""
    asked = data_key({**dataset, "val_size": 0, "classes": None}, data_dir)
    if asked in _CLASSIFIERS:  # asked for before in this process: no need to read and hash the images again
        return _CLASSIFIERS[asked]
    train = load_split({**dataset, "val_size": 0, "classes": None}, "train", data_dir, device)
    test = load_split({**dataset, "classes": None}, "test", data_dir, device)
    if train.labels is None:
        raise UserError(f"samples= measures samples in the features of a classifier of {dataset['name']}'s labels, "
                        f"and {dataset['name']} has none")
    key = f"{dataset['name']}-{data_digest(train)}-v{CLASSIFIER_VERSION}"
    if key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    folder = Path(data_dir) / "classifiers"
    path = folder / f"{key}.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = Classifier(train.shape[0], saved["classes"])
        model.load_state_dict(saved["state"])
        info = saved["info"]
    else:
        kept = f"once, then kept in {folder}" if Path(data_dir).is_dir() else "for this process: its data has no folder"
        print(f"training the feature classifier of {dataset['name']} ({CLASSIFIER_EPOCHS} epochs; {kept})", flush=True)
        model, info = train_classifier(train, test, device)
        if Path(data_dir).is_dir():  # a data set made in memory (synthetic) has no folder to keep it in
            with atomic.replacing(path) as f:
                torch.save({"state": {k: v.cpu() for k, v in model.state_dict().items()},
                            "classes": model.head.out_features, "info": info}, f)
    info = {**info, "name": f"aerun's {dataset['name']} classifier, {FEATURES}-d penultimate layer",
            "file": key + ".pt"}
    _CLASSIFIERS[key] = _CLASSIFIERS[asked] = model.to(device).eval(), info
    return _CLASSIFIERS[key]


class _Given(nn.Module):
    """Features already computed, handed to torchmetrics' FID as its feature extractor."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features (torchmetrics computes it)."""
    from torchmetrics.image.fid import FrechetInceptionDistance  # imports torchmetrics' image package: only here

    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kth_distance(points: torch.Tensor, k: int = K, chunk: int = 1024) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point of the set."""
    return torch.cat([torch.cdist(points[i:i + chunk], points).kthvalue(k + 1, dim=1).values
                      for i in range(0, len(points), chunk)])


def inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Whether each point lies inside at least one ball (centre, radius)."""
    return torch.cat([(torch.cdist(points[i:i + chunk], centres) <= radii).any(1)
                      for i in range(0, len(points), chunk)])


def covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """The share of `points` inside at least one ball (centre, radius)."""
    return inside(points, centres, radii).double().mean()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = K) -> tuple[float, float]:
    """Kynkäänniemi et al.'s improved precision (samples inside the real manifold) and recall (real images inside
    the samples' manifold), each manifold the union of its points' k-nearest-neighbour balls."""
    return (float(covered(fake, real, kth_distance(real, k))), float(covered(real, fake, kth_distance(fake, k))))


@dataclass
class Mixture:
    """A Gaussian mixture with full covariances: weights (K,), means (K, D), Cholesky factors (K, D, D)."""

    weights: torch.Tensor
    means: torch.Tensor
    scale_tril: torch.Tensor

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per row."""
        return self._joint(x).logsumexp(1)

    def _joint(self, x: torch.Tensor) -> torch.Tensor:
        """log(weight_k * N(x | mean_k, cov_k)) per row and component, (n, K)."""
        d = x.shape[1]
        centred = (x[None, :, :] - self.means[:, None, :]).transpose(1, 2)  # (K, d, n)
        z = torch.linalg.solve_triangular(self.scale_tril, centred, upper=False)
        log_det = self.scale_tril.diagonal(dim1=1, dim2=2).log().sum(1)  # half the log-determinant
        log_pdf = -0.5 * z.pow(2).sum(1) - log_det[:, None] - 0.5 * d * math.log(2 * math.pi)
        return (log_pdf + self.weights.log()[:, None]).T

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        which = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        eps = torch.randn((n, self.means.shape[1]), generator=gen, dtype=self.means.dtype)
        return self.means[which] + (self.scale_tril[which] @ eps[:, :, None])[:, :, 0]


def fit_mixture(x: torch.Tensor, components: int, gen: torch.Generator, iterations: int = GMM_ITERATIONS,
                tol: float = 1e-4, reg: float = 1e-6) -> Mixture:
    """A Gaussian mixture fitted by expectation-maximisation (as scikit-learn's GaussianMixture with full
    covariances: `reg` added to each covariance's diagonal, stopped when the mean log-likelihood gains less
    than `tol`), started from `components` rows drawn at random as means and the data's covariance."""
    x = x.double()
    n, d = x.shape
    if n <= components:
        raise UserError(f"a mixture of {components} Gaussians needs more than {components} codes; it has {n}")
    eye = torch.eye(d, dtype=x.dtype)
    spread = torch.cov(x.T).reshape(d, d) + reg * eye
    mixture = Mixture(torch.full((components,), 1.0 / components, dtype=x.dtype),
                      x[torch.randperm(n, generator=gen)[:components]].clone(),
                      torch.linalg.cholesky(spread).expand(components, d, d).clone())
    previous = -float("inf")
    for _ in range(iterations):
        joint = mixture._joint(x)
        mean_ll = float(joint.logsumexp(1).mean())
        if mean_ll - previous < tol:
            break
        previous = mean_ll
        resp = (joint - joint.logsumexp(1, keepdim=True)).exp()  # (n, K)
        counts = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
        means = resp.T @ x / counts[:, None]
        centred = x[None, :, :] - means[:, None, :]  # (K, n, d)
        covs = torch.einsum("kn,knd,kne->kde", resp.T, centred, centred) / counts[:, None, None] + reg * eye
        mixture = Mixture(counts / n, means, torch.linalg.cholesky(covs))
    return mixture


def check(samples: Any, sampler: Any) -> None:
    """`samples` a whole number (0: none) and `sampler` one of SAMPLERS, or one line."""
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise UserError(f"samples={samples!r} is not allowed; it must be a whole number of samples (0: none)")
    if sampler not in SAMPLERS:
        raise UserError(f"sampler={sampler!r} is not allowed; allowed: {', '.join(SAMPLERS)}")


def sampler_of(model: Autoencoder, asked: str, preset: str) -> str:
    """The sampler a run uses: `auto` is the prior where the family has one, else a mixture on its codes; one
    line for a sampler the family cannot use."""
    chosen = asked if asked != "auto" else ("prior" if SAMPLES in model.figures else "gmm")
    if chosen == "prior" and SAMPLES not in model.figures:
        raise UserError(f"sampler=prior draws codes from a family's prior, and model={preset} has none; "
                        "use sampler=gmm (a Gaussian mixture fitted to its training codes)")
    if chosen == "gmm" and CODE_SPACE not in model.figures:
        raise UserError(f"sampler=gmm decodes codes drawn near its training codes, and model={preset}'s decoder "
                        "does not take any code (it needs what its encoder passes beside the code); samples= "
                        "cannot measure it")
    return chosen


@torch.no_grad()
def draw(model: Autoencoder, sampler: str, n: int, train: Split, seed: int, components: int
         ) -> tuple[torch.Tensor, dict[str, Any]]:
    """n images the model decodes from codes of its prior or of a mixture fitted to its training codes, clipped
    to [0, 1], on the CPU; and what drew them."""
    gen = generator(seed, "cpu")
    device = next(model.parameters()).device
    about: dict[str, Any] = {}
    if sampler == "prior":
        codes = model.prior(n, gen)
    else:
        fitted_to = train.pixels[:GMM_CODES]
        shape = model.encode(floats(fitted_to[:1].to(device))).shape[1:]
        mixture = fit_mixture(encode(model, fitted_to).cpu(), components, gen)
        codes = mixture.sample(n, gen).float().view(n, *shape)
        about = {"components": components, "codes_fitted": len(fitted_to)}
    images = torch.cat([model.decode(c.to(device)).cpu() for c in codes.split(batch_rows(model.in_shape))])
    return images.view(n, *model.in_shape).clamp(0, 1), about


def measure(model: Autoencoder, preset: str, dataset: Mapping[str, Any], data_dir: Path | str,
            device: torch.device | str, n: int, asked: str, seed: int, components: int = 10
            ) -> tuple[dict[str, Any], torch.Tensor]:
    """eval.json's `generation` for n samples of the model, and the samples themselves."""
    sampler = sampler_of(model, asked, preset)
    test = load_split(dataset, "test", data_dir, device)  # a one-class run's samples meet its own class's images
    train = load_split(dataset, "train", data_dir, device)
    if not K < n <= len(test):
        raise UserError(f"samples={n} is not allowed; it must be more than {K} and at most the {len(test)} test "
                        "images the samples are compared with")
    net, info = classifier(dataset, data_dir, device)
    samples, about = draw(model, sampler, n, train, seed, components)
    gen = generator(seed, "cpu")
    real_test, real_train, fake = (features(net, images).double().cpu() for images in (
        test.pixels[torch.randperm(len(test), generator=gen)[:n]],
        train.pixels[torch.randperm(len(train), generator=gen)[:n]], samples))
    precision, recall = precision_recall(real_test, fake)
    precision_real, recall_real = precision_recall(real_test, real_train)
    return {"sampler": sampler, **about, "n": n, "seed": seed, "k": K, "features": info,
            "fid": fid(real_test, fake), "fid_real": fid(real_test, real_train),
            "precision": precision, "recall": recall, "precision_real": precision_real,
            "recall_real": recall_real}, samples


def figure(samples: torch.Tensor, real: torch.Tensor, summary: Mapping[str, Any], out: Path, title: str,
           side: int = 8) -> Path:
    """The first side x side samples beside as many test images, with the measures in the titles."""
    from matplotlib.figure import Figure

    def mosaic(images: torch.Tensor) -> torch.Tensor:
        c, h, w = images.shape[1:]
        cells = images[:side * side].float()
        cells = torch.cat([cells, torch.ones(side * side - len(cells), c, h, w)]) if len(cells) < side * side else cells
        grid = cells.view(side, side, c, h, w).permute(0, 3, 1, 4, 2).reshape(side * h, side * w, c)
        return grid[..., 0] if c == 1 else grid

    fig = Figure(figsize=(8, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax, images, name in ((left, samples, f"samples ({summary['sampler']})"), (right, floats(real), "test images")):
        ax.imshow(mosaic(images.cpu()).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    left.set_xlabel(f"FID {summary['fid']:.2f} (floor {summary['fid_real']:.2f}) · precision {summary['precision']:.3f}"
                    f" · recall {summary['recall']:.3f}", fontsize=8)
    fig.supxlabel(f"Measured in the features of {summary['features']['name']}: not Inception FID", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return atomic.write_png(fig, out)
