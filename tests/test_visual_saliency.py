"""Loss-gradient saliency (tsipras2019 Fig. 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustscope import models
from robustscope.visual import VisualError, display_map, loss_gradient, saliency


def test_a_linear_model_has_the_analytic_gradient() -> None:
    # logits = W x + b: ∇ₓ CE = Wᵀ (softmax(Wx + b) − e_y), per example
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(12, 4).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(4, 12, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(5, 1, 3, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    w, b = lin.weight.detach(), lin.bias.detach()
    p = torch.softmax(x.flatten(1) @ w.T + b, dim=1)
    want = ((p - F.one_hot(y, 4).double()) @ w).reshape(x.shape)
    got = loss_gradient(model, x, y, batch_size=2)
    assert torch.allclose(got, want, atol=1e-12)
    res = saliency(model, x, y)
    assert torch.allclose(res.gradient, want, atol=1e-12)
    assert torch.equal(res.predicted, p.argmax(1))


def test_maps_have_the_input_shape_and_lie_in_the_unit_range() -> None:
    model = models.create("cnn", 10, (1, 28, 28))
    model.train()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    res = saliency(model, x, torch.tensor([1, 2, 3]))
    assert res.gradient.shape == res.display.shape == x.shape
    assert float(res.display.min()) >= 0.0 and float(res.display.max()) <= 1.0
    assert model.training  # the mode is restored
    # each example uses its own σ: the clip points ±3σ land on 0 and 1 when reached
    flat = res.gradient.flatten(1).double()
    for i in range(3):
        s = float(flat[i].std(unbiased=False))
        assert float(res.sigma[i]) == pytest.approx(s)
        inside = flat[i].abs() < 3 * s
        want = (flat[i][inside] + 3 * s) / (6 * s)
        assert torch.allclose(res.display[i].flatten().double()[inside], want, atol=1e-6)


def test_the_display_map_clips_at_three_sigma_and_centres_zero() -> None:
    g = torch.tensor([[0.0] * 98 + [100.0, -100.0]])
    m = display_map(g)
    sigma = float(g.std(unbiased=False))
    assert float(m[0, 98]) == 1.0 and float(m[0, 99]) == 0.0 and float(m[0, 0]) == 0.5
    assert 3 * sigma < 100  # the two outliers were clipped
    assert torch.equal(display_map(torch.zeros(2, 5)), torch.full((2, 5), 0.5))
    # scaling a gradient does not change its display
    r = torch.randn(2, 30, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(display_map(r), display_map(7 * r), atol=1e-6)


def test_bad_labels_are_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(VisualError, match="labels"):
        loss_gradient(model, torch.rand(2, 1, 2, 2), torch.tensor([0]))
