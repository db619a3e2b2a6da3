"""robustscope.theory.linear: the exact worst case against brute force and against the lab's
PGD, the fits (determinism, optimality, the split w = u − v, Lemma D.5 of tsipras2019), the
Classifier it builds, and the errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustscope import attacks, data
from robustscope.attacks import PGD
from robustscope.data.box import UNBOUNDED, UNIT, Box
from robustscope.errors import ParameterError
from robustscope.evaluation import predict
from robustscope.theory.linear import (
    LinearModel,
    accuracy,
    adversarial_accuracy,
    fit,
    margin,
    signed_labels,
    to_classifier,
    worst_case_margin,
    worst_case_reduction,
)

D64 = torch.float64

# --- helpers -------------------------------------------------------------------------------


def _model(w: torch.Tensor, b: float = 0.0, box: Box = UNBOUNDED) -> LinearModel:
    return LinearModel(w=w.to(D64), b=b, loss="logistic", eps=0.0, box=box, l2=1.0)


def _brute_force_linf(
    w: torch.Tensor, b: float, x: torch.Tensor, y: float, eps: float, box: Box
) -> float:
    """min of y(wᵀx′ + b) over ball∞(x, ε) ∩ box: a linear function's minimum over a box
    (the per-coordinate intervals) is at one of its 2^D corners."""
    lo = x - eps if box.lo is None else torch.clamp(x - eps, min=box.lo)
    hi = x + eps if box.hi is None else torch.clamp(x + eps, max=box.hi)
    best = math.inf
    for corner in itertools.product((0, 1), repeat=len(x)):
        pick = torch.tensor(corner, dtype=torch.bool)
        xc = torch.where(pick, hi, lo)
        best = min(best, y * float(w @ xc + b))
    return best


BOXES = [UNBOUNDED, UNIT, Box(-1.0, 2.0), Box(0.0, None), Box(None, 1.0)]


def _inside(box: Box, u: torch.Tensor) -> torch.Tensor:
    """Map u ∈ [0, 1] to points inside ``box`` (the sides included; unbounded: [−3, 3])."""
    lo = -3.0 if box.lo is None else box.lo
    hi = 3.0 if box.hi is None else box.hi
    return lo + (hi - lo) * u


def _objective(
    m: LinearModel, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: float
) -> float:
    """The true (unsmoothed) training objective of ``m``'s settings at ``(w, b)``."""
    probe = LinearModel(w=w, b=b, loss=m.loss, eps=m.eps, box=m.box, l2=m.l2)
    wc = worst_case_margin(probe, x, y, m.eps)
    per = F.softplus(-wc) if m.loss == "logistic" else (1 - wc).clamp(min=0)
    return float(per.mean() + m.l2 / 2 * w.square().sum())


def _blobs(n: int, d: int, seed: int, box: Box = UNIT) -> tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping classes inside ``box``: a few informative coordinates, the rest noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(D64)
    shift = torch.zeros(d, dtype=D64)
    shift[: max(1, d // 4)] = 0.25
    x = 0.5 + 0.2 * torch.randn(n, d, generator=g, dtype=D64) + y[:, None] * shift
    return box.clamp(x), y


# --- the exact worst case ------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    eps=st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5]),
    box_i=st.integers(0, len(BOXES) - 1),
    on_edge=st.booleans(),
)
def test_linf_worst_case_matches_brute_force(
    d: int, seed: int, eps: float, box_i: int, on_edge: bool
) -> None:
    box = BOXES[box_i]
    g = torch.Generator().manual_seed(seed)
    n = 8
    u = torch.rand(n, d, generator=g, dtype=D64)
    if on_edge:  # points on the box's faces: the room to one side is 0
        u = torch.where(u < 0.3, 0.0, torch.where(u > 0.7, 1.0, u))
    x = _inside(box, u)
    w = torch.randn(d, generator=g, dtype=D64)
    w[torch.rand(d, generator=g) < 0.2] = 0.0
    b = float(torch.randn((), generator=g, dtype=D64))
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(D64)
    m = _model(w, b, box)
    exact = worst_case_margin(m, x, y, eps)
    brute = torch.tensor(
        [_brute_force_linf(w, b, x[i], float(y[i]), eps, box) for i in range(n)], dtype=D64
    )
    torch.testing.assert_close(exact, brute.to(D64), rtol=0, atol=1e-12)
    if box.unbounded:
        torch.testing.assert_close(
            worst_case_reduction(w, x, y, eps), eps * w.abs().sum().expand(n), rtol=0, atol=1e-12
        )


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1), eps=st.floats(0.0, 3.0))
def test_l2_worst_case_is_attained_and_never_beaten(d: int, seed: int, eps: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, d, generator=g, dtype=D64)
    w = torch.randn(d, generator=g, dtype=D64)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=D64)
    m = _model(w, 0.3)
    exact = worst_case_margin(m, x, y, eps, norm="l2")
    # attained at x − ε y w/‖w‖₂
    star = x - eps * y[:, None] * w / w.norm()
    torch.testing.assert_close(margin(m, star, y), exact, rtol=0, atol=1e-10)
    # never beaten by points of the sphere
    dirs = torch.randn(200, d, generator=g, dtype=D64)
    dirs = eps * dirs / dirs.norm(dim=1, keepdim=True)
    for i in range(len(x)):
        trial = margin(m, x[i] + dirs, y[i].expand(200))
        assert float(trial.min()) >= float(exact[i]) - 1e-10


