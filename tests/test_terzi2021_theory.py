"""terzi2021's Example 0.4 and Proposition 0.3, checked numerically against the lab's
input-space Fisher (attacks.fisher) and the Fisher attack, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustscope.attacks import create
from robustscope.attacks.fisher import input_fisher_gram
from robustscope.data.box import UNBOUNDED


def binary_logistic(w: torch.Tensor) -> nn.Module:
    """One logit s = wᵀx (the lab reads it as the logits (0, s)): p(1|x) = sigmoid(wᵀx)."""
    model = nn.Linear(len(w), 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w[None])
    model.input_box = UNBOUNDED  # type: ignore[assignment]
    return model


def test_example_0_4_the_fisher_of_a_logistic_model_is_c_w_wT() -> None:
    """terzi2021 Example 0.4: for p(y = 1|x) = sigmoid(wᵀx), F_{z|x} = c w wᵀ with
    c = E_x[p(−1|x) p(1|x)]; so tr F = c ‖w‖² and its only eigenvector is w."""
    g = torch.Generator().manual_seed(0)
    d, n = 7, 50
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    fg = input_fisher_gram(binary_logistic(w), x)
    p1 = torch.sigmoid(x @ w)
    per_example = (p1 * (1 - p1))[:, None, None] * torch.outer(w, w)  # p(−1|x) p(1|x) w wᵀ
    # the lab's F_x per example, rebuilt from its Gram form: Gᵀ diag(p) G
    grads = fg.grads.reshape(n, 2, d)
    dense = torch.einsum("nk,nki,nkj->nij", fg.probs, grads, grads)
    torch.testing.assert_close(dense, per_example, rtol=1e-10, atol=1e-12)
    c = float((p1 * (1 - p1)).mean())
    torch.testing.assert_close(dense.mean(0), c * torch.outer(w, w), rtol=1e-10, atol=1e-12)
    assert float(fg.trace.mean()) == pytest.approx(c * float(w @ w), rel=1e-10)
    cos = (fg.top_eigenvector.reshape(n, d) @ w).abs() / w.norm()
    assert torch.all(cos > 1 - 1e-10)  # rank one, along w
    assert torch.all(fg.eigenvalues[:, 1].abs() < 1e-10 * fg.eigenvalues[:, 0])


def _kl(model: nn.Module, x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """KL(p(·|x2) ‖ p(·|x)) per example (the proposition's direction)."""
    lp, lq = model(x2).log_softmax(1), model(x).log_softmax(1)
    return (lp.exp() * (lp - lq)).sum(1)


def test_proposition_0_3_the_worst_small_perturbation_costs_half_eps2_lambda1() -> None:
    """terzi2021 Prop. 0.3: max_{‖δ‖₂ = ε} KL(p(·|x + δ) ‖ p(·|x)) ≈ ½ ε² λ₁ for small ε,
    attained along the top eigenvector (the Fisher attack's direction); no random
    direction of the same norm does better."""
    torch.manual_seed(0)
    d = 12
    model = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    model.input_box = UNBOUNDED  # type: ignore[attr-defined]
    x = torch.randn(6, d, dtype=torch.float64)
    fg = input_fisher_gram(model, x)
    lam1 = fg.top_eigenvalue
    eps = 1e-3
    with torch.no_grad():
        attack = create("fisher", model, eps=eps, norm="l2")
        x_adv = attack(x, model(x).argmax(1))
        delta = x_adv - x
        assert torch.allclose(delta.norm(dim=1), torch.full((6,), eps, dtype=torch.float64))
        kl_attack = _kl(model, x, x_adv)
        torch.testing.assert_close(kl_attack, 0.5 * eps**2 * lam1, rtol=2e-3, atol=0)
        g = torch.Generator().manual_seed(1)
        for _ in range(50):
            v = torch.randn(6, d, generator=g, dtype=torch.float64)
            v = eps * v / v.norm(dim=1, keepdim=True)
            assert torch.all(_kl(model, x, x + v) <= kl_attack * (1 + 2e-3))


def test_effective_fisher_and_information_against_dense_float64() -> None:
    """Eq. 9 under Def. 0.6's weight noise, built densely: Σ_z = J_w Σ* J_wᵀ from the full
    weight Jacobian, F_eff = J_xᵀ Σ_z⁻¹ J_x (d × d), its pseudo-determinant and trace."""
    from robustscope import models
    from robustscope.probes.effective import effective_information
    from robustscope.probes.weights import fisher_diagonal

    torch.manual_seed(3)
    model = models.create("mlp", 3, (5,), widths=[4], activation="tanh").double()
    x_train = torch.randn(20, 5, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    beta, lam = 0.01, 1.0
    res = effective_information(
        model, x, train=(x_train, torch.zeros(20, dtype=torch.long)), beta=beta, lam=lam
    )
    diag = fisher_diagonal(model, x_train)  # Def. 0.5's Σ*, written out by hand:
    var = {k: (beta / 2) / (f + beta / (2 * lam**2)) for k, f in diag.items()}
    names = [n for n, _ in model.named_parameters()]
    for i in range(3):
        xi = x[i : i + 1]
        z = model.features(xi)[0]
        m = len(z)
        jw = torch.zeros(m, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
        jx = torch.zeros(m, 5, dtype=torch.float64)
        for k in range(m):
            model.zero_grad()
            xr = xi.clone().requires_grad_(True)
            model.features(xr)[0, k].backward()
            jw[k] = torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                    for p in model.parameters()
                ]
            )
            jx[k] = xr.grad.reshape(-1)
        sigma = torch.cat([var[n].reshape(-1) for n in names])
        cov = jw @ torch.diag(sigma) @ jw.T
        f_eff = jx.T @ torch.linalg.inv(cov) @ jx  # 5 × 5, rank ≤ 4
        ev = torch.linalg.eigvalsh(f_eff)
        nonzero = ev[ev > 1e-10 * ev.max()]
        assert int(res.rank[i]) == len(nonzero) == 4
        assert res.log_det[i] == pytest.approx(0.5 * float(nonzero.log().sum()), rel=1e-8)
        assert res.trace[i] == pytest.approx(float(f_eff.trace()), rel=1e-8)
        assert res.noise_trace[i] == pytest.approx(float(cov.trace()), rel=1e-8)
        expected = 0.5 * float(nonzero.log().sum()) - 2 * math.log(2 * math.pi * math.e)
        assert res.information[i] == pytest.approx(float(expected), rel=1e-8)
    assert res.split == "train" and res.feature_dim == 4 and res.input_dim == 5
    # more weight noise (larger β) hides more of x: less effective information
    noisier = effective_information(
        model, x, train=(x_train, torch.zeros(20, dtype=torch.long)), beta=10 * beta, lam=lam
    )
    assert (noisier.information < res.information).all()
