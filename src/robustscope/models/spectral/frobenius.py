"""The Frobenius norm of a convolution's operator, exactly, for every padding mode and stride."""

from __future__ import annotations

import torch

from robustscope.models.spectral.geometry import ConvGeometry, dense_conv_weight, row_index_maps

__all__ = ["operator_frobenius_sq"]


def operator_frobenius_sq(weight: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """``‖A‖_F²`` of the convolution operator, exactly, for every padding mode and stride.

    Output ``(i, j)`` reads, through taps ``(a, b)``, input pixel ``(r(i, a), c(j, b))``
    (or a padded zero). Taps reading the same pixel add, so with ``G_h[a, a'] = #{i : r(i, a)
    = r(i, a') valid}`` (and ``G_w`` alike), ``‖A‖_F² = Σ_{o,c} Σ_{a,a',b,b'} W[o,c,a,b]
    W[o,c,a',b'] G_h[a,a'] G_w[b,b']``. With zero padding ``G`` is diagonal (``G_h[a, a]``
    counts the outputs whose tap ``a`` lands inside the input), so ``‖A‖_F²`` is a
    position-weighted ``Σ W²`` — not ``H_out·W_out·‖W‖_F²``.

    Example:
        >>> from torch import nn
        >>> from robustscope.models.spectral import conv_geometry, conv_operator_matrix
        >>> conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
        >>> geo = conv_geometry(conv, (5, 5))
        >>> A = conv_operator_matrix(conv.weight.detach(), (5, 5), padding=1)
        >>> bool(torch.isclose(operator_frobenius_sq(conv.weight.detach(), geo), A.square().sum()))
        True
    """
    dense = dense_conv_weight(weight, geo.groups)
    grams = []
    for src in row_index_maps(geo):
        same = (src[:, :, None] == src[:, None, :]) & (src[:, :, None] >= 0)
        grams.append(same.sum(0).to(dense.dtype).to(dense.device))
    return torch.einsum("ocab,ocxy,ax,by->", dense, dense, grams[0], grams[1])
