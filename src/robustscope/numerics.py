"""Small numerical building blocks shared by attacks and probes (utility layer: torch only).

* :func:`per_example` — reshape per-example values ``[N]`` to broadcast against ``[N, ...]``;
* :func:`fix_sign` — the one sign convention of eigenvectors and singular vectors;
* :func:`gaussian_start` — a seeded Gaussian vector, the same on every device;
* :func:`power_iteration` — the top eigenpair of a batch of per-example positive
  semi-definite operators, each example stopping on its own, so that an example's result
  does not depend on the other examples of the batch;
* :func:`fisher_quadratic_form` — ``vᵀ F_x v`` for the input-space Fisher information of
  softmax outputs (shi2020 eq. 6) from the directional derivatives of ``log p``.

Example:
    >>> m = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 3.0]]], dtype=torch.float64)
    >>> top = power_iteration(lambda v: torch.einsum("nij,nj->ni", m, v),
    ...                       torch.ones(2, 2, dtype=torch.float64), iters=200, tol=1e-15)
    >>> top.value.round(decimals=9).tolist(), top.vector.round(decimals=6).tolist()
    ([2.0, 3.0], [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from robustscope.errors import ParameterError
from robustscope.params import parse_real, positive_int

__all__ = [
    "TopEigenpair",
    "fisher_quadratic_form",
    "fix_sign",
    "gaussian_start",
    "per_example",
    "power_iteration",
]

_TINY = 1e-300


def per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values [N]`` reshaped to ``[N, 1, …, 1]`` so that it broadcasts against ``like [N, ...]``.

    Example:
        >>> per_example(torch.tensor([1.0, 2.0]), torch.ones(2, 3, 4)).shape
        torch.Size([2, 1, 1])
    """
    return values.reshape((len(values),) + (1,) * (like.ndim - 1))


