"""Whether an image is like the data set's own: the yardstick of part 5's question "is it still a digit?".

An image counts as data-like when it passes two tests at once, each the realism test of Kynkäänniemi et al.'s
precision (inside the k-nearest-neighbour ball of at least one calibration image):

- in the features of aerun's classifier of the data set (its 128-d penultimate layer, aerun.generation), with
  every training image a ball (k = FEATURE_K): what a digit is to something that reads digits; this test
  rejects blobs and noise, which are near no digit in those features;
- in pixels, with `PIXEL_CALIBRATION` training images as balls (k = PIXEL_K): what the image looks like; this
  test rejects filled discs, bars and clothes that a classifier files under a digit.

It is calibrated on training images alone and never scores them; `controls` measures it on images it never saw,
each set with the bound it must meet:

- held-out test images (the first 1,000 of the test split): at least 80 % data-like;
- filled discs, bars, blobs, uniform noise and (for MNIST and KMNIST) Fashion-MNIST's test images: at most 5 %
  each;
- the test images rotated by 90 degrees or mirrored: reported, without a bound (a mirrored 8 is an 8; a mirrored
  7 is not).

The k of each test were chosen on other draws than these (test images 5,000-5,999, Fashion-MNIST's 5,000-5,999,
shapes drawn from seeds 100-103; docs/results.md, "Part 5's yardstick"): of the layers, calibration sizes and k
tried there, the one that judged most held-out digits data-like while no non-digit set went above 4 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from aerun.data import floats, load_split
from aerun.errors import UserError
from aerun.generation import Classifier, classifier, inside, kth_distance
from aerun.noise import generator
from aerun.perimage import features

FEATURE_K, PIXEL_K = 5, 5
PIXEL_CALIBRATION = 10_000  # training images whose pixel balls make the data's look (all of them make its features')
CONTROL_IMAGES = 1000
AT_LEAST, AT_MOST = 0.80, 0.05  # the share of held-out test images, and of each set of non-images, judged data-like


@dataclass
class Yardstick:
    """The classifier and its calibration: for features and for pixels, the calibration images (as points) and
    each one's radius (its distance to its k-th nearest neighbour among them)."""

    net: Classifier
    centres: dict[str, torch.Tensor]
    radii: dict[str, torch.Tensor]
    about: dict[str, Any]

    @classmethod
    def of(cls, dataset: Mapping[str, Any], data_dir: Path | str, device: torch.device | str,
           seed: int = 0) -> "Yardstick":
        net, info = classifier(dataset, data_dir, device)
        train = load_split({**dataset, "classes": None}, "train", data_dir, device).pixels
        looks = train[torch.randperm(len(train), generator=generator(seed, "cpu"))[:PIXEL_CALIBRATION]
                      .to(train.device)]
        centres = {"features": features(net, train).float().cpu(), "pixels": pixels(looks)}
        radii = {"features": kth_distance(centres["features"], FEATURE_K),
                 "pixels": kth_distance(centres["pixels"], PIXEL_K)}
        about = {"classifier": info, "features": f"{len(train)} training images, k = {FEATURE_K}",
                 "pixels": f"{len(looks)} training images, k = {PIXEL_K}"}
        return cls(net, centres, radii, about)

    def judge(self, images: torch.Tensor) -> torch.Tensor:
        """Whether each image (uint8 pixels or floats in [0, 1]) is data-like, as a bool tensor on the CPU."""
        points = {"features": features(self.net, images).float().cpu(), "pixels": pixels(images)}
        return inside(points["features"], self.centres["features"], self.radii["features"]) & inside(
            points["pixels"], self.centres["pixels"], self.radii["pixels"])

    def share(self, images: torch.Tensor) -> float:
        return float(self.judge(images).double().mean())


def pixels(images: torch.Tensor) -> torch.Tensor:
    """Images as points in pixel space: float32 in [0, 1], flattened, on the CPU."""
    return floats(images.cpu()).flatten(1).float()


