"""Singular values of the linear maps of ``nn.Linear`` and ``nn.Conv2d`` layers, and clipping.

A layer's *operator* is the linear map it applies to one example, without its bias: the
weight matrix ``W`` (out × in) of a ``Linear``; for a ``Conv2d`` on ``C_in × H × W`` inputs
the ``(C_out·H_out·W_out) × (C_in·H·W)`` matrix of the convolution, padding included
(zero padding makes it a block-Toeplitz matrix, circular padding a block-circulant one). An
m × n operator has ``min(m, n)`` singular values (zeros included). Everything here is exact
or iterates to a stated tolerance with a reported residual:

* :func:`conv_operator_matrix` — the explicit matrix, by applying the convolution to the
  identity basis (small layers only; the reference everything else is tested against);
* :func:`conv_singular_values` — *all* singular values of a circular convolution by the
  FFT method of Sedghi, Gupta & Long ("The singular values of convolutional layers", ICLR
  2019): the 2-D DFT block-diagonalises a block-circulant operator, so its singular values
  are those of the ``C_out × C_in`` matrices ``Ŵ(f)`` at the ``H·W`` frequencies. Strides
  that divide the input are handled by the polyphase split (a stride-s circular convolution
  on H × W is a stride-1 one from the ``s²`` phases of the input, on an (H/s) × (W/s) grid),
  which gives ``C_out × (C_in·s²)`` matrices per frequency;
* :func:`patch_singular_values` — all singular values of a zero-padded convolution whose
  stride is at least its (dilated) kernel extent: the patches read by different outputs are
  disjoint, so the operator is a direct sum of small blocks (every 1×1 convolution);
* :func:`operator_top_singular_values` — the top-k singular values of any of these maps
  (any padding, stride, dilation, groups), or of any linear function, by block Krylov
  subspace iteration on ``AᵀA`` (see its docstring for the tolerance and residual);
* :func:`operator_frobenius_sq` — ``‖A‖_F²`` of a convolution's operator, exactly, in
  O(C_out·C_in·k⁴) time, for every padding mode and stride;
* :func:`clip_operator_norm_` — wen2020 B.4.2's spectral-norm control (see its docstring);
* :func:`layer_input_shapes` — the per-example input shape of every Linear/Conv2d layer,
  found by one forward pass of a zero input with forward hooks.

Zero-padded convolutions with overlapping windows have no known fast exact full spectrum
(the operator is block-Toeplitz, not block-circulant; at CIFAR sizes it has 16k–65k rows
and a dense SVD takes minutes to hours). For them the exact quantities are the top-k
singular values (iterated), the Frobenius norm and the stable rank. The circular spectrum
(the same kernel on the H × W torus) approximates the full distribution: the two operators
differ only in the outputs whose window crosses the border, an O(kernel/H) share, and
their singular-value distributions have the same limit as H grows (Szegő-type theorems for
block-Toeplitz matrices). On a random 16→16 3×3 layer the population std of the circular
spectrum is 6.3% above the exact one on 8×8 inputs and 3.1% above on 16×16 inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustscope.errors import ModelError

__all__ = [
    "ConvGeometry",
    "TopSingularValues",
    "clip_operator_norm_",
    "conv_geometry",
    "conv_operator_matrix",
    "conv_singular_values",
    "dense_conv_weight",
    "layer_input_shapes",
    "linear_layers",
    "operator_frobenius_sq",
    "operator_matrix",
    "operator_norm",
    "operator_top_singular_values",
    "patch_singular_values",
]

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
Pair = int | tuple[int, int]
MAX_ENTRIES = 2**24
"""Default limit on the entries of an explicit operator matrix (128 MiB in float64)."""


def _pair(v: Pair | Sequence[int], name: str) -> tuple[int, int]:
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
    kh, kw = _pair(module.kernel_size, "kernel_size")
    dh, dw = _pair(module.dilation, "dilation")
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            pads = (0, 0, 0, 0)
        else:  # "same": PyTorch puts the extra pixel of an even extent at the end
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = _pair(pad, "padding")
        pads = (ph, ph, pw, pw)
    return ConvGeometry(
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel=(kh, kw),
        input_hw=_pair(tuple(input_hw), "input_hw"),
        stride=_pair(module.stride, "stride"),
        pads=pads,
        dilation=(dh, dw),
        groups=module.groups,
        padding_mode=module.padding_mode,
    )


def _make_geometry(
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
    ph, pw = _pair(padding, "padding")
    c_out, c_in_g, kh, kw = weight.shape
    if c_out % groups:
        raise ModelError(f"C_out = {c_out} is not divisible by groups = {groups}")
    geo = ConvGeometry(
        in_channels=c_in_g * groups,
        out_channels=c_out,
        kernel=(kh, kw),
        input_hw=_pair(tuple(input_hw), "input_hw"),
        stride=_pair(stride, "stride"),
        pads=(ph, ph, pw, pw),
        dilation=_pair(dilation, "dilation"),
        groups=groups,
        padding_mode=padding_mode,  # type: ignore[arg-type]
    )
    if min(geo.output_hw) < 1:
        raise ModelError(f"the convolution has no output on a {geo.input_hw} input")
    return geo


def _apply_conv(x: torch.Tensor, weight: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
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


# --- explicit operator --------------------------------------------------------------------


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
    geo = _make_geometry(weight, input_hw, stride, padding, padding_mode, dilation, groups)
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
        y = _apply_conv(basis.reshape(-1, geo.in_channels, h, w), weight, geo)
        out[:, start:stop] = y.reshape(stop - start, rows).T
    return out


# --- exact structured spectra -------------------------------------------------------------


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
        >>> w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
        >>> s = conv_singular_values(w, (6, 6))
        >>> A = conv_operator_matrix(w, (6, 6), padding=1, padding_mode="circular")
        >>> torch.allclose(s, torch.linalg.svdvals(A))
        True
    """
    h, w = _pair(tuple(input_hw), "input_hw")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
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


