"""The input-space Fisher information of a classifier, and the Fisher-metric attack.

For a classifier with class probabilities ``p(x) = softmax(f(x))`` (K classes, input
dimension d) the Fisher information of the output distribution with respect to the
*input* (shi2020 eq. 6; Zhao et al. 2018) is the d×d matrix ::

    F_x = Σ_j p_j(x) ∇ₓ log p_j(x) ∇ₓ log p_j(x)ᵀ = Gᵀ diag(p) G,

with G the K×d matrix whose rows are ``g_j = ∇ₓ log p_j``. It is the Hessian at η = 0
of ``η ↦ KL(p(x) ‖ p(x + η))``, so its top eigenvector is the locally most damaging
direction for the output distribution and its top eigenvalue λ_max (its spectral norm)
bounds the KL within an ℓ2 ball of radius ε to second order:
``KL(p(x) ‖ p(x + η)) = ½ ηᵀF_xη + O(ε³) ≤ ½ λ_max ε²`` — the lab's one convention, with
the ½ of the Taylor expansion (terzi2021 Prop. 0.3 writes ½ ε² λ₁ too). shi2020 eqs. 7–8
drop the ½ and write the bound as ``λ_max ε²``; the two differ by that constant factor only.

F_x has rank ≤ K − 1 (``Gᵀ p = Σ_j ∇p_j = 0``), and ``F_x = AᵀA`` with
``A = diag(√p) G`` shares its nonzero spectrum with the K×K Gram matrix
``M = A Aᵀ = diag(√p) G Gᵀ diag(√p)``: if ``M u = λ u`` then ``F_x (Aᵀu) = λ Aᵀu`` and
``‖Aᵀu‖² = λ``. :func:`input_fisher_gram` therefore computes G (K − 1 backward passes),
M, and the float64 eigendecomposition of M — never a d×d matrix. :func:`input_fisher_power`
is the matrix-free alternative of Zhao et al. (power iteration with Jacobian-vector and
vector-Jacobian products), kept for cross-checking.

:class:`FisherAttack` perturbs along the top eigenvector (Zhao et al. 2018).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustscope.attacks._jacobian import GradMethod, output_grads
from robustscope.attacks.base import Attack, attack_mode
from robustscope.attacks.gradient import BestKeeper
from robustscope.attacks.losses import _binary_as_two, ce_loss
from robustscope.attacks.registry import register
from robustscope.data.box import BoxLike
from robustscope.device import model_device
from robustscope.errors import AttackError, RobustscopeError
from robustscope.numerics import (
    fisher_quadratic_form,
    fix_sign,
    gaussian_start,
    per_example,
    power_iteration,
)
from robustscope.params import positive_int

__all__ = [
    "FISHER_METHODS",
    "FisherAttack",
    "FisherGram",
    "FisherTop",
    "fisher_top",
    "input_fisher_gram",
    "input_fisher_power",
    "input_fisher_quadratic_form",
]

FisherMethod = Literal["gram", "power"]
FISHER_METHODS: tuple[str, ...] = ("gram", "power")


@dataclass(frozen=True)
class FisherTop:
    """Top eigenpair of the input-space Fisher information, per example.

    Attributes:
        eigenvalue: ``[N]`` float64, λ_max(F_x) (the spectral norm of shi2020 eq. 8).
        eigenvector: ``[N, ...]`` (input-shaped, the input's dtype), unit ℓ2 norm, sign fixed
            so that its entry of largest magnitude is positive
            (:func:`robustscope.numerics.fix_sign`); zero where λ_max = 0.
        iterations: the largest number of power iterations an example used (0 for the
            exact Gram method).
    """

    eigenvalue: torch.Tensor
    eigenvector: torch.Tensor
    iterations: int = 0


@dataclass(frozen=True)
class FisherGram:
    """Exact input-space Fisher information F_x of a batch, held in its K×K Gram form.

    F_x is shi2020 eq. 6, ``F_x = Σ_j p_j ∇ₓ log p_j ∇ₓ log p_jᵀ = Gᵀ diag(p) G`` (d×d,
    never built). Its nonzero eigenvalues are those of ``M = diag(√p) G Gᵀ diag(√p)``
    (K×K), and its eigenvectors are ``Gᵀ diag(√p) u / √λ`` for M's eigenpairs (λ, u).
    A binary score model (one logit s) is read as the two logits (0, s).

    Attributes:
        probs: ``[N, K]`` float64, the class probabilities p.
        grads: ``[N, K, ...]`` float64, G: row j is ``∇ₓ log p_j`` (input-shaped).
        gram: ``[N, K, K]`` float64, M.
        input_dtype: dtype of the inputs (that of :attr:`top_eigenvector`).

    All spectral quantities below are float64 ``[N]`` or ``[N, K]``:

    * :attr:`eigenvalues` — the K eigenvalues of M, descending (F_x's top K; the other
      d − K are zero; at least one of the K is zero since ``M √p = 0``);
    * :attr:`spectral_norm` (= :attr:`top_eigenvalue`) — λ_max(F_x);
    * :attr:`frobenius` — ``‖F_x‖_F = ‖M‖_F`` (shi2020 plots its average during training);
    * :attr:`trace` — ``tr F_x = Σ_j p_j ‖∇ₓ log p_j‖²``.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> fg = input_fisher_gram(model, torch.rand(4, 1, 8, 8))
        >>> fg.eigenvalues.shape, fg.top_eigenvector.shape
        (torch.Size([4, 10]), torch.Size([4, 1, 8, 8]))
    """

    probs: torch.Tensor
    grads: torch.Tensor
    gram: torch.Tensor
    input_dtype: torch.dtype = torch.float32

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.grads.shape[2:])

    @cached_property
    def _eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """M's eigenvalues (descending, clamped at 0) and eigenvectors (columns, same order)."""
        vals, vecs = torch.linalg.eigh(self.gram)
        return vals.flip(-1).clamp_min(0.0), vecs.flip(-1)

    @property
    def eigenvalues(self) -> torch.Tensor:
        """``[N, K]`` float64: F_x's K largest eigenvalues, descending."""
        return self._eigh[0]

    @property
    def top_eigenvalue(self) -> torch.Tensor:
        """``[N]`` float64: λ_max(F_x)."""
        return self._eigh[0][:, 0]

    @property
    def spectral_norm(self) -> torch.Tensor:
        """``[N]`` float64: ‖F_x‖₂ = λ_max(F_x) (F_x is positive semi-definite)."""
        return self.top_eigenvalue

    @property
    def frobenius(self) -> torch.Tensor:
        """``[N]`` float64: ‖F_x‖_F = ‖M‖_F = (Σ λ_i²)^½."""
        return torch.linalg.matrix_norm(self.gram, ord="fro")

    @property
    def trace(self) -> torch.Tensor:
        """``[N]`` float64: tr F_x = tr M = Σ_j p_j ‖∇ₓ log p_j‖²."""
        return self.gram.diagonal(dim1=1, dim2=2).sum(-1)

    def eigenvectors(self, k: int | None = None) -> torch.Tensor:
        """``[N, k, ...]`` float64: F_x's eigenvectors of the k largest eigenvalues (all K
        by default), unit ℓ2 norm, signs fixed (largest-magnitude entry positive); a vector
        whose eigenvalue is 0 is returned as zeros."""
        vals, vecs = self._eigh
        k = vals.shape[1] if k is None else min(int(k), vals.shape[1])
        n = len(vals)
        a = self.grads.flatten(2) * self.probs.sqrt()[:, :, None]  # diag(√p) G
        v = torch.einsum("nkd,nkm->nmd", a, vecs[:, :, :k])  # Aᵀ u for each eigenvector u
        norms = v.norm(dim=2, keepdim=True)
        rel = vals[:, :k, None] > 1e-12 * vals[:, :1, None].clamp_min(1e-300)
        v = torch.where(rel & (norms > 0), v / norms.clamp_min(1e-300), torch.zeros_like(v))
        return fix_sign(v.flatten(0, 1)).reshape(n, k, *self.input_shape)

    @property
    def top_eigenvector(self) -> torch.Tensor:
        """``[N, ...]`` (input dtype): the unit top eigenvector of F_x, sign fixed."""
        return self.eigenvectors(1)[:, 0].to(self.input_dtype)

    def quadratic_form(self, v: torch.Tensor) -> torch.Tensor:
        """``[N]`` float64: ``vᵀ F_x v = Σ_j p_j ⟨∇ₓ log p_j, v⟩²`` for input-shaped ``v``."""
        proj = torch.einsum("nkd,nd->nk", self.grads.flatten(2), v.flatten(1).double())
        return fisher_quadratic_form(self.probs, proj)

    def top(self) -> FisherTop:
        """The top eigenpair as a :class:`FisherTop`."""
        return FisherTop(self.top_eigenvalue, self.top_eigenvector, 0)


def _log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(_binary_as_two(model(x)), dim=1)


@contextmanager
def _forward_ad() -> Iterator[None]:
    """Gradients on, and quiet: torch's forward-AD decompositions call the deprecated
    ``torch.jit.script`` on first use."""
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.*", category=DeprecationWarning
        )
        yield


