"""tsipras2019's distribution (eq. 3): the closed forms against Monte Carlo and PGD, the
frontier against random classifiers and a finer search, Theorems 2.1 and 2.2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import ndtr

from robustscope import models
from robustscope.attacks import PGD
from robustscope.data.box import UNBOUNDED
from robustscope.data.synthetic import sample
from robustscope.errors import ParameterError
from robustscope.theory import family, frontier, theorems
from robustscope.theory.tsipras import (
    Distribution,
    accuracy,
    averaged,
    averaged_accuracy,
    bayes,
    monte_carlo,
    robust_feature,
)

Z = 4.0


def _classifiers(dist: Distribution, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    d = dist.d
    sparse = np.zeros(d + 1)
    sparse[0], sparse[1:4] = 0.3, [0.5, 0.2, 0.1]
    mixed = np.concatenate([[0.2], rng.normal(size=d) * 0.1 + 0.02])
    ws = np.stack([averaged(d), robust_feature(d), bayes(dist), sparse, mixed, -averaged(d)])
    return ws, np.array([0.0, 0.0, 0.0, 0.05, -0.1, 0.02])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_closed_forms_match_monte_carlo_on_a_million_draws(norm: str) -> None:
    dist = Distribution.create(d=40, p=0.9, eta=3 / math.sqrt(40))
    ws, b = _classifiers(dist, np.random.default_rng(0))
    eps = [0.1, 2 * dist.eta] if norm == "linf" else [0.5, 1.5]
    exact = accuracy(dist, ws, b, eps=eps, norm=norm)
    mc = monte_carlo(dist, ws, b, eps=eps, norm=norm, n=1_000_000, seed=1)
    for est, truth in [(mc.standard, exact.standard)] + [
        (mc.robust[e], exact.robust[e]) for e in eps
    ]:
        se = np.sqrt(truth * (1 - truth) / mc.n) + 1e-12
        assert np.all(np.abs(est - truth) <= Z * se), (est, truth)


def test_reference_classifiers_have_the_papers_accuracies() -> None:
    dist = Distribution.create(d=1000, p=0.95, eta=0.1)
    eps = [0.05, 0.2]
    acc = accuracy(dist, np.stack([averaged(1000), robust_feature(1000)]), eps=eps)
    # f_avg: Φ(η√d) and Φ((η − ε)√d) (tsipras2019 §2.1), computed independently.
    assert acc.standard[0] == pytest.approx(float(ndtr(0.1 * math.sqrt(1000))), abs=1e-12)
    for e in eps:
        assert acc.robust[e][0] == pytest.approx(averaged_accuracy(dist, e), abs=1e-12)
        assert acc.robust[e][1] == pytest.approx(0.95, abs=1e-12)
    assert averaged_accuracy(dist, 0.2) < 0.01  # "cannot get adversarial accuracy better than 1%"
    assert acc.standard[1] == pytest.approx(0.95, abs=1e-12)


def test_bayes_beats_every_linear_classifier_on_standard_accuracy() -> None:
    dist = Distribution.create(d=30, p=0.85, eta=0.2)
    members = family.linear_grid(dist, eps=0.4, n=600, seed=2)
    best = accuracy(dist, bayes(dist)).standard[0]
    assert max(members.standard) <= best + 1e-12
    assert best > accuracy(dist, averaged(30)).standard[0]


def test_pgd_on_samples_reaches_the_closed_form() -> None:
    dist = Distribution.create(d=20, p=0.9, eta=0.3)
    w = np.concatenate([[0.8], np.linspace(0.05, 0.3, 20)])
    bias, eps = 0.1, 0.25
    net = models.create("linear", 2, (21,), box=UNBOUNDED)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.weight[1] = torch.from_numpy(w).float()
        net.head.bias[1] = bias
    x_np, y_np = sample(20_000, dist.d, dist.p, dist.eta, np.random.default_rng(5))
    x, labels = torch.from_numpy(x_np), torch.from_numpy((y_np > 0).astype(np.int64))
    adv = PGD(net, eps, steps=10, seed=0)(x, labels)
    with torch.no_grad():
        pgd_robust = (net(adv).argmax(1) == labels).double().mean().item()
    exact = float(accuracy(dist, w, bias, eps=[eps]).robust[eps][0])
    se = math.sqrt(exact * (1 - exact) / len(x))
    assert abs(pgd_robust - exact) <= Z * se
    # Point by point: PGD finds the worst case (signed score − ε‖w‖₁) away from ties.
    signed = (x_np.astype(np.float64) @ w + bias) * y_np
    worst = signed - eps * np.abs(w).sum()
    clear = np.abs(worst) > 1e-4
    with torch.no_grad():
        ok = (net(adv).argmax(1) == labels).numpy()
    assert np.array_equal(ok[clear], (worst > 0)[clear])


CASES = [
    (1000, 0.95, 0.1, 0.2, "linf"),
    (100, 0.9, 0.3, 0.3, "linf"),
    (50, 0.7, 0.2, 0.5, "linf"),
    (200, 0.95, 0.2, 1.0, "l2"),
]


@pytest.mark.parametrize(("d", "p", "eta", "eps", "norm"), CASES)
def test_frontier_dominates_random_classifiers_and_is_attained(
    d: int, p: float, eta: float, eps: float, norm: str
) -> None:
    dist = Distribution.create(d, p, eta)
    front = frontier.frontier(dist, eps, norm)
    assert np.all(np.diff(front.standard) > 0) and np.all(np.diff(front.robust) < 0)
    # Random linear classifiers of every kind lie below it (up to the search's resolution).
    if norm == "linf":
        members = family.linear_grid(dist, eps, n=1500, seed=3)
        s, r = np.array(members.standard), np.array(members.robust)
    else:
        rng = np.random.default_rng(4)
        ws = np.concatenate([rng.exponential(size=(1500, 1)), rng.normal(0.02, 0.05, (1500, d))], 1)
        acc = accuracy(dist, ws, rng.normal(0, 0.3, 1500), eps=[eps], norm=norm)
        s, r = acc.standard, acc.robust[eps]
    ceiling = front.robust_at(s)
    inside = ~np.isnan(ceiling)
    assert np.all(r[inside] <= ceiling[inside] + 2e-3)
    assert np.all(s[~inside] <= front.standard[-1] + 1e-9)
    # Every frontier point is attained by real weights (the witness).
    for i in np.linspace(0, len(front.standard) - 1, 7).astype(int):
        w = frontier.witness(dist, front.a[i], front.S[i], front.q[i], norm)
        acc = accuracy(dist, w, front.bias[i], eps=[eps], norm=norm)
        assert acc.standard[0] == pytest.approx(front.standard[i], abs=1e-9)
        assert acc.robust[eps][0] == pytest.approx(front.robust[i], abs=1e-9)
    # A much finer search finds no point beyond it by more than (1e-5, 2e-3).
    fine = frontier.frontier(dist, eps, norm, grid={"a": 321, "rho": 64, "bias": 400}, rounds=14)
    reach = front.robust_at(fine.standard - 1e-5)
    reach = np.where(np.isnan(reach), -np.inf, reach)
    assert np.all(fine.robust <= reach + 2e-3)
    assert fine.standard[-1] <= front.standard[-1] + 1e-5
    # Theorem 2.1 bounds it where it applies.
    if norm == "linf" and eps >= 2 * eta:
        assert np.all(front.robust <= theorems.bound(p, front.standard) + 1e-9)


def test_the_symmetric_family_is_not_the_whole_frontier() -> None:
    """The counterexample of the frontier module's doc, confirmed by Monte Carlo."""
    dist = Distribution.create(d=1000, p=0.95, eta=0.1)
    full = frontier.frontier(dist, 0.2)
    sym = frontier.frontier(dist, 0.2, family="symmetric")
    # The symmetric curve against an independent 1-D scan of w = (cos t, (sin t / d)·1).
    t = np.linspace(0.0, math.pi / 2, 20001)
    ws = np.zeros((len(t), 1001))
    ws[:, 0], ws[:, 1:] = np.cos(t), (np.sin(t) / 1000)[:, None]
    scan = accuracy(dist, ws, eps=[0.2])
    best = scan.robust[0.2][scan.standard >= 0.965].max()
    assert float(sym.robust_at(0.965)[0]) == pytest.approx(best, abs=1e-3)
    assert float(full.robust_at(0.965)[0]) > float(sym.robust_at(0.965)[0]) + 0.15
    w = np.zeros(1001)
    w[0], w[1:201] = math.cos(1.4373), math.sin(1.4373) / 200
    mc = monte_carlo(dist, w, eps=[0.2], n=200_000, seed=0)
    assert mc.standard[0] > 0.963 and mc.robust[0.2][0] > 0.5


