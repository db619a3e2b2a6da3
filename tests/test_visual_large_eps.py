"""Large-ε targeted adversarial examples and interpolation (tsipras2019 Figs. 3–4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import data, models
from robustscope.training import TrainConfig, train
from robustscope.visual import (
    VisualError,
    choose_targets,
    interpolate,
    interpolation,
    large_eps_examples,
    paper_eps,
)

TINY = models.create("mlp", 3, (1, 4, 4), widths=(8,))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    eps=st.floats(0.01, 3.0),
    norm=st.sampled_from(["l2", "linf"]),
    seed=st.integers(0, 10_000),
    steps=st.integers(1, 6),
)
def test_every_example_is_in_the_ball_and_the_box(
    n: int, eps: float, norm: str, seed: int, steps: int
) -> None:
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    y = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed + 1))
    res = large_eps_examples(TINY, x, y, eps=eps, norm=norm, steps=steps)
    delta = (res.x_adv - x).flatten(1).double()
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((dist <= eps * (1 + 1e-5) + 1e-6).all()), (dist, eps)
    assert torch.allclose(res.distance, dist)
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert bool((res.targets != res.labels).all())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), steps=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_interpolation_endpoints_are_exact(n: int, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, x_adv = torch.rand(n, 3, 5, 5, generator=g), torch.rand(n, 3, 5, 5, generator=g)
    alphas, path = interpolate(x, x_adv, steps)
    assert path.shape == (n, steps, 3, 5, 5) and alphas.shape == (steps,)
    assert torch.equal(path[:, 0], x) and torch.equal(path[:, -1], x_adv)
    assert float(alphas[0]) == 0.0 and float(alphas[-1]) == 1.0
    mid = (1 - alphas[1]) * x.double() + alphas[1] * x_adv.double()
    assert torch.allclose(path[:, 1].double(), mid, atol=1e-6)


def test_the_paper_eps_and_its_scaling_rule() -> None:
    assert paper_eps("l2", (1, 28, 28)) == 4.0 and paper_eps("linf", (1, 28, 28)) == 0.3
    assert paper_eps("l2", (3, 32, 32)) == 4.7 and paper_eps("linf", (3, 32, 32)) == 0.125
    assert paper_eps("l2", (3, 224, 224)) == 40.0 and paper_eps("linf", (3, 224, 224)) == 0.25
    # the ℓ2 radius keeps the paper's per-coordinate RMS change; ℓ∞ is per pixel
    assert paper_eps("l2", (1, 8, 8)) == pytest.approx(4.0 * math.sqrt(64 / 784))
    assert paper_eps("linf", (1, 8, 8)) == 0.3
    assert paper_eps("l2", (3, 64, 64)) == pytest.approx(4.7 * 2)  # nearest: CIFAR-10
    assert paper_eps("l2", (3, 112, 112)) == pytest.approx(40.0 / 2)  # nearest: ImageNet
    with pytest.raises(VisualError, match="pass eps"):
        paper_eps("l2", (10,))
    with pytest.raises(VisualError, match="norm"):
        paper_eps("l1", (1, 28, 28))


@pytest.fixture(scope="module")
def digits_model() -> nn.Module:
    cfg = TrainConfig(
        dataset="digits", model="mlp", model_kwargs={"widths": [32]}, epochs=2, seed=0
    )
    return train(cfg, None, progress=False, log=None).model


def test_targeted_examples_reach_their_target(digits_model: nn.Module) -> None:
    test = data.load("digits", "test").head(20)
    res = large_eps_examples(digits_model, test.x, test.y, norm="l2", steps=40)
    assert res.eps == pytest.approx(paper_eps("l2", (1, 8, 8)))
    assert torch.equal(res.targets, (test.y + 1) % 10)
    # the attack is targeted: every example's target became more likely, and most examples
    # end in *their* target class (an untargeted attack would hit it about 1 time in 9)
    clean = torch.softmax(digits_model(test.x).detach().double(), 1)[torch.arange(20), res.targets]
    assert bool((res.target_prob > clean).all())
    assert float(res.success.double().mean()) >= 0.5, res.predicted
    runner = choose_targets(digits_model, test.x, test.y, "runner-up")
    logits = digits_model(test.x).detach()
    logits[torch.arange(20), test.y] = -math.inf
    assert torch.equal(runner, logits.argmax(1))
    path = interpolation(digits_model, res, steps=5)
    assert path.probs.shape == (20, 5, 10)
    assert torch.allclose(path.probs.sum(2), torch.ones(20, 5, dtype=torch.float64))
    # along the path the target's probability ends where the attack left it
    assert torch.allclose(path.probs[:, -1][torch.arange(20), res.targets], res.target_prob)
    assert torch.equal(path.predicted[:, -1], res.predicted)


def test_bad_targets_are_refused() -> None:
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(VisualError, match="equals"):
        choose_targets(TINY, x, y, 0)
    with pytest.raises(VisualError, match="classes 0"):
        choose_targets(TINY, x, y, 7)
    with pytest.raises(VisualError, match="target must be"):
        choose_targets(TINY, x, y, "previous")
