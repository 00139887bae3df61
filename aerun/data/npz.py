"""`dataset=npz dataset.path=FILE`: images as arrays in one .npz file.

`x_train` and `x_test` are (N, H, W) (grey), (N, H, W, C) or (N, C, H, W) with C 1 or 3, uint8 or floats in
[0, 1] (made uint8 by round(255 x)); `y_train` and `y_test`, integer labels, are optional (both or neither), and
`classes`, their names, too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerun.data.base import Dataset, Images, register_dataset
from aerun.errors import UserError


def as_pixels(array: np.ndarray, what: str) -> np.ndarray:
    """uint8 (N, C, H, W) from (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or floats in [0, 1]."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif not (array.ndim == 4 and array.shape[1] in (1, 3)):
        raise UserError(f"{what} has shape {array.shape}; give (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"{what} has dtype {array.dtype}; give uint8 (0-255) or floats in [0, 1]")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise UserError(f"{what} holds floats outside [0, 1] (from {np.nanmin(array):g} to {np.nanmax(array):g}); "
                        "give floats in [0, 1] or uint8")
    return np.ascontiguousarray(np.round(array * 255).astype(np.uint8))


@register_dataset("npz")
class Arrays(Dataset):
    def file(self) -> Path:
        path = self.cfg.get("path")
        if not path:
            raise UserError("dataset=npz needs dataset.path=FILE, an .npz with x_train and x_test")
        file = Path(str(path)).expanduser()
        if not file.is_file():
            raise UserError(f"dataset.path={path} is not a file; give an .npz with x_train and x_test")
        return file

    def arrays(self) -> Any:
        file = self.file()
        try:
            arrays = np.load(file, allow_pickle=False)
            names = set(arrays.files)
        except Exception as exc:
            raise UserError(f"{file} cannot be read as an .npz ({type(exc).__name__}); write it with numpy.savez") from None
        for key in ("x_train", "x_test"):
            if key not in names:
                raise UserError(f"{file} has no {key}; it holds {', '.join(sorted(names)) or 'nothing'}")
        if ("y_train" in names) != ("y_test" in names):
            raise UserError(f"{file} has {'y_train' if 'y_train' in names else 'y_test'} only; give both labels or neither")
        return arrays

    def load(self, split: str) -> Images:
        arrays, file = self.arrays(), self.file()
        pixels = as_pixels(arrays[f"x_{split}"], f"{file}: x_{split}")
        labels, classes = None, None
        if "y_train" in arrays.files:
            labels = np.asarray(arrays[f"y_{split}"])
            if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
                raise UserError(f"{file}: y_{split} has dtype {labels.dtype} and shape {labels.shape}; "
                                "give one integer label per image")
            if len(labels) != len(pixels):
                raise UserError(f"{file}: x_{split} has {len(pixels)} images and y_{split} {len(labels)} labels; "
                                "give one label per image")
            classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else None
        train_shape = as_pixels(arrays["x_train"][:1], f"{file}: x_train").shape[1:]
        if pixels.shape[1:] != train_shape:
            raise UserError(f"{file}: x_test's images are {pixels.shape[1:]} and x_train's {train_shape} (C, H, W); "
                            "give both splits one shape")
        return Images.of(torch.from_numpy(pixels), labels, classes, f"{file}: x_{split}")

    def shape(self) -> tuple[int, int, int]:
        return tuple(as_pixels(self.arrays()["x_train"][:1], f"{self.file()}: x_train").shape[1:])

    def prepare(self) -> str:
        images = self.load("train")
        return f"npz {self.file()}: {len(images.pixels)} training images of {tuple(images.pixels.shape[1:])}"
