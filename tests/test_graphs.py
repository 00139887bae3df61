"""`cuda_graphs`: the captured step's bookkeeping, on the CPU.

A CUDA graph needs a GPU (`make gpu-check` compares graphed and eager epochs there, weight for weight). What can
go wrong around the capture is tested here, with the capture replaced by running the step: the warm-up steps
undone (a fresh optimiser and a resumed one), each row written in place, the last smaller batch run eagerly,
a failed capture one line with the warm-up undone, and `capturable` off for a run resumed off the GPU.
"""

from __future__ import annotations

import contextlib
import subprocess

import pytest
import torch

from aerun import graphs
from aerun.errors import UserError
from aerun.models import build
from aerun.objective import Objective
from aerun.train import epoch_generator, train_epoch


class FakeStream:
    def wait_stream(self, other):
        pass


@pytest.fixture
def cpu_capture(monkeypatch):
    """torch.cuda's capture machinery as plain calls: `with torch.cuda.graph(g)` runs the step once (the capture
    runs nothing, so GraphedStep must undo it as it undoes the warm-up), and a replay runs the step again into
    the captured row. Returns the list of steps replayed."""
    replayed = []
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "graph", lambda graph: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", object)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(graphs, "usable", lambda *args: True)
    monkeypatch.setattr(graphs, "set_capturable", lambda optimizer, on: None)  # a CPU Adam refuses capturable

    def replay(self):  # a captured backward writes the gradients afresh (they were None at the capture)
        replayed.append(1)
        self.optimizer.zero_grad(set_to_none=False)
        self.row.copy_(self.step(self.inputs, self.targets))

    monkeypatch.setattr(graphs.GraphedStep, "replay", replay)
    return replayed


def epochs(graphed: bool, n_epochs: int = 2, n_images: int = 200, batch_size: int = 64, preset=None):
    torch.manual_seed(0)
    model = build("mlp", code=8, encoder=[32], **(preset or {}))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    images = torch.randint(0, 256, (n_images, 1, 28, 28), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    records = [train_epoch(model, optimizer, images, batch_size=batch_size, generator=epoch_generator(0, epoch),
                           objective=Objective.defaults(model), desc="test", cuda_graphs=graphed)
               for epoch in range(1, n_epochs + 1)]
    return model, optimizer, records


def test_a_graphed_epoch_trains_the_eager_epochs_steps_exactly(cpu_capture):
    eager_model, eager_opt, eager_records = epochs(False)
    model, optimizer, records = epochs(True)
    # two epochs: the first captures with a fresh Adam, the second with Adam's state of the first epoch
    for a, b in zip(eager_records, records):
        assert torch.equal(a, b)
    for (name, a), b in zip(eager_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    for p_eager, p in zip(eager_model.parameters(), model.parameters()):
        for key, value in eager_opt.state[p_eager].items():
            assert torch.equal(value, optimizer.state[p][key]), key
    # 200 images in batches of 64: three full batches replayed and the last 8 images eager, each epoch
    assert len(cpu_capture) == 2 * 3


def test_a_capture_that_fails_is_one_line_naming_the_switch_and_undoes_its_warm_up(cpu_capture, monkeypatch):
    def refuse(graph):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    torch.manual_seed(0)
    model = build("mlp", code=8, encoder=[32])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(UserError) as caught:
        train_epoch(model, optimizer, torch.zeros(128, 1, 28, 28, dtype=torch.uint8), batch_size=64,
                    generator=epoch_generator(0, 1), objective=Objective.defaults(model), desc="test",
                    cuda_graphs=True)
    message = str(caught.value)
    assert "\n" not in message and "could not be captured" in message and "cuda_graphs=false" in message
    assert "operation not permitted" in message and "more detail" not in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the warm-up's steps undone
    assert not cpu_capture


def test_only_families_that_say_so_are_captured_and_only_on_cuda():
    assert [name for name in ("mlp", "conv", "wta", "vae", "vqvae")
            if build(name, **({"code": 8} if name in ("mlp", "vae") else {})).graphable] == ["mlp", "conv"]
    model = build("mlp", code=8)
    adam, sgd = torch.optim.Adam(model.parameters()), torch.optim.SGD(model.parameters(), lr=0.1)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert graphs.usable(model, adam, cuda, None)
    assert not graphs.usable(model, adam, cpu, None)
    assert not graphs.usable(model, sgd, cuda, None)  # no capturable option
    assert not graphs.usable(model, adam, cuda, torch.amp.GradScaler("cpu"))  # 16-mixed's scaler waits on the host
    assert not graphs.usable(build("vae", code=8), adam, cuda, None)


def test_a_run_graphed_on_a_gpu_resumes_on_a_cpu_with_capturable_off():
    model = build("mlp", code=8)
    optimizer = torch.optim.Adam(model.parameters())
    graphs.set_capturable(optimizer, True)
    saved = optimizer.state_dict()
    assert all(group["capturable"] for group in saved["param_groups"])
    again = torch.optim.Adam(model.parameters())
    again.load_state_dict(saved)
    graphs.set_capturable(again, False)  # what train() does for a run that is not graphed here
    model(torch.rand(4, 1, 28, 28))[0].sum().backward()
    again.step()  # a capturable Adam would refuse the CPU's parameters
    assert not any(group["capturable"] for group in again.param_groups)


def test_a_run_resumes_with_cuda_graphs_switched_off(aerun_exe, tmp_path):
    # the way on from a failed capture: the run's own config, with the one switch changed
    from aerun import checkpoint as ckpt

    run = tmp_path / "run"
    common = ["dataset=synthetic", "batch_size=64", "device=cpu", "model=shallow", "model.hidden=16"]
    first = subprocess.run([aerun_exe, "train", *common, "epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert ckpt.load(run / ckpt.CHECKPOINT)["config"]["cuda_graphs"] is True
    again = subprocess.run([aerun_exe, "train", f"resume={run}", "epochs=2", "cuda_graphs=false"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    state = ckpt.load(run / ckpt.CHECKPOINT)
    assert state["epoch"] == 2 and state["config"]["cuda_graphs"] is False
