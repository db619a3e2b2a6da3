"""terzi2021's probes: representation_fisher, weight_information, weight_norms."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import data, models, probes
from robustscope.errors import ProbeError
from robustscope.models.base import Classifier
from robustscope.probes.base import ProbeData
from robustscope.probes.registry import run_probe
from robustscope.probes.representation import representation_fisher
from robustscope.probes.weights import fisher_diagonal, weight_information, weight_norms


def _mlp(width: int = 5, k: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = models.create("mlp", k, (1, 4, 4), widths=(width,), activation="tanh").double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # leave tanh's linear region so that examples differ
    return model


def _x(n: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g, dtype=torch.float64)


def _dense_jacobian(model: nn.Module, xi: torch.Tensor) -> torch.Tensor:
    def feats(t: torch.Tensor) -> torch.Tensor:
        return model.features(t[None])[0]

    return torch.autograd.functional.jacobian(feats, xi).reshape(-1, xi.numel())


# ----------------------------------------------------------------------------- representation


@pytest.mark.parametrize(("width", "mode"), [(5, "vjp"), (5, "jvp"), (40, "auto")])
def test_exact_trace_and_top_eigenvalue_match_dense_jacobian(width: int, mode: str) -> None:
    model, x = _mlp(width), _x()
    res = representation_fisher(
        model, x, mode=mode, power_iters=20000, power_tol=1e-14, batch_size=2
    )  # type: ignore[arg-type]
    assert res.mode == ("jvp" if width == 40 else mode)  # auto: jvp when d=16 < m=40
    assert (res.input_dim, res.feature_dim) == (16, width)
    assert res.to_json()["noise_model"] == "p_w(z|x) = N(features(x), I), so S(z|x) = JᵀJ"
    for i in range(len(x)):
        jac = _dense_jacobian(model, x[i])
        evals, evecs = torch.linalg.eigh(jac.T @ jac)
        tr_ref = float((jac**2).sum())
        assert float(res.trace[i]) == pytest.approx(tr_ref, rel=1e-10)
        assert float(res.lambda_max[i]) == pytest.approx(float(evals[-1]), rel=1e-6)
        assert float(res.gnr_ratio[i]) == pytest.approx(tr_ref / (16 * float(evals[-1])), rel=1e-6)
        cos = float(res.top_eigenvector[i].flatten() @ evecs[:, -1])
        assert abs(cos) == pytest.approx(1.0, abs=1e-5)
        assert float(res.power_rel_change[i]) <= 1e-14
    # the examples really differ (otherwise a per-example bug could hide)
    assert float(res.trace.max() - res.trace.min()) > 1e-3 * float(res.trace.max())
    assert (res.gnr_ratio <= 1.0 + 1e-9).all() and (res.gnr_ratio >= 1 / 16 - 1e-9).all()


def test_power_iteration_reports_its_stop() -> None:
    model, x = _mlp(), _x(3)
    short = representation_fisher(model, x, power_iters=3)
    assert bool((short.power_iterations == 3).all())
    assert bool((short.power_rel_change > 0).any())
    one = representation_fisher(model, x, power_iters=1)
    assert bool((one.power_iterations == 1).all()) and bool(one.power_rel_change.isnan().all())
    long = representation_fisher(model, x, power_iters=5000, power_tol=1e-6)
    assert 1 < int(long.power_iterations.min()) <= int(long.power_iterations.max()) < 5000
    # each example stops on its own: the iteration counts differ
    assert int(long.power_iterations.min()) < int(long.power_iterations.max())
    assert float(long.power_rel_change.max()) <= 1e-6
    assert long.scalars()["power_rel_change_max"] <= 1e-6


def test_top_eigenpair_is_independent_of_the_batch() -> None:
    # one start shared by every example and a per-example stop: an example's λ₁ and v_λ₁ are
    # the same alone and inside any batch
    model, x = _mlp(), _x(5)
    batch = representation_fisher(model, x, power_iters=400, power_tol=1e-10, batch_size=5)
    for i in range(len(x)):
        alone = representation_fisher(model, x[i : i + 1], power_iters=400, power_tol=1e-10)
        assert torch.equal(alone.power_iterations, batch.power_iterations[i : i + 1])
        torch.testing.assert_close(
            alone.lambda_max, batch.lambda_max[i : i + 1], rtol=1e-12, atol=0
        )
        torch.testing.assert_close(
            alone.top_eigenvector, batch.top_eigenvector[i : i + 1], rtol=0, atol=1e-12
        )


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_hutchinson_is_unbiased_within_its_standard_error(mode: str) -> None:
    model, x = _mlp(8), _x(6)
    exact = representation_fisher(model, x, mode=mode)  # type: ignore[arg-type]
    est = representation_fisher(model, x, method="hutchinson", probes=400, mode=mode)  # type: ignore[arg-type]
    assert est.trace_se is not None and est.probes == 400
    z = (est.trace - exact.trace) / est.trace_se
    assert bool((z.abs() < 4).all()), z
    s = est.scalars()
    assert abs(s["trace_mean"] - exact.scalars()["trace_mean"]) < 4 * s["trace_mean_se"]
    # the standard error has the Rademacher variance 2(‖A‖_F² − Σ A_ii²)/probes
    for i in range(len(x)):
        jac = _dense_jacobian(model, x[i])
        a = jac.T @ jac if mode == "jvp" else jac @ jac.T
        var = 2 * (float((a**2).sum()) - float((a.diagonal() ** 2).sum()))
        assert float(est.trace_se[i]) == pytest.approx(math.sqrt(var / 400), rel=0.3)


def test_hutchinson_is_seeded_and_independent_of_batching() -> None:
    model, x = _mlp(), _x(5)
    kw = {"method": "hutchinson", "probes": 16, "power_iters": 50}
    a = representation_fisher(model, x, seed=3, batch_size=5, **kw)  # type: ignore[arg-type]
    b = representation_fisher(model, x, seed=3, batch_size=2, **kw)  # type: ignore[arg-type]
    c = representation_fisher(model, x, seed=4, batch_size=5, **kw)  # type: ignore[arg-type]
    torch.testing.assert_close(a.trace, b.trace, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.lambda_max, b.lambda_max, rtol=1e-12, atol=0)
    assert not torch.equal(a.trace, c.trace)
    state = torch.random.get_rng_state()
    representation_fisher(model, x, seed=5, **kw)  # type: ignore[arg-type]
    assert torch.equal(state, torch.random.get_rng_state())


class _LinearFeatures(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.a.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 6), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_linear_feature_map_trace_is_frobenius_norm_everywhere(m: int, d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, d, generator=g, dtype=torch.float64)
    x = torch.randn(4, d, generator=g, dtype=torch.float64) * 10
    res = representation_fisher(_LinearFeatures(a), x, power_iters=5000, power_tol=1e-14)
    fro = float((a**2).sum())
    torch.testing.assert_close(
        res.trace, torch.full((4,), fro, dtype=torch.float64), rtol=1e-12, atol=0
    )
    sigma = float(torch.linalg.matrix_norm(a, ord=2)) ** 2
    sv = torch.linalg.svdvals(a)
    if len(sv) == 1 or float(sv[1]) < 0.9 * float(sv[0]):  # a clear gap: power iteration converges
        torch.testing.assert_close(
            res.lambda_max, torch.full((4,), sigma, dtype=torch.float64), rtol=1e-6, atol=0
        )


def test_representation_fisher_needs_features() -> None:
    bare = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    with pytest.raises(ProbeError, match=r"features"):
        representation_fisher(bare, _x(2))
    with pytest.raises(ProbeError, match="method"):
        representation_fisher(_mlp(), _x(2), method="bogus")  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match="probes"):
        representation_fisher(_mlp(), _x(2), method="hutchinson", probes=1)


# ----------------------------------------------------------------------------- weight Fisher


def _loop_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    for i in range(len(x)):
        out = model(x[i : i + 1])
        if out.shape[1] == 1:
            out = torch.cat([torch.zeros_like(out), out], 1)
        logp = torch.log_softmax(out, 1)[0]
        classes = [int(y[i])] if kind == "empirical" else range(len(logp))
        for k in classes:
            grads = torch.autograd.grad(logp[k], list(params.values()), retain_graph=True)
            w = 1.0 if kind == "empirical" else float(logp[k].detach().exp())
            for (name, _), g in zip(params.items(), grads, strict=True):
                acc[name] += w * g**2
    return {k: v / len(x) for k, v in acc.items()}


@pytest.mark.parametrize("kind", ["model", "empirical"])
@pytest.mark.parametrize("arch", ["mlp", "binary"])
def test_fisher_diagonal_matches_explicit_loop(kind: str, arch: str) -> None:
    if arch == "mlp":
        model = _mlp(5, k=4)
    else:
        torch.manual_seed(0)
        model = models.create("linear", 1, (1, 4, 4)).double()
    x = _x(7)
    y = (
        torch.tensor([0, 1, 1, 0, 1, 0, 1])
        if arch == "binary"
        else torch.tensor([0, 1, 2, 3, 0, 1, 2])
    )
    diag = fisher_diagonal(model, x, y, fisher=kind, batch_size=3)  # type: ignore[arg-type]
    ref = _loop_fisher(model, x, y, kind)
    assert diag.keys() == ref.keys()
    for name, r in ref.items():
        torch.testing.assert_close(diag[name], r.detach(), rtol=1e-10, atol=1e-14)
        assert bool((diag[name] >= 0).all())
        assert float(diag[name].sum()) > 0


def test_fisher_diagonal_remembers_its_last_result_only_while_nothing_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One computation per (model, x, y) while none of their tensors changes; any change —
    an in-place update of a weight or of the data, another tensor, another batch size —
    computes again, and always agrees with the explicit loop."""
    from robustscope.probes import weights as weights_mod

    real = weights_mod._fisher_diagonal
    calls: list[int] = []

    def counting(*args: Any) -> dict[str, torch.Tensor]:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(weights_mod, "_fisher_diagonal", counting)
    model, x = _mlp(5, k=4), _x(7)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])

    def check(expect_calls: int) -> None:
        diag = fisher_diagonal(model, x, y, batch_size=3)
        assert len(calls) == expect_calls
        ref = _loop_fisher(model, x, y, "model")
        for name, r in ref.items():
            torch.testing.assert_close(diag[name], r.detach(), rtol=1e-10, atol=1e-14)
        for d in diag.values():
            d.zero_()  # the caller's copy: the remembered value is untouched

    check(1)
    check(1)  # remembered
    weight_information(model, x, y, train=(x, y), batch_size=3)
    assert len(calls) == 1  # another probe on the same tensors
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
    check(2)  # a weight changed in place
    x.mul_(0.5)
    check(3)  # the data changed in place
    x = x.clone()
    check(4)  # another tensor with the same values
    fisher_diagonal(model, x, y, batch_size=2)
    assert len(calls) == 5
    first = next(iter(dict(model.named_parameters())))
    module_name, _, attr = first.rpartition(".")
    old = model.get_submodule(module_name).get_parameter(attr)
    setattr(model.get_submodule(module_name), attr, torch.nn.Parameter(old.detach() * 2))
    check(6)  # a parameter replaced by another object


