"""`aerun export run=DIR format=onnx|torchscript`: a trained model as one file another runtime loads, checked.

The exported module takes images (N, C, H, W) as float32 in [0, 1], any N, and returns (reconstruction, code):
the reconstruction as the model's forward pass gives it in evaluation, the code flattened to (N, code_dim). ONNX
goes through torch.onnx's exporter (torch.export), TorchScript through torch.jit.trace. Before the file takes
its name, it is run on the first 256 test images of the run's own data set (onnxruntime for ONNX, torch.jit.load
for TorchScript) and each output compared with eager PyTorch's: a difference above 1e-4 removes it and says so
in one line, as does a family the exporter cannot take. What was checked is printed and kept beside the file
(`<file>.json`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aerun import atomic
from aerun import checkpoint as ckpt
from aerun.data import floats, load_split
from aerun.errors import UserError
from aerun.evaluate import check_shape

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4  # the largest difference from eager PyTorch accepted, in pixel and code units
CHECK_IMAGES = 256
EXAMPLE_BATCH = 3  # the traced example's batch: not 1, so that no exporter takes the batch size for a constant


class Exported(nn.Module):
    """What is exported: images in, (reconstruction, code flattened) out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstruction, code = self.model(images)
        return reconstruction, code.flatten(1)


def default_path(run: Path, fmt: str, which: str) -> Path:
    return Path(run) / "export" / f"model{'' if which == 'last' else '-' + which}{FORMATS[fmt]}"


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter's own needs, named in one line when missing)
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError("format=onnx needs onnx and onnxscript (and onnxruntime for the check): "
                        "pip install 'aerun[export]'") from None
    batch = torch.export.Dim("batch", min=1)
    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # the exporter's passes log each step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["images"],
                          output_names=["reconstruction", "code"], dynamic_shapes=({0: batch},), dynamo=True)


def run_onnx(path: Path, images: torch.Tensor) -> list[np.ndarray]:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("the check of format=onnx runs the file in onnxruntime: pip install 'aerun[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})


def write_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module, (example,), check_trace=False), str(path))


def run_torchscript(path: Path, images: torch.Tensor) -> list[np.ndarray]:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return [t.numpy() for t in torch.jit.load(str(path))(images)]


WRITE = {"onnx": (write_onnx, run_onnx), "torchscript": (write_torchscript, run_torchscript)}


def export_run(run: Path, fmt: str, data_dir: Path | str, which: str = "last", out: Path | None = None) -> dict[str, Any]:
    """Export one run's model to `out` (default: DIR/export/model.onnx or model.pt), checked against eager PyTorch
    on real test images; what was checked."""
    if fmt not in FORMATS:
        raise UserError(f"format={fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    checkpoint = ckpt.load(ckpt.checkpoint_path(run, which))
    model = ckpt.rebuild(checkpoint, "cpu").eval()
    dataset = checkpoint["config"]["dataset"]
    test = load_split(dataset, "test", data_dir, "cpu")
    check_shape(model, test.shape, run, dataset["name"])
    images = floats(test.pixels[:CHECK_IMAGES])
    module = Exported(model).eval()
    family = checkpoint["model"]["builder"]
    write, execute = WRITE[fmt]
    path = Path(out) if out is not None else default_path(run, fmt, which)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temporary(path)
    try:
        try:
            write(module, images[:EXAMPLE_BATCH], tmp)
        except UserError:
            raise
        except Exception as exc:  # the exporter's own refusal: an operation it has no translation for
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise UserError(f"the {family} family's model cannot be exported as {fmt}: {reason}") from None
        with torch.no_grad():
            expected = [t.numpy() for t in module(images)]
        got = execute(tmp, images)
        differences = {name: float(np.abs(a - b).max()) for name, a, b in zip(("reconstruction", "code"), got, expected)}
        if max(differences.values()) > TOLERANCE:
            worst = max(differences, key=differences.get)
            raise UserError(f"the {fmt} export of {run} differs from PyTorch by {differences[worst]:.3g} in its "
                            f"{worst} on {len(images)} test images (more than {TOLERANCE:g}); nothing was written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    checked = {"format": fmt, "file": path.name, "checkpoint": which, "epoch": checkpoint["epoch"], "family": family,
               "input": {"name": "images", "shape": ["N", *test.shape], "dtype": "float32", "range": [0, 1]},
               "outputs": ["reconstruction", "code"], "checked_on": f"{len(images)} {dataset['name']} test images",
               "max_difference": differences, "tolerance": TOLERANCE}
    atomic.write_json(path.with_name(path.name + ".json"), checked)
    return {"path": path, **checked}
