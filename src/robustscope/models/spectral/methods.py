"""The one chooser of the exact method for a layer's singular values, and the spectral norm.

Which exact method applies depends only on the layer and the input size it sees:

=========== ============================================================ ==============
method      when                                                         values
=========== ============================================================ ==============
``svdvals`` ``nn.Linear``: ``torch.linalg.svdvals(W)``                    all
``fft``     circular convolution, stride dividing the input               all
            (:func:`~robustscope.models.spectral.fft.conv_singular_values`)
``patch``   stride ≥ kernel extent, zero padding (every 1×1 conv)         all
            (:func:`~robustscope.models.spectral.patch.patch_singular_values`)
``dense``   operator with smaller side ≤ ``max_dense`` and ≤             all
            ``4·max_dense²`` entries: SVD of the explicit matrix
``topk``    any other convolution: block Krylov iteration                 top-k
            (:func:`~robustscope.models.spectral.lanczos.operator_top_singular_values`)
=========== ============================================================ ==============

:func:`exact_method` is that table, checked in this order; the probe ``layer_spectra`` and
:func:`operator_norm` (hence spectral-norm clipping) both ask it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from robustscope.errors import ModelError
from robustscope.models.spectral.explicit import operator_matrix
from robustscope.models.spectral.fft import conv_singular_values
from robustscope.models.spectral.geometry import ConvGeometry, conv_geometry
from robustscope.models.spectral.lanczos import operator_top_singular_values
from robustscope.models.spectral.patch import patch_singular_values

__all__ = ["EXACT_METHODS", "ExactMethod", "exact_method", "exact_singular_values", "operator_norm"]

ExactMethod = Literal["svdvals", "fft", "patch", "dense", "topk"]
EXACT_METHODS: tuple[str, ...] = ("svdvals", "fft", "patch", "dense", "topk")


def _layer_geometry(
    module: nn.Module, input_shape: Sequence[int] | None, caller: str
) -> ConvGeometry | None:
    """None for a Linear layer, the geometry of a Conv2d on ``input_shape``'s last two sizes."""
    if isinstance(module, nn.Linear):
        return None
    if not isinstance(module, nn.Conv2d):
        raise ModelError(f"{caller} needs nn.Linear or nn.Conv2d, got {type(module).__name__}")
    if input_shape is None:
        raise ModelError(f"{caller} of a Conv2d needs the input size (input_shape=(C, H, W))")
    return conv_geometry(module, tuple(input_shape)[-2:])


def _choose(geo: ConvGeometry | None, max_dense: int) -> ExactMethod:
    if geo is None:
        return "svdvals"
    if geo.circular_exact:
        return "fft"
    if geo.disjoint_patches:
        return "patch"
    rows, cols = geo.shape
    if min(rows, cols) <= max_dense and rows * cols <= 4 * max_dense**2:
        return "dense"
    return "topk"


def exact_method(
    module: nn.Module, input_shape: Sequence[int] | None = None, *, max_dense: int = 0
) -> ExactMethod:
    """The exact method for the singular values of ``module``'s operator (module doc table).

    Args:
        module: an ``nn.Linear`` or ``nn.Conv2d``.
        input_shape: the layer's per-example input shape (``(C, H, W)`` or ``(H, W)``;
            needed for a Conv2d).
        max_dense: largest smaller side of an operator decomposed densely (0: never dense).

    Example:
        >>> exact_method(nn.Conv2d(2, 3, 1, bias=False), (2, 8, 8))
        'fft'
        >>> conv = nn.Conv2d(2, 3, 3, padding=1)
        >>> exact_method(conv, (2, 8, 8)), exact_method(conv, (2, 8, 8), max_dense=1024)
        ('topk', 'dense')
    """
    return _choose(_layer_geometry(module, input_shape, "exact_method"), max_dense)


def exact_singular_values(
    module: nn.Module, input_shape: Sequence[int] | None, method: ExactMethod
) -> torch.Tensor:
    """All singular values of ``module``'s operator by a complete method (``svdvals``, ``fft``,
    ``patch`` or ``dense``; ``topk`` is :func:`operator_top_singular_values`), float64,
    descending, on the weight's device.

    Raises:
        ModelError: ``method`` does not apply to the layer (e.g. ``fft`` on a zero-padded
            convolution), or is ``topk``.
    """
    geo = _layer_geometry(module, input_shape, "exact_singular_values")
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    w = weight.detach().double()
    applies = {
        "svdvals": geo is None,
        "fft": geo is not None and geo.circular_exact,
        "patch": geo is not None and geo.disjoint_patches,
        "dense": geo is not None,
    }
    if not applies.get(method, False):
        raise ModelError(
            f"exact_singular_values: method {method!r} does not give all singular values of "
            f"this {type(module).__name__}; ask exact_method(module, input_shape) for one that does"
        )
    if geo is None:
        return torch.linalg.svdvals(w)
    if method == "fft":
        hw = geo.input_hw
        return conv_singular_values(
            w, hw, stride=geo.stride, dilation=geo.dilation, groups=geo.groups
        )
    if method == "patch":
        return patch_singular_values(w, geo)
    return torch.linalg.svdvals(operator_matrix(w, geo))


def operator_norm(
    module: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    tol: float = 1e-9,
    seed: int = 0,
    max_dense: int = 0,
) -> float:
    """The spectral norm ``σ_max`` of a Linear layer's weight or a Conv2d layer's operator on
    inputs of ``input_shape`` (``(C, H, W)`` or ``(H, W)``), exactly, by the method
    :func:`exact_method` chooses: ``svdvals`` (Linear), the FFT method (circular
    convolutions), the patch blocks (disjoint patches), a dense SVD (only with
    ``max_dense > 0``), else block Krylov iteration to relative residual ``tol`` (float64,
    seeded: deterministic).

    Example:
        >>> lin = nn.Linear(4, 3)
        >>> abs(operator_norm(lin) - float(torch.linalg.matrix_norm(lin.weight.detach(), 2))) < 1e-6
        True
    """
    method = _choose(_layer_geometry(module, input_shape, "operator_norm"), max_dense)
    if method != "topk":
        return float(exact_singular_values(module, input_shape, method)[0])
    assert isinstance(module, nn.Conv2d) and input_shape is not None
    hw = tuple(input_shape)[-2:]
    top = operator_top_singular_values(
        module, (module.in_channels, *hw), 1, tol=tol, seed=seed, dtype=torch.float64
    )
    if not top.converged:
        raise ModelError(
            f"operator_norm: the iteration did not reach tol={tol} (residual "
            f"{float(top.residuals.max()):.2e}); raise tol"
        )
    return float(top.values[0])