def test_l2_with_a_bounded_box_is_refused() -> None:
    x = torch.full((2, 3), 0.5, dtype=D64)
    y = torch.tensor([1.0, -1.0], dtype=D64)
    with pytest.raises(ParameterError, match=r"ℓ2.*box"):
        worst_case_reduction(torch.ones(3, dtype=D64), x, y, 0.1, norm="l2", box=UNIT)


def test_accuracy_counts_a_zero_margin_as_wrong() -> None:
    # one coordinate at 0.5, w = 1, b = −0.25: margin 0.25; ε = 0.25 brings it to exactly 0
    m = _model(torch.tensor([1.0], dtype=D64), -0.25)
    x = torch.tensor([[0.5]], dtype=D64)
    y = torch.tensor([1.0], dtype=D64)
    assert accuracy(m, x, y) == 1.0
    assert adversarial_accuracy(m, x, y, 0.125) == 1.0
    assert float(worst_case_margin(m, x, y, 0.25)) == 0.0
    assert adversarial_accuracy(m, x, y, 0.25) == 0.0
    # the box [0.4, 1] lets the adversary lower x only by 0.1: margin 0.15
    assert adversarial_accuracy(m, x, y, 0.25, box=Box(0.4, 1.0)) == 1.0


# --- fitting -------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fit_is_deterministic_and_order_free(loss: str, eps: float) -> None:
    x, y = _blobs(300, 12, seed=1)
    a = fit(x, y, loss=loss, l2=0.05, eps=eps, box=UNIT)
    b = fit(x, y, loss=loss, l2=0.05, eps=eps, box=UNIT)
    assert torch.equal(a.w, b.w) and a.b == b.b
    assert a.converged
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    c = fit(x[perm], y[perm], loss=loss, l2=0.05, eps=eps, box=UNIT)
    torch.testing.assert_close(c.w, a.w, rtol=0, atol=1e-4)  # the unique minimiser


@pytest.mark.parametrize(
    ("loss", "eps", "box"),
    [("logistic", 0.0, UNBOUNDED), ("logistic", 0.15, UNIT), ("logistic", 0.15, UNBOUNDED),
     ("hinge", 0.15, UNIT)],
)  # fmt: skip
def test_fit_is_a_minimum_of_the_true_objective(loss: str, eps: float, box: Box) -> None:
    x, y = _blobs(250, 10, seed=2)
    m = fit(x, y, loss=loss, l2=0.02, eps=eps, box=box)
    at_fit = _objective(m, x, y, m.w, m.b)
    if loss == "logistic":
        # the split w = u − v is exact: the solver's objective is the true one
        assert abs(at_fit - m.objective) < 1e-9
        slack = 1e-9
    else:
        # Huber smoothing: hinge − h_δ ∈ [0, δ/2]
        assert m.hinge_smoothing is not None
        assert -1e-12 <= at_fit - m.objective <= m.hinge_smoothing / 2 + 1e-12
        slack = m.hinge_smoothing / 2
    g = torch.Generator().manual_seed(0)
    for scale in (1e-1, 1e-2, 1e-3):
        for _ in range(10):
            dw = scale * torch.randn(m.dim, generator=g, dtype=D64)
            db = scale * float(torch.randn((), generator=g))
            assert _objective(m, x, y, m.w + dw, m.b + db) >= at_fit - slack


def test_features_restrict_the_weights() -> None:
    x, y = _blobs(200, 9, seed=4)
    sub = fit(x, y, l2=0.05, features=[7, 0, 3, 3])
    assert sub.features == (0, 3, 7)
    assert torch.all(sub.w[[1, 2, 4, 5, 6, 8]] == 0)
    assert torch.all(sub.w[[0, 3]] != 0)
    every = fit(x, y, l2=0.05, features=range(9))
    whole = fit(x, y, l2=0.05)
    torch.testing.assert_close(every.w, whole.w, rtol=0, atol=1e-6)


