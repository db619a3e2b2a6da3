"""Spectral-norm control (wen2020 B.4.2): scale a layer's weight so that its operator norm is
at most a bound (:func:`clip_operator_norm_`), and every layer of a model
(:func:`clip_spectral_norms`). Training clips every epoch when ``TrainConfig.spectral_clip``
is set; :mod:`robustscope.posthoc`'s ``spectral_clip`` transform applies the same clipping
to a trained model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustscope.errors import ModelError
from robustscope.models.spectral.layers import linear_layers
from robustscope.models.spectral.methods import operator_norm

__all__ = ["clip_operator_norm_", "clip_spectral_norms"]


def clip_operator_norm_(
    module: nn.Module,
    c: float,
    input_hw: Sequence[int] | None = None,
    *,
    tol: float = 1e-9,
    seed: int = 0,
) -> float:
    """Bound the spectral norm of a Linear/Conv2d layer's operator by ``c``, in place.

    wen2020 B.4.2 controls capacity by "spectral normalization (Sedghi et al., 2018) [that]
    renormalizes the spectral norms of the weight matrices of a NN to a designated value",
    applied at the end of each epoch (their D.3: "we clip the spectral norm every epoch
    rather than every iteration"). They give no formula; this function implements the
    reading that holds exactly for every layer type: if ``σ_max > c`` the weight is
    multiplied by ``c / σ_max``, so the operator norm becomes exactly ``c`` and the
    singular-value *distribution* keeps its shape (all values shrink by the same factor);
    a layer with ``σ_max ≤ c`` is left untouched, bit for bit. (Sedghi et al.'s own
    projection clips every singular value at ``c`` in the Fourier domain and then cuts the
    kernel back to its k × k support, which is exact only for circular convolutions and
    does not guarantee ``σ_max ≤ c`` after the cut; scaling does, for zero padding and
    strides too.) The bias is not changed (it is not part of the linear map).

    Args:
        module: an ``nn.Linear`` or ``nn.Conv2d``.
        c: the bound (> 0).
        input_hw: ``(H, W)`` of the layer's input (needed for a Conv2d: its operator
            depends on it); ``(C, H, W)`` is accepted too.
        tol, seed: of the iteration used for convolutions without an exact structured
            method (see :func:`operator_norm`).

    Returns:
        ``σ_max`` before clipping.

    Example:
        >>> lin = nn.Linear(4, 3)
        >>> before = clip_operator_norm_(lin, 0.1)
        >>> operator_norm(lin) <= 0.1 * (1 + 1e-6)
        True
    """
    if not c > 0:
        raise ModelError(f"the spectral-norm bound must be > 0, got {c}")
    sigma = operator_norm(module, input_hw, tol=tol, seed=seed)
    if sigma > c:
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        with torch.no_grad():
            weight.mul_(c / sigma)
    return sigma


def clip_spectral_norms(
    model: nn.Module,
    bound: float,
    input_shapes: dict[str, tuple[int, ...]],
    *,
    tol: float = 1e-9,
    seed: int = 0,
) -> dict[str, float]:
    """Clip the operator norm of every Linear/Conv2d layer of ``model`` listed in
    ``input_shapes`` (from :func:`~robustscope.models.spectral.layer_input_shapes`) to
    ``bound``, in place; each layer's norm before clipping, in module order. Deterministic
    (exact methods or a seeded iteration), so a resumed run clips as an uninterrupted one."""
    return {
        name: clip_operator_norm_(module, bound, input_shapes[name], tol=tol, seed=seed)
        for name, module in linear_layers(model)
        if name in input_shapes
    }