def input_fisher_quadratic_form(
    model: nn.Module, x: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vᵀ F_x v, log p(x))`` per example, exactly, by one Jacobian-vector product.

    One forward-mode JVP of ``log p`` along v gives the K directional derivatives
    ``∇ₓ log p_k · v``, and :func:`robustscope.numerics.fisher_quadratic_form` sums
    ``p_k (∇ₓ log p_k · v)²`` (shi2020 eq. 6; no d × d matrix). The model runs in eval mode
    with frozen parameters (restored afterwards).

    Args:
        model: maps ``[N, ...]`` inputs to logits (binary single scores read as (0, s)).
        x: ``[N, ...]`` points; v: ``[N, ...]`` directions.

    Returns:
        ``([N], [N, K])`` float64 on the CPU.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> x, v = torch.rand(4, 3), torch.rand(4, 3)
        >>> q, _ = input_fisher_quadratic_form(model, x, v)
        >>> bool(torch.allclose(q, input_fisher_gram(model, x).quadratic_form(v)))
        True
    """
    device = model_device(model)
    xd, vd = x.detach().to(device), v.detach().to(device, x.dtype)
    with attack_mode(model), _forward_ad():
        out = torch.func.jvp(lambda t: _log_probs(model, t), (xd,), (vd,))
        lp, jv = out[0], out[1]
    lp = lp.detach().double()
    return fisher_quadratic_form(lp.exp(), jv.detach()).cpu(), lp.cpu()


def input_fisher_gram(
    model: nn.Module, x: torch.Tensor, *, grad_method: GradMethod = "loop"
) -> FisherGram:
    """Exact input-space Fisher information (shi2020 eq. 6) of each example, in Gram form.

    Algorithm: one forward pass gives the logits z; K − 1 backward passes give the
    gradients ``D_j = ∇ₓ(z_j − z_K)``; then (in float64) ``∇ₓ log p_j = D_j − Σ_k p_k D_k``
    (``D_K = 0``), ``M = diag(√p) G Gᵀ diag(√p)``. Cost: one forward and K − 1 backward
    passes per batch, memory ``N·K·d`` float64 for G. The model runs in eval mode with
    frozen parameters (its mode and flags are restored).

    Args:
        model: maps ``[N, ...]`` inputs to logits ``[N, K]`` (or a binary score ``[N, 1]``).
        x: ``[N, ...]`` floating-point inputs (moved to the model's device).
        grad_method: how the K − 1 gradient rows are computed (see
            :func:`robustscope.attacks._jacobian.output_grads`); ``"loop"`` was fastest on CPU.

    Returns:
        a :class:`FisherGram` on the model's device.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> fg = input_fisher_gram(model, torch.rand(2, 1, 8, 8))
        >>> bool(torch.allclose(fg.trace, fg.eigenvalues.sum(1)))
        True
    """
    if not torch.is_floating_point(x):
        raise RobustscopeError(f"input_fisher_gram: inputs must be floating point, got {x.dtype}")
    xd = x.detach().to(model_device(model))
    with attack_mode(model), torch.enable_grad():
        xg = xd.clone().requires_grad_(True)
        z = _binary_as_two(model(xg))
        k = z.shape[1]
        d = output_grads(z[:, : k - 1] - z[:, k - 1 :], xg, grad_method)  # [N, K-1, ...]
    n = len(xd)
    probs = F.softmax(z.detach().double(), dim=1)
    dim = math.prod(xd.shape[1:])
    dd = torch.zeros(n, k, dim, dtype=torch.float64, device=xd.device)
    dd[:, : k - 1] = d.reshape(n, k - 1, dim)
    g = dd - torch.einsum("nk,nkd->nd", probs, dd)[:, None, :]
    a = g * probs.sqrt()[:, :, None]
    gram = a @ a.transpose(1, 2)
    gram = 0.5 * (gram + gram.transpose(1, 2))
    return FisherGram(
        probs=probs,
        grads=g.reshape(n, k, *xd.shape[1:]),
        gram=gram,
        input_dtype=x.dtype,
    )


def input_fisher_power(
    model: nn.Module,
    x: torch.Tensor,
    *,
    iters: int = 100,
    tol: float = 1e-7,
    seed: int | None = None,
) -> FisherTop:
    """Top eigenpair of the input-space Fisher information by power iteration (Zhao et al. 2018).

    Matrix-free: with ``ℓ(x) = log p(x)`` (``[K]``) and J its input Jacobian,
    ``F_x v = Jᵀ (p ⊙ J v)`` costs one Jacobian-vector product (forward-mode,
    ``torch.func.jvp``) and one vector-Jacobian product (``torch.func.vjp``).
    :func:`robustscope.numerics.power_iteration` runs ``v ← F_x v / ‖F_x v‖`` from one
    Gaussian start shared by every example (seeded by ``seed``), each example stopping once
    its Rayleigh quotient ``λ = vᵀF_x v`` changes by at most ``tol`` (relative) or after
    ``iters`` products — so an example's result does not depend on the rest of the batch.
    Convergence is geometric in ``λ₂/λ₁``; prefer the exact :func:`input_fisher_gram`, this
    is its cross-check.

    Args:
        model: maps ``[N, ...]`` inputs to logits (or a binary score ``[N, 1]``).
        x: ``[N, ...]`` floating-point inputs.
        iters: maximum number of power iterations.
        tol: relative change of λ below which an example has converged.
        seed: seed of the random start (None: the global RNG).

    Returns:
        a :class:`FisherTop` (eigenvalue float64; eigenvector in the input's dtype).
    """
    if not torch.is_floating_point(x):
        raise RobustscopeError(f"input_fisher_power: inputs must be floating point, got {x.dtype}")
    iters = positive_int(iters, "input_fisher_power: iters", error=AttackError)
    if not tol >= 0:
        raise RobustscopeError(f"input_fisher_power: tol must be ≥ 0, got {tol!r}")
    xd = x.detach().to(model_device(model))
    n, d = len(xd), math.prod(xd.shape[1:])
    if n == 0:
        return FisherTop(torch.zeros(0, dtype=torch.float64, device=xd.device), x[:0], 0)

    def f(inp: torch.Tensor) -> torch.Tensor:
        return _log_probs(model, inp)

    start = gaussian_start((d,), seed, dtype=xd.dtype, device=xd.device).expand(n, d)
    with attack_mode(model), _forward_ad():
        linear = torch.func.vjp(f, xd)
        logp, vjp_fn = linear[0], linear[1]
        p = logp.detach().exp()

        def fisher_times(v: torch.Tensor) -> torch.Tensor:
            jv = torch.func.jvp(f, (xd,), (v.reshape(xd.shape),))[1]
            return vjp_fn(p * jv)[0].reshape(n, d)

        top = power_iteration(fisher_times, start, iters=iters, tol=tol)
    vec = top.vector.reshape(xd.shape).to(x.dtype)
    return FisherTop(top.value, vec, int(top.iterations.max()))


def fisher_top(
    model: nn.Module,
    x: torch.Tensor,
    method: FisherMethod = "gram",
    *,
    iters: int = 100,
    seed: int | None = None,
) -> FisherTop:
    """Top eigenpair of F_x by the exact Gram method or by power iteration (``iters``, ``seed``)."""
    if method == "gram":
        return input_fisher_gram(model, x).top()
    if method == "power":
        return input_fisher_power(model, x, iters=iters, seed=seed)
    raise RobustscopeError(
        f"unknown Fisher method {method!r}; valid methods: {', '.join(FISHER_METHODS)}"
    )


@register("fisher")
class FisherAttack(Attack):
    """Fisher-information attack (Zhao et al. 2018): step along the top eigenvector of F_x.

    Zhao et al. 2018, "The adversarial attack and detection under the Fisher information
    metric".

    One step (``steps=1``, the paper's attack)::

        v = top eigenvector of F_x (shi2020 eq. 6),  x′ = P_S(x + s · α · v)

    (ℓ∞: ``α · sign(v)``), with α = ε and the sign s ∈ {±1} whose point has the larger
    cross-entropy (both are evaluated: F_x is blind to the sign, KL grows either way to
    second order). With ``steps > 1`` the step is repeated from the current point (v
    recomputed there) and projected onto ``S = ball(x, ε) ∩ box`` each time; the point
    returned follows :class:`~robustscope.attacks.gradient.BestKeeper`'s rule (first
    misclassified iterate, else the one of highest cross-entropy).

    Cost per step: one forward and K − 1 backward passes (exact Gram method), or 2 per power
    iteration (``method="power"``), plus two forward passes for the sign.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        norm: ``"l2"`` (default, the metric of the paper) or ``"linf"``.
        steps: number of steps (1: the one-step attack).
        step_size: α; default ε for one step, ``2.5 ε / steps`` otherwise (as PGD).
        method: ``"gram"`` (exact eigenvector, default) or ``"power"`` (power iteration).
        power_iters: maximum power iterations with ``method="power"``.
        seed: seed of the power iteration's start (the Gram method is deterministic).

    Example (vector inputs: the model declares the unbounded box):
        >>> from robustscope import models
        >>> model = models.create("mlp", 3, (5,))
        >>> x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 0])
        >>> x_adv = FisherAttack(model, eps=0.5)(x, y)
        >>> bool(((x_adv - x).norm(dim=1) <= 0.5 + 1e-5).all())
        True
    """

    name: ClassVar[str] = "fisher"

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        norm: str = "l2",
        steps: int = 1,
        step_size: float | None = None,
        method: str = "gram",
        power_iters: int = 100,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed)
        self.steps = self.positive_int("steps", steps)
        if method not in FISHER_METHODS:
            raise AttackError(
                f"{self.name}: unknown method {method!r}; valid methods: {', '.join(FISHER_METHODS)}"
            )
        self.method: FisherMethod = method  # type: ignore[assignment]
        self.power_iters = self.positive_int("power_iters", power_iters)
        default = self.eps if self.steps == 1 else 2.5 * self.eps / self.steps
        self.step_size = self.step_size_or(step_size, default)

    def direction(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """The unit top eigenvector of F_x at ``x`` (input-shaped), by ``self.method``."""
        top = fisher_top(self.model, x, self.method, iters=self.power_iters, seed=seed)
        return top.eigenvector

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        keeper = BestKeeper(x)
        x_cur = x.clone()
        for t in range(self.steps):
            idx = keeper.remaining() if t > 0 else torch.arange(len(x), device=x.device)
            if len(idx) == 0:
                break
            xi, x0, yi = x_cur[idx], x[idx], y[idx]
            seed = None if self.seed is None else self.seed + t
            v = self.direction(xi, seed)
            d = v.sign() if self.norm == "linf" else v
            plus = self.threat.project(xi + self.step_size * d, x0)
            minus = self.threat.project(xi - self.step_size * d, x0)
            with torch.no_grad():
                z_plus, z_minus = self.model(plus), self.model(minus)
            l_plus, l_minus = ce_loss(z_plus, yi), ce_loss(z_minus, yi)
            take_minus = l_minus > l_plus
            x_new = torch.where(per_example(take_minus, x), minus, plus)
            logits = torch.where(take_minus[:, None], z_minus, z_plus)
            loss = torch.where(take_minus, l_minus, l_plus)
            x_cur[idx] = x_new
            keeper.update(idx, x_new, loss, logits, yi)
        return keeper.x
