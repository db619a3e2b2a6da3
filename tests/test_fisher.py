"""Input-space Fisher information (shi2020 eq. 6) and the Fisher attack (Zhao et al. 2018)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import models
from robustscope.attacks.fisher import (
    FisherAttack,
    fisher_top,
    input_fisher_gram,
    input_fisher_power,
    input_fisher_quadratic_form,
)
from robustscope.attacks.losses import ce_loss
from robustscope.attacks.registry import create as create_attack
from robustscope.data import load
from robustscope.data.box import UNIT
from robustscope.errors import RobustscopeError
from robustscope.training import TrainConfig, train

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def tiny_model(seed: int, d: int, k: int, hidden: int = 8, act: str = "tanh") -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(d, hidden)]
    layers += [nn.Tanh() if act == "tanh" else nn.ReLU(), nn.Linear(hidden, k)]
    model = nn.Sequential(*layers)
    with torch.no_grad():  # larger weights: a spread of probabilities, not all ≈ 1/K
        for p in model.parameters():
            p.mul_(2.0)
    return model


def brute_force_fisher(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The full d×d F_x = Σ_j p_j g_j g_jᵀ per example, float64, from the autograd Jacobian."""
    out = []
    for xi in x:

        def logp(t: torch.Tensor) -> torch.Tensor:
            z = model(t[None])
            if z.shape[1] == 1:
                z = torch.cat([torch.zeros_like(z), z], 1)
            return F.log_softmax(z, 1)[0]

        jac = torch.autograd.functional.jacobian(logp, xi.double()).reshape(-1, xi.numel())
        p = logp(xi.double()).exp().detach()
        out.append(jac.T @ torch.diag(p) @ jac)
    return out


def assert_matches_reference(model: nn.Module, x: torch.Tensor, rtol: float) -> None:
    fg = input_fisher_gram(model, x)
    ref_model = model.double() if x.dtype == torch.float32 else model
    refs = brute_force_fisher(ref_model, x.double())
    if x.dtype == torch.float32:
        model.float()
    for i, fx in enumerate(refs):
        ev, evec = torch.linalg.eigh(fx)
        ev = ev.flip(0)
        scale = max(float(ev[0]), 1e-30)
        k = fg.eigenvalues.shape[1]
        m = min(k, len(ev))
        atol = rtol * scale
        # the top min(K, d) eigenvalues agree; all other eigenvalues of both are zero
        torch.testing.assert_close(fg.eigenvalues[i, :m], ev[:m], rtol=rtol, atol=atol)
        assert all(abs(float(e)) <= atol for e in fg.eigenvalues[i, m:])
        assert all(abs(float(e)) <= atol for e in ev[m:])
        torch.testing.assert_close(
            fg.frobenius[i], torch.linalg.matrix_norm(fx), rtol=rtol, atol=atol
        )
        torch.testing.assert_close(fg.trace[i], fx.trace(), rtol=rtol, atol=atol)
        # the top eigenvector: an eigenvector of λ_max, and ± the reference's when λ₁ is simple
        v = fg.top_eigenvector[i].reshape(-1).double()
        assert abs(float(v.norm()) - 1.0) < 10 * rtol
        fv = fx @ v
        assert float((fv - ev[0] * v).norm()) <= 10 * rtol * scale
        gap = float(ev[0] - ev[1]) / scale if len(ev) > 1 else 1.0
        if gap > 1e-3:
            ref = evec[:, -1]
            err = min(float((v - ref).norm()), float((v + ref).norm()))
            assert err <= 10 * rtol / gap


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from([(3,), (7,), (1, 4, 4), (2, 3, 3), (1, 8, 8)]),
    k=st.integers(1, 5),
    act=st.sampled_from(["tanh", "relu"]),
)
def test_gram_matches_brute_force_float64(
    seed: int, shape: tuple[int, ...], k: int, act: str
) -> None:
    d = int(torch.tensor(shape).prod())
    model = tiny_model(seed, d, k, act=act).double()
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_matches_reference(model, x, rtol=1e-8)


@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5))
def test_gram_matches_brute_force_float32(seed: int, k: int) -> None:
    model = tiny_model(seed, 16, k)
    x = torch.rand((3, 1, 4, 4), generator=torch.Generator().manual_seed(seed))
    assert_matches_reference(model, x, rtol=1e-5)


def test_gram_on_conv_model_matches_brute_force() -> None:
    torch.manual_seed(0)
    model = models.create("smallcnn", 10, (1, 8, 8), width=0.25).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    assert_matches_reference(model, x, rtol=1e-8)


