"""FAB / FAB-T, Square in ℓ2 and the AutoAttack ensemble.

The box-constrained hyperplane projection against independent float64 solutions (a linear
program for ℓ∞, bisection on the KKT multiplier for ℓ2); FAB on multi-class linear models,
where the minimal distance to misclassification is the smallest box-constrained distance to
one of the K − 1 decision hyperplanes; invariants on random models (hypothesis); AutoAttack's
per-point sequential semantics, its evaluate and CLI paths, and parameter errors.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from robustscope import attacks, checkpoint, data, models
from robustscope.attacks import APGD, FAB, FABT, AutoAttack, AutoAttackLite, Square, evaluate
from robustscope.attacks.base import Attack
from robustscope.attacks.fab import boundary_projection
from robustscope.attacks.square import square_pattern
from robustscope.attacks.threat import ThreatModel, flat_norms
from robustscope.data.box import UNBOUNDED, UNIT, Box
from robustscope.errors import RobustscopeError
from robustscope.evaluation import predict
from robustscope.training import TrainConfig, train

BOXES = [UNIT, UNBOUNDED, Box(0.0, None)]


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return predict(model(x)) == y


# --- the projection onto a hyperplane within the box -----------------------------------------


def _lp_linf(p: np.ndarray, w: np.ndarray, c: float, box: Box) -> float | None:
    """min t s.t. ⟨w, δ⟩ = −c, |δᵢ| ≤ t, p + δ ∈ box (scipy's HiGHS); None if infeasible."""
    from scipy.optimize import linprog

    d = len(p)
    a_ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
    lo = [None if box.lo is None else box.lo - v for v in p]
    hi = [None if box.hi is None else box.hi - v for v in p]
    res = linprog(
        np.r_[np.zeros(d), 1.0],
        A_ub=a_ub,
        b_ub=np.zeros(2 * d),
        A_eq=np.r_[w, 0.0][None],
        b_eq=[-c],
        bounds=[*zip(lo, hi, strict=True), (0, None)],
    )
    return float(res.x[-1]) if res.status == 0 else None


def _bisect_l2(p: torch.Tensor, w: torch.Tensor, c: float, box: Box) -> torch.Tensor | None:
    """δ = clip(λ·s·w, box − p) with the λ ≥ 0 solving ⟨w, δ⟩ = −c by bisection."""
    lo = p.new_full(p.shape, -1e30) if box.lo is None else box.lo - p
    hi = p.new_full(p.shape, 1e30) if box.hi is None else box.hi - p
    s = -np.sign(c)

    def gain(lam: float) -> float:
        return float((w * (lam * s * w).clamp(lo, hi)).sum()) * s

    a, b = 0.0, 1e8
    if gain(b) < abs(c) * (1 - 1e-12):
        return None
    for _ in range(300):
        mid = 0.5 * (a + b)
        a, b = (mid, b) if gain(mid) < abs(c) else (a, mid)
    return (b * s * w).clamp(lo, hi)


@pytest.mark.parametrize("newton_steps", [32, 1, 0])
@pytest.mark.parametrize("box", BOXES, ids=str)
def test_boundary_projection_is_the_exact_minimal_step(box: Box, newton_steps: int) -> None:
    """Newton's method (and the sorting fallback, ``newton_steps=0``) give the independent
    float64 optimum: the LP's ℓ∞ radius and the bisected ℓ2 step."""
    g = torch.Generator().manual_seed(0)
    n, d = 24, 9
    p = torch.rand(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w[0] = 0  # no direction: no step
    w[1, :4] = 0  # some coordinates cannot move
    c = 2 * torch.randn(n, generator=g, dtype=torch.float64)
    c[2] = 0  # already on the hyperplane
    dl = boundary_projection(p, w, c, "linf", box, newton_steps=newton_steps)
    d2 = boundary_projection(p, w, c, "l2", box, newton_steps=newton_steps)
    assert dl.dtype == d2.dtype == torch.float64
    assert torch.equal(dl[0], torch.zeros(d, dtype=torch.float64))
    assert torch.equal(d2[2], torch.zeros(d, dtype=torch.float64))
    assert bool(box.contains(p + dl, atol=1e-12).all() and box.contains(p + d2, atol=1e-12).all())
    feasible = 0
    for i in range(1, n):
        radius = _lp_linf(p[i].numpy(), w[i].numpy(), float(c[i]), box)
        ref2 = _bisect_l2(p[i], w[i], float(c[i]), box)
        assert (radius is None) == (ref2 is None)
        if radius is None:  # the box does not reach the hyperplane: every coordinate at a bound
            moved = w[i] != 0
            at_bound = ((p[i] + dl[i] - 0.0).abs() < 1e-12) | ((p[i] + dl[i] - 1.0).abs() < 1e-12)
            assert bool(at_bound[moved].all())
            continue
        feasible += 1
        assert float(dl[i].abs().max()) == pytest.approx(radius, abs=1e-9)
        assert float(w[i] @ dl[i] + c[i]) == pytest.approx(0.0, abs=1e-9)
        torch.testing.assert_close(d2[i], ref2, atol=1e-9, rtol=0)
    assert feasible >= n // 2


def test_boundary_projection_in_float32_and_refuses_other_norms() -> None:
    p = torch.full((1, 3), 0.5)
    w = torch.tensor([[1.0, -2.0, 0.0]])
    d = boundary_projection(p, w, torch.tensor([0.3]), "linf", UNIT)
    assert d.dtype == torch.float32
    torch.testing.assert_close(d, torch.tensor([[-0.1, 0.1, 0.0]]))
    with pytest.raises(RobustscopeError, match="norm"):
        boundary_projection(p, w, torch.tensor([0.3]), "l1", UNIT)


# --- FAB on linear models: the minimal distance is known ---------------------------------------


def _linear(k: int, d: int, seed: int, box: Box) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A float64 K-class linear model and n points it classifies (labels = its predictions)."""
    g = torch.Generator().manual_seed(seed)
    model = models.create("linear", k, (d,), box=box).double().eval()
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
        model.head.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    x = torch.rand(60, d, generator=g, dtype=torch.float64)
    if box.bounded:
        x = 0.2 + 0.6 * x
    return model, x, _correct_labels(model, x)


def _correct_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return predict(model(x))


def _minimal_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, box: Box):
    """Per point: min over k ≠ y of the box-constrained distance to {z_k = z_y} (float64)."""
    weight, bias = model.head.weight.detach(), model.head.bias.detach()
    best = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for k in range(weight.shape[0]):
        w = weight[k] - weight[y]
        c = x @ weight[k] - (x * weight[y]).sum(1) + bias[k] - bias[y]
        other = y != k
        delta = boundary_projection(x, w, c, norm, box)
        reached = (delta * w).sum(1) + c > -1e-9
        best = torch.where(other & reached, torch.minimum(best, flat_norms(delta, norm)), best)
    return best


@pytest.mark.parametrize("box", [UNBOUNDED, UNIT], ids=str)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("make", [FAB, lambda m, **kw: FABT(m, n_target_classes=4, **kw)])
def test_fab_finds_adversarials_near_the_minimal_distance(
    make: Callable[..., Attack], norm: str, box: Box
) -> None:
    """At ε = 1.02 × the exact minimal distance every point is broken; at ε = 0.98 × it none
    is (the ball holds no adversarial point); in between the returned points are ≤ ε away."""
    model, x, y = _linear(5, 12, 0, box)
    dist = _minimal_distance(model, x, y, norm, box)
    assert bool(torch.isfinite(dist).all())
    if norm == "linf" and box.unbounded:  # the closed form ‖·‖₁ dual without a box
        w = model.head.weight.detach()
        z = model(x).detach()
        gaps = (z.gather(1, y[:, None]) - z) / (w[None] - w[y][:, None]).abs().sum(2)
        gaps = gaps.masked_fill(torch.nn.functional.one_hot(y, 5).bool(), float("inf"))
        torch.testing.assert_close(dist, gaps.amin(1))
    for factor, broken in ((1.02, True), (0.98, False)):
        for i in range(0, len(x), 6):  # ε per point: one attack call each
            eps = float(factor * dist[i])
            atk = make(model, eps=eps, norm=norm, steps=30)
            x_adv = atk(x[i : i + 1], y[i : i + 1])
            d = float(flat_norms(x_adv - x[i : i + 1], norm)[0])
            assert d <= eps
            assert bool(~_correct(model, x_adv, y[i : i + 1])[0]) == broken, (i, factor)


# --- invariants on random models ---------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> dict[str, Any]:
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    k = draw(st.sampled_from([1, 2, 3, 5]))
    n = draw(st.integers(1, 6))
    if draw(st.booleans()):
        shape: tuple[int, ...] = (draw(st.integers(1, 2)), draw(st.integers(2, 7)), 5)
        box = UNIT
        x = torch.rand((n, *shape), generator=g)
    else:
        shape = (draw(st.integers(1, 10)),)
        box = draw(st.sampled_from([UNBOUNDED, Box(0.0, None), Box(-1.0, 1.0)]))
        x = torch.randn((n, *shape), generator=g)
        x = x.abs() if box.lo == 0 else (x.clamp(-1, 1) if box.bounded else x)
    model = models.create("mlp", k, shape, widths=[8], box=box).eval()
    return {
        "model": model,
        "x": x,
        "y": torch.randint(0, max(k, 2), (n,), generator=g),
        "box": box,
        "eps": draw(st.floats(0.0, 1.5)),
        "norm": draw(st.sampled_from(["linf", "l2"])),
        "seed": seed,
    }


ENSEMBLE: dict[str, Callable[[nn.Module, dict[str, Any]], Attack]] = {
    "fab": lambda m, p: FAB(m, p["eps"], norm=p["norm"], steps=4, restarts=2, seed=p["seed"]),
    "fab-t": lambda m, p: FABT(m, p["eps"], norm=p["norm"], steps=4, n_target_classes=3),
    "square": lambda m, p: Square(m, p["eps"], norm=p["norm"], queries=12, seed=p["seed"]),
    "autoattack": lambda m, p: AutoAttack(
        m, p["eps"], norm=p["norm"], steps=3, queries=8, n_target_classes=2, seed=p["seed"]
    ),
    "autoattack-plus": lambda m, p: AutoAttack(
        m, p["eps"], norm=p["norm"], version="plus", steps=2, queries=4, seed=p["seed"]
    ),
}


@pytest.mark.parametrize("name", list(ENSEMBLE))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_every_returned_point_is_in_ball_and_box_and_changed_only_if_adversarial(
    name: str, p: dict[str, Any]
) -> None:
    x, y, model = p["x"], p["y"], p["model"]
    x_adv = ENSEMBLE[name](model, p)(x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool(ThreatModel(p["norm"], p["eps"], p["box"]).contains(x_adv, x, atol=1e-6).all())
    changed = (x_adv != x).reshape(len(x), -1).any(1)
    if name.startswith("fab") or name.startswith("autoattack"):
        # FAB and AutoAttack return x itself unless they found an adversarial point
        assert not bool((changed & _correct(model, x_adv, y)).any())


# --- AutoAttack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP on sklearn digits (~95 % test accuracy) and 120 test points."""
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        model_kwargs={"widths": [32]},
        epochs=8,
        lr=0.1,
        batch_size=64,
        seed=0,
        device="cpu",
    )
    model = train(cfg, None, progress=False, log=None).model.eval()
    test = data.load("digits", "test")
    return model, test.x[:120], test.y[:120]


def test_autoattack_is_the_worst_case_over_its_stages(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    """Stage 1 is APGD-CE on every correct point; each later stage runs only on the points
    still robust; a point broken by a stage keeps that stage's adversarial example."""
    model, x, y = digits
    eps = 0.05
    aa = AutoAttack(model, eps, steps=10, queries=100, n_target_classes=3, seed=0)
    x_adv = aa(x, y)
    clean = _correct(model, x, y)
    ce = APGD(model, eps, steps=10, seed=0)(x[clean], y[clean])
    ce_broken = ~_correct(model, ce, y[clean])
    idx = clean.nonzero()[:, 0]
    torch.testing.assert_close(x_adv[idx[ce_broken]], ce[ce_broken], rtol=0, atol=0)
    assert torch.equal(x_adv[~clean], x[~clean])
    stages = aa.stages_run
    assert [s.stage for s in stages] == ["apgd-ce", "apgd-t", "fab-t", "square"][: len(stages)]
    assert stages[0].attacked == int(clean.sum()) and stages[0].broken == int(ce_broken.sum())
    for before, after in itertools.pairwise(stages):
        assert after.attacked == before.attacked - before.broken
    robust = _correct(model, x_adv, y)
    assert int(robust.sum()) == stages[0].attacked - sum(s.broken for s in stages)
    lite = _correct(
        model, AutoAttackLite(model, eps, steps=10, n_target_classes=3, seed=0)(x, y), y
    )
    assert int(robust.sum()) <= int(lite.sum())
    assert bool(ThreatModel("linf", eps, UNIT).contains(x_adv, x).all())


def test_autoattack_stages_and_version(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    aa = AutoAttack(model, 0.5, norm="l2", stages="square, fab", steps=5, queries=50, seed=0)
    aa(x[:30], y[:30])
    assert len(aa.stages_run) >= 1  # square ran (fab only on what it left robust)
    assert [s.stage for s in aa.stages_run] == ["square", "fab"][: len(aa.stages_run)]
    assert aa.stages == (("square", 1), ("fab", 1))
    plus = AutoAttack(model, 0.05, version="plus")
    assert [s for s, _ in plus.stages] == [
        "apgd-ce",
        "apgd-dlr",
        "fab",
        "square",
        "apgd-t",
        "fab-t",
    ]
    assert dict(plus.stages)["apgd-ce"] == 5
    assert AutoAttack(model, 0.05).stages == (
        ("apgd-ce", 1),
        ("apgd-t", 1),
        ("fab-t", 1),
        ("square", 1),
    )


def test_autoattack_through_evaluate_with_an_eps_list(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    for norm, eps in (("linf", [0, 0.03, 0.06]), ("l2", [0, 0.3, 0.6])):
        curve = evaluate(
            model, x[:60], y[:60], "autoattack", eps, norm=norm, checks=False, steps=5, queries=30
        )
        acc = list(curve.robust_accuracy.values())
        assert acc[0] == curve.clean_accuracy and acc[0] >= acc[1] >= acc[2]
        assert acc[2] < acc[0] - 0.1
        assert not curve.flags


def test_square_l2_breaks_a_standard_model_with_forward_passes_only(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    eps = 1.0
    x_adv = Square(model, eps, norm="l2", queries=300, seed=0)(x, y)
    assert bool(ThreatModel("l2", eps, UNIT).contains(x_adv, x, atol=1e-5).all())
    clean, robust = _correct(model, x, y), _correct(model, x_adv, y)
    assert float(robust.double().mean()) < float(clean.double().mean()) - 0.2
    apgd = _correct(model, APGD(model, eps, norm="l2", steps=20, seed=0)(x, y), y)
    assert float(robust.double().mean()) >= float(apgd.double().mean()) - 0.05


def test_square_l2_pattern() -> None:
    like = torch.empty(0, dtype=torch.float64)
    for rows, cols in ((5, 5), (4, 7), (1, 6), (1, 1), (3, 1)):
        eta = square_pattern(rows, cols, like)
        assert eta.shape == (rows, cols)
        assert float(eta.norm()) == pytest.approx(1.0)
    eta = square_pattern(6, 6, like)
    assert bool((eta[:3] > 0).all() and (eta[3:] < 0).all())
    assert float(eta.sum()) == pytest.approx(0.0, abs=1e-12)
    # the centre of each half carries the most weight
    top = eta[:3]
    assert float(top[1, 3]) == float(top.max())


@pytest.mark.parametrize(
    "make",
    [
        lambda m: FAB(m, 0.1, steps=0),
        lambda m: FAB(m, 0.1, restarts=0),
        lambda m: FAB(m, 0.1, eta=0.9),
        lambda m: FAB(m, 0.1, beta=0.0),
        lambda m: FAB(m, 0.1, beta=1.5),
        lambda m: FAB(m, 0.1, alpha_max=2.0),
        lambda m: FAB(m, 0.1, norm="l1"),
        lambda m: FABT(m, 0.1, n_target_classes=0),
        lambda m: AutoAttack(m, 0.1, version="fast"),
        lambda m: AutoAttack(m, 0.1, stages="apgd-ce,pgd"),
        lambda m: AutoAttack(m, 0.1, stages="square,square"),
        lambda m: AutoAttack(m, 0.1, stages=""),
        lambda m: AutoAttack(m, 0.1, queries=0),
        lambda m: AutoAttack(m, 0.1, norm="l1"),
        lambda m: Square(m, 0.1, norm="l1"),
    ],
)
def test_bad_parameters_are_refused(make: Callable[[nn.Module], Attack]) -> None:
    with pytest.raises(RobustscopeError):
        make(models.create("mlp", 3, (4,), widths=[4]))


def test_registered_with_their_parameters() -> None:
    assert {"fab", "fab-t", "autoattack", "autoattack-lite", "square"} <= set(attacks.available())
    params = attacks.parameters("autoattack")
    for p in ("eps", "norm", "version", "stages", "steps", "queries", "n_target_classes", "seed"):
        assert p in params
    assert "n_target_classes" in attacks.parameters("fab-t")
    assert "n_target_classes" not in attacks.parameters("fab")
    assert attacks.get("square").norms == ("linf", "l2")
    model = models.create("mlp", 10, (1, 8, 8), widths=[8])
    fabt = attacks.create("fab-t", model, eps=0.1)
    assert (fabt.steps, fabt.n_target_classes, fabt.alpha_max, fabt.eta, fabt.beta) == (
        100,
        9,
        0.1,
        1.05,
        0.9,
    )
    aa = attacks.create("autoattack", model, eps="8/255", stages=["apgd-ce", "square"])
    assert (aa.steps, aa.queries, aa.n_target_classes) == (100, 5000, 9)


def test_cli_lists_and_runs_autoattack(tmp_path: Any) -> None:
    from robustscope.cli import app

    listing = CliRunner().invoke(app, ["attacks", "--json"])
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.stdout)
    assert "autoattack" in rows and "version" in rows["autoattack"]["parameters"]
    assert rows["autoattack"]["norms"] == ["linf", "l2"]
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16])
    checkpoint.save(tmp_path / "m.safetensors", model, {"dataset": "digits"})
    result = CliRunner().invoke(
        app,
        [
            "attack",
            str(tmp_path / "m.safetensors"),
            "--attack",
            "autoattack",
            "--eps",
            "0,0.05,0.1",
            "--steps",
            "3",
            "--param",
            "queries=20",
            "--param",
            "n_target_classes=2",
            "--n",
            "30",
            "--no-checks",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["attack"] == "autoattack" and out["params"] == {
        "queries": 20,
        "n_target_classes": 2,
        "steps": 3,
    }
    acc = [out["robust_accuracy"][k] for k in ("0", "0.05", "0.1")]
    assert acc[0] == out["clean_accuracy"] and acc[0] >= acc[1] >= acc[2]
