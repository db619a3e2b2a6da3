"""All singular values of a circular convolution by the FFT method of Sedghi, Gupta & Long
("The singular values of convolutional layers", ICLR 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robustscope.errors import ModelError
from robustscope.models.spectral.geometry import Pair, as_pair, dense_conv_weight

__all__ = ["conv_singular_values"]


def conv_singular_values(
    weight: torch.Tensor,
    input_hw: Sequence[int],
    *,
    stride: Pair = 1,
    dilation: Pair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """All singular values of the *circular* convolution of ``weight`` on an H × W input,
    exactly, by the FFT method of Sedghi, Gupta & Long (ICLR 2019), sorted descending.

    With stride 1 the operator is block-circulant, and the 2-D DFT (unitary on input and
    output) turns it into the ``H·W`` blocks ``Ŵ(f) = Σ_{a,b} W[:, :, a, b] e^{−2πi(f₁a/H +
    f₂b/W)}`` (kernel taps wrapped modulo H, W): its singular values are those of the
    ``C_out × C_in`` matrices ``Ŵ(f)``, computed by one batched ``svdvals``. A stride ``s``
    dividing H and W is handled by splitting the input into its ``s₁·s₂`` polyphase
    components (a permutation): tap ``o = a·d`` reads phase ``o mod s`` shifted by
    ``⌊o/s⌋``, giving ``C_out × (C_in·s₁s₂)`` blocks on the (H/s₁) × (W/s₂) grid. The
    circular padding amount only shifts the input (a unitary map), so it does not enter.

    Args:
        weight: ``[C_out, C_in/groups, kh, kw]`` (real).
        input_hw: ``(H, W)``, divisible by the stride.
        stride, dilation, groups: as :func:`torch.nn.functional.conv2d`.

    Returns:
        ``[(H/s₁)(W/s₂)·min(C_out, C_in·s₁s₂)]`` — every singular value of the
        ``(C_out·H·W/(s₁s₂)) × (C_in·H·W)`` operator, in the real dtype of ``weight``.

    Example:
        >>> from robustscope.models.spectral import conv_operator_matrix
        >>> w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
        >>> s = conv_singular_values(w, (6, 6))
        >>> A = conv_operator_matrix(w, (6, 6), padding=1, padding_mode="circular")
        >>> torch.allclose(s, torch.linalg.svdvals(A))
        True
    """
    h, w = as_pair(tuple(input_hw), "input_hw")
    sh, sw = as_pair(stride, "stride")
    dh, dw = as_pair(dilation, "dilation")
    if h % sh or w % sw:
        raise ModelError(f"the FFT method needs the stride {(sh, sw)} to divide the input {(h, w)}")
    dense = dense_conv_weight(weight, groups)
    c_out, c_in, kh, kw = dense.shape
    gh, gw = h // sh, w // sw
    # kernel scattered onto the polyphase grid [C_out, C_in, s₁, s₂, H/s₁, W/s₂]
    grid = dense.new_zeros(c_out, c_in, sh, sw, gh, gw)
    for a in range(kh):
        oa = a * dh
        for b in range(kw):
            ob = b * dw
            grid[:, :, oa % sh, ob % sw, (oa // sh) % gh, (ob // sw) % gw] += dense[:, :, a, b]
    blocks = torch.fft.fft2(grid).reshape(c_out, c_in * sh * sw, gh, gw)
    values = torch.linalg.svdvals(blocks.permute(2, 3, 0, 1))
    return values.flatten().sort(descending=True).values