def test_spectral_identities_and_shapes() -> None:
    model = tiny_model(1, 12, 4)
    x = torch.rand(5, 3, 4)
    fg = input_fisher_gram(model, x)
    assert fg.probs.shape == (5, 4) and fg.grads.shape == (5, 4, 3, 4)
    assert fg.gram.shape == (5, 4, 4) and fg.gram.dtype == torch.float64
    ev = fg.eigenvalues
    assert bool((ev[:, :-1] >= ev[:, 1:]).all()) and bool((ev >= 0).all())
    # rank ≤ K − 1: Gᵀp = Σ_j ∇p_j = 0, so M √p = 0
    assert float(ev[:, -1].max()) <= 1e-6 * float(ev[:, 0].max())
    torch.testing.assert_close(fg.trace, ev.sum(1))
    torch.testing.assert_close(fg.frobenius, ev.pow(2).sum(1).sqrt())
    torch.testing.assert_close(fg.spectral_norm, ev[:, 0])
    v = fg.top_eigenvector
    assert v.shape == x.shape and v.dtype == x.dtype
    torch.testing.assert_close(fg.quadratic_form(v), ev[:, 0], rtol=1e-5, atol=1e-12)
    # the sign rule: the entry of largest magnitude is positive
    flat = v.reshape(5, -1)
    assert bool((flat.gather(1, flat.abs().argmax(1, keepdim=True)) > 0).all())
    vecs = fg.eigenvectors()
    assert vecs.shape == (5, 4, 3, 4)
    gram_of_vecs = torch.einsum("nid,njd->nij", vecs.flatten(2), vecs.flatten(2))
    eye = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    torch.testing.assert_close(gram_of_vecs[:, :3, :3], eye, atol=1e-6, rtol=0)


def test_grad_methods_agree_and_binary_model() -> None:
    model = tiny_model(2, 12, 1)  # one logit: a binary score
    x = torch.rand(4, 12)
    a = input_fisher_gram(model, x)
    b = input_fisher_gram(model, x, grad_method="batched")
    torch.testing.assert_close(a.gram, b.gram)
    assert a.probs.shape == (4, 2)
    # two classes: rank one, λ = p(1 − p)‖∇s‖²
    assert float(a.eigenvalues[:, 1].abs().max()) < 1e-10
    assert_matches_reference(model, x, rtol=1e-5)


def test_empty_batch() -> None:
    fg = input_fisher_gram(tiny_model(0, 6, 3), torch.rand(0, 6))
    assert fg.gram.shape == (0, 3, 3) and fg.eigenvalues.shape == (0, 3)
    assert fg.top_eigenvector.shape == (0, 6)


def test_model_state_restored() -> None:
    model = tiny_model(3, 12, 3)
    model.train()
    x = torch.rand(2, 12)
    input_fisher_gram(model, x)
    input_fisher_power(model, x, iters=3)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5))
