"""Self-describing checkpoints: plain containers, loadable with `weights_only=True`, written atomically,
checked by a checksum, the previous one kept.

A checkpoint holds the registry name and builder arguments, so `rebuild` makes the model from the
checkpoint alone, never from today's config. It also holds `sha256`, a digest of everything else in
it (every tensor's bytes, dtype and shape, every other value), which every load recomputes: a file
damaged on the disk, in a copy or by a half-synced folder fails it, and is named as damaged rather
than used. Each save keeps the checkpoint it replaces as `checkpoints/previous.pt`, so a run whose
latest checkpoint is damaged resumes from the one before (`latest_intact`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aerun import atomic, schema
from aerun.data.base import IMAGE_SHAPE
from aerun.errors import EnvironmentFailure, UserError
from aerun.models import Autoencoder, build, family
from aerun.objective import carry_forward
from aerun.runs import BEST, CHECKPOINT, PREVIOUS, checkpoint_path

FORMAT = 1
DIGEST = "sha256"
log = logging.getLogger(__name__)


class DamagedCheckpoint(EnvironmentFailure):
    """A checkpoint that cannot be read, or whose content fails its checksum."""


def saved(run_dir: Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from (the latest, or the one kept before it)."""
    return (Path(run_dir) / CHECKPOINT).exists() or (Path(run_dir) / PREVIOUS).exists()


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
    scaler: torch.amp.GradScaler | None = None,
    best: dict[str, Any] | None = None,
) -> dict[str, Any]:
    checkpoint = {
        "format": FORMAT,
        "model": {
            "name": preset,
            "builder": builder,
            "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
            "code_dim": int(model.code_dim),
            "in_shape": [int(v) for v in model.in_shape],
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        "optimizer": None if optimizer is None else on_cpu(optimizer.state_dict()),
        "epoch": epoch,
        "step": step,
        "rng": rng_state(),
        "config": config,
    }
    if scaler is not None:  # a float16 run's loss scale, so that it resumes exactly
        checkpoint["scaler"] = on_cpu(scaler.state_dict())
    if best is not None:  # checkpoint.monitor: its best value so far, and the epoch of checkpoints/best.pt
        checkpoint["best"] = dict(best)
    return checkpoint


def finished(checkpoint: dict[str, Any], epochs: int, fitted: bool) -> bool:
    """Whether a run's checkpoint is the whole run its config asks for: a fitted model once it exists; a trained
    one at exactly `epochs`, or stopped early by early_stop.patience."""
    return fitted or int(checkpoint["epoch"]) == int(epochs) or bool(checkpoint.get("stopped_early"))


@dataclass(frozen=True)
class RunState:
    """What a run's folder holds against the config that asks for it (`run_state`)."""

    action: str                 # "new" (no intact checkpoint), "resume" or "complete"
    epochs: int | None = None   # the epochs its newest intact checkpoint holds
    checkpoint: dict[str, Any] | None = None
    source: Path | None = None  # that checkpoint's file (last.pt, or previous.pt where last.pt is damaged)


def run_state(run_dir: Path, wanted: Mapping[str, Any], asker: str, elsewhere: str) -> RunState:
    """The one rule for a folder that may already hold a run (train's resume, a continued sweep, the report):
    new without an intact checkpoint; refused when its config differs from `wanted` (a plain config) in any key
    but the reusable changes, or when it is trained past `wanted`'s epochs (a run is not cut short, and a
    spread must not mix run lengths); complete when `finished`, else resumed. `asker` names whose config it
    is ("this report's"), `elsewhere` the way out ("write the report elsewhere with dir=...")."""
    found = latest_intact(Path(run_dir))
    if found is None:
        return RunState("new")
    state, source = found
    wanted = carry_forward(wanted, family(wanted["model"]["builder"]).terms)
    key = schema.changed_key(state["config"], wanted)
    if key == "precision":
        old, new = state["config"]["precision"], wanted["precision"]
        raise UserError(f"{run_dir} was trained at precision={old}; it resumes at that precision only (not {new}): "
                        f"train a new run for precision={new}, or {elsewhere}")
    if key is not None:
        raise UserError(f"{run_dir} holds a run whose {key} differs from {asker}; only epochs (and device, "
                        f"logger, paths) may change for a run to go on: restore {key}, delete that folder, or "
                        f"{elsewhere}")
    done, epochs = int(state["epoch"]), int(wanted["epochs"])
    fitted = family(wanted["model"]["builder"]).fitted
    if done > epochs and not fitted:
        raise UserError(f"{run_dir} is trained to epoch {done}, more than epochs={epochs}: a run is not cut short, "
                        f"and a spread must not mix run lengths; give epochs={done} or more, or {elsewhere}")
    return RunState("complete" if finished(state, epochs, fitted) else "resume", done, state, source)


def on_cpu(value: Any) -> Any:
    """Every tensor in a nested container moved to the CPU: a checkpoint holds CPU tensors only, so a run
    trained on a GPU resumes on a machine without one (the optimiser moves its state back to its parameters)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


def _feed(digest: Any, value: Any) -> None:
    """Every tensor by dtype, shape and bytes, every other value by its JSON; mappings in key order."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"tensor {t.dtype} {tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            digest.update(json.dumps(key).encode() if isinstance(key, str) else repr(key).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(json.dumps(value).encode())


def content_digest(checkpoint: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's content: everything in it but the digest itself."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in checkpoint.items() if k != DIGEST})
    return digest.hexdigest()


def save(checkpoint: dict[str, Any], path: Path, keep_previous: bool = True) -> None:
    """Stamp the checksum, write beside `path`, flush to disk, keep the checkpoint `path` held as previous.pt
    beside it (unless not `keep_previous`: best.pt), then rename over `path` (aerun.atomic): at every moment
    `path` is a whole checkpoint."""
    path = Path(path)
    checkpoint[DIGEST] = content_digest(checkpoint)
    with interrupts_held(), atomic.replacing(path, "wb", keep=path.with_name(PREVIOUS.name) if keep_previous
                                             else None) as f:
        torch.save(checkpoint, f)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while a checkpoint is written, and acted on as soon as it is: an interrupt
    inside torch.save left its zip writer half-done, whose error then replaced the interrupt (an "unexpected
    error" instead of the resume hint). The file was never at risk (aerun.atomic); the message was. Python runs
    signal handlers in the main thread whichever thread the signal reached, so the handlers are swapped there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = {signum: signal.signal(signum, lambda n, frame: caught.append((n, frame)))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in caught[:1]:  # as it would have been, now that the file is whole
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler != signal.SIG_IGN:
                os.kill(os.getpid(), signum)


_UNCHECKED: set[Path] = set()


def read(path: Path) -> dict[str, Any]:
    """A checkpoint file read and verified: DamagedCheckpoint for one that is unreadable or fails its checksum."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DamagedCheckpoint(f"checkpoint {path} is unreadable ({type(exc).__name__}): it is truncated, damaged "
                                "or not an aerun checkpoint") from None
    keys = ("format", "model", "config", "epoch", "step")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in keys):
        raise UserError(f"{path} is not an aerun checkpoint")
    if checkpoint["format"] > FORMAT:
        raise UserError(f"checkpoint {path} has format {checkpoint['format']}, this aerun reads up to {FORMAT}; upgrade aerun")
    if DIGEST not in checkpoint:
        if path not in _UNCHECKED:  # said once per file and process
            _UNCHECKED.add(path)
            log.info("%s was written before aerun checksummed its checkpoints: nothing to verify", path)
    elif content_digest(checkpoint) != checkpoint[DIGEST]:
        raise DamagedCheckpoint(f"checkpoint {path} fails its checksum (SHA-256 of its content): it is damaged")
    checkpoint["config"] = completed(checkpoint["config"], path)
    return checkpoint


def load(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, verified; for a damaged one, one line that names the intact previous one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; train a run first (`aerun train`)")
    try:
        return read(path)
    except DamagedCheckpoint as damaged:
        previous = path.with_name(PREVIOUS.name)
        try:
            intact = read(previous) if previous.is_file() else None
        except (DamagedCheckpoint, UserError):
            intact = None
        run = path.parent.parent
        if intact is None:
            raise DamagedCheckpoint(f"{damaged}, and no intact previous checkpoint is beside it; train the run again "
                                    "(delete its folder first)") from None
        raise DamagedCheckpoint(f"{damaged}; the previous one, {previous} (epoch {intact['epoch']}), is intact: "
                                f"aerun train resume={run} continues from it") from None


def latest_intact(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint of a run that reads and passes its checksum (last.pt, else previous.pt), and its
    path; None where the run has none. A damaged last.pt is said in the log; both damaged is an error."""
    last, previous = Path(run_dir) / CHECKPOINT, Path(run_dir) / PREVIOUS
    if not last.is_file() and not previous.is_file():
        return None
    try:
        if last.is_file():
            return read(last), last
        problem = f"{last} is missing (a save was interrupted)"
    except DamagedCheckpoint as damaged:
        problem = str(damaged)
    if not previous.is_file():
        raise DamagedCheckpoint(f"{problem}, and there is no previous checkpoint; train the run again "
                                "(delete its folder first)")
    try:
        checkpoint = read(previous)
    except DamagedCheckpoint as damaged:
        raise DamagedCheckpoint(f"{problem}, and {damaged}; train the run again (delete its folder first)") from None
    log.warning("%s; continuing from %s (epoch %d)", problem, previous, checkpoint["epoch"])
    return checkpoint, previous


def completed(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The stored config with every key this aerun knows: a key newer than the checkpoint gets its default, and
    a top-level key that moved under `model.` goes there (a VAE's `beta`)."""
    try:
        builder = (config.get("model") or {}).get("builder")
        config = carry_forward(config, family(builder).terms if builder else (), schema.RETIRED)
        return OmegaConf.to_container(schema.complete(config), resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"the config in checkpoint {path} does not fit this aerun ({' '.join(str(exc).split())[:160]}); "
                        "it was written by another version") from None


def in_shape(checkpoint: dict[str, Any]) -> tuple[int, ...]:
    """The image shape (C, H, W) a checkpoint's model was built for; 1×28×28 for one written before shapes were
    stored (every data set then was MNIST-like)."""
    return tuple(int(v) for v in checkpoint["model"].get("in_shape", IMAGE_SHAPE))


def rebuild(checkpoint: dict[str, Any], device: torch.device | str = "cpu") -> Autoencoder:
    """The model a checkpoint describes, with its weights, in eval mode."""
    spec = checkpoint["model"]
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["args"].items()}
    model = build(spec["builder"], in_shape=in_shape(checkpoint), **args)
    try:
        model.load_state_dict(spec["state"])
    except RuntimeError:
        raise UserError(f"the weights in the checkpoint do not fit its {spec['builder']!r} model; the file is damaged") from None
    return model.to(device).eval()
