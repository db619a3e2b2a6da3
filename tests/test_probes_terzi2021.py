"""terzi2021 probes: Fisher of the representation (Def. 0.2), weight information (Def. 0.5),
weight norms (Fig. 5) — against brute-force float64 references."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustscope import models
from robustscope.probes import ProbeData, run_probe
from robustscope.probes.representation import representation_fisher
from robustscope.probes.weights import fisher_diagonal, weight_information, weight_norms


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.create("mlp", 3, (1, 4, 4), widths=(5,)).double()


def _x(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(
        n, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def _jac(model: nn.Module, xi: torch.Tensor) -> torch.Tensor:
    j = torch.autograd.functional.jacobian(lambda t: model.features(t[None])[0], xi)
    return j.reshape(j.shape[0], -1)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_representation_fisher_exact_trace_and_top_eigenvalue(mode: str) -> None:
    model, x = _model(), _x(4)
    r = representation_fisher(model, x, mode=mode, power_iters=2000, power_tol=1e-13, batch_size=3)
    for i in range(len(x)):
        j = _jac(model, x[i])
        s = j.T @ j
        assert float(r.trace[i]) == pytest.approx(float(s.trace()), rel=1e-10)
        assert float(r.lambda_max[i]) == pytest.approx(
            float(torch.linalg.eigvalsh(s)[-1]), rel=1e-6
        )
        assert float(r.gnr_ratio[i]) == pytest.approx(
            float(s.trace()) / (16 * float(torch.linalg.eigvalsh(s)[-1])), rel=1e-6
        )
    json.dumps(r.to_json())


def test_representation_fisher_hutchinson_within_its_error() -> None:
    model, x = _model(1), _x(3, 2)
    exact = representation_fisher(model, x)
    est = representation_fisher(model, x, method="hutchinson", probes=400, seed=3)
    again = representation_fisher(model, x, method="hutchinson", probes=400, seed=3)
    torch.testing.assert_close(est.trace, again.trace)
    assert est.trace_se is not None
    assert bool(((est.trace - exact.trace).abs() <= 5 * est.trace_se).all())


def test_linear_features_give_the_frobenius_norm_everywhere() -> None:
    class Feat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(6, 4, bias=True).double()

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x)

    m = Feat()
    x = torch.rand(5, 6, dtype=torch.float64)
    r = representation_fisher(m, x)
    expected = float((m.a.weight.detach() ** 2).sum())
    assert torch.allclose(r.trace, torch.full((5,), expected, dtype=torch.float64), rtol=1e-12)


def _brute_fisher_diag(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    acc = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
    model.eval()
    for i in range(len(x)):
        logp = F.log_softmax(model(x[i : i + 1]), 1)[0]
        classes = [int(y[i])] if y is not None else range(len(logp))
        for c in classes:
            grads = torch.autograd.grad(logp[c], list(params.values()), retain_graph=True)
            w = 1.0 if y is not None else float(logp[c].detach().exp())
            for (k, _), g in zip(params.items(), grads, strict=True):
                acc[k] += w * g.double() ** 2
    return {k: v / len(x) for k, v in acc.items()}


@pytest.mark.parametrize("kind", ["model", "empirical"])
def test_weight_fisher_diagonal_matches_a_loop(kind: str) -> None:
    model, x = _model(2), _x(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    got = fisher_diagonal(model, x, y if kind == "empirical" else None, fisher=kind, batch_size=4)  # type: ignore[arg-type]
    ref = _brute_fisher_diag(model, x, y if kind == "empirical" else None)
    for k in ref:
        torch.testing.assert_close(got[k].double(), ref[k], rtol=1e-10, atol=1e-14)
        assert bool((got[k] >= 0).all())


def test_weight_information_log_variance_formula() -> None:
    model, x = _model(3), _x(5, 4)
    beta, lam = 1e-2, 0.5
    r = weight_information(model, x, beta=beta, lam=lam)
    fd = fisher_diagonal(model, x)
    logs = torch.cat(
        [torch.log((beta / 2) / (f.reshape(-1) + beta / (2 * lam**2))) for f in fd.values()]
    )
    assert r.log_variance_mean == pytest.approx(float(logs.mean()), rel=1e-10)
    json.dumps(r.to_json())


def test_weight_norms_explicit_and_scaling() -> None:
    model = _model(4)
    r = weight_norms(model)
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert r.l1_total == pytest.approx(float(sum(w.abs().sum() for w in weights)), rel=1e-12)
    assert r.l2_total == pytest.approx(
        math.sqrt(float(sum((w.double() ** 2).sum() for w in weights))), rel=1e-12
    )
    with torch.no_grad():
        model.head.weight.mul_(-3.0)
    r3 = weight_norms(model)
    name = next(k for k in r.l1 if k.startswith("head"))
    assert r3.l1[name] == pytest.approx(3 * r.l1[name]) and r3.l2[name] == pytest.approx(
        3 * r.l2[name]
    )
    assert weight_norms(model, include="all").count_total > r.count_total


def test_terzi_probes_through_registry_leave_model_as_it_was() -> None:
    model = _model(5)
    model.train()
    model.head.bias.requires_grad_(False)
    x, y = _x(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    data = ProbeData(test=(x, y))
    for name in ("representation_fisher", "weight_information", "weight_norms"):
        json.dumps(run_probe(name, model, data).to_json())
        assert model.training and not model.head.bias.requires_grad
        assert model.head.weight.requires_grad
