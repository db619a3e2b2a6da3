"""Cui et al. (2018)'s task distance (``robustscope.transfer.distance``): the EMD against
cases with a known answer — equal domains, a translation, a 2×2 problem solved by hand, the
assignment problem — and the class-mean/frequency reduction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from robustscope.transfer import TransferError, class_means, emd, task_distance


def domain(seed: int, k: int = 4, f: int = 5, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = 3 * torch.randn(k, f, generator=g, dtype=torch.float64)[y]
    return z + torch.randn(n, f, generator=g, dtype=torch.float64), y


def test_equal_domains_are_at_distance_zero() -> None:
    z, y = domain(0)
    d = task_distance(z, y, z, y)
    assert d.distance == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(np.diag(d.plan), d.source_weights)


def test_a_translation_moves_by_its_norm() -> None:
    z, y = domain(1)
    t = torch.tensor([3.0, -4.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    assert task_distance(z, y, z + t, y).distance == pytest.approx(float(t.norm()), rel=1e-9)


def test_two_classes_each_side_match_the_hand_solution() -> None:
    """p = (0.7, 0.3), q = (0.4, 0.6): the plan has one free entry a = f₁₁ in
    [0.1, 0.4]; the cost is linear in a, so the optimum is at an end."""
    p, q = np.array([0.7, 0.3]), np.array([0.4, 0.6])
    cost = np.array([[1.0, 4.0], [2.0, 0.5]])

    def plan_cost(a: float) -> float:
        f = np.array([[a, p[0] - a], [q[0] - a, p[1] - q[0] + a]])
        assert (f >= -1e-12).all()
        return float((f * cost).sum())

    best = min(plan_cost(a) for a in np.linspace(0.1, 0.4, 3001))
    value, plan = emd(p, q, cost)
    assert value == pytest.approx(best, abs=1e-12)
    assert value == pytest.approx(plan_cost(0.4))  # a = 0.4: 0.4·1 + 0.3·4 + 0.3·0.5 = 1.75
    assert np.allclose(plan.sum(1), p) and np.allclose(plan.sum(0), q)


@pytest.mark.parametrize("seed", range(4))
def test_uniform_masses_are_the_assignment_problem(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 6
    cost = rng.random((n, n)) * 10
    rows, cols = linear_sum_assignment(cost)
    value, _ = emd(np.ones(n), np.ones(n), cost)
    assert value == pytest.approx(cost[rows, cols].sum() / n, rel=1e-9)


def test_classes_are_weighted_by_frequency_and_reduced_to_means() -> None:
    # source: class 0 at 0 (90 %), class 1 at 10 (10 %), with spread; target: one class at 0
    g = torch.Generator().manual_seed(0)
    y_s = torch.cat([torch.zeros(900), torch.ones(100)]).long()
    spread = torch.randn(1000, 1, generator=g, dtype=torch.float64)
    for c in (0, 1):  # examples spread around their class's point; the class mean is exact
        spread[y_s == c] -= spread[y_s == c].mean()
    z_s = torch.where(y_s[:, None] == 1, 10.0, 0.0).double() + spread
    y_t = torch.full((50,), 7)
    z_t = torch.zeros(50, 1, dtype=torch.float64)
    d = task_distance(z_s, y_s, z_t, y_t, source="s", target="t", feature_model="m")
    assert d.distance == pytest.approx(1.0, rel=1e-9)  # 0.1 of the mass moves 10
    assert d.source_weights == pytest.approx((0.9, 0.1)) and d.target_classes == (7,)
    classes, means, weights = class_means(z_s, y_s)
    assert weights.tolist() == pytest.approx([0.9, 0.1])
    assert classes.tolist() == [0, 1] and means.ravel() == pytest.approx([0.0, 10.0], abs=1e-9)
    assert d.to_dict()["feature_model"] == "m" and 0 < d.similarity < 1


def test_refusals() -> None:
    z, y = domain(0)
    with pytest.raises(TransferError, match="not in one space"):
        task_distance(z, y, z[:, :3], y)
    with pytest.raises(TransferError, match="cost has shape"):
        emd(np.ones(2), np.ones(3), np.ones((3, 2)))
    with pytest.raises(TransferError, match="non-negative"):
        emd(np.array([1.0, -1.0]), np.ones(2), np.ones((2, 2)))
