"""`aerun encode run=DIR split=test`: a trained model's codes of one split, for use outside aerun.

The .npz holds `codes` (N, code_dim) float32, what the family's `encode` gives (a VAE's mean, a VQ-VAE's chosen
entries, the convolutional AEs' flattened feature maps); `indices` (N,) int64, each image's position in the data
set's own split (a subset where the run was trained with dataset.classes or dataset.val_size); `labels` (N,)
int64 where the data set has them; and `epoch`, the checkpoint's. Any family encodes, a plugin's too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerun import atomic
from aerun import checkpoint as ckpt
from aerun.data import load_split
from aerun.errors import UserError
from aerun.evaluate import check_shape
from aerun.perimage import encode as encode_images

log = logging.getLogger(__name__)

SPLITS = ("test", "train", "val")


def default_path(run: Path, split: str, which: str) -> Path:
    return Path(run) / f"codes-{split}{'' if which == 'last' else '-' + which}.npz"


def encode_run(run: Path, split: str, data_dir: Path | str, device: torch.device | str, which: str = "last",
               out: Path | None = None) -> dict[str, Any]:
    """Write one run's codes of `split` to `out` (default: beside the run); what was written."""
    if split not in SPLITS:
        raise UserError(f"split={split!r} is not allowed; allowed: {', '.join(SPLITS)}")
    checkpoint = ckpt.load(ckpt.checkpoint_path(run, which))
    dataset = checkpoint["config"]["dataset"]
    if split == "val" and not int(dataset.get("val_size") or 0):
        raise UserError(f"{run} was trained without a validation split: split=val needs a run trained with "
                        "dataset.val_size=N; use split=test or split=train")
    model = ckpt.rebuild(checkpoint, device)
    images = load_split(dataset, split, data_dir, device)
    check_shape(model, images.shape, run, dataset["name"])
    with torch.no_grad():
        codes = encode_images(model, images.pixels).float().cpu().numpy()
    arrays = {"codes": codes, "indices": images.positions.numpy().astype(np.int64),
              "epoch": np.int64(checkpoint["epoch"])}
    if images.labels is not None:
        arrays["labels"] = images.labels.cpu().numpy().astype(np.int64)
    path = Path(out) if out is not None else default_path(run, split, which)
    with atomic.replacing(path, "wb") as f:
        np.savez(f, **arrays)
    return {"path": path, "n": len(codes), "code_dim": codes.shape[1], "labels": "labels" in arrays}