def test_power_method_agrees_with_exact(seed: int, k: int) -> None:
    model = tiny_model(seed, 16, k).double()
    x = torch.rand((2, 1, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fg = input_fisher_gram(model, x)
    ev = fg.eigenvalues
    # power iteration converges like (λ₂/λ₁)^t: require a usable gap
    assume(bool((ev[:, 1] < 0.9 * ev[:, 0]).all()) and float(ev[:, 0].min()) > 1e-8)
    pt = input_fisher_power(model, x, iters=400, tol=1e-14, seed=seed)
    torch.testing.assert_close(pt.eigenvalue, ev[:, 0], rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(pt.eigenvector, fg.top_eigenvector, rtol=0, atol=1e-4)
    top = fisher_top(model, x, "power", iters=400, seed=seed)
    torch.testing.assert_close(top.eigenvalue, ev[:, 0], rtol=1e-5, atol=1e-14)


def test_power_method_is_independent_of_the_batch() -> None:
    # each example stops on its own and the start does not depend on the batch: an example's
    # result is the same alone, in a batch, and at another position of another batch
    model = tiny_model(4, 12, 4).double()
    x = torch.rand((5, 12), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    batch = input_fisher_power(model, x, iters=300, tol=1e-9, seed=2)
    for i in range(len(x)):
        alone = input_fisher_power(model, x[i : i + 1], iters=300, tol=1e-9, seed=2)
        torch.testing.assert_close(
            alone.eigenvalue, batch.eigenvalue[i : i + 1], rtol=1e-12, atol=0
        )
        torch.testing.assert_close(
            alone.eigenvector, batch.eigenvector[i : i + 1], rtol=0, atol=1e-12
        )
    order = torch.tensor([3, 1, 4])
    other = input_fisher_power(model, x[order], iters=300, tol=1e-9, seed=2)
    torch.testing.assert_close(other.eigenvalue, batch.eigenvalue[order], rtol=1e-12, atol=0)
    state = torch.random.get_rng_state()
    input_fisher_power(model, x, iters=3, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())  # a seed never touches the global RNG


def test_quadratic_form_by_jvp_matches_brute_force() -> None:
    model = tiny_model(6, 8, 5).double()
    gen = torch.Generator().manual_seed(6)
    x = torch.rand((3, 8), generator=gen, dtype=torch.float64)
    v = torch.randn((3, 8), generator=gen, dtype=torch.float64)
    q, logp = input_fisher_quadratic_form(model, x, v)
    for i, fx in enumerate(brute_force_fisher(model, x)):
        assert float(q[i]) == pytest.approx(float(v[i] @ fx @ v[i]), rel=1e-10)
    torch.testing.assert_close(q, input_fisher_gram(model, x).quadratic_form(v).cpu())
    assert logp.shape == (3, 5) and torch.allclose(
        logp.exp().sum(1), torch.ones(3, dtype=torch.float64)
    )


def test_unknown_method_refused() -> None:
    with pytest.raises(RobustscopeError, match="gram"):
        method: Any = "lanczos"
        fisher_top(tiny_model(0, 4, 3), torch.rand(1, 4), method)
    with pytest.raises(RobustscopeError, match="method"):
        FisherAttack(tiny_model(0, 4, 3), 0.1, method="lanczos", box=UNIT)


# --------------------------------------------------------------------------- FisherAttack


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=3, device="cpu")
    model = train(cfg, None, progress=False, log=None).model.eval()
    ds = load("digits", "test")
    return model, ds.x[:96].float(), ds.y[:96].long()


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    norm=st.sampled_from(["l2", "linf"]),
    eps=st.floats(0.0, 2.0),
    steps=st.integers(1, 3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_fisher_attack_properties(
    seed: int, norm: str, eps: float, steps: int, dtype: torch.dtype
) -> None:
    model = tiny_model(seed, 16, 4).to(dtype)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((6, 1, 4, 4), generator=gen, dtype=dtype)
    y = torch.randint(0, 4, (6,), generator=gen)
    atk = FisherAttack(model, eps, norm=norm, steps=steps, seed=seed, box=UNIT)
    x_adv = atk(x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    dist = (x_adv - x).flatten(1)
    dist = dist.norm(dim=1) if norm == "l2" else dist.abs().amax(1)
    assert bool((dist <= eps + 1e-5).all())
    assert torch.equal(atk(x, y), x_adv)  # same seed, same output
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_one_step_direction_is_top_eigenvector(norm: str) -> None:
    model = tiny_model(5, 64, 5)
    x = 0.3 + 0.4 * torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 5, (8,))
    eps = 0.05  # every coordinate moves by ≤ 0.05: no clipping
    x_adv = FisherAttack(model, eps, norm=norm, box=UNIT)(x, y)
    v = input_fisher_gram(model, x).top_eigenvector
    d = v if norm == "l2" else v.sign()
    step = (x_adv - x) / eps
    sign = (step * d).flatten(1).sum(1).sign()
    assert bool((sign != 0).all())
    torch.testing.assert_close(step, sign[:, None, None, None] * d, atol=1e-5, rtol=0)
    # the sign chosen is the one of larger cross-entropy
    other = (x - eps * sign[:, None, None, None] * d).clamp(0, 1)
    with torch.no_grad():
        assert bool((ce_loss(model(x_adv), y) >= ce_loss(model(other), y)).all())


def test_fisher_attack_increases_loss(
    digits_mlp: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_mlp
    with torch.no_grad():
        clean = ce_loss(model(x), y)
    for norm, eps in (("l2", 0.5), ("linf", 0.05)):
        x_adv = FisherAttack(model, eps, norm=norm)(x, y)
        with torch.no_grad():
            adv = ce_loss(model(x_adv), y)
        assert bool((adv > clean).all()), norm
    # a few steps with the power method also stay in the ball and hurt accuracy
    atk = create_attack("fisher", model, eps=1.0, steps=3, method="power", power_iters=50, seed=0)
    x_adv = atk(x, y)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-5
    with torch.no_grad():
        acc_clean = (model(x).argmax(1) == y).float().mean()
        acc_adv = (model(x_adv).argmax(1) == y).float().mean()
    assert float(acc_adv) < float(acc_clean) - 0.3
