"""Spectral-norm clipping of every Linear/Conv2d layer (wen2020 B.3, B.4.2, D.3).

wen2020 control the capacity of adversarially trained networks by "spectral normalization
(Sedghi et al., 2018) [that] renormalizes the spectral norms of the weight matrices of a NN
to a designated value" (B.4.2), on networks without BatchNorm (B.3), "every epoch rather
than every iteration" (D.3). The :class:`SpectralClip` transform bounds the operator norm
of every Linear/Conv2d layer the model's forward pass reaches — a convolution's operator on
the input size it sees in the model — by scaling each layer above the bound down to it
(:func:`robustscope.models.spectral.clip_operator_norm_`, which documents the reading of
the paper; the norms are exact, chosen per layer by
:func:`robustscope.models.spectral.exact_method`).

Training applies the same clipping after every epoch when ``TrainConfig.spectral_clip`` is
set (:func:`robustscope.models.spectral.clip_spectral_norms`, called by the training loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from robustscope.models import spectral
from robustscope.params import parse_real
from robustscope.posthoc.base import Transform, TransformError, register_transform
from robustscope.probes.base import ProbeData

__all__ = ["SpectralClip"]


@register_transform(
    "spectral_clip", doc="scale every Linear/Conv2d layer's operator norm down to a bound (wen2020)"
)
@dataclass(frozen=True)
class SpectralClip(Transform):
    """Bound the spectral norm of every Linear/Conv2d layer's operator (wen2020 B.4.2).

    A layer whose operator norm σ_max exceeds ``bound`` has its weight multiplied by
    ``bound / σ_max`` (its singular-value distribution keeps its shape); the others are left
    bit for bit; biases are not changed.

    Attributes:
        bound: the bound (> 0).
        tol: relative residual of the iteration for convolutions without a structured exact
            method (:func:`robustscope.models.spectral.operator_norm`).
        seed: seed of that iteration's start.
        input_shape: the model's per-example input shape (default: ``model.spec.input_shape``
            of a robustscope model).

    Details recorded: ``norms_before`` (layer → σ_max before), ``max_norm_before`` and
    ``clipped`` (the layers that were scaled).

    Example:
        >>> from robustscope import models
        >>> from robustscope.posthoc import apply
        >>> model = models.create("mlp", 10, (1, 8, 8), widths=[16])
        >>> out = apply(model, SpectralClip(0.5))
        >>> layers = spectral.linear_layers(out.model)
        >>> all(spectral.operator_norm(m) <= 0.5 * (1 + 1e-6) for _, m in layers)  # float32 weights
        True
    """

    bound: float
    tol: float = 1e-9
    seed: int = 0
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        where = "transform 'spectral_clip'"
        bound = parse_real(
            self.bound, f"{where}: bound", minimum=0.0, strict=True, error=TransformError
        )
        tol = parse_real(self.tol, f"{where}: tol", minimum=0.0, strict=True, error=TransformError)
        object.__setattr__(self, "bound", bound)
        object.__setattr__(self, "tol", tol)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.input_shape is not None:
            out["input_shape"] = list(self.input_shape)
        return out

    def apply_(self, model: nn.Module, data: ProbeData | None = None) -> dict[str, Any]:
        shapes = spectral.layer_input_shapes(model, _input_shape(model, self.input_shape))
        norms = spectral.clip_spectral_norms(
            model, self.bound, shapes, tol=self.tol, seed=self.seed
        )
        return {
            "max_norm_before": max(norms.values(), default=0.0),
            "clipped": [name for name, sigma in norms.items() if sigma > self.bound],
            "norms_before": norms,
        }


def _input_shape(model: nn.Module, given: Sequence[int] | None) -> tuple[int, ...]:
    if given is not None:
        return tuple(given)
    spec = getattr(model, "spec", None)
    shape = getattr(spec, "input_shape", None)
    if shape is None:
        raise TransformError(
            f"transform 'spectral_clip': {type(model).__name__} has no spec.input_shape; "
            "pass input_shape=(C, H, W) (the per-example input shape)"
        )
    return tuple(shape)
