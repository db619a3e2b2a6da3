"""wen2020's spectral complexity (Def. 7) and loss variation (B.5), against float64 brute force."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustscope import data, models, plugins
from robustscope.errors import ProbeError
from robustscope.probes import loss_variation, spectral_complexity
from robustscope.probes.base import ProbeData
from robustscope.probes.registry import get_probe, run_probe
from robustscope.training import TrainConfig, train

# ------------------------------------------------------------------ spectral complexity


def _dense_operator(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """The layer's matrix written out column by column: the layer (bias dropped) applied to
    every basis vector of its input space, in float64."""
    w = module.weight.detach().double()
    if isinstance(module, nn.Linear):
        return w
    assert isinstance(module, nn.Conv2d) and module.padding_mode == "zeros"
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    out = F.conv2d(basis, w, None, module.stride, module.padding, module.dilation, module.groups)
    return out.reshape(n, -1).T


def _reached_layers(model: nn.Module, shape: tuple[int, ...]) -> dict[str, tuple[nn.Module, tuple]]:
    """Every Linear/Conv2d layer the forward pass calls, by name, with its input shape."""
    seen: dict[str, tuple[nn.Module, tuple]] = {}

    def hook(name: str) -> Any:
        def record(m: nn.Module, i: tuple[torch.Tensor, ...], o: Any) -> None:
            seen.setdefault(name, (m, tuple(i[0].shape[1:])))

        return record

    hooks = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return seen


def _randomized(name: str, shape: tuple[int, ...], **kw: Any) -> nn.Module:
    torch.manual_seed(0)
    model = models.create(name, 10, shape, **kw)
    with torch.no_grad():  # Fixup starts some layers at zero: give every layer a spectrum
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                m.weight.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("cnn", {"width": 0.25}),
        ("vgg_small", {"width": 0.25, "variant": "half_linear"}),
        ("fixup_resnet", {"depth": 8, "width": 0.25, "scalars": False}),
        ("mlp", {"widths": [7, 5]}),
    ],
)
def test_spectral_complexity_is_the_product_of_dense_spectral_norms(
    name: str, kw: dict[str, Any]
) -> None:
    shape = (1, 8, 8)
    model = _randomized(name, shape, **kw)
    layers = _reached_layers(model, shape)
    norms = {
        name: float(torch.linalg.matrix_norm(_dense_operator(m, s), ord=2))
        for name, (m, s) in layers.items()
    }
    res = spectral_complexity(model, shape)
    assert res.n_layers == len(layers) and set(res.layer_norm) == set(norms)
    for name, value in norms.items():
        assert res.layer_norm[name] == pytest.approx(value, rel=1e-7), name
    norms = list(norms.values())
    assert res.value == pytest.approx(math.prod(norms), rel=1e-6)
    assert res.log_value == pytest.approx(sum(math.log(v) for v in norms), rel=1e-7, abs=1e-7)
    scalars = res.scalars()
    assert scalars["value"] == res.value and scalars["n_layers"] == len(layers)
    assert f"layer_norm/{next(iter(res.layer_norm))}" in scalars


def test_spectral_complexity_log_survives_overflow_and_zero_layers() -> None:
    model = _randomized("mlp", (6,), widths=[8] * 11)  # 12 layers of norm ≈ 1e30 each
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(1e30)
    res = spectral_complexity(model, (6,))
    assert res.n_layers == 12
    assert math.isinf(res.value) and math.isfinite(res.log_value) and res.log_value > 700
    with torch.no_grad():
        model.head.weight.zero_()
    assert spectral_complexity(model, (6,)).log_value == -math.inf


def test_spectral_complexity_registered_weight_probe_and_tracked() -> None:
    info = get_probe("spectral_complexity")
    assert info.splits == () and info.tracked and "tol" in info.options
    model = _randomized("cnn", (1, 8, 8), width=0.25)
    x = torch.rand(3, 1, 8, 8)
    res = run_probe("spectral_complexity", model, ProbeData(test=(x, torch.zeros(3).long())))
    assert res.scalars()["n_layers"] == 4
    with pytest.raises(ProbeError, match="tol must be > 0"):
        spectral_complexity(model, (1, 8, 8), tol=0)
    plugins.load()
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        model_kwargs={"widths": [16]},
        epochs=1,
        train_subset=64,
        test_subset=50,
        device="cpu",
        track=["spectral_complexity", "cckl"],
        track_n=40,
    )
    row = train(cfg, None, progress=False, log=None).history[-1]
    for split in ("train", "test"):
        assert math.isfinite(row[f"track/{split}/spectral_complexity_log_value"])
        assert row[f"track/{split}/cckl_value"] > 0  # shi2020 Fig. 2's CCKL, per epoch


# ------------------------------------------------------------------------ loss variation


def test_loss_variation_is_exact_for_a_binary_linear_model() -> None:
    """Two classes, a linear model: CE = softplus(−m) with m = dᵀx + c, d = w_y − w_other,
    so the loss is largest at x′_j = clip(x_j − ε·sign(d_j), 0, 1), written out here."""
    torch.manual_seed(0)
    model = models.create("linear", 2, (1, 2, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=gen)
    w, b = model.head.weight.detach(), model.head.bias.detach()
    flat = x.reshape(40, -1)
    torch.testing.assert_close(model(x), flat @ w.T + b)
    eps = 0.1
    d = w[y] - w[1 - y]  # [N, 6]
    c = b[y] - b[1 - y]
    x_worst = (flat - eps * d.sign()).clamp(0, 1)
    delta = F.softplus(-((d * x_worst).sum(1) + c)) - F.softplus(-((d * flat).sum(1) + c))
    res = loss_variation(model, x, y, eps=eps, steps=10)
    torch.testing.assert_close(res.variation, delta, rtol=1e-9, atol=1e-12)
    ref = delta.numpy()
    assert res.mean == pytest.approx(ref.mean(), rel=1e-9)
    assert res.std == pytest.approx(ref.std(ddof=0), rel=1e-9)
    assert res.max == pytest.approx(ref.max(), rel=1e-9)
    correct = ((flat @ w.T + b).argmax(1) == y).numpy()
    assert res.n == 40 and res.n_correct == int(correct.sum())
    assert res.mean_correct == pytest.approx(ref[correct].mean(), rel=1e-9)
    assert res.std_wrong == pytest.approx(ref[~correct].std(ddof=0), rel=1e-9)


def test_loss_variation_registered_and_zero_at_zero_eps() -> None:
    test = data.load("digits", "test").head(30)
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16])
    res = run_probe("loss_variation", model, ProbeData(test=(test.x, test.y)), eps="0.1", steps=3)
    scalars = res.scalars()
    assert scalars["eps"] == pytest.approx(0.1) and scalars["n"] == 30 and scalars["std"] >= 0
    assert res.arrays()["variation"].shape == (30,)
    assert bool((res.arrays()["variation"] > -1e-9).all())  # the attack raises the loss
    zero = loss_variation(model, test.x, test.y, eps=0.0, steps=2)
    assert zero.mean == 0 and zero.std == 0
    with pytest.raises(ProbeError, match="minimal-norm"):
        loss_variation(model, test.x, test.y, attack="deepfool", eps=0.1)
    with pytest.raises(ProbeError, match="eps must be finite"):
        loss_variation(model, test.x, test.y, eps=-1.0)
