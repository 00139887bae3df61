"""`logger=tensorboard`: TensorBoard event files beside a run's CSV histories.

The CSVs stay the record that `eval`, `plot` and `report` read; the events are for
watching runs live (`tensorboard --logdir outputs/`), a whole sweep at once, on a
cluster or not. Needs the optional extra: `pip install 'aerun[tensorboard]'`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from aerun.errors import UserError

LOGGERS = ("csv", "tensorboard")


def check(name: Any) -> None:
    if name not in LOGGERS:
        raise UserError(f"logger={name!r} is not a logger; allowed: {', '.join(LOGGERS)}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError("logger=tensorboard needs the tensorboard package; install it with "
                            "pip install 'aerun[tensorboard]' (or use logger=csv)") from None


class EventLog:
    """Per-iteration and per-epoch losses, the learning rate and the showcase reconstructions, per epoch."""

    def __init__(self, run_dir: Path, showcase: torch.Tensor) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.showcase = showcase

    @torch.no_grad()
    def epoch(self, epoch: int, first_step: int, record: torch.Tensor, test_loss: float, lr: float,
              model: nn.Module) -> None:
        for i, (loss, *terms) in enumerate(record.tolist()):  # the reconstruction term, then each regulariser
            self.writer.add_scalar("loss/train_iteration", loss, first_step + i + 1)
            if terms:
                self.writer.add_scalar("loss/penalty_iteration", sum(terms), first_step + i + 1)
        step = first_step + len(record)
        self.writer.add_scalar("loss/train_epoch", record[:, 0].mean().item(), step)
        self.writer.add_scalar("loss/test_epoch", test_loss, step)
        self.writer.add_scalar("learning_rate", lr, step)
        model.eval()
        recon = model(self.showcase)[0].clamp(0, 1)
        pairs = torch.cat([self.showcase, recon]).detach().float().cpu()  # originals above, reconstructions below
        self.writer.add_images("showcase/original_and_reconstruction", pairs, step, dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
