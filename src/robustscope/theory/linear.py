"""Binary linear classifiers ``sign(wᵀx + b)`` with the exact worst case of an ℓp adversary.

Tsipras et al. 2019 ("Robustness may be at odds with accuracy"), App. D and E: against an
ℓ∞ adversary of radius ε a linear classifier is correct on ``(x, y)``, ``y ∈ {−1, +1}``, iff

    y(wᵀx + b) − ε‖w‖₁ > 0                                   (App. E; Lemma D.5)

in R^D. With an input box ``[lo, hi]`` (images: :data:`~robustscope.data.box.UNIT`) the
adversary can only move each coordinate as far as the box lets it, and the worst-case
margin stays exact and separable per coordinate:

    min over x′ ∈ ball∞(x, ε) ∩ box of y(wᵀx′ + b) = y(wᵀx + b) − Σᵢ |wᵢ| · min(ε, roomᵢ),

    roomᵢ = xᵢ − lo  if y·wᵢ > 0 (the adversary decreases xᵢ),  hi − xᵢ  otherwise.

For ℓ2 the worst case is ``ε‖w‖₂`` in R^D; with a bounded box it has no closed form here and
is refused.

Fitting (:func:`fit`) minimises the adversarial loss of App. D (eq. 5 and the proof of
Lemma D.5) with the exact inner maximisation above::

    mean_n loss(worst-case margin_n) + λ/2 ‖w‖²,     loss ∈ {logistic, hinge}

on the training samples, full batch, in float64. The worst-case margin is concave in
``(w, b)`` and both losses are convex and non-increasing, so the objective is convex (and
strongly convex in ``w`` for λ > 0, which :func:`fit` requires: the minimiser is unique, so
the result does not depend on the optimiser's path). It is solved exactly as follows:

* ``w = u − v`` with ``u, v ≥ 0`` and the penalty ``λ/2(‖u‖² + ‖v‖²)``: the ℓ1-like
  reduction becomes linear in ``(u, v)`` (``Σᵢ a_ni uᵢ + c_ni vᵢ`` with the per-example
  rooms ``a, c ≥ 0``), and replacing any feasible ``(u, v)`` by ``(relu(w), relu(−w))``
  lowers neither term, so the split problem has the same minimiser ``w`` — with exact zeros
  where the adversary makes a weight useless (Fig. 5(a, b)). The smooth, bound-constrained
  problem goes to SciPy's L-BFGS-B, objective and gradient computed by torch in float64.
* The hinge (soft-margin SVM, eq. 5) is not differentiable; it is replaced by its Huber
  smoothing ``h_δ`` (quadratic on ``[1 − δ, 1]``), which satisfies ``0 ≤ hinge − h_δ ≤ δ/2``,
  so the minimiser of the smoothed objective is within ``δ/2`` of the hinge optimum in
  objective value (Nesterov 2005). δ goes 1 → 0.1 → … → ``hinge_smoothing`` (default
  1e-3), each stage warm-started from the last.

Example:
    >>> from robustscope.data.box import UNIT
    >>> x = torch.tensor([[0.9, 0.95], [0.1, 0.8]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> w = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> worst_case_reduction(w, x, y, 0.3).tolist()  # ε‖w‖₁ in R^D
    [0.6, 0.6]
    >>> [round(v, 6) for v in worst_case_reduction(w, x, y, 0.3, box=UNIT).tolist()]
    [0.35, 0.6]
    >>> m = fit(x, y, l2=0.1)
    >>> accuracy(m, x, y), adversarial_accuracy(m, x, y, 0.3, box=UNIT)
    (1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robustscope import models
from robustscope.data.box import UNBOUNDED, Box, BoxLike
from robustscope.errors import ParameterError
from robustscope.models.base import Classifier
from robustscope.params import parse_eps, parse_real, positive_int

__all__ = [
    "LOSSES",
    "NORMS",
    "LinearModel",
    "accuracy",
    "adversarial_accuracy",
    "fit",
    "flatten64",
    "margin",
    "signed_labels",
    "to_classifier",
    "worst_case_margin",
    "worst_case_reduction",
]

#: the losses :func:`fit` minimises
LOSSES: tuple[str, ...] = ("logistic", "hinge")
#: the norms of the exact worst case
NORMS: tuple[str, ...] = ("linf", "l2")

_DT = torch.float64
#: L-BFGS-B's relative-decrease stop (``ftol``), ~45 machine epsilons: looser values stopped
#: the smoothed-hinge fits measurably early (on 300 points, w off by 2e-3 between two orders of
#: the same data at 1e-12, 2e-6 at 1e-14)
FTOL = 1e-14


@dataclass(frozen=True)
class LinearModel:
    """A fitted binary linear classifier ``sign(wᵀx + b)`` and how it was fitted.

    Attributes:
        w: float64 ``[D]`` weights over the flattened input (0 outside ``features``).
        b: the bias (0.0 when fitted without one).
        loss: ``"logistic"`` or ``"hinge"``.
        eps: ℓ∞ radius of the adversarial training (0: standard training).
        box: the input box the inner maximisation respected.
        l2: λ of the penalty ``λ/2 ‖w‖²``.
        bias: whether ``b`` was fitted.
        features: the feature indices the fit was restricted to (None: all).
        objective: the final training objective (the smoothed one for the hinge).
        iterations: L-BFGS-B iterations over all stages.
        converged: every stage met its tolerance.
        hinge_smoothing: the final Huber δ of the hinge (None for the logistic loss).
    """

    w: torch.Tensor
    b: float
    loss: str
    eps: float
    box: Box
    l2: float
    bias: bool = True
    features: tuple[int, ...] | None = None
    objective: float = math.nan
    iterations: int = 0
    converged: bool = True
    hinge_smoothing: float | None = None

    @property
    def dim(self) -> int:
        """D, the input dimension."""
        return int(self.w.numel())

    @property
    def l1_norm(self) -> float:
        """‖w‖₁ (App. E, Table 5's last column)."""
        return float(self.w.abs().sum())

    @property
    def l2_norm(self) -> float:
        """‖w‖₂."""
        return float(self.w.norm())

    def nonzero(self, atol: float = 0.0) -> int:
        """Number of weights with ``|wᵢ| > atol``."""
        return int((self.w.abs() > atol).sum())

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``wᵀx + b`` (float64 ``[N]``) of inputs ``[N, ...]`` (flattened)."""
        return flatten64(x, self.dim) @ self.w + self.b

    def to_dict(self) -> dict[str, Any]:
        """JSON summary (no weights): how it was fitted and the norms of ``w``."""
        return {
            "loss": self.loss,
            "eps": self.eps,
            "box": self.box.to_json(),
            "l2": self.l2,
            "bias": self.bias,
            "b": self.b,
            "features": None if self.features is None else len(self.features),
            "w_l1": self.l1_norm,
            "w_l2": self.l2_norm,
            "nonzero": self.nonzero(),
            "objective": self.objective,
            "iterations": self.iterations,
            "converged": self.converged,
            "hinge_smoothing": self.hinge_smoothing,
        }


# --- inputs --------------------------------------------------------------------------------


def flatten64(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``x`` ``[N, ...]`` as float64 ``[N, D]`` (checked against ``dim`` when given)."""
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ParameterError(f"x must be a tensor [N, ...], got {type(x).__name__}")
    flat = x.detach().reshape(len(x), -1).to(_DT)
    if dim is not None and flat.shape[1] != dim:
        raise ParameterError(
            f"x has {flat.shape[1]} features per example but the model has {dim}: "
            "give inputs of the shape the model was fitted on"
        )
    return flat


def signed_labels(y: torch.Tensor, *, from_binary: bool = False) -> torch.Tensor:
    """Labels as float64 ``±1`` ``[N]``.

    Args:
        y: labels in {−1, +1}, or (``from_binary=True``) class indices in {0, 1} with
            class 1 ↔ +1 (the lab's binary-score convention:
            :func:`robustscope.evaluation.predict` says 1 where the score is positive).

    Example:
        >>> signed_labels(torch.tensor([0, 1, 1]), from_binary=True).tolist()
        [-1.0, 1.0, 1.0]
    """
    y = torch.as_tensor(y).detach().reshape(-1)
    if from_binary:
        if not bool(((y == 0) | (y == 1)).all()):
            raise ParameterError("y must hold class indices 0 and 1 when from_binary=True")
        return y.to(_DT) * 2 - 1
    if not bool(((y == 1) | (y == -1)).all()):
        raise ParameterError(
            "y must hold labels −1 and +1; for 0/1 class indices use "
            "signed_labels(y, from_binary=True)"
        )
    return y.to(_DT)


def _norm(norm: str) -> str:
    if norm not in NORMS:
        raise ParameterError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def _rooms(x: torch.Tensor, eps: float, box: Box) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, c)`` ``[N, D]``: how far each coordinate can move down (``a``) and up (``c``),
    at most ε, inside ``box``."""
    if not bool(box.contains(x).all()):
        raise ParameterError(
            f"x has values outside the box {box} (range [{float(x.min()):g}, "
            f"{float(x.max()):g}]): give box= the inputs' own box (e.g. UNBOUNDED)"
        )
    full = torch.full_like(x, eps)
    a = full if box.lo is None else (x - box.lo).clamp(max=eps)
    c = full if box.hi is None else (box.hi - x).clamp(max=eps)
    return a, c


def _reduction(
    a: torch.Tensor, c: torch.Tensor, y: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
) -> torch.Tensor:
    """``Σᵢ a_ni relu(y_n wᵢ) + c_ni relu(−y_n wᵢ)`` with ``pos = relu(w)``, ``neg = relu(−w)``
    (or any ``u, v ≥ 0`` with ``w = u − v``: then an upper bound, equal when ``min(u, v) = 0``)."""
    up = a @ pos + c @ neg  # y = +1: the adversary lowers the coordinates with wᵢ > 0
    down = a @ neg + c @ pos  # y = −1: it lowers those with wᵢ < 0
    return torch.where(y > 0, up, down)


# --- the exact worst case ------------------------------------------------------------------


def worst_case_reduction(
    w: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    norm: str = "linf",
    box: BoxLike = UNBOUNDED,
) -> torch.Tensor:
    """How much the worst ℓp perturbation of radius ε inside ``box`` lowers ``y(wᵀx + b)``.

    Exact (module doc): ℓ∞ in R^D gives ``ε‖w‖₁`` (App. E), ℓ∞ in a box gives
    ``Σᵢ |wᵢ|·min(ε, roomᵢ)``, ℓ2 in R^D gives ``ε‖w‖₂``. Differentiable in ``w``.

    Args:
        w: weights ``[D]``.
        x: inputs ``[N, ...]`` (flattened to ``[N, D]``), inside ``box``.
        y: labels in {−1, +1} ``[N]``.
        eps: the radius (a number or a fraction such as ``"8/255"``).
        norm: ``"linf"`` or ``"l2"`` (ℓ2 only with an unbounded box).
        box: the input box (default unbounded).

    Returns:
        float64 ``[N]``, ≥ 0.
    """
    eps_ = parse_eps(eps, "eps")
    norm = _norm(norm)
    box_ = Box.parse(box, what="box")
    w64 = w.to(_DT).reshape(-1)
    xf = flatten64(x, w64.numel())
    ys = signed_labels(y)
    if len(ys) != len(xf):
        raise ParameterError(f"y has {len(ys)} labels for {len(xf)} inputs")
    if norm == "l2":
        if not box_.unbounded:
            raise ParameterError(
                f"the exact ℓ2 worst case is only available without an input box (got box "
                f"{box}): use box=UNBOUNDED, or norm='linf' for a bounded box"
            )
        return torch.full((len(xf),), eps_, dtype=_DT) * w64.norm()
    if box_.unbounded:
        return torch.ones(len(xf), dtype=_DT) * (eps_ * w64.abs().sum())
    a, c = _rooms(xf, eps_, box_)
    return _reduction(a, c, ys, w64.clamp(min=0), (-w64).clamp(min=0))


def margin(model: LinearModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The clean margin ``y(wᵀx + b)``, float64 ``[N]``."""
    return signed_labels(y) * model.score(x)