def shapes(kind: str, n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """n images (floats in [0, 1], `shape`) of a kind that is no digit: `discs` (filled, radius 3 to 9 pixels at
    28x28, anywhere they fit), `bars` (horizontal or vertical, 2 to 5 pixels thick, 10 to 24 long), `blobs` (a
    Gaussian spot, sd 1.5 to 4), `noise` (uniform)."""
    gen = generator(seed, "cpu")
    c, h, w = shape
    scale = min(h, w) / 28

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, 1, 1, generator=gen)

    y = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    x = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    if kind == "noise":
        return torch.rand((n, c, h, w), generator=gen)
    if kind == "discs":
        r = uniform(3, 9) * scale
        cy, cx = uniform(0, 1) * (h - 2 * r) + r, uniform(0, 1) * (w - 2 * r) + r
        image = ((y - cy) ** 2 + (x - cx) ** 2 <= r ** 2).float()
    elif kind == "bars":
        thick, long = uniform(2, 5) * scale, uniform(10, 24) * scale
        cy, cx = uniform(0.25, 0.75) * h, uniform(0.25, 0.75) * w
        across = torch.rand(n, 1, 1, generator=gen) < 0.5
        dy, dx = torch.where(across, thick, long) / 2, torch.where(across, long, thick) / 2
        image = (((y - cy).abs() <= dy) & ((x - cx).abs() <= dx)).float()
    elif kind == "blobs":
        sd = uniform(1.5, 4) * scale
        cy, cx = uniform(0.3, 0.7) * h, uniform(0.3, 0.7) * w
        image = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sd ** 2))
    else:
        raise ValueError(kind)
    return image[:, None].expand(n, c, h, w).contiguous()


def controls(stick: Yardstick, dataset: Mapping[str, Any], data_dir: Path | str, device: torch.device | str,
             seed: int = 0) -> list[dict[str, Any]]:
    """The yardstick's verdict on each control set, with its bound and whether it meets it (report.json's
    `yardstick`)."""
    test = load_split({**dataset, "classes": None}, "test", data_dir, device)
    held_out = test.pixels[:CONTROL_IMAGES]
    shape = tuple(test.shape)
    sets: list[tuple[str, torch.Tensor | str, str | None, float | None]] = [
        ("held-out test images", held_out, ">=", AT_LEAST)]
    sets += [(name, shapes(kind, CONTROL_IMAGES, shape, seed + i), "<=", AT_MOST)
             for i, (name, kind) in enumerate((("filled discs", "discs"), ("bars", "bars"), ("blobs", "blobs"),
                                               ("uniform noise", "noise")))]
    if dataset["name"] in ("mnist", "kmnist"):
        try:
            other = load_split({"name": "fashion_mnist"}, "test", data_dir, device).pixels[:CONTROL_IMAGES]
        except UserError as exc:
            other = f"not measured: {exc}"
        sets.append(("Fashion-MNIST test images", other, "<=", AT_MOST))
    if shape[1] == shape[2]:  # a rotated image of another shape is not one the yardstick can measure
        sets.append(("held-out test images rotated 90°", torch.rot90(held_out, 1, dims=(2, 3)), None, None))
    sets.append(("held-out test images mirrored", torch.flip(held_out, dims=(3,)), None, None))
    found = []
    for name, images, sign, bound in sets:
        if isinstance(images, str):
            found.append({"set": name, "n": 0, "share": None, "bound": f"{sign} {bound:g}", "passed": None,
                          "note": images})
            continue
        share = stick.share(images)
        passed = None if bound is None else (share >= bound if sign == ">=" else share <= bound)
        found.append({"set": name, "n": len(images), "share": share,
                      "bound": None if bound is None else f"{sign} {bound:g}", "passed": passed})
    return found


def text(stick: Yardstick, found: list[dict[str, Any]]) -> str:
    """One paragraph: what counts as data-like, and how the controls came out."""
    measured = [f for f in found if f["share"] is not None]
    failed = [f["set"] for f in measured if f["passed"] is False]
    verdict = ("Every control meets its bound" if not failed else
               f"The yardstick misses its bound on {', '.join(failed)}: read its verdicts with that in mind")
    shares = "; ".join(f"{f['set']} {100 * f['share']:.1f} %" for f in measured)
    return (f"An image counts as digit-like when it passes two tests: in the features of "
            f"{stick.about['classifier']['name']} (test accuracy {100 * stick.about['classifier']['test_accuracy']:.1f}"
            f" %) it lies inside the {FEATURE_K}-nearest-neighbour ball of a training image, and in pixels inside that "
            f"of one of {PIXEL_CALIBRATION:,} training images (the realism test of Kynkäänniemi et al., 2019). "
            f"Calibrated on training images only, on images it never saw it judges digit-like: {shares}. {verdict} "
            f"(at least {100 * AT_LEAST:.0f} % of held-out test images, at most {100 * AT_MOST:.0f} % of each "
            "non-digit set; rotated and mirrored digits are reported without a bound); report.json's `yardstick` "
            "lists them.")