def test_posterior_log_variance_and_information_match_numpy() -> None:
    model, x = _mlp(5), _x(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    beta, lam = 0.05, 0.7
    res = weight_information(model, x, y, beta=beta, lam=lam)
    ref = {k: v.detach().numpy() for k, v in _loop_fisher(model, x, y, "model").items()}
    weights = {k: p.detach().numpy() for k, p in model.named_parameters()}
    all_logs = []
    total_info = 0.0
    for name, f in ref.items():
        sigma = (beta / 2) / (f + beta / (2 * lam**2))
        assert res.log_variance[name] == pytest.approx(np.log(sigma).mean(), rel=1e-10)
        kl = 0.5 * np.sum(sigma / lam**2 + weights[name] ** 2 / lam**2 - 1 - np.log(sigma / lam**2))
        assert res.information[name] == pytest.approx(kl, rel=1e-10)
        assert res.fisher_trace[name] == pytest.approx(f.sum(), rel=1e-10)
        all_logs.append(np.log(sigma).ravel())
        total_info += kl
    assert res.log_variance_mean == pytest.approx(np.concatenate(all_logs).mean(), rel=1e-10)
    assert res.information_total == pytest.approx(total_info, rel=1e-10)
    assert res.log_variance_mean <= 2 * math.log(lam)  # Σ*_ii ≤ λ²
    # the empirical Fisher is an option, and differs
    emp = weight_information(model, x, y, beta=beta, lam=lam, fisher="empirical")
    assert emp.fisher == "empirical" and emp.log_variance_mean != res.log_variance_mean
    with pytest.raises(ProbeError, match="beta"):
        weight_information(model, x, y, beta=0.0)
    assert res.split == "test"  # no training examples given: F_w over x, and it says so
    with pytest.raises(ProbeError, match="labels"):
        weight_information(model, x, None, fisher="empirical")


def test_weight_information_averages_the_fisher_over_the_training_examples() -> None:
    """Def. 0.5's F_w is the training set's: given ``train`` (as a study's ProbeData
    passes it), the test inputs are not used."""
    model = _mlp(5)
    x_test, x_train = _x(6), _x(9) * 0.5
    on_train = weight_information(model, x_test, train=(x_train, torch.zeros(9, dtype=torch.long)))
    direct = weight_information(model, x_train)
    assert on_train.split == "train" and on_train.n == 9
    assert on_train.log_variance_mean == direct.log_variance_mean
    assert on_train.log_variance_mean != weight_information(model, x_test).log_variance_mean
    data = probes.ProbeData(
        test=(x_test, torch.zeros(6, dtype=torch.long)),
        train=(x_train, torch.zeros(9, dtype=torch.long)),
    )
    via_registry = probes.run_probe("weight_information", model, data)
    assert via_registry.split == "train" and via_registry.n == 9


# ----------------------------------------------------------------------------- weight norms


def _conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(48, 4),
        nn.LayerNorm(4),
    ).double()