def test_theorem_21_check_catches_a_violation_and_passes_the_family() -> None:
    dist = Distribution.create(d=100, p=0.95, eta=0.3)
    members = family.linear_grid(dist, 0.6, n=400)
    ok = members.check(dist, 0.6)
    assert ok.applies and not ok.violations and ok.max_excess <= 1e-12
    members.add("impossible", "fake", 0.99, 0.30, (0.001, 0.005))  # bound 0.19
    members.add("inside its error", "fake", 0.99, 0.20, (0.001, 0.005))
    bad = members.check(dist, 0.6)
    assert bad.violations == ["impossible"]
    # Below 2η the theorem says nothing.
    assert not members.check(dist, 0.5).violations


def test_trained_mlps_respect_theorem_21() -> None:
    dist = Distribution.create(d=20, p=0.9, eta=3 / math.sqrt(20))
    eps = 2 * dist.eta
    members = family.mlp_members(
        dist, eps, widths=((16,),), eps_train=(0.0, eps), n_train=1000, n_test=4000, epochs=8
    )
    check = members.check(dist, eps)
    assert len(check.names) == 2 and not check.violations
    # The standard MLP is accurate and (hence) not robust, as the theorem forces.
    assert check.standard[0] > 0.95 and check.robust[0] <= check.bound[0] + 4 * check.robust_se[0]


