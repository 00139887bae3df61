"""Self-describing checkpoints: plain containers, loadable with `weights_only=True`, written atomically.

A checkpoint holds the registry name and builder arguments, so `rebuild` makes the
model from the checkpoint alone, never from today's config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aerun import schema
from aerun.errors import UserError
from aerun.models import Autoencoder, build

FORMAT = 1
CHECKPOINT = Path("checkpoints") / "last.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        state["mps"] = mps.get_rng_state()
    return state


def make(
    *,
    model: Autoencoder,
    preset: str,
    builder: str,
    args: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": {
            "name": preset,
            "builder": builder,
            "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
            "code_dim": int(model.code_dim),
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "rng": rng_state(),
        "config": config,
    }


def save(checkpoint: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # interrupted before the rename: the previous checkpoint stands, drop the partial one
        tmp.unlink(missing_ok=True)


def load(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; train a run first (`aerun train`)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}); it is truncated or not an aerun checkpoint") from None
    keys = ("format", "model", "config", "epoch", "step")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in keys):
        raise UserError(f"{path} is not an aerun checkpoint")
    if checkpoint["format"] > FORMAT:
        raise UserError(f"checkpoint {path} has format {checkpoint['format']}, this aerun reads up to {FORMAT}; upgrade aerun")
    checkpoint["config"] = completed(checkpoint["config"], path)
    return checkpoint


def completed(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The stored config with every key this aerun knows: a key newer than the checkpoint gets its default."""
    try:
        return OmegaConf.to_container(schema.complete(config), resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"the config in checkpoint {path} does not fit this aerun ({' '.join(str(exc).split())[:160]}); "
                        "it was written by another version") from None


def rebuild(checkpoint: dict[str, Any], device: torch.device | str = "cpu") -> Autoencoder:
    """The model a checkpoint describes, with its weights, in eval mode."""
    spec = checkpoint["model"]
    model = build(spec["builder"], **{k: tuple(v) if isinstance(v, list) else v for k, v in spec["args"].items()})
    try:
        model.load_state_dict(spec["state"])
    except RuntimeError:
        raise UserError(f"the weights in the checkpoint do not fit its {spec['builder']!r} model; the file is damaged") from None
    return model.to(device).eval()
