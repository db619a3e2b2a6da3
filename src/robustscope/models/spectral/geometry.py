"""The geometry of a 2-D convolution's operator: sizes, padding, and how outputs read inputs.

A layer's *operator* is the linear map it applies to one example, without its bias. For a
``Conv2d`` on ``C_in × H × W`` inputs it is the ``(C_out·H_out·W_out) × (C_in·H·W)`` matrix
of the convolution, padding included; :class:`ConvGeometry` holds everything that fixes
it apart from the weights, and says which exact method applies to it
(:attr:`ConvGeometry.circular_exact`, :attr:`ConvGeometry.disjoint_patches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustscope.errors import ModelError

__all__ = [
    "ConvGeometry",
    "PaddingMode",
    "Pair",
    "apply_conv",
    "as_pair",
    "conv_geometry",
    "dense_conv_weight",
    "make_geometry",
    "row_index_maps",
]

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
Pair = int | tuple[int, int]


def as_pair(v: Pair | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ModelError(f"{name} must be an int or a pair, got {v!r}")
    return (t[0], t[1])


@dataclass(frozen=True)
class ConvGeometry:
    """Everything that fixes a 2-D convolution's operator, apart from the weights.

    ``pads`` is ``(top, bottom, left, right)``; the output side is
    ``⌊(H + top + bottom − dilation·(k − 1) − 1) / stride⌋ + 1``.
    """

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    input_hw: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding_mode: PaddingMode = "zeros"

    @property
    def output_hw(self) -> tuple[int, int]:
        (h, w), (kh, kw) = self.input_hw, self.kernel
        t, b, left, r = self.pads
        oh = (h + t + b - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + left + r - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return oh, ow

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the operator matrix."""
        (oh, ow), (h, w) = self.output_hw, self.input_hw
        return self.out_channels * oh * ow, self.in_channels * h * w

    @property
    def circular_exact(self) -> bool:
        """True when the operator is a circular convolution on the H × W torus (possibly
        strided), so :func:`conv_singular_values` gives its exact spectrum."""
        (h, w), (sh, sw) = self.input_hw, self.stride
        if h % sh or w % sw or self.output_hw != (h // sh, w // sw):
            return False
        return self.padding_mode == "circular" or (
            self.pads == (0, 0, 0, 0) and self.kernel == (1, 1)
        )

    @property
    def disjoint_patches(self) -> bool:
        """True when different outputs read disjoint input pixels (stride ≥ kernel extent)
        and padding adds only zeros, so :func:`patch_singular_values` is exact."""
        (kh, kw), (dh, dw), (sh, sw) = self.kernel, self.dilation, self.stride
        extent_ok = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
        return extent_ok and (self.padding_mode == "zeros" or self.pads == (0, 0, 0, 0))


def conv_geometry(module: nn.Conv2d, input_hw: Sequence[int]) -> ConvGeometry:
    """The :class:`ConvGeometry` of ``module`` applied to ``H × W`` inputs."""
    if not isinstance(module, nn.Conv2d):
        raise ModelError(f"conv_geometry needs an nn.Conv2d, got {type(module).__name__}")
    kh, kw = as_pair(module.kernel_size, "kernel_size")
    dh, dw = as_pair(module.dilation, "dilation")
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            pads = (0, 0, 0, 0)
        else:  # "same": PyTorch puts the extra pixel of an even extent at the end
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = as_pair(pad, "padding")
        pads = (ph, ph, pw, pw)
    return ConvGeometry(
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel=(kh, kw),
        input_hw=as_pair(tuple(input_hw), "input_hw"),
        stride=as_pair(module.stride, "stride"),
        pads=pads,
        dilation=(dh, dw),
        groups=module.groups,
        padding_mode=module.padding_mode,
    )


def make_geometry(
    weight: torch.Tensor,
    input_hw: Sequence[int],
    stride: Pair,
    padding: Pair,
    padding_mode: str,
    dilation: Pair,
    groups: int,
) -> ConvGeometry:
    if weight.dim() != 4:
        raise ModelError(
            f"a conv2d weight is [C_out, C_in/groups, kh, kw], got {tuple(weight.shape)}"
        )
    if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
        raise ModelError(
            f"padding_mode must be zeros, reflect, replicate or circular, got {padding_mode!r}"
        )
    ph, pw = as_pair(padding, "padding")
    c_out, c_in_g, kh, kw = weight.shape
    if c_out % groups:
        raise ModelError(f"C_out = {c_out} is not divisible by groups = {groups}")
    geo = ConvGeometry(
        in_channels=c_in_g * groups,
        out_channels=c_out,
        kernel=(kh, kw),
        input_hw=as_pair(tuple(input_hw), "input_hw"),
        stride=as_pair(stride, "stride"),
        pads=(ph, ph, pw, pw),
        dilation=as_pair(dilation, "dilation"),
        groups=groups,
        padding_mode=padding_mode,  # type: ignore[arg-type]
    )
    if min(geo.output_hw) < 1:
        raise ModelError(f"the convolution has no output on a {geo.input_hw} input")
    return geo


def apply_conv(x: torch.Tensor, weight: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """The convolution of ``geo`` (no bias) applied to ``x`` [N, C_in, H, W]."""
    t, b, left, r = geo.pads
    if geo.padding_mode == "zeros" and t == b and left == r:
        return F.conv2d(x, weight, None, geo.stride, (t, left), geo.dilation, geo.groups)
    if any(geo.pads):
        mode = "constant" if geo.padding_mode == "zeros" else geo.padding_mode
        x = F.pad(x, (left, r, t, b), mode=mode)
    return F.conv2d(x, weight, None, geo.stride, 0, geo.dilation, geo.groups)


def dense_conv_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped weight ``[C_out, C_in/g, kh, kw]`` as the equivalent dense (block-diagonal in
    the channels) ``[C_out, C_in, kh, kw]``."""
    if groups == 1:
        return weight
    c_out, c_in_g, kh, kw = weight.shape
    out = weight.new_zeros(c_out, c_in_g * groups, kh, kw)
    per = c_out // groups
    for g in range(groups):
        out[g * per : (g + 1) * per, g * c_in_g : (g + 1) * c_in_g] = weight[
            g * per : (g + 1) * per
        ]
    return out


def row_index_maps(geo: ConvGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """For each dimension, ``src[i, a]``: the input row read by output row ``i`` through kernel
    tap ``a`` (after padding: −1 for a padded zero)."""
    out: list[torch.Tensor] = []
    pads = ((geo.pads[0], geo.pads[1]), (geo.pads[2], geo.pads[3]))
    for dim in range(2):
        n, k, s, d = geo.input_hw[dim], geo.kernel[dim], geo.stride[dim], geo.dilation[dim]
        before, after = pads[dim]
        n_out = geo.output_hw[dim]
        t = torch.arange(n_out)[:, None] * s + torch.arange(k)[None, :] * d - before
        mode = geo.padding_mode
        if mode == "zeros" or (before == 0 and after == 0):
            src = torch.where((t >= 0) & (t < n), t, torch.full_like(t, -1))
        elif mode == "circular":
            src = t % n
        elif mode == "replicate":
            src = t.clamp(0, n - 1)
        else:  # reflect (edge not repeated)
            period = 2 * (n - 1) if n > 1 else 1
            m = t.abs() % period
            src = torch.where(m < n, m, period - m)
        out.append(src)
    return out[0], out[1]