def fix_sign(v: torch.Tensor) -> torch.Tensor:
    """Each example (row) of ``v [N, ...]`` times ±1 so that its entry of largest magnitude is
    positive (the first such entry when several have that magnitude); zero rows unchanged.

    An eigenvector or singular vector is defined up to its sign; this makes the choice
    deterministic and independent of the algorithm that found it.

    Example:
        >>> fix_sign(torch.tensor([[0.5, -2.0, 1.0], [0.0, 0.0, 0.0]]))
        tensor([[-0.5000,  2.0000, -1.0000],
                [ 0.0000,  0.0000,  0.0000]])
    """
    if v.numel() == 0:
        return v
    flat = v.reshape(len(v), -1)
    pick = flat.gather(1, flat.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(pick < 0, -1.0, 1.0).to(v.dtype)
    return (flat * sign).reshape(v.shape)


def gaussian_start(
    shape: Sequence[int],
    seed: int | None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal draws of ``shape``: float64 from a CPU generator seeded with ``seed``
    (the global RNG when None), then cast and moved — the same values on every device.

    Example:
        >>> torch.equal(gaussian_start((3,), 7), gaussian_start((3,), 7))
        True
    """
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    draws = torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
    return draws.to(dtype=dtype, device=device)


@dataclass(frozen=True)
class TopEigenpair:
    """The result of :func:`power_iteration`, per example.

    Attributes:
        value: ``[N]`` float64, the Rayleigh quotient ``λ = vᵀMv`` of the returned vector
            (a lower bound of λ_max that converges to it), clamped at 0.
        vector: ``[N, d]`` unit vector v in the operator's dtype, sign fixed by
            :func:`fix_sign`; zeros where ``λ = 0``.
        iterations: ``[N]`` int64, products with M that the example used.
        rel_change: ``[N]`` float64, ``|λ_t − λ_{t−1}| / λ_t`` at its last iteration
            (0 where λ = 0; NaN after a single iteration).
    """

    value: torch.Tensor
    vector: torch.Tensor
    iterations: torch.Tensor
    rel_change: torch.Tensor


def _unit_rows(v: torch.Tensor) -> torch.Tensor:
    """Each row scaled to norm 1; zero rows stay zero (in any float dtype)."""
    norm = v.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, v / torch.where(norm > 0, norm, 1.0), 0.0)


def power_iteration(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    iters: int,
    tol: float,
) -> TopEigenpair:
    """The top eigenpair of a positive semi-definite operator ``M_n`` per example n, by power
    iteration with per-example stopping (von Mises; for the Fisher information: Zhao et al.
    2018, "The adversarial attack and detection under the Fisher information metric").

    From the unit ``v₀ = start_n / ‖start_n‖``, each iteration computes ``w = M_n v_t``, the
    Rayleigh quotient ``λ_t = ⟨v_t, w⟩`` (float64), and ``v_{t+1} = w / ‖w‖``. Example n stops
    — its ``(λ_t, v_t)`` frozen — as soon as ``|λ_t − λ_{t−1}| ≤ tol·λ_t`` or after ``iters``
    products. ``matvec`` keeps being applied to the whole batch (a linearisation built once
    per batch cannot be restricted to a subset), but a frozen example's values never change
    again, so the result of every example depends only on its own operator and start:
    running an example alone or inside any batch gives the same result.

    Convergence is geometric in ``λ₂/λ₁`` (``λ`` converges twice as fast as ``v``); with a
    start orthogonal to the top eigenvector (probability 0 for a Gaussian start) the
    iteration finds a lower eigenpair.

    Args:
        matvec: ``v [N, d] ↦ [M_n v_n]_n [N, d]``, row n depending only on ``v_n`` (e.g. a
            model in eval mode); M_n symmetric positive semi-definite.
        start: ``[N, d]`` start vectors. A start that does not depend on the batch
            composition is one vector shared by every example,
            ``gaussian_start((d,), seed).expand(N, d)``.
        iters: maximum number of products per example (≥ 1).
        tol: relative change of λ at which an example stops (0: only an exact repeat).

    Returns:
        a :class:`TopEigenpair`.

    Raises:
        ParameterError: ``iters < 1``, ``tol < 0`` or a start that is not ``[N, d]``.
    """
    iters = positive_int(iters, "power_iteration: iters")
    tol = parse_real(tol, "power_iteration: tol", minimum=0.0)
    if start.ndim != 2:
        raise ParameterError(
            f"power_iteration: start must be [N, d], got shape {tuple(start.shape)}; for one "
            "start shared by every example pass start_vector.expand(N, d)"
        )
    v = _unit_rows(start)
    n, dev = len(v), start.device
    lam = torch.zeros(n, dtype=torch.float64, device=dev)
    change = torch.full((n,), math.nan, dtype=torch.float64, device=dev)
    steps = torch.zeros(n, dtype=torch.int64, device=dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    for it in range(int(iters)):
        w = matvec(v).detach()
        new = (v.double() * w.double()).sum(1).clamp_min(0.0)
        if it > 0:
            rel = torch.where(new > 0, (new - lam).abs() / new.clamp_min(_TINY), 0.0)
            change = torch.where(done, change, rel)
        # λ = vᵀMv = 0 for a PSD M means Mv = 0: nothing left to iterate (also at the start)
        change = torch.where(~done & (new == 0), 0.0, change)
        lam = torch.where(done, lam, new)
        steps = torch.where(done, steps, steps + 1)
        done = done | (new == 0) | ((change <= tol) if it > 0 else False)
        if bool(done.all()):
            break
        if it < iters - 1:
            v = torch.where(done[:, None], v, _unit_rows(w))
    vector = torch.where((lam > 0)[:, None], fix_sign(v), torch.zeros_like(v))
    return TopEigenpair(value=lam, vector=vector, iterations=steps, rel_change=change)


def fisher_quadratic_form(probs: torch.Tensor, directional: torch.Tensor) -> torch.Tensor:
    """``vᵀ F_x v = Σ_k p_k (∇ₓ log p_k · v)²`` per example, in float64.

    ``F_x = Σ_k p_k ∇ₓ log p_k ∇ₓ log p_kᵀ`` is the input-space Fisher information of the
    softmax output distribution ``p(x)`` (shi2020 eq. 6; it is the Hessian at η = 0 of
    ``η ↦ KL(p(x) ‖ p(x + η))``), so the quadratic form needs only the K directional
    derivatives ``d_k = ∇ₓ log p_k · v`` — e.g. one Jacobian-vector product of ``log p``
    along v — and never the d × d matrix.

    Args:
        probs: ``[N, K]`` class probabilities p.
        directional: ``[N, K]`` the directional derivatives ``d_k`` of ``log p_k``.

    Returns:
        ``[N]`` float64.

    Example:
        >>> fisher_quadratic_form(torch.tensor([[0.25, 0.75]]), torch.tensor([[2.0, -1.0]]))
        tensor([1.7500], dtype=torch.float64)
    """
    if probs.shape != directional.shape or probs.ndim != 2:
        raise ValueError(
            "fisher_quadratic_form: probs and directional must both be [N, K], got "
            f"{tuple(probs.shape)} and {tuple(directional.shape)}"
        )
    return (probs.double() * directional.double().square()).sum(1)
