"""Where runs live on disk: a run's checkpoint files, and the runs of a sweep. No torch here, so a command given
the wrong folder is answered before torch is loaded."""

from __future__ import annotations

import csv
from pathlib import Path

from aerun.errors import UserError

ITER_LOG = "loss_iter.csv"
EPOCH_LOG = "loss_epoch.csv"
# The regularisers' columns (aerun.objective.TERMS, those the run has) follow these; "loss" is the
# reconstruction term and "penalty" the sum of the regularisers.
ITER_FIELDS = ("step", "epoch", "loss", "penalty")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_penalty", "test_loss", "seconds")
CHECKPOINT = Path("checkpoints") / "last.pt"
PREVIOUS = Path("checkpoints") / "previous.pt"
BEST = Path("checkpoints") / "best.pt"  # the epoch of the best checkpoint.monitor value (aerun.train)
WHICH = {"last": CHECKPOINT, "best": BEST}


# Keys a run may change and still be the same run: where data lives, where it runs, what it logs besides its
# CSVs, how long it trains (more epochs resume it), what a search reads of it, and whether a GPU replays its
# step as a CUDA graph (the same numbers). A key newer than a checkpoint is not a change: the
# checkpoint's config is completed with its default (`schema.complete`). The report's jobs and a continued sweep's
# jobs are reused or resumed on this rule.
REUSABLE_CHANGES = ("paths", "device", "epochs", "logger", "search", "cuda_graphs")


def checkpoint_path(run: Path, which: str = "last") -> Path:
    """A run's `checkpoint=last|best` file; one line for another value or a run without a best checkpoint."""
    if which not in WHICH:
        raise UserError(f"checkpoint={which!r} is not allowed; allowed: {', '.join(WHICH)}")
    path = Path(run) / WHICH[which]
    if which == "best" and not path.is_file() and (Path(run) / CHECKPOINT).is_file():
        raise UserError(f"{run} has no best checkpoint ({BEST}): it keeps one when trained with "
                        "checkpoint.monitor=val_loss and dataset.val_size=N; use checkpoint=last")
    return path


def find_runs(path: Path, key: str = "run") -> list[Path]:
    """The run directories under `path`: itself if it is a run, else the jobs of a sweep."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{key}={path} is not a directory; pass a run or sweep directory under outputs/")
    if (path / CHECKPOINT).exists():
        return [path]
    jobs = [p.parent.parent for p in path.glob(f"*/{CHECKPOINT}")]
    if not jobs:
        raise UserError(f"{key}={path} holds no {CHECKPOINT} and no sweep jobs with one; train first")
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def read_csv(path: Path) -> dict[str, list[float]]:
    """Columns of a history file (ITER_LOG, EPOCH_LOG); empty when the run has none (yet)."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: [float(r[key]) for r in rows] for key in rows[0]}
