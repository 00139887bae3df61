"""`cuda_graphs=true` (the default): on a CUDA device, the training step replayed from a CUDA graph.

An MNIST step of aerun's models is a few dozen small kernels, and on a GPU the time goes to launching them
from Python, not to running them: an eager epoch of the `deep` preset took 1.04 s on an H200 and the same
epoch replayed from one captured graph 0.086 s, with bit-identical weights after it (docs/results.md, "On a
GPU"). So each epoch captures the whole step once — forward, loss, backward and the optimiser's update — and
replays it for every full batch; what varies between steps stays outside the graph: the batch's order, shift,
binarisation and noise are drawn eagerly, as before, and copied into the graph's input.

A step is captured only where that is exact:
- the family says its loss draws no random numbers and never waits on the host (`Autoencoder.graphable`:
  the MLPs and the convolutional AEs; not the VAE, whose noise is drawn on the CPU, nor the VQ-VAE, whose
  codebook restarts depend on counts, nor the WTA, whose capture failed on an H200 for a reason not yet found);
- the optimiser can be captured (`capturable` among its options: Adam and AdamW);
- no gradient scaler (16-mixed checks each step's gradients on the host).

The warm-up steps a capture needs change the weights and the optimiser's state; both are put back before the
first replay, so the epoch trains exactly the steps an eager one would. The last, smaller batch runs
eagerly. A capture that fails ends the run in one line that names `cuda_graphs=false`; its last checkpoint stays.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from aerun import eager
from aerun.errors import UserError
from aerun.objective import Objective, loss_terms

log = logging.getLogger(__name__)

WARMUP_STEPS = 2  # on a side stream before the capture: cuBLAS's handles, autograd's and the optimiser's state


def usable(model: Any, optimizer: torch.optim.Optimizer, device: torch.device, scaler: Any) -> bool:
    """Whether this run's step can be captured (see the module's docstring)."""
    return (device.type == "cuda" and getattr(model, "graphable", False) and scaler is None
            and "capturable" in optimizer.defaults)


def set_capturable(optimizer: torch.optim.Optimizer, on: bool) -> None:
    """The optimiser's `capturable` option, which a checkpoint keeps: on for a graphed run, off otherwise (a
    capturable Adam refuses CPU tensors, so a run graphed on a GPU resumes on a CPU with it off)."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = on


class GraphedStep:
    """One epoch's CUDA graph of the training step, captured at its first full batch.

    `__call__(inputs, targets, row)` runs one step on a batch of the captured size and writes
    [reconstruction, each regulariser] into `row`.
    """

    def __init__(self, model: Any, optimizer: torch.optim.Optimizer, objective: Objective,
                 autocast: contextlib.AbstractContextManager | None = None):
        self.model, self.optimizer, self.objective = model, optimizer, objective
        self.autocast = autocast
        self.graph: torch.cuda.CUDAGraph | None = None
        set_capturable(optimizer, True)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward and update; the (1 + terms,) row of the step's values."""
        with self.autocast or contextlib.nullcontext():
            reconstruction, terms = loss_terms(self.model, inputs, targets, self.objective, None)
        loss = sum(terms.values(), reconstruction)
        loss.backward()
        eager.step(self.optimizer)
        return torch.stack([reconstruction.detach().float(), *(t.detach().float() for t in terms.values())])

    def capture(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        model, optimizer = self.model, self.optimizer
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        fresh = not optimizer.state
        state = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                 for p, s in optimizer.state.items()}
        self.inputs, self.targets = inputs.clone(), targets.clone()
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    optimizer.zero_grad(set_to_none=True)
                    self.step(self.inputs, self.targets)
            torch.cuda.current_stream().wait_stream(side)
            optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.row = self.step(self.inputs, self.targets)
            self.graph = graph
        except RuntimeError as exc:
            # after a failed capture CUDA's random-number state can stay marked as capturing (seen on an H200:
            # the next torch.randn on the GPU failed), so the process does not go on eagerly
            raise UserError(f"the training step of {type(model).__name__} could not be captured as a CUDA graph "
                            f"({str(exc).splitlines()[0]}); train it with cuda_graphs=false (a run already begun: "
                            f"aerun resume=DIR cuda_graphs=false)") from exc
        finally:  # the warm-up's steps undone: the weights, and the optimiser's state as it was
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    v.copy_(weights[k])
                for p, s in optimizer.state.items():
                    for k, v in s.items():
                        if not torch.is_tensor(v):
                            continue
                        if fresh:
                            v.zero_()  # Adam's first step starts from step 0 and zero moments
                        else:
                            v.copy_(state[p][k])
            optimizer.zero_grad(set_to_none=not self.graph)  # kept where the graph writes them

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, row: torch.Tensor) -> None:
        if self.graph is None:
            self.capture(inputs, targets)
        self.inputs.copy_(inputs)
        self.targets.copy_(targets)
        self.replay()
        row.copy_(self.row)

    def replay(self) -> None:
        self.graph.replay()
