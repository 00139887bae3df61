from __future__ import annotations

import numpy as np
import pytest
import torch

from aerun.compose import CONF_DIR
from aerun.errors import UserError
from aerun.models import PCA, build, builder_args, families
from aerun.objective import Objective, loss_terms

PRESETS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def test_every_builder_has_a_preset(make_cfg):
    used = {make_cfg("train", [f"model={p}"]).model.builder for p in PRESETS}
    assert used == set(families())


SHAPES = [(1, 28, 28), (3, 20, 24), (3, 21, 27)]  # MNIST's; colour, sides multiples of 4; colour, odd sides


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x20x24", "3x21x27"])
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_forward_shape_backward(make_cfg, preset, shape):
    cfg = make_cfg("train", [f"model={preset}"])
    torch.manual_seed(0)
    if cfg.model.builder == "vqvae" and shape[1] % 4:
        with pytest.raises(UserError, match="multiples of 4.*these are 21x27"):
            build(cfg.model.builder, in_shape=shape, **builder_args(cfg.model))
        return
    model = build(cfg.model.builder, in_shape=shape, **builder_args(cfg.model))
    assert model.in_shape == shape
    x = torch.rand(5, *shape)
    if model.fitted:
        model.fit(torch.rand(100, *shape))
    recon, code = model(x)
    assert recon.shape == x.shape
    assert code.shape == (5, model.code_dim)
    assert torch.isfinite(recon).all() and torch.isfinite(code).all()
    params = [p for p in model.parameters() if p.requires_grad]
    if params:  # trained by gradient descent: every parameter gets a finite gradient from the training loss
        reconstruction, terms = loss_terms(model, x, x, Objective.of(cfg, model), torch.Generator().manual_seed(0))
        sum(terms.values(), reconstruction).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def test_deep_preset_is_the_assignment_architecture(make_cfg):
    model = build("mlp", **builder_args(make_cfg("train", ["model=deep"]).model))
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 256, 128, 30, 128, 256, 784]


@pytest.mark.parametrize("hidden", [64, 128, 256])
def test_shallow_hidden_sets_the_code(make_cfg, hidden):
    model = build("mlp", **builder_args(make_cfg("train", ["model=shallow", f"model.hidden={hidden}"]).model))
    assert model.code_dim == hidden
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [hidden, 784]


def test_output_and_code_activation_options(make_cfg):
    cfg = make_cfg("train", ["model=deep", "model.code_activation=none", "model.output_activation=sigmoid"])
    model = build("mlp", **builder_args(cfg.model))
    assert isinstance(model.encoder[-1], torch.nn.Identity)
    assert isinstance(model.decoder[-1], torch.nn.Sigmoid)


def test_unknown_activation_and_builder_are_user_errors():
    with pytest.raises(UserError, match="allowed: relu, sigmoid, tanh, none"):
        build("mlp", code=8, output_activation="softplus")
    with pytest.raises(UserError, match="registered: conv, mlp, pca"):
        build("transformer")


def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(0)
    # correlated data with a clear spectrum, so the top-k subspace is well defined
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 784)) + 0.01 * rng.normal(size=(500, 784))
    k = 5
    pca = PCA(k).fit(torch.from_numpy(x).float().view(-1, 1, 28, 28))

    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    v = vt[:k].T
    ref_recon = centred @ v @ v.T + x.mean(0)
    recon, code = pca(torch.from_numpy(x).float().view(-1, 1, 28, 28))

    np.testing.assert_allclose(pca.explained_variance.numpy(), s[:k] ** 2 / (len(x) - 1), rtol=1e-4)
    np.testing.assert_allclose(recon.view(500, -1).double().numpy(), ref_recon, atol=1e-4)
    # the same subspace, whatever the signs of the eigenvectors
    np.testing.assert_allclose(pca.components.double().numpy() @ pca.components.double().numpy().T, v @ v.T, atol=1e-5)


@pytest.mark.parametrize("upsample", ["unpool", "deconv", "unpool_deconv"])
@pytest.mark.parametrize("batch", [1, 7, 256])
def test_conv_decoders_take_any_batch_size(upsample, batch):
    model = build("conv", upsample=upsample)
    recon, code = model(torch.rand(batch, 1, 28, 28))
    assert recon.shape == (batch, 1, 28, 28) and code.shape == (batch, 16 * 3 * 3)
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 7  # the assignment's seven convolutional layers


def test_the_three_conv_decoders_differ_only_in_upsampling():
    sizes = {up: sum(p.numel() for p in build("conv", upsample=up).parameters()) for up in ("unpool", "deconv", "unpool_deconv")}
    assert len(set(sizes.values())) == 1, sizes


