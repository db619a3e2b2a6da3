"""``layer_spectra``: the singular values of every Linear/Conv2d layer (wen2020 §4.2.2, B.2).

wen2020 ("Regularization of adversarial robustness…", §4.2.2, Fig. 5(c)(d), B.2) compare
the standard deviation of the singular values of each layer's weight matrix between
networks trained with weaker and stronger adversarial training, and in B.2 accumulate the
per-layer STD differences. This probe measures, for every ``nn.Linear`` and ``nn.Conv2d``
of a model, the singular values of the layer's *operator* — the linear map it applies to
one example, bias excluded (see :mod:`robustscope.models.spectral`); for a convolution
that is the ``(C_out·H_out·W_out) × (C_in·H·W)`` matrix on the input size the layer
actually sees in the model (found by a forward pass with hooks). Which method each layer
used is recorded, and so is whether its values are exact and complete:

========== ===================================================== =================
method     what                                                  values
========== ===================================================== =================
svdvals    Linear: ``torch.linalg.svdvals(W)``                    exact, all
fft        circular convolutions (stride dividing the input):    exact, all
           Sedghi et al.'s FFT method
patch      stride ≥ kernel extent, zero padding (every 1×1 conv): exact, all
           direct sum of small blocks
dense      operator with smaller side ≤ ``max_dense`` and ≤       exact, all
           4·max_dense² entries: SVD of the explicit matrix
topk       any other conv (zero padding with overlapping          exact top-k +
           windows, e.g. every 3×3 conv of a ResNet): block       circular approx.
           Krylov iteration to ``tol``
circular   (asked for) the kernel on the H × W torus, FFT         approximate
kernel     (asked for) the ``C_out × (C_in·kh·kw)`` reshaped      not the operator
           kernel, a common proxy for "the weight matrix"
========== ===================================================== =================

``auto`` takes the first five rows in this order, as
:func:`robustscope.models.spectral.exact_method` (the one chooser, which spectral-norm
clipping asks too) decides them.

The trade-off for zero-padded convolutions with overlapping windows: their operator is
block-Toeplitz with no known fast exact full spectrum, and on CIFAR sizes it is 16k–65k
dimensional (a dense SVD takes minutes to hours). ``auto`` therefore reports for them the
exact σ_max… σ_k (iterated to a relative residual ``tol``), the exact Frobenius norm and
stable rank, and, as the full spectrum, the circular approximation (same kernel on the
H × W torus; it differs from the zero-padded operator only through the boundary rows,
an O(kernel/H) share — exact spectra and circular ones have the same limit distribution as
H grows) in ``approx_singular_values`` / ``approx_std``, which is what
:func:`compare_spectra` uses for those layers. ``min``/``mean``/``std`` are None there
rather than approximated silently.

Conventions: singular values in float64 on the CPU, descending; an m × n operator has
``min(m, n)`` of them, zeros included; ``std`` is the population standard deviation
(ddof = 0) of that list; ``mean`` its mean; the stable rank is ``‖A‖_F² / σ_max²``
where ``‖A‖_F`` is the Frobenius norm of the *operator* (for a zero-padded convolution
each kernel tap is weighted by the number of output positions where it lands inside the
input — :func:`~robustscope.models.spectral.operator_frobenius_sq` — not
``H_out·W_out·‖W‖_F²``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from robustscope.errors import ModelError, ProbeError
from robustscope.models import spectral
from robustscope.probes.base import ProbeResult
from robustscope.probes.registry import register_probe

__all__ = [
    "LayerSpectrum",
    "SpectraComparison",
    "SpectraResult",
    "compare_spectra",
    "layer_spectra",
]

Method = Literal["auto", "dense", "topk", "circular", "kernel"]
METHODS = ("auto", "dense", "topk", "circular", "kernel")


@dataclass(frozen=True)
class LayerSpectrum(ProbeResult):
    """The singular values of one layer (see the module doc for methods and conventions).

    Attributes:
        name: the module's name in the model (``model.named_modules()``).
        kind: ``"linear"`` or ``"conv2d"``.
        method: ``svdvals``, ``fft``, ``patch``, ``dense``, ``topk``, ``circular`` or
            ``kernel``.
        exact: ``singular_values`` are singular values of the layer's operator (False for
            ``kernel`` and for ``circular`` on a non-circular layer).
        complete: ``singular_values`` holds all ``count`` of them (False for ``topk``).
        input_shape: per-example input shape of the layer in the model.
        rows, cols: shape of the matrix the values belong to (the operator; the reshaped
            kernel for ``kernel``).
        count: ``min(rows, cols)``, the number of singular values of that matrix.
        singular_values: ``[count]`` or ``[k]`` (``topk``), float64, descending.
        max: σ_max.
        min, mean, std: smallest value, mean and population std of all ``count`` values
            (None when only the top-k are known).
        frobenius: ``‖·‖_F`` of the matrix (exact, also for ``topk``).
        stable_rank: ``frobenius² / max²`` (NaN for a zero matrix).
        residual: largest relative residual of the top-k iteration (``topk`` only).
        approx_singular_values: for ``topk`` layers, all singular values of the circular
            approximation (None when the stride does not divide the input).
        approx_std: their population std.
    """

    name: str
    kind: str
    method: str
    exact: bool
    complete: bool
    input_shape: tuple[int, ...]
    rows: int
    cols: int
    count: int
    singular_values: torch.Tensor
    max: float
    min: float | None
    mean: float | None
    std: float | None
    frobenius: float
    stable_rank: float
    residual: float | None = None
    approx_singular_values: torch.Tensor | None = None
    approx_std: float | None = None


@dataclass(frozen=True)
class SpectraResult(ProbeResult):
    """The spectra of every Linear/Conv2d layer of a model, in module order.

    ``scalars()`` gives ``<layer>/<stat>`` for max, min, mean, std, frobenius, stable_rank,
    residual and approx_std (those that are known) and ``n_layers``; ``arrays()`` gives
    ``<layer>/singular_values`` and ``<layer>/approx_singular_values``.

    Attributes:
        layers: one :class:`LayerSpectrum` per layer.
        method: the method asked for (``auto`` chooses per layer).
        input_shape: the model's per-example input shape.
    """

    layers: tuple[LayerSpectrum, ...]
    method: str
    input_shape: tuple[int, ...]

    def layer(self, name: str) -> LayerSpectrum:
        """The spectrum of the layer called ``name``."""
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise ProbeError(
            f"layer_spectra: no layer {name!r}; layers: {', '.join(s.name for s in self.layers)}"
        )

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {"n_layers": float(len(self.layers))}
        keys = ("max", "min", "mean", "std", "frobenius", "stable_rank", "residual", "approx_std")
        for spec in self.layers:
            for key in keys:
                value = getattr(spec, key)
                if value is not None:
                    out[f"{spec.name}/{key}"] = float(value)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for spec in self.layers:
            out[f"{spec.name}/singular_values"] = spec.singular_values.numpy()
            if spec.approx_singular_values is not None:
                out[f"{spec.name}/approx_singular_values"] = spec.approx_singular_values.numpy()
        return out


def _stats(values: torch.Tensor) -> tuple[float, float, float]:
    """min, mean, population std."""
    return (
        float(values.min()),
        float(values.mean()),
        float(values.std(correction=0)) if len(values) > 1 else 0.0,
    )


def _stable_rank(frob: float, top: float) -> float:
    return frob**2 / top**2 if top > 0 else math.nan


def _spectrum(
    name: str,
    kind: str,
    method: str,
    values: torch.Tensor,
    shape: tuple[int, ...],
    rows: int,
    cols: int,
    *,
    exact: bool = True,
    frobenius: float | None = None,
    residual: float | None = None,
    approx: torch.Tensor | None = None,
) -> LayerSpectrum:
    """The :class:`LayerSpectrum` of ``values``: all ``min(rows, cols)`` singular values
    (``frobenius`` None: computed from them), or the top-k with the exact ``frobenius``."""
    values = values.detach().double().cpu().sort(descending=True).values
    count = min(rows, cols)
    complete = frobenius is None
    frob = float(values.square().sum().sqrt()) if frobenius is None else frobenius
    lo, mean, std = _stats(values) if complete else (None, None, None)
    top = float(values[0])
    return LayerSpectrum(
        name=name,
        kind=kind,
        method=method,
        exact=exact,
        complete=complete,
        input_shape=shape,
        rows=rows,
        cols=cols,
        count=count,
        singular_values=values,
        max=top,
        min=lo,
        mean=mean,
        std=std,
        frobenius=frob,
        stable_rank=_stable_rank(frob, top),
        residual=residual,
        approx_singular_values=approx,
        approx_std=_stats(approx)[2] if approx is not None else None,
    )


def _conv_spectrum(
    name: str,
    module: nn.Conv2d,
    shape: tuple[int, ...],
    method: str,
    k: int,
    max_dense: int,
    tol: float,
    seed: int,
) -> LayerSpectrum:
    geo = spectral.conv_geometry(module, shape[-2:])
    w = module.weight.detach().double()
    rows, cols = geo.shape
    hw = geo.input_hw
    divides = hw[0] % geo.stride[0] == 0 and hw[1] % geo.stride[1] == 0

    def circular() -> torch.Tensor:
        return spectral.conv_singular_values(
            w, hw, stride=geo.stride, dilation=geo.dilation, groups=geo.groups
        )

    if method == "kernel":
        mat = spectral.dense_conv_weight(w, geo.groups).reshape(geo.out_channels, -1)
        return _spectrum(
            name, "conv2d", "kernel", torch.linalg.svdvals(mat), shape, *mat.shape, exact=False
        )
    if method == "circular":
        if not divides:
            raise ProbeError(
                f"layer_spectra: method 'circular' needs the stride {geo.stride} of layer "
                f"{name!r} to divide its input {hw}; use method='auto'"
            )
        n_out = (hw[0] // geo.stride[0]) * (hw[1] // geo.stride[1]) * geo.out_channels
        return _spectrum(
            name, "conv2d", "circular", circular(), shape, n_out, cols, exact=geo.circular_exact
        )
    chosen: spectral.ExactMethod = "dense" if method == "dense" else "topk"
    if method == "auto":
        chosen = spectral.exact_method(module, shape, max_dense=max_dense)
    if chosen != "topk":
        try:
            values = spectral.exact_singular_values(module, shape, chosen)
        except ModelError as exc:
            raise ProbeError(f"layer_spectra: layer {name!r}: {exc}") from None
        return _spectrum(name, "conv2d", chosen, values, shape, rows, cols)
    top = spectral.operator_top_singular_values(
        module, shape, min(k, min(rows, cols)), tol=tol, seed=seed
    )
    if not top.converged:
        raise ProbeError(
            f"layer_spectra: the top-k iteration of layer {name!r} stopped at relative "
            f"residual {float(top.residuals.max()):.2e} > tol = {tol}; raise tol"
        )
    return _spectrum(
        name,
        "conv2d",
        "topk",
        top.values,
        shape,
        rows,
        cols,
        frobenius=float(spectral.operator_frobenius_sq(w, geo).clamp_min(0).sqrt()),
        residual=float(top.residuals.max()),
        approx=circular().double().cpu() if divides else None,
    )


@register_probe(
    "layer_spectra",
    "singular values of every Linear/Conv2d layer's operator: std, σ_max, stable rank "
    "(wen2020 §4.2.2, B.2)",
)
def layer_spectra(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    method: Method = "auto",
    k: int = 1,
    max_dense: int = 1024,
    tol: float = 1e-6,
    seed: int = 0,
) -> SpectraResult:
    """The singular values of every ``nn.Linear`` / ``nn.Conv2d`` layer of ``model``.

    The model is not changed (one forward pass of a zero input in eval mode finds each
    layer's input size; the mode is restored; nothing draws from the global RNG). Layers
    the forward pass never reaches, and modules that are not linear maps (Normalize,
    BatchNorm, activations, pooling), are skipped.

    Args:
        model: any ``nn.Module`` (robustscope models begin with a Normalize layer, skipped).
        input_shape: one example's shape, e.g. ``(3, 32, 32)``.
        method: ``auto`` (per layer: exact and complete when a structure allows it, else
            exact top-k plus the circular approximation — see the module doc),
            ``dense`` (explicit operator of every conv; refused beyond
            :data:`~robustscope.models.spectral.MAX_ENTRIES` entries), ``topk`` (the
            iteration for every conv), ``circular`` (the FFT spectrum of every conv on the
            H × W torus) or ``kernel`` (reshaped kernels).
        k: top singular values computed for ``topk`` layers.
        max_dense: largest smaller side of an operator that ``auto`` decomposes densely.
        tol: relative residual of the top-k iteration.
        seed: seed of the iteration's random start.

    Returns:
        a :class:`SpectraResult`.

    Example:
        >>> from robustscope import models
        >>> m = models.create("cnn", 10, (1, 8, 8), width=0.25)
        >>> res = layer_spectra(m, (1, 8, 8))
        >>> [(s.name, s.method) for s in res.layers]
        [('body.0', 'dense'), ('body.2', 'dense'), ('body.5', 'svdvals'), ('head', 'svdvals')]
    """
    if method not in METHODS:
        raise ProbeError(
            f"layer_spectra: unknown method {method!r}; choose one of {', '.join(METHODS)}"
        )
    if k < 1 or max_dense < 1 or not tol > 0:
        raise ProbeError(
            f"layer_spectra: need k ≥ 1, max_dense ≥ 1 and tol > 0 (got k={k}, "
            f"max_dense={max_dense}, tol={tol})"
        )
    shape_in = tuple(int(s) for s in input_shape)
    try:
        shapes = spectral.layer_input_shapes(model, shape_in)
    except ModelError as exc:
        raise ProbeError(f"layer_spectra: {exc}") from None
    except RuntimeError as exc:
        raise ProbeError(
            f"layer_spectra: the model does not accept inputs of shape {shape_in} ({exc}); "
            "pass the per-example input shape, e.g. (3, 32, 32)"
        ) from None
    out: list[LayerSpectrum] = []
    with torch.no_grad():
        for name, module in spectral.linear_layers(model):
            if name not in shapes:
                continue
            shape = shapes[name]
            if isinstance(module, nn.Linear):
                values = spectral.exact_singular_values(module, shape, "svdvals")
                rows, cols = module.weight.shape
                out.append(_spectrum(name, "linear", "svdvals", values, shape, rows, cols))
            else:
                assert isinstance(module, nn.Conv2d)
                out.append(_conv_spectrum(name, module, shape, method, k, max_dense, tol, seed))
    if not out:
        raise ProbeError("layer_spectra: the model has no nn.Linear or nn.Conv2d layer")
    return SpectraResult(layers=tuple(out), method=method, input_shape=shape_in)


# --- wen2020 B.2 --------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectraComparison(ProbeResult):
    """wen2020 B.2: accumulated differences of per-layer singular-value STDs between two
    models of the same architecture.

    With ``d_l = std_a(l) − std_b(l)`` (``a`` the reference, e.g. AR strength 4 or a
    standard model; ``b`` the more robust one, e.g. AR strength 16), wen2020 split the
    layers into those whose STD is larger in ``a`` (``d_l > 0``: the STD *decreased* from
    a to b) and the others, and report each group's sum and average of ``|d_l|`` (CIFAR10:
    4.7465 / 0.1158 for the decreased group against 0.4372 / 0.0312 for the increased
    one). Layers with ``d_l = 0`` are in neither group.

    Attributes:
        layers: the layer names, in module order.
        source: per layer, ``"exact"`` (both STDs over the complete exact spectra) or
            ``"circular"`` (both from the circular approximation, for ``topk`` layers).
        std_a, std_b: ``[L]`` the per-layer STDs.
        difference: ``[L]`` ``d_l = std_a − std_b``.
        cumulative: ``[L]`` running sum of ``d_l`` over the layers (the accumulated curve).
        decreased_count, decreased_sum, decreased_mean: layers with ``d_l > 0`` and the sum
            / mean of their ``d_l`` (mean NaN for an empty group).
        increased_count, increased_sum, increased_mean: layers with ``d_l < 0`` and the sum
            / mean of ``−d_l``.
        net: ``Σ_l d_l`` = decreased_sum − increased_sum.
        ratio: decreased_sum / increased_sum (inf when nothing increased, NaN when both 0).
    """

    layers: tuple[str, ...]
    source: tuple[str, ...]
    std_a: torch.Tensor
    std_b: torch.Tensor
    difference: torch.Tensor
    cumulative: torch.Tensor
    decreased_count: int
    decreased_sum: float
    decreased_mean: float
    increased_count: int
    increased_sum: float
    increased_mean: float
    net: float
    ratio: float


def _layer_std(spec: LayerSpectrum, use_approx: bool) -> float | None:
    if use_approx:
        return spec.approx_std
    return spec.std if spec.complete else None


def compare_spectra(
    a: SpectraResult, b: SpectraResult, *, allow_approx: bool = True
) -> SpectraComparison:
    """wen2020 B.2's accumulated STD differences between the layers of ``a`` and ``b``.

    Layers are matched by name (the two results must list the same layers). A layer whose
    spectrum is complete in both results compares the exact STDs; a ``topk`` layer compares
    the STDs of the circular approximations (``allow_approx=True``) or is refused.

    Args:
        a: spectra of the reference model (weaker adversarial training).
        b: spectra of the compared model (stronger adversarial training).
        allow_approx: use circular-approximation STDs for layers without an exact full
            spectrum.

    Returns:
        a :class:`SpectraComparison`.

    Example:
        >>> from robustscope import models
        >>> _ = torch.manual_seed(0)
        >>> m1 = models.create("mlp", 10, (1, 8, 8), widths=[16])
        >>> m2 = models.create("mlp", 10, (1, 8, 8), widths=[16])
        >>> cmp = compare_spectra(layer_spectra(m1, (1, 8, 8)), layer_spectra(m2, (1, 8, 8)))
        >>> cmp.decreased_count + cmp.increased_count <= 2
        True
    """
    names_a = [s.name for s in a.layers]
    names_b = [s.name for s in b.layers]
    if names_a != names_b:
        raise ProbeError(
            "compare_spectra: the two results have different layers "
            f"({names_a} vs {names_b}); compare models of the same architecture"
        )
    std_a: list[float] = []
    std_b: list[float] = []
    source: list[str] = []
    for sa, sb in zip(a.layers, b.layers, strict=True):
        exact = sa.complete and sb.complete
        if not exact and not allow_approx:
            raise ProbeError(
                f"compare_spectra: layer {sa.name!r} has only top-k exact values; pass "
                "allow_approx=True to compare the circular approximations"
            )
        va, vb = _layer_std(sa, not exact), _layer_std(sb, not exact)
        if va is None or vb is None:
            raise ProbeError(
                f"compare_spectra: layer {sa.name!r} has no full spectrum in one result "
                "(top-k only, stride not dividing the input); run layer_spectra with "
                "method='dense' or 'circular'"
            )
        std_a.append(va)
        std_b.append(vb)
        source.append("exact" if exact else "circular")
    ta = torch.tensor(std_a, dtype=torch.float64)
    tb = torch.tensor(std_b, dtype=torch.float64)
    d = ta - tb
    dec, inc = d[d > 0], -d[d < 0]
    dec_sum, inc_sum = float(dec.sum()), float(inc.sum())
    ratio = dec_sum / inc_sum if inc_sum > 0 else (math.inf if dec_sum > 0 else math.nan)
    return SpectraComparison(
        layers=tuple(names_a),
        source=tuple(source),
        std_a=ta,
        std_b=tb,
        difference=d,
        cumulative=d.cumsum(0),
        decreased_count=len(dec),
        decreased_sum=dec_sum,
        decreased_mean=float(dec.mean()) if len(dec) else math.nan,
        increased_count=len(inc),
        increased_sum=inc_sum,
        increased_mean=float(inc.mean()) if len(inc) else math.nan,
        net=float(d.sum()),
        ratio=ratio,
    )