def worst_case_margin(
    model: LinearModel,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    norm: str = "linf",
    box: BoxLike | None = None,
) -> torch.Tensor:
    """``min over x′ ∈ ball(x, ε) ∩ box of y(wᵀx′ + b)``, exactly (module doc), float64 ``[N]``.

    ``box`` defaults to the box the model was fitted in (``model.box``).
    """
    reduction = worst_case_reduction(
        model.w, x, y, eps, norm=norm, box=model.box if box is None else box
    )
    return margin(model, x, y) - reduction


def accuracy(model: LinearModel, x: torch.Tensor, y: torch.Tensor) -> float:
    """Standard accuracy: the fraction with ``y(wᵀx + b) > 0`` (a zero score is wrong)."""
    return float((margin(model, x, y) > 0).to(_DT).mean())


def adversarial_accuracy(
    model: LinearModel,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    norm: str = "linf",
    box: BoxLike | None = None,
) -> float:
    """Exact adversarial accuracy: the fraction whose worst-case margin is ``> 0`` (a margin
    of exactly 0 is wrong: the adversary reaches the decision boundary)."""
    wc = worst_case_margin(model, x, y, eps, norm=norm, box=box)
    return float((wc > 0).to(_DT).mean())


# --- fitting -------------------------------------------------------------------------------