@pytest.mark.parametrize("upsample", ["unpool", "deconv", "unpool_deconv"])
@pytest.mark.parametrize("activation", ["relu", "none"])
def test_pooling_before_the_activation_is_the_textbook_network_exactly(upsample, activation):
    """The deconv encoder pools before its activation (cheaper); outputs and every gradient must be those of
    convolution - activation - pooling, bit for bit, on inputs that leave many windows all negative (which is
    where the pooling indices differ, so the unpooling decoders keep the textbook order)."""
    torch.manual_seed(0)
    model = build("conv", upsample=upsample, activation=activation)
    assert model.pool_first == (upsample == "deconv")
    x = torch.randn(64, 1, 28, 28)  # half the pixels negative: many windows pool a value <= 0

    def textbook(x: torch.Tensor) -> torch.Tensor:
        h, side = x.contiguous(memory_format=torch.channels_last), []
        for conv in model.encoder:
            h = conv(h)
            h = torch.relu(h) if activation == "relu" else h
            size = h.shape
            h, indices = torch.nn.functional.max_pool2d(h, 2, return_indices=True)
            side.append((indices, size))
        return model.decode_with_side(h, side)

    grads = []
    for forward in (textbook, lambda x: model.decode_with_side(*model.encode_with_side(x))):
        model.zero_grad()
        out = forward(x)
        ((out - x) ** 2).mean().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (ref, ref_grads), (out, out_grads) = grads
    assert torch.equal(ref, out)
    assert all(torch.equal(a, b) for a, b in zip(ref_grads, out_grads))
    assert all(g.abs().sum() > 0 for g in out_grads)  # every layer learns: the comparison is not of zeros


def test_sigmoid_and_tanh_conv_encoders_keep_the_textbook_order():
    # the deconv decoder, where a ReLU encoder pools first: only the activation keeps these in the textbook order
    assert build("conv", upsample="deconv").pool_first
    assert not build("conv", upsample="deconv", activation="sigmoid").pool_first
    assert not build("conv", upsample="deconv", activation="tanh").pool_first


def test_unpooling_puts_values_back_where_the_maxima_were():
    # a decoder with identity-like layers is hard to build; check the mechanism the model relies on
    model = build("conv", upsample="unpool")
    x = torch.rand(3, 1, 28, 28)
    z, pooled = model.encode_with_side(x)
    indices, size = pooled[-1]
    restored = model.unpool(z, indices, output_size=size)
    assert restored.shape[-2:] == (7, 7)  # the 7 -> 3 floor undone
    assert torch.equal(torch.nn.functional.max_pool2d(restored, 2), z)


def test_model_presets_set_their_training_defaults_and_the_command_line_wins(make_cfg):
    conv = make_cfg("train", ["model=conv_deconv"])
    assert (conv.epochs, conv.optimizer.lr, conv.model.upsample) == (5, 1e-3, "deconv")
    sparse = make_cfg("train", ["model=sparse"])
    assert (sparse.epochs, sparse.sparsity, sparse.model.code) == (5, 4e-6, 1156)
    typed = make_cfg("train", ["model=sparse", "sparsity=1.5e-6", "epochs=2"])
    assert (typed.sparsity, typed.epochs) == (1.5e-6, 2)
    assert make_cfg("train", ["model=deep"]).epochs == 10


@pytest.mark.parametrize("preset", PRESETS)
def test_checkpoint_round_trip_gives_the_same_outputs(make_cfg, preset, tmp_path):
    from aerun import checkpoint as ckpt

    cfg = make_cfg("train", [f"model={preset}"])
    args = builder_args(cfg.model)
    torch.manual_seed(1)
    model = build(cfg.model.builder, **args)
    if model.fitted:
        model.fit(torch.rand(100, 1, 28, 28))
    saved = ckpt.make(model=model, preset=preset, builder=cfg.model.builder, args=args, config={}, epoch=1, step=1)
    ckpt.save(saved, tmp_path / "c.pt")
    again = ckpt.rebuild(torch.load(tmp_path / "c.pt", weights_only=True))
    x = torch.rand(3, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], again(x)[0])


EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_to_a_valid_config(make_cfg, experiment):
    from aerun.validate import check_train

    check_train(make_cfg("train", [f"experiment={experiment}"]))


def test_experiments_carry_the_assignment_values(make_cfg):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sweeps = {e: compose("train", [f"experiment={e}"], return_hydra_config=True).hydra.sweeper.params
                  for e in ("pca_vs_ae", "standard", "sparse", "denoising", "conv")}
    GlobalHydra.instance().clear()
    assert sweeps["standard"]["model.hidden"] == "64,128,256"
    assert sweeps["sparse"]["sparsity"] == "4e-6,1.5e-6,0.6e-6"
    assert sweeps["denoising"]["noise.level"] == "0.3,0.5,0.8,0.9"
    assert sweeps["conv"]["model"] == "conv_unpool,conv_deconv,conv_unpool_deconv"
    assert sweeps["pca_vs_ae"]["model"] == "pca,deep"
    denoising = make_cfg("train", ["experiment=denoising"])
    assert (denoising.model.code, denoising.epochs, denoising.noise.name) == (256, 5, "gaussian")


def test_pca_top_k_is_the_k_component_fit():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(400, 12)) @ rng.normal(size=(12, 784))).float().view(-1, 1, 28, 28)
    full, five = PCA(784).fit(x), PCA(5).fit(x)
    top = full.top(5)
    assert top.code_dim == 5
    torch.testing.assert_close(top(x)[0], five(x)[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="has 784 components"):
        full.top(785)
