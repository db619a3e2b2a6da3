"""Singular values of the linear maps of ``nn.Linear`` and ``nn.Conv2d`` layers, and clipping.

A layer's *operator* is the linear map it applies to one example, without its bias: the
weight matrix ``W`` (out × in) of a ``Linear``; for a ``Conv2d`` on ``C_in × H × W`` inputs
the ``(C_out·H_out·W_out) × (C_in·H·W)`` matrix of the convolution, padding included
(zero padding makes it a block-Toeplitz matrix, circular padding a block-circulant one). An
m × n operator has ``min(m, n)`` singular values (zeros included). Everything here is exact
or iterates to a stated tolerance with a reported residual. One module per method:

* :mod:`~robustscope.models.spectral.geometry` — :class:`ConvGeometry` (sizes, padding,
  which structure the operator has);
* :mod:`~robustscope.models.spectral.explicit` — :func:`conv_operator_matrix`, the explicit
  matrix (small layers only; the reference everything else is tested against);
* :mod:`~robustscope.models.spectral.fft` — :func:`conv_singular_values`, *all* singular
  values of a circular convolution by the FFT method of Sedghi, Gupta & Long (ICLR 2019),
  strides dividing the input included (polyphase split);
* :mod:`~robustscope.models.spectral.patch` — :func:`patch_singular_values`, all singular
  values of a zero-padded convolution whose stride is at least its (dilated) kernel extent
  (a direct sum of small blocks; every 1×1 convolution);
* :mod:`~robustscope.models.spectral.lanczos` — :func:`operator_top_singular_values`, the
  exact top-k of any of these maps (any padding, stride, dilation, groups) or of any linear
  function, by block Krylov iteration on ``AᵀA``;
* :mod:`~robustscope.models.spectral.frobenius` — :func:`operator_frobenius_sq`, ``‖A‖_F²``
  of a convolution's operator, exactly, in O(C_out·C_in·k⁴) time;
* :mod:`~robustscope.models.spectral.methods` — :func:`exact_method`, the one chooser of the
  exact method for a layer, :func:`exact_singular_values` and :func:`operator_norm`;
* :mod:`~robustscope.models.spectral.clip` — :func:`clip_operator_norm_`, wen2020 B.4.2's
  spectral-norm control of one layer (the model-level transform is
  :mod:`robustscope.posthoc`'s ``spectral_clip``);
* :mod:`~robustscope.models.spectral.layers` — :func:`linear_layers` and
  :func:`layer_input_shapes` (the input shape each layer sees, by one forward pass).

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

from robustscope.models.spectral.clip import clip_operator_norm_, clip_spectral_norms
from robustscope.models.spectral.explicit import MAX_ENTRIES, conv_operator_matrix, operator_matrix
from robustscope.models.spectral.fft import conv_singular_values
from robustscope.models.spectral.frobenius import operator_frobenius_sq
from robustscope.models.spectral.geometry import (
    ConvGeometry,
    PaddingMode,
    Pair,
    conv_geometry,
    dense_conv_weight,
)
from robustscope.models.spectral.lanczos import (
    LinearFn,
    TopSingularValues,
    operator_top_singular_values,
)
from robustscope.models.spectral.layers import layer_input_shapes, linear_layers
from robustscope.models.spectral.methods import (
    EXACT_METHODS,
    ExactMethod,
    exact_method,
    exact_singular_values,
    operator_norm,
)
from robustscope.models.spectral.patch import patch_singular_values

__all__ = [
    "EXACT_METHODS",
    "MAX_ENTRIES",
    "ConvGeometry",
    "ExactMethod",
    "LinearFn",
    "PaddingMode",
    "Pair",
    "TopSingularValues",
    "clip_operator_norm_",
    "clip_spectral_norms",
    "conv_geometry",
    "conv_operator_matrix",
    "conv_singular_values",
    "dense_conv_weight",
    "exact_method",
    "exact_singular_values",
    "layer_input_shapes",
    "linear_layers",
    "operator_frobenius_sq",
    "operator_matrix",
    "operator_norm",
    "operator_top_singular_values",
    "patch_singular_values",
]
