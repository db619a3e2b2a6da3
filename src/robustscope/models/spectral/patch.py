"""All singular values of a convolution whose outputs read disjoint input patches (stride ≥
kernel extent, zero padding: every 1×1 convolution)."""

from __future__ import annotations

import torch

from robustscope.errors import ModelError
from robustscope.models.spectral.geometry import ConvGeometry, dense_conv_weight, row_index_maps

__all__ = ["patch_singular_values"]


def patch_singular_values(weight: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """All singular values of a convolution whose outputs read disjoint input patches
    (``geo.disjoint_patches``: stride ≥ dilated kernel extent, zero padding), exactly.

    The operator is then a direct sum over output positions of the blocks ``W`` restricted
    to the taps that land inside the input (``C_out × C_in·#taps``), plus zero rows/columns;
    positions with the same in-bounds taps share their singular values. Sorted descending,
    ``min(rows, cols)`` values (zeros appended).

    Example:
        >>> from torch import nn
        >>> from robustscope.models.spectral import conv_geometry, conv_operator_matrix
        >>> conv = nn.Conv2d(3, 4, 1, stride=2, bias=False).double()
        >>> geo = conv_geometry(conv, (6, 6))
        >>> s = patch_singular_values(conv.weight.detach(), geo)
        >>> A = conv_operator_matrix(conv.weight.detach(), (6, 6), stride=2)
        >>> torch.allclose(s, torch.linalg.svdvals(A))
        True
    """
    if not geo.disjoint_patches:
        raise ModelError(
            "patch_singular_values needs disjoint patches (stride ≥ dilation·(k − 1) + 1 in "
            "both dimensions, zero padding)"
        )
    dense = dense_conv_weight(weight, geo.groups)
    c_out = dense.shape[0]
    rows_h, rows_w = row_index_maps(geo)
    parts: list[torch.Tensor] = []
    for mask_h, count_h in zip(*torch.unique(rows_h >= 0, dim=0, return_counts=True), strict=True):
        for mask_w, count_w in zip(
            *torch.unique(rows_w >= 0, dim=0, return_counts=True), strict=True
        ):
            block = dense[:, :, mask_h.to(dense.device)][:, :, :, mask_w.to(dense.device)]
            block = block.reshape(c_out, -1)
            if block.shape[1] == 0:
                continue
            s = torch.linalg.svdvals(block)
            parts.append(s.repeat(int(count_h) * int(count_w)))
    rows, cols = geo.shape
    values = torch.cat(parts) if parts else dense.new_zeros(0)
    values = torch.cat([values, values.new_zeros(min(rows, cols) - len(values))])
    return values.sort(descending=True).values