def test_weight_norms_match_explicit_sums() -> None:
    net = _conv_bn_net()
    res = weight_norms(net)
    assert list(res.l1) == ["0.weight", "4.weight"]  # no biases, no BatchNorm/LayerNorm
    for name, p in ((n, dict(net.named_parameters())[n]) for n in res.l1):
        assert res.l1[name] == pytest.approx(
            float(sum(abs(v) for v in p.detach().flatten())), rel=1e-12
        )
        assert res.l2[name] == pytest.approx(
            math.sqrt(sum(float(v) ** 2 for v in p.detach().flatten())), rel=1e-12
        )
    flat = torch.cat([net[0].weight.detach().flatten(), net[4].weight.detach().flatten()])
    assert res.l1_total == pytest.approx(float(flat.abs().sum()), rel=1e-12)
    assert res.l2_total == pytest.approx(float(flat.norm()), rel=1e-12)
    assert res.count_total == 27 + 192
    everything = weight_norms(net, include="all")
    params = list(net.parameters())
    assert len(everything.l1) == len(params) == 8
    assert everything.l1_total == pytest.approx(
        sum(float(p.detach().abs().sum()) for p in params), rel=1e-12
    )
    # tsipras2019 Table 5: ‖w‖₁ of a binary linear classifier is its weight vector's
    lin = models.create("linear", 1, (1, 4, 4))
    assert weight_norms(lin).l1_total == pytest.approx(
        float(lin.head.weight.detach().abs().sum()), rel=1e-6
    )
    with pytest.raises(ProbeError, match="include='all'"):
        weight_norms(nn.BatchNorm1d(3))