def test_fixed_adversary_maps_one_class_onto_the_other() -> None:
    dist = Distribution.create(d=50, p=0.9, eta=0.2)
    x_np, y_np = sample(50_000, dist.d, dist.p, dist.eta, np.random.default_rng(0))
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np.astype(np.int64))
    moved = family.fixed_adversary(x, y, dist.eta)
    assert torch.equal(moved[:, 0], x[:, 0])
    # After the move the non-robust features of class y have mean −ηy.
    means = (moved[:, 1:] * y[:, None]).mean().item()
    assert means == pytest.approx(-dist.eta, abs=0.01)


def test_svm_theorem_22_and_its_reduction() -> None:
    dist = Distribution.create(d=400, p=0.95, eta=0.2)
    r = theorems.svm(dist)
    assert r.hypotheses and all(r.verdicts.values())
    # Expected hinge against Monte Carlo.
    w1, v = r.standard_w
    x_np, y_np = sample(200_000, dist.d, dist.p, dist.eta, np.random.default_rng(1))
    w = np.full(dist.d + 1, v / math.sqrt(dist.d))
    w[0] = w1
    margins = (x_np.astype(np.float64) @ w) * y_np
    for eps in (0.0, 0.2):
        hinge = np.maximum(0.0, 1.0 - margins + eps * np.abs(w).sum())
        assert theorems.expected_hinge(w1, v, dist, eps) == pytest.approx(
            hinge.mean(), abs=Z * hinge.std() / math.sqrt(len(hinge))
        )


def test_svm_symmetric_reduction_matches_a_general_search() -> None:
    """Lemma D.1: over the whole unit ball the optimum is as good as the symmetric one."""
    dist = Distribution.create(d=3, p=0.9, eta=2.4)
    for eps in (0.0, 2 * dist.eta):
        w1, v = theorems._minimise(dist, eps)
        sym = theorems.expected_hinge(w1, v, dist, eps)

        def general(w: np.ndarray, eps: float = eps) -> float:
            a, u = w[0], w[1:]
            S, q, shift = u.sum(), math.sqrt(float(u @ u)), eps * np.abs(w).sum()
            total = 0.0
            for agree, weight in ((1.0, dist.p), (-1.0, 1.0 - dist.p)):
                c = 1.0 + shift - agree * a - dist.eta * S
                t = c / max(q, 1e-12)
                total += weight * (
                    c * ndtr(t) + q * math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
                )
            return float(total)

        rng = np.random.default_rng(0)
        best = min(
            minimize(
                general,
                rng.normal(size=4) / 2,
                method="SLSQP",
                constraints=[{"type": "ineq", "fun": lambda z: 1.0 - float(z @ z)}],
            ).fun
            for _ in range(20)
        )
        assert sym <= best + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d": 0, "p": 0.9, "eta": 0.1}, "d must"),
        ({"d": 10, "p": 0.4, "eta": 0.1}, "p must"),
        ({"d": 10, "p": 0.9, "eta": 0}, "eta must"),
        ({"d": 10, "p": 0.9, "eta": "x"}, "eta must"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ParameterError, match=field):
        Distribution.create(**kwargs)


def test_fitted_linear_models_respect_theorem_21() -> None:
    # 2η < 2p − 1, where keeping x_1 beats the constant classifier (see theorems' doc).
    dist = Distribution.create(d=100, p=0.9, eta=0.3)
    eps = 2 * dist.eta
    members = family.fitted_members(dist, eps, eps_train=(0.0, eps), n_train=600)
    check = members.check(dist, eps)
    assert len(check.names) == 10 and not check.violations
    by_name = dict(zip(check.names, zip(check.standard, check.robust, strict=True), strict=True))
    # Standard fits are accurate and not robust; adversarial fits at 2η keep only x_1 (p, p).
    assert by_name["logistic standard"][0] > 0.99 and by_name["logistic standard"][1] < 0.05
    assert by_name[f"hinge adversarial ε={eps:g}"] == pytest.approx((0.9, 0.9), abs=1e-6)
    # Beyond 2p − 1 the adversarial hinge prefers w = 0 (checked in the distributional SVM).
    beyond = theorems.svm(dist, eps=0.85)
    assert beyond.adversarial_w == (0.0, 0.0) and not beyond.hypotheses
