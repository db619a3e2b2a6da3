"""The explicit matrix of a convolution's operator (small layers; the reference of every other
method)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robustscope.errors import ModelError
from robustscope.models.spectral.geometry import (
    ConvGeometry,
    PaddingMode,
    Pair,
    apply_conv,
    make_geometry,
)

__all__ = ["MAX_ENTRIES", "conv_operator_matrix", "operator_matrix"]

MAX_ENTRIES = 2**24
"""Default limit on the entries of an explicit operator matrix (128 MiB in float64)."""


def conv_operator_matrix(
    weight: torch.Tensor,
    input_hw: Sequence[int],
    *,
    stride: Pair = 1,
    padding: Pair = 0,
    padding_mode: PaddingMode = "zeros",
    dilation: Pair = 1,
    groups: int = 1,
    max_entries: int = MAX_ENTRIES,
    chunk: int = 1024,
) -> torch.Tensor:
    """The explicit matrix of the convolution ``x ↦ conv2d(x, weight)`` (no bias).

    Rows index the output ``(c_out, i, j)`` and columns the input ``(c_in, u, v)`` in
    C-order, so ``A @ x.flatten() == conv2d(x[None], weight, ...).flatten()``. Column ``q``
    is the convolution of the ``q``-th standard basis image (computed ``chunk`` at a time).

    Args:
        weight: ``[C_out, C_in/groups, kh, kw]``; the matrix has its dtype and device.
        input_hw: ``(H, W)`` of the input.
        stride, padding, dilation, groups: as :func:`torch.nn.functional.conv2d`.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (as
            ``nn.Conv2d``).
        max_entries: refuse operators with more entries than this.
        chunk: basis images per convolution call.

    Returns:
        ``[C_out·H_out·W_out, C_in·H·W]``.

    Raises:
        ModelError: bad geometry, or an operator larger than ``max_entries``.

    Example:
        >>> w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
        >>> A = conv_operator_matrix(w, (6, 6), padding=1, padding_mode="circular")
        >>> A.shape
        torch.Size([108, 72])
    """
    geo = make_geometry(weight, input_hw, stride, padding, padding_mode, dilation, groups)
    return operator_matrix(weight, geo, max_entries=max_entries, chunk=chunk)


def operator_matrix(
    weight: torch.Tensor, geo: ConvGeometry, *, max_entries: int = MAX_ENTRIES, chunk: int = 1024
) -> torch.Tensor:
    """:func:`conv_operator_matrix` for a :class:`ConvGeometry` (e.g. of a module, whose
    ``padding="same"`` may pad unevenly)."""
    rows, cols = geo.shape
    if rows * cols > max_entries:
        raise ModelError(
            f"the explicit operator of this convolution is {rows} × {cols} "
            f"({rows * cols:,} entries > max_entries = {max_entries:,}); use "
            "operator_top_singular_values (top-k) or conv_singular_values (circular) instead"
        )
    h, w = geo.input_hw
    out = weight.new_empty(rows, cols)
    for start in range(0, cols, chunk):
        stop = min(start + chunk, cols)
        basis = torch.zeros(stop - start, cols, dtype=weight.dtype, device=weight.device)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
        y = apply_conv(basis.reshape(-1, geo.in_channels, h, w), weight, geo)
        out[:, start:stop] = y.reshape(stop - start, rows).T
    return out