@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(-10, 10, allow_nan=False).filter(lambda v: abs(v) > 1e-3),
    layer=st.sampled_from([0, 4]),
)
def test_scaling_a_layer_scales_its_norms(a: float, layer: int) -> None:
    net = _conv_bn_net()
    before = weight_norms(net)
    name = f"{layer}.weight"
    with torch.no_grad():
        net[layer].weight.mul_(a)
    after = weight_norms(net)
    assert after.l1[name] == pytest.approx(abs(a) * before.l1[name], rel=1e-12)
    assert after.l2[name] == pytest.approx(abs(a) * before.l2[name], rel=1e-12)
    other = "4.weight" if layer == 0 else "0.weight"
    assert after.l1[other] == before.l1[other] and after.l2[other] == before.l2[other]
    assert after.l1_total == pytest.approx(
        before.l1_total + (abs(a) - 1) * before.l1[name], rel=1e-10
    )


# ----------------------------------------------------------------------------- registry, purity


class _BNNet(Classifier):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten()
        )
        self.head = nn.Linear(128, 10)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("representation_fisher", {"power_iters": 20}),
        ("representation_fisher", {"method": "hutchinson", "probes": 4, "power_iters": 5}),
        ("weight_information", {"batch_size": 8}),
        ("weight_information", {"fisher": "empirical"}),
        ("weight_norms", {}),
        ("weight_norms", {"include": "all"}),
    ],
)
def test_run_probe_is_pure_and_json_ready(name: str, options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = _BNNet()
    with torch.no_grad():
        bn = model.body[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    model.train()
    model.head.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    ds = data.load("digits", "test")
    x, y = ds.x[:12], ds.y[:12]
    res = run_probe(name, model, ProbeData(test=(x, y)), **options)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.random.get_rng_state())
    blob = json.loads(json.dumps(res.to_json()))
    assert blob["scalars"]
    assert all(v is None or math.isfinite(v) for v in blob["scalars"].values())
