"""``spectral_complexity``: the product of the layers' spectral norms (wen2020 Def. 7).

wen2020 (§B.4.2, Definition 7, after Bartlett et al. 2017 and Neyshabur et al. 2018) call
the product of the spectral norms of a network's weight matrices its *spectral complexity*
(SC), the quantity spectral-norm capacity bounds are proportional to, and control it by
clipping every layer's spectral norm at the end of each epoch (``TrainConfig.spectral_clip``
here). This probe measures

    SC = ∏_l ‖A_l‖₂

over every ``nn.Linear`` and ``nn.Conv2d`` layer the forward pass reaches, with ``A_l`` the
layer's *operator* (bias excluded): the weight matrix of a Linear layer, and for a Conv2d
the ``(C_out·H_out·W_out) × (C_in·H·W)`` matrix of the convolution on the input size it
sees in the model, padding and stride included (:mod:`robustscope.models.spectral`). Each
‖A_l‖₂ is exact, by :func:`robustscope.models.spectral.operator_norm` (``svdvals`` for a
Linear layer, the FFT or patch method where they apply, otherwise block Krylov iteration to
the relative residual ``tol`` in float64).

Only weight matrices count, as in Def. 7: the input normalization, BatchNorm's scales and
Fixup's scalar multipliers are not weight matrices and are left out — which is why wen2020
measure SC on a BatchNorm-free ResNet without Fixup's scalars (§D.3; ``fixup_resnet`` with
``scalars=False``). For a network with skip connections the product is Def. 7's quantity,
not a Lipschitz bound of the network.

The product of many norms overflows or underflows quickly (56 layers), so the result also
gives its natural logarithm, the sum of the logs, which is what comparisons should read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from robustscope.errors import ModelError, ProbeError
from robustscope.models import spectral
from robustscope.probes.base import ProbeResult
from robustscope.probes.registry import register_probe

__all__ = ["SpectralComplexityResult", "spectral_complexity"]


@dataclass(frozen=True)
class SpectralComplexityResult(ProbeResult):
    """wen2020 Def. 7: the product of the spectral norms of the layers' operators.

    Attributes:
        value: ∏ σ_max over the layers (may be ``inf`` or 0 in float64 for deep networks:
            read ``log_value``).
        log_value: Σ log σ_max (natural log; ``-inf`` when a layer is zero).
        n_layers: how many layers entered the product.
        layer_norm: σ_max of every layer by its module name, in module order.
    """

    value: float
    log_value: float
    n_layers: int
    layer_norm: dict[str, float] = field(default_factory=dict)


def _log(v: float) -> float:
    return math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)


@register_probe(
    "spectral_complexity",
    "spectral complexity: the product of every Linear/Conv2d operator's spectral norm "
    "(wen2020 Def. 7), and its log",
)
def spectral_complexity(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    tol: float = 1e-9,
    seed: int = 0,
) -> SpectralComplexityResult:
    """wen2020's spectral complexity (Def. 7) of ``model`` on inputs of ``input_shape``.

    The model is not changed (one forward pass of a zero input in eval mode finds each
    layer's input size; the mode is restored; nothing draws from the global RNG). Layers the
    forward pass never reaches are left out.

    Args:
        model: any ``nn.Module`` with ``nn.Linear`` / ``nn.Conv2d`` layers.
        input_shape: one example's shape, e.g. ``(1, 28, 28)``.
        tol: relative residual of the Krylov iteration (convolutions without a direct method).
        seed: seed of the iteration's random start.

    Example:
        >>> import torch
        >>> from robustscope import models
        >>> m = models.create("mlp", 3, (4,), widths=[5])
        >>> sc = spectral_complexity(m, (4,))
        >>> layers = [l for l in m.modules() if isinstance(l, nn.Linear)]
        >>> dense = [torch.linalg.matrix_norm(l.weight.detach().double(), 2) for l in layers]
        >>> sc.n_layers, abs(sc.value - float(dense[0] * dense[1])) < 1e-9 * sc.value
        (2, True)
    """
    if not tol > 0:
        raise ProbeError(f"spectral_complexity: tol must be > 0, got {tol}")
    shape_in = tuple(int(s) for s in input_shape)
    try:
        shapes = spectral.layer_input_shapes(model, shape_in)
    except ModelError as exc:
        raise ProbeError(f"spectral_complexity: {exc}") from None
    except RuntimeError as exc:
        raise ProbeError(
            f"spectral_complexity: the model does not accept inputs of shape {shape_in} "
            f"({exc}); pass the per-example input shape, e.g. (1, 28, 28)"
        ) from None
    norms: dict[str, float] = {}
    for name, module in spectral.linear_layers(model):
        if name not in shapes:
            continue
        try:
            norms[name] = spectral.operator_norm(module, shapes[name], tol=tol, seed=seed)
        except ModelError as exc:
            raise ProbeError(f"spectral_complexity: layer {name!r}: {exc}") from None
    if not norms:
        raise ProbeError("spectral_complexity: the model has no nn.Linear or nn.Conv2d layer")
    log_value = sum(_log(v) for v in norms.values())
    value = math.prod(norms.values())
    return SpectralComplexityResult(
        value=value, log_value=log_value, n_layers=len(norms), layer_norm=norms
    )
