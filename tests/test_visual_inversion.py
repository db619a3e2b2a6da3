"""Inversion (terzi2021 eq. 3) and effective images (terzi2021 eq. 10)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustscope import data, models
from robustscope.data.box import UNIT
from robustscope.probes.weights import fisher_diagonal
from robustscope.training import TrainConfig, train
from robustscope.visual import (
    VisualError,
    effective_images,
    effective_noise,
    invert,
    perturbed_copy,
    psnr,
)


class LinearFeatures(nn.Module):
    """features(x) = A · flatten(x), logits = head(features): an invertible representation."""

    def __init__(self, a: torch.Tensor, classes: int = 3) -> None:
        super().__init__()
        self.a = nn.Parameter(a)
        self.head = nn.Linear(a.shape[0], classes)
        self.input_box = UNIT

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.a.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def digits_mlp() -> nn.Module:
    cfg = TrainConfig(
        dataset="digits", model="mlp", model_kwargs={"widths": [32]}, epochs=2, seed=0
    )
    return train(cfg, None, progress=False, log=None).model


@pytest.fixture(scope="module")
def digits() -> tuple[data.ArrayDataset, data.ArrayDataset]:
    return data.load("digits", "train").head(300), data.load("digits", "test").head(6)


def test_inversion_lowers_the_loss(digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    """The property tested: the batch mean of L_inv at the last iterate is below half of
    its value at the start, and the means of consecutive windows of 10 iterations never
    increase (each window's mean ≤ the previous window's)."""
    x = digits[1].x
    z = digits_mlp.features(x).detach()
    res = invert(digits_mlp, z, steps=80, seed=0)
    mean = res.mean_loss
    assert res.loss.shape == (81, len(x)) and res.x.shape == x.shape
    assert float(mean[-1]) < 0.5 * float(mean[0])
    windows = mean[1:].reshape(8, 10).mean(1)
    assert bool((windows[1:] <= windows[:-1]).all()), windows
    assert torch.equal(res.final_loss, res.loss[-1])
    assert float(res.x.min()) >= 0 and float(res.x.max()) <= 1  # projected onto the box
    # the recorded loss is the loss of the returned reconstruction
    again = torch.linalg.vector_norm(digits_mlp.features(res.x) - z, dim=1).double()
    assert torch.allclose(res.final_loss, again, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["identity", "linear"])
def test_an_invertible_linear_representation_recovers_x(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    d = 16
    if kind == "identity":
        a = torch.eye(d)
    else:  # well conditioned: orthogonal × singular values in [0.5, 2] × orthogonal
        u, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        v, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        a = u @ torch.diag(torch.linspace(0.5, 2.0, d)) @ v.T
    model = LinearFeatures(a)
    x = 0.05 + 0.9 * torch.rand(4, 1, 4, 4, generator=g)
    res = invert(model, model.features(x).detach(), input_shape=(1, 4, 4), steps=300, seed=1)
    assert float((res.x - x).abs().max()) < 2e-3
    assert float(psnr(res.x, x).min()) > 50


def test_examples_do_not_depend_on_their_batch(digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[1].x[:3]
    z = digits_mlp.features(x).detach()
    x0 = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    together = invert(digits_mlp, z, x0=x0, steps=30)
    apart = [invert(digits_mlp, z[i : i + 1], x0=x0[i : i + 1], steps=30) for i in range(3)]
    assert torch.allclose(together.x, torch.cat([r.x for r in apart]), atol=1e-5)
    chunked = invert(digits_mlp, z, x0=x0, steps=30, batch_size=2)
    assert torch.allclose(together.x, chunked.x, atol=1e-5)


def test_the_start_is_seeded_noise_around_one_half() -> None:
    model = LinearFeatures(torch.eye(16))
    z = torch.zeros(64, 16)
    a = invert(model, z, input_shape=(1, 4, 4), steps=1, lr=1e-9, sigma=0.1, seed=5)
    b = invert(model, z, input_shape=(1, 4, 4), steps=1, lr=1e-9, sigma=0.1, seed=5)
    c = invert(model, z, input_shape=(1, 4, 4), steps=1, lr=1e-9, sigma=0.1, seed=6)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert abs(float(a.x.mean()) - 0.5) < 0.02 and abs(float(a.x.std()) - 0.1) < 0.02


def test_effective_noise_is_larger_where_the_fisher_is_small() -> None:
    # inputs 0..7 vary in the training set, inputs 8..15 are always 0: the weights reading
    # them have F = 0 and get the largest standard deviation, the floor's cap
    g = torch.Generator().manual_seed(0)
    model = LinearFeatures(torch.randn(6, 16, generator=g))
    x = torch.rand(50, 1, 4, 4, generator=g)
    x.view(50, -1)[:, 8:] = 0
    noise = effective_noise(model, x, beta=1e-6, floor=1e-3)
    f = fisher_diagonal(model, x)["a"]
    std = noise.std["a"]
    dead, live = std[:, 8:], std[:, :8]
    cap = (1e-6 / (1e-3 * noise.fisher_mean)) ** 0.5
    assert bool((f[:, 8:] == 0).all()) and bool((f[:, :8] > 0).all())
    assert torch.allclose(dead, torch.full_like(dead, cap))
    assert float(live.max()) < float(dead.min())
    # within the weights, a smaller Fisher never has a smaller standard deviation
    order = torch.argsort(f.flatten())
    assert bool((std.flatten()[order].diff() <= 1e-15).all())
    # and β sets the level: the standard deviations scale as √β
    noise4 = effective_noise(model, x, beta=4e-6, floor=1e-3)
    assert torch.allclose(noise4.std["a"], 2 * std)


def test_effective_images_leave_the_model_untouched(digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    train_ds, test_ds = digits
    digits_mlp.train()
    before = copy.deepcopy(digits_mlp.state_dict())
    flags = [p.requires_grad for p in digits_mlp.parameters()]
    noise = effective_noise(digits_mlp, train_ds.x, beta=1e-8)
    res = effective_images(digits_mlp, test_ds.x, noise=noise, steps=40, seed=0)
    after = digits_mlp.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert digits_mlp.training and [p.requires_grad for p in digits_mlp.parameters()] == flags
    digits_mlp.eval()
    # the copy was perturbed by n̄ ~ N(0, Σ*): its weights differ by about the noise's scale
    noisy = perturbed_copy(digits_mlp, noise, seed=0)
    diff = dict(noisy.named_parameters())["body.1.weight"] - digits_mlp.body[1].weight
    ratio = float((diff.detach() / noise.std["body.1.weight"].float()).std())
    assert 0.9 < ratio < 1.1
    # the targets moved (shift > 0) and the inversion of the moved targets ran
    assert bool((res.shift > 0).all()) and res.inversion.x.shape == test_ds.x.shape
    assert float(res.inversion.mean_loss[-1]) < float(res.inversion.mean_loss[0])


def test_more_noise_moves_the_targets_further(digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    train_ds, test_ds = digits
    shifts = [
        float(
            effective_images(
                digits_mlp, test_ds.x, train=(train_ds.x, None), beta=b, steps=1, seed=0
            ).shift.mean()
        )
        for b in (1e-10, 1e-8, 1e-6)
    ]
    assert shifts[0] < shifts[1] < shifts[2]


def test_bad_input_is_a_visual_error() -> None:
    model = LinearFeatures(torch.eye(16))
    z = torch.zeros(2, 16)
    with pytest.raises(VisualError, match="steps"):
        invert(model, z, input_shape=(1, 4, 4), steps=0)
    with pytest.raises(VisualError, match="lr"):
        invert(model, z, input_shape=(1, 4, 4), lr="-1")
    with pytest.raises(VisualError, match="input_shape"):
        invert(model, z)
    bare = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(VisualError, match="features"):
        invert(bare, z, input_shape=(1, 4, 4))
    model.input_box = None  # type: ignore[assignment]
    with pytest.raises(VisualError, match="box"):
        invert(model, z, input_shape=(1, 4, 4))
    with pytest.raises(VisualError, match="exactly one"):
        effective_images(models.create("mlp", 3, (1, 4, 4)), torch.rand(2, 1, 4, 4))