def test_no_bias_keeps_b_zero() -> None:
    x, y = _blobs(100, 4, seed=5)
    assert fit(x, y, l2=0.1, bias=False).b == 0.0


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
def test_lemma_d5_adversarial_training_zeroes_the_non_robust_features(loss: str) -> None:
    """tsipras2019 Lemma D.5: against ε ≥ 2η the adversarial loss puts no weight on x_2..x_{d+1}
    (their correlation η with y is below ε), while standard training uses them all."""
    ds = data.load("tsipras", "train", d=20, n=2000, eta=0.3, seed=0)
    x, y = ds.x.to(D64), signed_labels(ds.y, from_binary=True)
    standard = fit(x, y, loss=loss, l2=0.01)
    robust = fit(x, y, loss=loss, l2=0.01, eps=0.6)
    assert bool((standard.w[1:].abs() > 0.05).all())
    assert torch.all(robust.w[1:] == 0) and float(robust.w[0]) > 0
    # and so the robust model is right exactly where x_1 says y (App. D: accuracy p)
    assert adversarial_accuracy(robust, x, y, 0.6) == pytest.approx(
        float((x[:, 0] == y).to(D64).mean())
    )
    assert adversarial_accuracy(standard, x, y, 0.6) < 0.5


# --- into the lab: the Classifier and the attacks -------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_to_classifier_scores_like_the_model(normalize: bool) -> None:
    g = torch.Generator().manual_seed(0)
    m = _model(torch.randn(2 * 3 * 3, generator=g, dtype=D64), 0.7, UNIT)
    norm = {"mean": (0.2, 0.6), "std": (0.5, 2.0)} if normalize else {}
    clf = to_classifier(m, (2, 3, 3), dtype=D64, **norm)
    x = torch.rand(16, 2, 3, 3, generator=g, dtype=D64)
    torch.testing.assert_close(clf(x)[:, 0], m.score(x), rtol=0, atol=1e-12)
    assert clf.spec.box == UNIT and clf.spec.num_classes == 1
    y = torch.where(m.score(x) > 0, 1.0, -1.0)
    assert torch.equal(predict(clf(x)), (y > 0).long())  # class 1 ↔ y = +1
    with pytest.raises(ParameterError, match="input_shape"):
        to_classifier(m, (1, 28, 28))


@pytest.mark.parametrize("box", [UNBOUNDED, UNIT])
def test_pgd_reaches_the_exact_worst_case(box: Box) -> None:
    """The lab's PGD on the Classifier: never better than exact (so it stays in ball ∩ box),
    breaks exactly the non-robust points, and on the points it cannot break ends at the exact
    worst-case margin; attacks.evaluate's robust accuracy is the exact adversarial accuracy."""
    x, y = _blobs(120, 10, seed=6, box=UNIT)
    eps = 0.1
    m = fit(x, y, l2=0.05, box=box)
    clf = to_classifier(m, (10,), box=box, dtype=D64)
    y01 = (y > 0).long()
    exact = worst_case_margin(m, x, y, eps, box=box)
    x_adv = PGD(clf, eps, steps=40, seed=0)(x, y01)
    reached = margin(m, x_adv, y)
    assert float((reached - exact).min()) >= -1e-9  # never beats the exact minimum
    non_tie = exact.abs() > 1e-6
    assert int(non_tie.sum()) > 100 and bool((exact < 0).any()) and bool((exact > 0).any())
    broken = reached <= 0
    assert torch.equal(broken[non_tie], (exact <= 0)[non_tie])
    robust = non_tie & (exact > 0)
    torch.testing.assert_close(reached[robust], exact[robust], rtol=0, atol=1e-9)
    curve = attacks.evaluate(clf, x, y01, "pgd", [eps], steps=40, checks=False)
    assert curve.robust_accuracy[eps] == pytest.approx(adversarial_accuracy(m, x, y, eps, box=box))


# --- errors --------------------------------------------------------------------------------


def test_errors_name_the_field_and_the_fix() -> None:
    x, y = _blobs(20, 3, seed=7)
    with pytest.raises(ParameterError, match="signed_labels"):
        fit(x, (y > 0).long())
    with pytest.raises(ParameterError, match="loss"):
        fit(x, y, loss="squared")
    with pytest.raises(ParameterError, match="l2"):
        fit(x, y, l2=0)
    with pytest.raises(ParameterError, match="eps"):
        fit(x, y, eps=-0.1)
    with pytest.raises(ParameterError, match="features"):
        fit(x, y, features=[3])
    with pytest.raises(ParameterError, match="outside the box"):
        fit(x + 2, y, eps=0.1, box=UNIT)
    with pytest.raises(ParameterError, match="norm"):
        worst_case_reduction(torch.ones(3, dtype=D64), x, y, 0.1, norm="l1")
    with pytest.raises(ParameterError, match="3 features"):
        _model(torch.ones(4, dtype=D64)).score(x)