def _huber_hinge(m: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber-smoothed hinge: ``0 ≤ max(0, 1 − m) − h_δ(m) ≤ δ/2``."""
    t = 1.0 - m
    return torch.where(t >= delta, t - delta / 2, t.clamp(min=0) ** 2 / (2 * delta))


def _features(features: Sequence[int] | None, dim: int) -> tuple[int, ...] | None:
    if features is None:
        return None
    try:
        idx = sorted({int(i) for i in features})
    except (TypeError, ValueError):
        raise ParameterError(f"features must be integer indices, got {features!r}") from None
    if not idx or idx[0] < 0 or idx[-1] >= dim:
        raise ParameterError(
            f"features must be a non-empty set of indices in [0, {dim}), got "
            f"{len(idx)} indices" + (f" in [{idx[0]}, {idx[-1]}]" if idx else "")
        )
    return tuple(idx)


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str = "logistic",
    l2: float | str = 1e-3,
    eps: float | str = 0.0,
    box: BoxLike = UNBOUNDED,
    bias: bool = True,
    features: Sequence[int] | None = None,
    max_iter: int = 5000,
    tol: float = 1e-8,
    hinge_smoothing: float = 1e-3,
) -> LinearModel:
    """Fit ``sign(wᵀx + b)`` by (adversarial) empirical risk minimisation, deterministically.

    Minimises ``mean_n loss(y_n(wᵀx_n + b) − R_n(w)) + λ/2 ‖w‖²`` where ``R_n`` is the exact
    ℓ∞ worst-case reduction of radius ``eps`` in ``box`` (:func:`worst_case_reduction`; 0 for
    standard training) — the adversarial loss of Tsipras et al. 2019, App. D (proof of
    Lemma D.5), with the box of App. E's images. See the module doc for the solver (L-BFGS-B
    on the split ``w = u − v``, torch float64 objective; Huber-smoothed hinge). Starts from
    ``w = 0, b = 0``; the objective is strongly convex in ``w``, so the fit is unique.

    Args:
        x: training inputs ``[N, ...]`` (flattened), inside ``box``.
        y: labels in {−1, +1} ``[N]`` (see :func:`signed_labels`).
        loss: ``"logistic"`` (``log(1 + e^{−m})``) or ``"hinge"`` (``max(0, 1 − m)``, the
            soft-margin SVM of eq. 5).
        l2: λ > 0.
        eps: ℓ∞ radius of adversarial training (0: standard training).
        box: the input box the adversary stays in (``UNIT`` for images).
        bias: fit ``b`` (unpenalised); False keeps ``b = 0``.
        features: restrict ``w`` to these flattened indices (the others stay exactly 0).
        max_iter: L-BFGS-B iterations per stage.
        tol: L-BFGS-B's projected-gradient tolerance (``gtol``; it also stops when the
            objective's relative decrease falls below :data:`FTOL`).
        hinge_smoothing: the final Huber δ of the hinge (the objective is within δ/2 of the
            hinge's).

    Returns:
        a :class:`LinearModel`.
    """
    from scipy.optimize import minimize

    if loss not in LOSSES:
        raise ParameterError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    lam = parse_real(l2, "l2", minimum=0.0, strict=True)
    eps_ = parse_eps(eps, "eps")
    box_ = Box.parse(box, what="box")
    max_iter = positive_int(max_iter, "max_iter")
    tol = parse_real(tol, "tol", minimum=0.0, strict=True)
    delta_end = parse_real(hinge_smoothing, "hinge_smoothing", minimum=0.0, strict=True)
    xf = flatten64(x)
    ys = signed_labels(y)
    n, dim = xf.shape
    if len(ys) != n or n == 0:
        raise ParameterError(f"x and y must have the same N ≥ 1, got {n} inputs, {len(ys)} labels")
    feats = _features(features, dim)
    xs = xf if feats is None else xf[:, list(feats)]
    d = xs.shape[1]
    a, c = _rooms(xs, eps_, box_)  # also checks that the inputs lie in the box
    adversarial = eps_ > 0

    def objective(theta: torch.Tensor, delta: float) -> torch.Tensor:
        u, v, b = theta[:d], theta[d : 2 * d], theta[2 * d]
        m = ys * (xs @ (u - v) + b)
        if adversarial:
            m = m - _reduction(a, c, ys, u, v)
        per_example = F.softplus(-m) if loss == "logistic" else _huber_hinge(m, delta)
        data_term = per_example.mean()
        return data_term + lam / 2 * (u.square().sum() + v.square().sum())

    def fun(z: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
        theta = torch.from_numpy(z).requires_grad_(True)
        value = objective(theta, delta)
        (grad,) = torch.autograd.grad(value, theta)
        return float(value.detach()), grad.numpy().copy()

    bounds = [(0.0, None)] * (2 * d) + [(None, None) if bias else (0.0, 0.0)]
    z = np.zeros(2 * d + 1, dtype=np.float64)
    if loss == "logistic":
        deltas = [math.nan]
    else:
        deltas = []
        delta = 1.0
        while delta > delta_end * (1 + 1e-9):
            deltas.append(delta)
            delta /= 10
        deltas.append(delta_end)
    iterations, converged, value = 0, True, math.nan
    for delta in deltas:
        res = minimize(
            fun,
            z,
            args=(delta,),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": max_iter, "maxfun": 4 * max_iter, "ftol": FTOL, "gtol": tol},
        )
        z = np.asarray(res.x, dtype=np.float64)
        iterations += int(res.nit)
        converged = converged and bool(res.success)
        value = float(res.fun)
    u, v = torch.from_numpy(z[:d]), torch.from_numpy(z[d : 2 * d])
    w_sub = u - v
    w = torch.zeros(dim, dtype=_DT)
    if feats is None:
        w = w_sub.clone()
    else:
        w[list(feats)] = w_sub
    return LinearModel(
        w=w,
        b=float(z[2 * d]) if bias else 0.0,
        loss=loss,
        eps=eps_,
        box=box_,
        l2=lam,
        bias=bool(bias),
        features=feats,
        objective=value,
        iterations=iterations,
        converged=converged,
        hinge_smoothing=None if loss == "logistic" else delta_end,
    )


# --- into the lab --------------------------------------------------------------------------


def to_classifier(
    model: LinearModel,
    input_shape: Sequence[int],
    box: BoxLike | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Classifier:
    """``model`` as the lab's ``linear`` Classifier with one output (a binary score), so the
    attacks, evaluation and probes run on it.

    The score is ``wᵀx + b`` in pixel space: positive ↔ class 1 ↔ ``y = +1``
    (:func:`robustscope.evaluation.predict`). With a normalization ``mean``/``std`` (the
    model's first layer) the head is set to ``w·std`` and ``b + Σᵢ wᵢ·meanᵢ`` so that the
    score is unchanged.

    Args:
        model: a fitted :class:`LinearModel`.
        input_shape: one input's shape (``(C, H, W)`` or ``(D,)``); its product must be D.
        box: the box the classifier declares (attacks read it from there); default
            ``model.box``, the box it was fitted in — give ``UNIT`` for an image model fitted
            without one.
        mean, std: optional normalization of the classifier's first layer.
        dtype: of the classifier's parameters (float64 keeps the weights exact).

    Example:
        >>> m = LinearModel(w=torch.tensor([1.0, -2.0], dtype=torch.float64), b=0.5,
        ...                 loss="logistic", eps=0.0, box=UNBOUNDED, l2=1.0)
        >>> clf = to_classifier(m, (2,))
        >>> clf(torch.tensor([[1.0, 1.0]])).tolist()
        [[-0.5]]
    """
    shape = tuple(int(s) for s in input_shape)
    if math.prod(shape) != model.dim:
        raise ParameterError(
            f"input_shape {shape} has {math.prod(shape)} values but the model has "
            f"D = {model.dim} weights: give the shape the model was fitted on"
        )
    clf = models.create(
        "linear", 1, shape, mean=mean, std=std, box=model.box if box is None else box
    ).to(dtype)
    flat_mean = torch.broadcast_to(clf.normalize.mean.to(_DT), (1, *shape)).reshape(-1)
    flat_std = torch.broadcast_to(clf.normalize.std.to(_DT), (1, *shape)).reshape(-1)
    head = clf.head
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.weight.copy_((model.w * flat_std).reshape(1, -1).to(head.weight.dtype))
        assert head.bias is not None
        head.bias.fill_(model.b + float(model.w @ flat_mean))
    return clf
