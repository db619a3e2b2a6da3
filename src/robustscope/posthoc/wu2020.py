"""wu2020's post-hoc robustification M1, M2 and M3 (§"Methods", Experimental setup).

wu2020 (Lemmas 1–2) argue that a model fitted to data with idiosyncratic components has a
larger weight norm than one fitted to the generalizable part alone, so shrinking a trained
model's fully connected weights trades accuracy for robustness. With ``p`` the percentage:

* **M1** (:class:`DropInactiveUnits`): "discard the columns that are active (have non-zero
  values) less than p % of the time when training samples are passed through the model" —
  a unit is active on an example when its post-activation value is > 0; for a hidden layer
  the units are its outputs (their rows of the layer and their columns of the next fully
  connected layer are zeroed), for the last layer (the only one of a ResNet) its input
  features (their columns are zeroed). This lowers the ℓ∞ (or ℓ1) matrix norm.
* **M2** (:class:`DropSingularValues`): "discard the p % trailing singular values by setting
  them to zeros and then reconstruct the layer": of the r = min(out, in) singular values of
  the weight θ = UΣVᵀ the ⌊p·r/100⌋ smallest are zeroed (never more than p %), lowering the
  Frobenius norm. Biases are kept.
* **M3** (:class:`DropBoth`): M1 then M2 with the same p on the same layers.

Every method at p = 0 is the identity. The layer (:mod:`robustscope.posthoc.layers`)
defaults to the penultimate fully connected layer, as wu2020 do for AlexNet.

Example:
    >>> import torch
    >>> from robustscope import models
    >>> from robustscope.posthoc import apply, create
    >>> model = models.create("mlp", 10, (1, 8, 8), widths=[32, 16])
    >>> out = apply(model, create("m2", percent=50))
    >>> out.transforms[0].details["dropped"]
    {'body.3': 8}
    >>> int(torch.linalg.matrix_rank(out.model.body[3].weight))
    8
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustscope.params import parse_real
from robustscope.posthoc.base import Transform, TransformError, register_transform
from robustscope.posthoc.layers import consumer_of, input_activity, select_linear
from robustscope.probes.base import ProbeData

__all__ = [
    "METHODS",
    "DropBoth",
    "DropInactiveUnits",
    "DropSingularValues",
    "PercentTransform",
    "check_percent",
]

#: wu2020's method names → registered transform names (the same strings)
METHODS = ("m1", "m2", "m3")


def check_percent(value: Any, transform: str) -> float:
    """``p`` parsed (``5``, ``"2.5"``) and checked to lie in [0, 100)."""
    p = parse_real(value, f"transform {transform!r}: percent", minimum=0.0, error=TransformError)
    if p >= 100:
        raise TransformError(
            f"transform {transform!r}: percent must be in [0, 100) (the share of units or "
            f"singular values to drop), got {value}"
        )
    return p


def _layer(layer: Any, transform: str) -> str | None:
    if layer is None or isinstance(layer, str):
        return layer
    raise TransformError(
        f"transform {transform!r}: layer must be a layer name, 'all' or null, got {layer!r}"
    )


def _modules(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def drop_inactive_units(
    model: nn.Module, percent: float, layer: str | None, x: torch.Tensor, *, transform: str
) -> dict[str, Any]:
    """M1 in place on ``model`` with activity counted on ``x``; the details recorded."""
    names = select_linear(model, layer, transform=transform)
    if layer == "all" and len(names) > 1:
        names = names[:-1]  # the last layer's inputs are the penultimate layer's units
    plan = {name: consumer_of(model, name, transform=transform) for name in names}
    activity = input_activity(model, [reader for reader, _ in plan.values()], x)
    modules = _modules(model)
    dropped: dict[str, int] = {}
    units: dict[str, int] = {}
    for name, (reader, inputs_only) in plan.items():
        freq = activity[reader]
        drop = freq < percent / 100.0
        units[name] = len(freq)
        dropped[name] = int(drop.sum())
        cols = drop.to(modules[reader].weight.device)
        modules[reader].weight[:, cols] = 0
        if not inputs_only:
            here = modules[name]
            here.weight[cols, :] = 0
            if here.bias is not None:
                here.bias[cols] = 0
    return {"dropped": dropped, "units": units, "counted_on": len(x)}


def drop_singular_values(
    model: nn.Module, percent: float, layer: str | None, *, transform: str
) -> dict[str, Any]:
    """M2 in place on ``model``; the details recorded (float64 SVD, cast back)."""
    modules = _modules(model)
    dropped: dict[str, int] = {}
    rank: dict[str, int] = {}
    frob_before: dict[str, float] = {}
    frob_after: dict[str, float] = {}
    for name in select_linear(model, layer, transform=transform):
        w = modules[name].weight
        u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
        r = len(s)
        k = math.floor(percent * r / 100.0 + 1e-9)
        s_new = s.clone()
        if k:
            s_new[r - k :] = 0
        w.copy_(((u * s_new) @ vh).to(w.dtype))
        dropped[name], rank[name] = k, r
        frob_before[name] = float(s.square().sum().sqrt())
        frob_after[name] = float(s_new.square().sum().sqrt())
    return {
        "dropped": dropped,
        "singular_values": rank,
        "frobenius_before": frob_before,
        "frobenius_after": frob_after,
    }


def _train_x(data: ProbeData | None, transform: str) -> torch.Tensor:
    if data is None or data.train is None:
        raise TransformError(
            f"transform {transform!r} counts how often each unit is active on training "
            "examples: pass data=ProbeData(test=..., train=(x_train, y_train))"
        )
    return data.train[0]


@dataclass(frozen=True)
class PercentTransform(Transform):
    """The parameters the three methods share: ``percent`` p ∈ [0, 100) and ``layer`` (None:
    the penultimate fully connected layer; ``"all"``; or a layer name)."""

    percent: float
    layer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", check_percent(self.percent, self.name))
        object.__setattr__(self, "layer", _layer(self.layer, self.name))


@register_transform("m1", doc="wu2020 M1: drop the units active on less than p % of examples")
@dataclass(frozen=True)
class DropInactiveUnits(PercentTransform):
    """wu2020 M1: zero the units of ``layer`` active on fewer than ``percent`` % of the
    training examples (module doc): a unit active (post-activation > 0) on a share of the
    training examples below p/100 is dropped.

    Details recorded: ``dropped`` and ``units`` per layer, ``counted_on`` (examples).
    """

    needs_data = True

    def apply_(self, model: nn.Module, data: ProbeData | None = None) -> dict[str, Any]:
        return drop_inactive_units(
            model, self.percent, self.layer, _train_x(data, self.name), transform=self.name
        )


@register_transform("m2", doc="wu2020 M2: zero the trailing p % of singular values")
@dataclass(frozen=True)
class DropSingularValues(PercentTransform):
    """wu2020 M2: zero the ⌊p·r/100⌋ smallest singular values of ``layer`` (module doc).

    Details recorded: per layer ``dropped`` (how many), ``singular_values`` (r) and the
    Frobenius norms before and after.
    """

    def apply_(self, model: nn.Module, data: ProbeData | None = None) -> dict[str, Any]:
        return drop_singular_values(model, self.percent, self.layer, transform=self.name)


@register_transform("m3", doc="wu2020 M3: M1 then M2 with the same p")
@dataclass(frozen=True)
class DropBoth(PercentTransform):
    """wu2020 M3: M1 then M2, same ``percent`` and ``layer`` (module doc).

    Details recorded: ``m1`` and ``m2``, the details of each step.
    """

    needs_data = True

    def apply_(self, model: nn.Module, data: ProbeData | None = None) -> dict[str, Any]:
        m1 = drop_inactive_units(
            model, self.percent, self.layer, _train_x(data, self.name), transform=self.name
        )
        m2 = drop_singular_values(model, self.percent, self.layer, transform=self.name)
        return {"m1": m1, "m2": m2}
