"""`aerun export`: every family as ONNX (run here in onnxruntime) and TorchScript, checked; a bad export is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aerun import checkpoint as ckpt
from aerun import export
from aerun.data import floats, load_split
from aerun.errors import UserError
from aerun.train import train

RUN = ["dataset=synthetic", "epochs=1", "batch_size=64", "device=cpu"]
PRESETS = {"shallow": ["model.hidden=16"], "conv_unpool": [], "vae": [], "vqvae": [], "wta": ["model.code=64"],
           "pca": []}


def trained(make_cfg, tmp_path, preset):
    run = tmp_path / preset
    cfg = make_cfg("train", [*RUN, f"model={preset}", *PRESETS[preset]])
    train(cfg, run)
    return run, cfg


def eager(run, images):
    model = ckpt.rebuild(ckpt.load(run / ckpt.CHECKPOINT), "cpu").eval()
    with torch.no_grad():
        reconstruction, code = model(images)
    return reconstruction.numpy(), code.flatten(1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_family_exports_to_onnx_and_onnxruntime_gives_pytorchs_outputs(make_cfg, tmp_path, preset):
    onnxruntime = pytest.importorskip("onnxruntime")
    run, cfg = trained(make_cfg, tmp_path, preset)
    done = export.export_run(run, "onnx", cfg.paths.data_dir)
    assert done["path"] == run / "export" / "model.onnx"
    # other images than the export's own check, in a batch of another size: the batch axis is free
    images = floats(load_split(cfg.dataset, "test", cfg.paths.data_dir, "cpu").pixels[-37:])
    session = onnxruntime.InferenceSession(str(done["path"]), providers=["CPUExecutionProvider"])
    got = session.run(["reconstruction", "code"], {"images": images.numpy()})
    for a, b in zip(got, eager(run, images)):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4
    kept = json.loads((run / "export" / "model.onnx.json").read_text())
    assert kept["checked_on"].startswith("256 ") and max(kept["max_difference"].values()) <= 1e-4


@pytest.mark.parametrize("preset", ["shallow", "vae"])
def test_torchscript_loads_in_torch_alone_and_gives_the_same_outputs(make_cfg, tmp_path, preset):
    run, cfg = trained(make_cfg, tmp_path, preset)
    path = export.export_run(run, "torchscript", cfg.paths.data_dir, out=tmp_path / "model.pt")["path"]
    images = floats(load_split(cfg.dataset, "test", cfg.paths.data_dir, "cpu").pixels[-20:])
    with torch.no_grad():
        got = [t.numpy() for t in torch.jit.load(str(path))(images)]
    for a, b in zip(got, eager(run, images)):
        assert np.abs(a - b).max() <= 1e-5


def test_an_export_that_differs_from_pytorch_is_one_line_and_leaves_no_file(make_cfg, tmp_path, monkeypatch):
    run, cfg = trained(make_cfg, tmp_path, "shallow")
    run_file = export.run_torchscript
    monkeypatch.setitem(export.WRITE, "torchscript", (export.write_torchscript,
                                                      lambda path, images: [a + 1e-3 for a in run_file(path, images)]))
    with pytest.raises(UserError) as caught:
        export.export_run(run, "torchscript", cfg.paths.data_dir)
    message = str(caught.value)
    assert "differs from PyTorch by 0.001" in message and "nothing was written" in message and "\n" not in message
    assert not (run / "export").exists() or not any((run / "export").iterdir())


def test_the_unpooling_conv_ae_is_refused_by_torchscript_in_one_line_and_nothing_is_written(make_cfg, tmp_path):
    # torch.jit.trace cannot take max_unpool2d's output-size check (a tensor condition); ONNX can (above)
    run, cfg = trained(make_cfg, tmp_path, "conv_unpool")
    with pytest.raises(UserError) as caught:
        export.export_run(run, "torchscript", cfg.paths.data_dir)
    assert str(caught.value).startswith("the conv family's model cannot be exported as torchscript: ")
    assert "\n" not in str(caught.value) and not list((run / "export").iterdir())


def test_a_model_the_exporter_cannot_take_is_one_line_naming_its_family(make_cfg, tmp_path, monkeypatch):
    run, cfg = trained(make_cfg, tmp_path, "shallow")

    def refuse(module, example, path):
        raise RuntimeError("unsupported operator aten::weird\nwith a long trace")

    monkeypatch.setitem(export.WRITE, "onnx", (refuse, export.run_onnx))
    for fmt, said in (("onnx", "the mlp family's model cannot be exported as onnx: unsupported operator aten::weird"),
                      ("tflite", "format='tflite' is not allowed")):
        with pytest.raises(UserError) as caught:
            export.export_run(run, fmt, cfg.paths.data_dir)
        assert said in str(caught.value) and "\n" not in str(caught.value)