def _row_index_maps(geo: ConvGeometry) -> tuple[torch.Tensor, torch.Tensor]:
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


def operator_frobenius_sq(weight: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """``‖A‖_F²`` of the convolution operator, exactly, for every padding mode and stride.

    Output ``(i, j)`` reads, through taps ``(a, b)``, input pixel ``(r(i, a), c(j, b))``
    (or a padded zero). Taps reading the same pixel add, so with ``G_h[a, a'] = #{i : r(i, a)
    = r(i, a') valid}`` (and ``G_w`` alike), ``‖A‖_F² = Σ_{o,c} Σ_{a,a',b,b'} W[o,c,a,b]
    W[o,c,a',b'] G_h[a,a'] G_w[b,b']``. With zero padding ``G`` is diagonal (``G_h[a, a]``
    counts the outputs whose tap ``a`` lands inside the input), so ``‖A‖_F²`` is a
    position-weighted ``Σ W²`` — not ``H_out·W_out·‖W‖_F²``.

    Example:
        >>> conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
        >>> geo = conv_geometry(conv, (5, 5))
        >>> A = conv_operator_matrix(conv.weight.detach(), (5, 5), padding=1)
        >>> bool(torch.isclose(operator_frobenius_sq(conv.weight.detach(), geo), A.square().sum()))
        True
    """
    dense = dense_conv_weight(weight, geo.groups)
    grams = []
    for src in _row_index_maps(geo):
        same = (src[:, :, None] == src[:, None, :]) & (src[:, :, None] >= 0)
        grams.append(same.sum(0).to(dense.dtype).to(dense.device))
    return torch.einsum("ocab,ocxy,ax,by->", dense, dense, grams[0], grams[1])


def patch_singular_values(weight: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """All singular values of a convolution whose outputs read disjoint input patches
    (``geo.disjoint_patches``: stride ≥ dilated kernel extent, zero padding), exactly.

    The operator is then a direct sum over output positions of the blocks ``W`` restricted
    to the taps that land inside the input (``C_out × C_in·#taps``), plus zero rows/columns;
    positions with the same in-bounds taps share their singular values. Sorted descending,
    ``min(rows, cols)`` values (zeros appended).

    Example:
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
    rows_h, rows_w = _row_index_maps(geo)
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


# --- iterative top-k ----------------------------------------------------------------------


@dataclass(frozen=True)
class TopSingularValues:
    """The top-k singular values of a linear map from block Krylov subspace iteration.

    Attributes:
        values: ``[k]`` σ₁ ≥ … ≥ σ_k (square roots of the top Ritz values of ``AᵀA``).
        residuals: ``[k]`` relative residuals ``‖AᵀA v_i − σ_i² v_i‖ / σ₁²``: each ``σ_i²`` lies
            within ``residuals[i]·σ₁²`` of an eigenvalue of ``AᵀA`` (Weyl/Bauer–Fike for
            symmetric matrices); the Ritz values themselves are typically accurate to the
            square of the residual over the spectral gap.
        right_vectors: ``[k, *input_shape]`` unit right singular vectors ``v_i``.
        iterations: restarts (outer iterations) done.
        matvecs: applications of ``AᵀA`` to one vector.
        converged: every residual ≤ ``tol``.
        tol: the tolerance asked for.
    """

    values: torch.Tensor
    residuals: torch.Tensor
    right_vectors: torch.Tensor
    iterations: int
    matvecs: int
    converged: bool
    tol: float


LinearFn = Callable[[torch.Tensor], torch.Tensor]


def _layer_maps(
    layer: nn.Module | LinearFn, input_shape: tuple[int, ...], dtype: torch.dtype
) -> tuple[LinearFn, LinearFn | None, torch.device]:
    """``(forward, adjoint or None, device)`` of a layer's operator on batched examples."""
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach().to(dtype)
        return (lambda x: x @ w.T), (lambda y: y @ w), w.device
    if isinstance(layer, nn.Conv2d):
        w = layer.weight.detach().to(dtype)
        geo = conv_geometry(layer, input_shape[-2:])
        t, b, left, r = geo.pads
        if geo.padding_mode == "zeros" and t == b and left == r:
            oh, ow = geo.output_hw
            extra = []
            for dim, (n, no) in enumerate(zip(geo.input_hw, (oh, ow), strict=True)):
                span = (no - 1) * geo.stride[dim] - 2 * geo.pads[2 * dim]
                extra.append(n - (span + geo.dilation[dim] * (geo.kernel[dim] - 1) + 1))

            def adjoint(y: torch.Tensor) -> torch.Tensor:
                return F.conv_transpose2d(
                    y, w, None, geo.stride, (t, left), tuple(extra), geo.groups, geo.dilation
                )

            return (lambda x: _apply_conv(x, w, geo)), adjoint, w.device
        return (lambda x: _apply_conv(x, w, geo)), None, w.device
    if isinstance(layer, nn.Module):
        params = list(layer.parameters())
        device = params[0].device if params else torch.device("cpu")
    else:
        device = torch.device("cpu")
    return layer, None, device


def _project_out(w: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``w`` minus its projection on the span of the orthonormal rows ``base`` (twice, for
    orthogonality to working precision)."""
    if len(base) == 0:
        return w
    for _ in range(2):
        w = w - (w @ base.T) @ base
    return w


def _orthonormal(w: torch.Tensor, base: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Orthonormal rows spanning ``w`` after projecting out ``base`` (orthonormal rows), as
    many as ``w`` has (capped by the room left); directions of ``w`` that are (numerically)
    in ``span(base)`` or dependent are replaced by fresh random ones from ``gen``."""
    n = w.shape[1]
    want = min(len(w), n - len(base))
    if want <= 0:
        return w[:0]
    ref = float(w[:want].norm(dim=1).max())
    noise = 10 * torch.finfo(w.dtype).eps * math.sqrt(n)  # relative rounding level
    w = _project_out(w[:want], base)
    q, r = torch.linalg.qr(w.T)
    diag = r.diagonal().abs()
    if ref > 0 and bool((diag > 1e-3 * ref).all()):  # well conditioned: CGS2 + QR suffice
        return q.T
    if ref > 0 and bool((diag > noise * ref).all()):  # a second pass restores orthogonality
        q2, r2 = torch.linalg.qr(_project_out(q.T, base).T)
        if bool((r2.diagonal().abs() > 0.5).all()):
            return q2.T
    # rank-deficient block (tiny operators, invariant subspaces): keep the independent
    # directions of w, fill up with random ones
    kept = w[:0]
    if ref > 0:
        _, sv, vh = torch.linalg.svd(w, full_matrices=False)
        kept = vh[sv > noise * ref]
        kept = torch.linalg.qr(_project_out(kept, base).T)[0].T
    pieces = [kept]
    base = torch.cat([base, kept])
    missing = min(want - len(kept), n - len(base))
    while missing > 0:
        fresh = torch.randn(missing, n, generator=gen, dtype=w.dtype).to(w.device)
        fresh = _project_out(fresh, base)
        _, sv, vh = torch.linalg.svd(fresh, full_matrices=False)
        good = torch.linalg.qr(_project_out(vh[sv > 1e-3 * sv[0]], base).T)[0].T
        pieces.append(good)
        base = torch.cat([base, good])
        missing = min(missing - len(good), n - len(base))
    return torch.cat(pieces)


def _block_krylov(
    gram: LinearFn,
    x0: torch.Tensor,
    k: int,
    *,
    depth: int,
    tol: float,
    iters: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int, bool]:
    """Top-k eigenpairs of the symmetric PSD map ``gram`` (rows in, rows out) by thick-restarted
    block Krylov iteration from the ``b`` rows of ``x0``: ``(theta, ritz vectors, residuals
    [k], iterations, matvecs, converged)``.

    Each cycle extends the basis by ``depth`` blocks ``M·(last block)`` (orthogonalised
    against the whole basis), takes Ritz pairs, and restarts from the top ``k + b`` Ritz
    vectors, extending next from the images of the top ``b`` (whose new directions are the
    block residual).
    """
    b, n = x0.shape
    keep_max = min(k + b, n)
    m_max = min(keep_max + max(depth, 1) * b, n)
    basis = x0.new_empty(m_max, n)
    images = x0.new_empty(m_max, n)
    x = _orthonormal(x0, x0[:0], gen)
    mx = gram(x)
    matvecs = len(x)
    theta = x0.new_zeros(len(x))
    res = x0.new_full((k,), math.inf)
    z = x
    converged = False
    iteration = 0
    tiny = torch.finfo(x0.dtype).tiny
    grow = len(x)
    for iteration in range(1, iters + 1):  # noqa: B007
        filled = len(x)
        basis[:filled], images[:filled] = x, mx
        last = slice(0, min(grow, filled))
        while filled < m_max:
            w = _orthonormal(images[last][: m_max - filled], basis[:filled], gen)
            if len(w) == 0:
                break
            stop = filled + len(w)
            basis[filled:stop], images[filled:stop] = w, gram(w)
            matvecs += len(w)
            last, filled = slice(filled, stop), stop
        kb, mk = basis[:filled], images[:filled]
        t = kb @ mk.T
        evals, evecs = torch.linalg.eigh((t + t.T) / 2)
        keep = min(keep_max, filled)
        theta = evals.flip(0)[:keep]
        coef = evecs.flip(1)[:, :keep].T
        z, mz = coef @ kb, coef @ mk
        res = (mz[:k] - theta[:k, None] * z[:k]).norm(dim=1) / theta[0].clamp_min(tiny)
        if theta[0] <= 0:  # the zero map: every vector is an eigenvector
            res = torch.zeros_like(res)
        if bool((res <= tol).all()) or filled >= n:
            converged = bool((res <= tol).all())
            break
        x, mx, grow = z, mz, b
    return theta, z, res, iteration, matvecs, converged


def operator_top_singular_values(
    layer_or_fn: nn.Module | LinearFn,
    input_shape: Sequence[int],
    k: int = 1,
    *,
    tol: float = 1e-6,
    iters: int = 1000,
    depth: int | None = None,
    block: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    start: torch.Tensor | None = None,
) -> TopSingularValues:
    """The k largest singular values of a layer's operator (or of any linear function).

    Thick-restarted block Krylov iteration on ``M = AᵀA`` (block Lanczos with full
    reorthogonalisation and Rayleigh–Ritz — orthogonal/subspace iteration accelerated by a
    Krylov basis): from an orthonormal block ``X`` of ``b`` vectors, extend the basis by
    ``depth`` blocks ``M·(last block)``, take the Ritz pairs of ``M`` on it, keep the top
    ``k + b`` and repeat, until the top-k residuals satisfy ``‖Mv_i − θ_i v_i‖ ≤ tol·θ₁``
    (``θ_i = σ_i²``). The Krylov depth is what makes the clustered tops of convolution
    spectra (relative gaps ~1e-3 and near-double values) converge in a few hundred products
    instead of thousands. ``A`` is applied by ``conv2d`` (``x @ Wᵀ`` for Linear); ``Aᵀ`` by
    ``conv_transpose2d`` for symmetric zero padding (``y @ W`` for Linear) and by the
    vector–Jacobian product of ``torch.func.vjp`` otherwise. The random start comes from a
    ``torch.Generator`` seeded with ``seed``: the result is deterministic.

    Accuracy: each ``σ_i²`` is within ``residuals[i]·σ₁²`` of an eigenvalue of ``AᵀA``
    (rigorous), so ``σ_i`` is within ``residuals[i]·σ₁²/(2σ_i)`` of a singular value to
    first order; in practice the Ritz values are far more accurate (second order). A
    singular value of multiplicity larger than ``b`` can be under-counted (a Krylov space
    sees one copy per block vector), hence ``b ≥ k``.

    Args:
        layer_or_fn: an ``nn.Linear`` / ``nn.Conv2d`` (bias ignored, any padding mode,
            stride, dilation, groups), or a function mapping a batch ``[N, *input_shape]``
            of ``dtype`` to ``[N, ...]`` that is linear (an affine one is made linear by
            subtracting its value at 0).
        input_shape: one example's shape (``(in_features,)``; ``(C, H, W)`` for a conv).
        k: how many singular values.
        tol: convergence tolerance on the relative residuals (see
            :class:`TopSingularValues`).
        iters: restarts before giving up (``converged`` is then False).
        depth: Krylov blocks added per restart (default ``max(4, ⌈40/b⌉)``; 1 is the
            cheapest, most subspace-iteration-like cycle).
        block: block size ``b`` (default and minimum: ``k``).
        seed: seed of the random start.
        dtype: arithmetic (``float64`` by default; ``float32`` is ~3× faster for CPU
            convolutions but floors the residual near 1e-7).
        start: optional ``[≤ b, *input_shape]`` starting vectors (a warm start); the rest
            of the block is random.

    Returns:
        a :class:`TopSingularValues`.

    Example:
        >>> conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).double()
        >>> top = operator_top_singular_values(conv, (2, 8, 8), k=2, tol=1e-10)
        >>> A = conv_operator_matrix(conv.weight.detach(), (8, 8), stride=2, padding=1)
        >>> torch.allclose(top.values, torch.linalg.svdvals(A)[:2])
        True
    """
    shape = tuple(int(s) for s in input_shape)
    n = math.prod(shape)
    if k < 1 or (depth is not None and depth < 1) or tol <= 0 or (block is not None and block < 1):
        raise ModelError(
            f"need k ≥ 1, depth ≥ 1, block ≥ 1, tol > 0 (got k={k}, depth={depth}, "
            f"block={block}, tol={tol})"
        )
    forward, adjoint, device = _layer_maps(layer_or_fn, shape, dtype)
    k = min(k, n)
    b = min(max(block if block is not None else k, k), n)
    depth = depth if depth is not None else max(4, math.ceil(40 / b))
    zero = torch.zeros((1, *shape), dtype=dtype, device=device)
    with torch.no_grad():
        offset = forward(zero).detach()
    vjp_cache: dict[int, Callable[..., tuple[torch.Tensor, ...]]] = {}

    def gram(rows: torch.Tensor) -> torch.Tensor:
        x = rows.reshape(-1, *shape)
        with torch.no_grad():
            y = forward(x).detach() - offset
        if adjoint is not None:
            with torch.no_grad():
                back = adjoint(y)
        else:
            fn = vjp_cache.get(len(x))
            if fn is None:
                fn = torch.func.vjp(forward, torch.zeros_like(x))[1]
                vjp_cache[len(x)] = fn
            back = fn(y)[0]
        return back.detach().reshape(len(rows), n)

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, n, generator=gen, dtype=dtype).to(device)
    if start is not None:
        rows = start.detach().reshape(-1, n)[:b].to(dtype=dtype, device=device)
        x0 = torch.cat([rows, x0[len(rows) :]])
    theta, z, res, iteration, matvecs, converged = _block_krylov(
        gram, x0, k, depth=depth, tol=tol, iters=iters, gen=gen
    )
    values = theta[:k].clamp_min(0).sqrt()
    return TopSingularValues(
        values=values,
        residuals=res,
        right_vectors=z[:k].reshape(k, *shape),
        iterations=iteration,
        matvecs=matvecs,
        converged=converged,
        tol=tol,
    )


# --- layers of a model --------------------------------------------------------------------


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` of every ``nn.Linear`` and ``nn.Conv2d`` in ``model``, in
    registration order (Normalize, BatchNorm, activations... are not linear-map layers)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def layer_input_shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Per-example input shape of every Linear/Conv2d layer that ``model``'s forward reaches.

    One forward pass of a zero batch ``[1, *input_shape]`` (on the model's device, without
    gradients, in eval mode so BatchNorm statistics do not move; the mode is restored) with
    forward hooks. A layer called on inputs of different shapes is refused; layers the
    forward never reaches are left out.

    Example:
        >>> from robustscope import models
        >>> m = models.create("cnn", 10, (1, 8, 8))
        >>> layer_input_shapes(m, (1, 8, 8))["body.2"]
        (16, 4, 4)
    """
    seen: dict[str, set[tuple[int, ...]]] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
            seen.setdefault(name, set()).add(tuple(inputs[0].shape[1:]))

        return record

    layers = linear_layers(model)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    was_training = model.training
    try:
        for name, module in layers:
            handles.append(module.register_forward_hook(hook(name)))
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out: dict[str, tuple[int, ...]] = {}
    for name, _ in layers:
        if name not in seen:
            continue
        if len(seen[name]) > 1:
            raise ModelError(
                f"layer {name!r} is applied to inputs of several shapes {sorted(seen[name])}; "
                "its operator is not one matrix"
            )
        out[name] = next(iter(seen[name]))
    return out


def operator_norm(
    module: nn.Module, input_shape: Sequence[int] | None = None, *, tol: float = 1e-9, seed: int = 0
) -> float:
    """The spectral norm ``σ_max`` of a Linear layer's weight or a Conv2d layer's operator on
    inputs of ``input_shape`` (``(C, H, W)`` or ``(H, W)``), exactly: ``svdvals`` (Linear),
    the FFT method (circular convolutions), the patch blocks (disjoint patches), else block
    Krylov iteration to relative residual ``tol`` (float64, seeded: deterministic).

    Example:
        >>> lin = nn.Linear(4, 3)
        >>> abs(operator_norm(lin) - float(torch.linalg.matrix_norm(lin.weight.detach(), 2))) < 1e-6
        True
    """
    if isinstance(module, nn.Linear):
        return float(torch.linalg.svdvals(module.weight.detach().double())[0])
    if not isinstance(module, nn.Conv2d):
        raise ModelError(f"operator_norm needs nn.Linear or nn.Conv2d, got {type(module).__name__}")
    if input_shape is None:
        raise ModelError("operator_norm of a Conv2d needs the input size (input_shape=(H, W))")
    hw = tuple(input_shape)[-2:]
    geo = conv_geometry(module, hw)
    w = module.weight.detach().double()
    if geo.circular_exact:
        return float(
            conv_singular_values(
                w, hw, stride=geo.stride, dilation=geo.dilation, groups=geo.groups
            )[0]
        )
    if geo.disjoint_patches:
        return float(patch_singular_values(w, geo)[0])
    top = operator_top_singular_values(
        module, (geo.in_channels, *hw), 1, tol=tol, seed=seed, dtype=torch.float64
    )
    if not top.converged:
        raise ModelError(
            f"operator_norm: the iteration did not reach tol={tol} (residual "
            f"{float(top.residuals.max()):.2e}); raise tol"
        )
    return float(top.values[0])


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
