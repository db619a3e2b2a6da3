"""``input_fisher``: the input-space Fisher information of each example (shi2020 eq. 6).

``F_x = Σ_j p_j ∇ₓ log p_j ∇ₓ log p_jᵀ`` is computed exactly through its K×K Gram form by
:func:`robustscope.attacks.fisher.input_fisher_gram` (one forward and K − 1 input-gradient
passes per batch, float64 eigendecomposition of a K×K matrix, never a d×d one), which
gives the whole nonzero spectrum — so the spectral norm that shi2020 calls "not
computationally feasible" costs no more than the Frobenius norm they plot in Figs. 3–4.
``method="power"`` runs power iteration (Zhao et al. 2018) instead, for cross-checking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from robustscope.attacks.fisher import input_fisher_gram, input_fisher_power
from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeResult, batches, check_inputs
from robustscope.probes.registry import register_probe

__all__ = ["FisherStats", "input_fisher"]


@dataclass(frozen=True)
class FisherStats(ProbeResult):
    """Spectral statistics of the input-space Fisher information F_x, per example.

    F_x is shi2020 eq. 6 for ``p = softmax(f(x))`` (natural log), with respect to the
    model's pixel-space input (normalization is inside the model). Per-example tensors
    are float64 on the CPU; a quantity the method cannot give is None.

    Attributes:
        method: ``"gram"`` (exact) or ``"power"`` (power iteration: only λ_max and its
            eigenvector).
        spectral: ``[N]`` λ_max(F_x) = ‖F_x‖₂: to second order the KL within an ℓ2 ball of
            radius ε is at most ``½ λ_max ε²`` (shi2020 eq. 8 writes ``λ_max ε²``, without
            the Taylor expansion's ½; see :mod:`robustscope.attacks.fisher`).
        frobenius: ``[N]`` ‖F_x‖_F (what shi2020 Figs. 3–4 average over the test set).
        trace: ``[N]`` tr F_x = E_{j∼p} ‖∇ₓ log p_j‖².
        eigenvalues: ``[N, K]`` F_x's K largest eigenvalues, descending (the other d − K
            are zero, and so is at least one of these K).
        top_eigenvector: ``[N, ...]`` input-shaped unit eigenvector of λ_max, sign fixed so
            its largest-magnitude entry is positive (zeros where λ_max = 0).
        iterations: power iterations used (0 for ``gram``).

    ``scalars()`` gives the means and medians over the examples of ``spectral``,
    ``frobenius`` and ``trace``; ``arrays()`` the per-example values and eigenvalues
    (not the eigenvectors, which are input-sized — read :attr:`top_eigenvector`).
    """

    method: str
    spectral: torch.Tensor
    frobenius: torch.Tensor | None
    trace: torch.Tensor | None
    eigenvalues: torch.Tensor | None
    top_eigenvector: torch.Tensor
    iterations: int = 0

    def _per_example(self) -> dict[str, torch.Tensor]:
        named = {"spectral": self.spectral, "frobenius": self.frobenius, "trace": self.trace}
        return {k: v for k, v in named.items() if v is not None}

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, values in self._per_example().items():
            out[f"{name}_mean"] = float(values.mean())
            out[f"{name}_median"] = float(values.median())
        out["n"] = float(len(self.spectral))
        out["iterations"] = float(self.iterations)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: v.numpy() for k, v in self._per_example().items()}
        if self.eigenvalues is not None:
            out["eigenvalues"] = self.eigenvalues.numpy()
        return out


@register_probe(
    "input_fisher",
    "input-space Fisher information per example: λ_max, ‖·‖_F, trace, spectrum (shi2020 eq. 6)",
)
def input_fisher(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: Literal["gram", "power"] = "gram",
    batch_size: int = 256,
    iters: int = 1000,
    tol: float = 1e-10,
    seed: int = 0,
) -> FisherStats:
    """The input-space Fisher information's spectrum for every example of ``x`` (shi2020 eq. 6).

    Args:
        model: any module mapping pixel-space inputs ``[N, ...]`` to logits ``[N, K]``
            (or a binary score ``[N, 1]``); run in eval mode, mode and flags restored.
        x: ``[N, ...]`` floating-point inputs.
        method: ``"gram"`` — exact, through the K×K Gram form (cost ≈ one forward and
            K − 1 input-gradient passes per batch); ``"power"`` — power iteration with
            JVP/VJP products (Zhao et al. 2018) until λ changes by < ``tol`` (relative) or
            ``iters`` iterations; only λ_max and its eigenvector.
        batch_size: examples per pass (memory ``batch_size · K · d`` float64 for ``gram``).
        iters: maximum power iterations (``power`` only).
        tol: relative convergence tolerance of λ (``power`` only).
        seed: seed of the power iteration's random start.

    Returns:
        a :class:`FisherStats`.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> stats = input_fisher(model, torch.rand(3, 1, 8, 8))
        >>> bool((stats.spectral <= stats.frobenius + 1e-12).all())
        True
    """
    check_inputs("input_fisher", x)
    if method not in ("gram", "power"):
        raise ProbeError(f"probe 'input_fisher': method must be 'gram' or 'power', got {method!r}")
    spectral, frob, trace, eig, vecs = [], [], [], [], []
    used = 0
    for s in batches(len(x), batch_size):
        if method == "gram":
            fg = input_fisher_gram(model, x[s])
            spectral.append(fg.spectral_norm.cpu())
            frob.append(fg.frobenius.cpu())
            trace.append(fg.trace.cpu())
            eig.append(fg.eigenvalues.cpu())
            vecs.append(fg.top_eigenvector.cpu())
        else:
            top = input_fisher_power(model, x[s], iters=iters, tol=tol, seed=seed)
            spectral.append(top.eigenvalue.cpu())
            vecs.append(top.eigenvector.cpu())
            used = max(used, top.iterations)
    exact = method == "gram"
    return FisherStats(
        method=method,
        spectral=torch.cat(spectral),
        frobenius=torch.cat(frob) if exact else None,
        trace=torch.cat(trace) if exact else None,
        eigenvalues=torch.cat(eig) if exact else None,
        top_eigenvector=torch.cat(vecs),
        iterations=used,
    )
