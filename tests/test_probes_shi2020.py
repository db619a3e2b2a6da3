"""shi2020 probes: exact CCKL (eq. 1) with eq. 2's right-hand side, and the G1/G2 Taylor split."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import models
from robustscope.attacks.fisher import input_fisher_quadratic_form
from robustscope.errors import ProbeError
from robustscope.probes import ProbeData, run_probe
from robustscope.probes.cckl import cckl
from robustscope.probes.taylor import taylor_split


def _model(k: int = 4, d: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = models.create("mlp", k, (d,), widths=(8,)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m


def _data(n: int, d: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, dtype=torch.float64, generator=g), torch.randint(
        0, k, (n,), generator=g
    )


def _brute(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, int]:
    logp = F.log_softmax(model(x).double(), 1).detach()
    p = logp.exp()
    ce = -logp[torch.arange(len(y)), y]
    kls, bounds = [], []
    for i in range(len(x)):
        for j in range(len(x)):
            if y[i] != y[j]:
                kls.append(float((p[i] * (logp[i] - logp[j])).sum()))
                bounds.append(2 * math.log(2) - float(ce[i]) - float(ce[j]))
    return sum(kls) / len(kls), sum(bounds) / len(bounds), len(kls)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(10, 40), st.integers(2, 5), st.integers(0, 100))
def test_cckl_equals_the_pairwise_loop(n: int, k: int, seed: int) -> None:
    model = _model(k=k, seed=seed)
    x, y = _data(n, 6, k, seed)
    if len(torch.unique(y)) < 2:
        y[0], y[1] = 0, 1
    value, bound, pairs = _brute(model, x, y)
    r = cckl(model, x, y, batch_size=7)
    assert r.n_pairs == pairs
    assert r.value == pytest.approx(value, rel=1e-10, abs=1e-12)
    assert r.eq2_rhs == pytest.approx(bound, rel=1e-10, abs=1e-12)
    # the class-pair matrix, weighted by pair counts, gives the value back
    counts = torch.bincount(y, minlength=k).double()
    w = counts[:, None] * counts[None, :]
    off = ~torch.eye(k, dtype=torch.bool) & (w > 0)
    assert float((r.class_pair_kl[off] * w[off]).sum() / w[off].sum()) == pytest.approx(r.value)
    assert torch.isnan(r.class_pair_kl.diagonal()).all()


def test_cckl_constant_model_is_zero_and_errors() -> None:
    class Const(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[1.0, 2.0, 0.5]], dtype=x.dtype).expand(len(x), 3)

    x, y = _data(12, 4, 3, 1)
    assert cckl(Const(), x, y).value == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ProbeError, match="at least two classes"):
        cckl(Const(), x, torch.zeros(12, dtype=torch.long))
    with pytest.raises(ProbeError, match="labels must lie"):
        cckl(Const(), x, torch.full((12,), 5))


def test_cckl_binary_score_model_and_train_loss() -> None:
    model = models.create("linear", 1, (5,)).double()
    x, y = _data(20, 5, 2, 3)
    two = nn.Sequential(model)  # logits (0, s) read by the probe
    r = cckl(two, x, y, train=(x[:10], y[:10]))
    s = model(x).detach()[:, 0]
    logp = F.log_softmax(torch.stack([torch.zeros_like(s), s], 1), 1)
    p = logp.exp()
    kl = [
        float((p[i] * (logp[i] - logp[j])).sum())
        for i in range(20)
        for j in range(20)
        if y[i] != y[j]
    ]
    assert r.value == pytest.approx(sum(kl) / len(kl), rel=1e-10)
    assert r.train_ce_loss == pytest.approx(float(-logp[torch.arange(10), y[:10]].mean()))


def _dense_quadratic(model: nn.Module, xi: torch.Tensor, v: torch.Tensor) -> float:
    def logp(t: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(model(t[None]), 1)[0]

    jac = torch.autograd.functional.jacobian(logp, xi).reshape(-1, xi.numel())
    p = logp(xi).exp().detach()
    fisher = jac.T @ torch.diag(p) @ jac
    return float(v.reshape(-1) @ fisher @ v.reshape(-1))


def test_quadratic_form_matches_dense_fisher() -> None:
    model = _model(k=4, d=6, seed=2)
    x, _ = _data(5, 6, 4, 2)
    v = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    q, _ = input_fisher_quadratic_form(model, x, v)
    for i in range(5):
        assert float(q[i]) == pytest.approx(_dense_quadratic(model, x[i], v[i]), rel=1e-10)


def test_taylor_split_pairs_and_small_delta_limit() -> None:
    model = _model(k=3, d=6, seed=4)
    x, y = _data(30, 6, 3, 4)
    r = taylor_split(model, x, y, n_pairs=50, seed=1, batch_size=8)
    assert r.pairs.shape == (50, 2) and bool((y[r.pairs[:, 0]] != y[r.pairs[:, 1]]).all())
    torch.testing.assert_close(r.kl, r.g1 + r.g2)
    torch.testing.assert_close(r.g1_paper, 2 * r.g1)
    assert torch.equal(taylor_split(model, x, y, n_pairs=50, seed=1).pairs, r.pairs)
    # KL(f(x_i) ‖ f(x_i + tδ)) → G1 as t → 0, with a relative error of order t
    errs = []
    for t in (1e-1, 1e-2, 1e-3):
        small = taylor_split(model, x, y, n_pairs=20, seed=2, scale=t)
        errs.append(float(((small.kl - small.g1).abs() / small.g1).max()))
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5 and errs[2] < 1e-2
    assert r.g1_share > 0 and math.isfinite(r.g1_share_median)


def test_shi2020_probes_through_the_registry() -> None:
    model = models.create("cnn", 10, (1, 8, 8), width=0.5)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 10
    data = ProbeData(test=(x, y), train=(x[:20], y[:20]))
    c = run_probe("cckl", model, data)
    assert c.train_ce_loss is not None
    t = run_probe("taylor_split", model, data, n_pairs=16)
    for r in (c, t):
        json.dumps(r.to_json())
    assert set(t.scalars()) >= {"g1_share", "kl_mean", "g1_mean"}
    assert c.scalars()["value"] == pytest.approx(c.value)


def test_eq2_right_hand_side_is_not_a_bound():
    """shi2020 calls eq. 2 a lower bound of the KL (Lin's inequality); it is not one
    pointwise: f(x_i) = (0.6, 0.4), f(x_j) = (0.4, 0.6) give KL 0.081 < 0.365."""
    a, b = math.log(0.6), math.log(0.4)
    model = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[a, b], [b, a]], dtype=torch.float64))
    r = cckl(model, torch.eye(2, dtype=torch.float64), torch.tensor([0, 1]))
    kl = 0.6 * math.log(0.6 / 0.4) + 0.4 * math.log(0.4 / 0.6)
    assert r.value == pytest.approx(kl, rel=1e-9)
    assert r.eq2_rhs == pytest.approx(2 * math.log(2) + 2 * math.log(0.6), rel=1e-9)
    assert r.value < r.eq2_rhs
