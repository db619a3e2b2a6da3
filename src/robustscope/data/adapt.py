"""Explicit input adapters between datasets of different shapes (terzi2021's transfer runs).

A model trained on one dataset reads another only through an :class:`Adapter`: a fixed,
recorded chain of steps mapping ``[N, C, H, W]`` images of the target's shape to the model's
input shape. Every step maps the unit box into itself, so an adapted batch stays in [0, 1]
(each result is clamped to the box to remove float rounding above 1):

* :class:`Greyscale` — 3 → 1 channels with the ITU-R BT.601 luma weights
  ``0.299 R + 0.587 G + 0.114 B`` (they sum to 1: a convex combination);
* :class:`Resize` — bilinear ``torch.nn.functional.interpolate`` (``align_corners=False``),
  with ``antialias=True`` when either side shrinks (bilinear with antialias is a normalised
  triangle filter, also a convex combination of pixels);
* :class:`PadCrop` — per side, zero padding (source smaller) or a centre crop (source larger);
  the ``d = target − source`` padding pixels go ``d // 2`` before and the rest after, and a
  crop of ``d = source − target`` pixels starts at ``d // 2``, so padding then cropping back is
  the identity;
* :class:`Replicate` — 1 → 3 channels, each a copy of the grey image.

:func:`adapter_for` chooses the chain for a pair of shapes: channels reduced first
(greyscale), then the spatial step of ``mode`` (``"resize"``, the default: e.g. sklearn's
8×8 digits → 28×28; or ``"pad"``), then channels replicated (grey → colour), so the
spatial step always works on the fewer channels. Equal shapes give the identity (no step).
Vector data (``[N, D]``) has no rule but the identity.

Every step is differentiable, so an attack on ``model ∘ adapter`` perturbs the target's own
pixels (:mod:`robustscope.transfer`). ``Adapter.to_dict()`` is recorded with every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from robustscope.errors import DataError

__all__ = [
    "ADAPT_MODES",
    "GREY_WEIGHTS",
    "AdaptMode",
    "Adapter",
    "Greyscale",
    "PadCrop",
    "Replicate",
    "Resize",
    "Step",
    "adapter_for",
]

AdaptMode = Literal["resize", "pad"]
#: the spatial rules :func:`adapter_for` knows
ADAPT_MODES: tuple[str, ...] = ("resize", "pad")
#: ITU-R BT.601 luma weights of R, G, B (sum 1)
GREY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def _shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    if len(out) not in (1, 3) or any(s <= 0 for s in out):
        raise DataError(
            f"{what}: an input shape is (C, H, W) or (D,) with positive sizes, got {out}"
        )
    return out


@dataclass(frozen=True)
class Step:
    """One step of an adapter: ``[N, C, H, W]`` in [0, 1] → ``[N, C', H', W']`` in [0, 1]."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Greyscale(Step):
    """3 → 1 channels: ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True).clamp(0.0, 1.0)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1, *shape[1:])

    def describe(self) -> str:
        return "greyscale (BT.601)"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "greyscale", "weights": list(GREY_WEIGHTS)}


@dataclass(frozen=True)
class Replicate(Step):
    """1 → ``channels`` channels, each a copy of the single one."""

    channels: int = 3

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, self.channels, 1, 1)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.channels, *shape[1:])

    def describe(self) -> str:
        return f"replicate 1→{self.channels} channels"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "replicate", "channels": self.channels}


@dataclass(frozen=True)
class Resize(Step):
    """Bilinear resize to ``size`` = (H, W); antialiased when a side shrinks."""

    size: tuple[int, int]
    antialias: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(
            x, size=self.size, mode="bilinear", align_corners=False, antialias=self.antialias
        )
        return out.clamp(0.0, 1.0)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], *self.size)

    def describe(self) -> str:
        aa = ", antialias" if self.antialias else ""
        return f"resize to {self.size[0]}×{self.size[1]} (bilinear{aa})"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "resize", "size": list(self.size), "antialias": self.antialias}


@dataclass(frozen=True)
class PadCrop(Step):
    """Zero-pad or centre-crop each spatial side to ``size`` = (H, W) (module doc)."""

    size: tuple[int, int]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for dim, target in ((2, self.size[0]), (3, self.size[1])):
            have = x.shape[dim]
            if have < target:
                d = target - have
                pad = [0, 0, 0, 0]  # (W before, W after, H before, H after)
                i = 0 if dim == 3 else 2
                pad[i], pad[i + 1] = d // 2, d - d // 2
                x = F.pad(x, pad)
            elif have > target:
                x = x.narrow(dim, (have - target) // 2, target)
        return x

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], *self.size)

    def describe(self) -> str:
        return f"zero-pad/centre-crop to {self.size[0]}×{self.size[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "pad_crop", "size": list(self.size)}


@dataclass(frozen=True)
class Adapter:
    """A chain of steps from ``source_shape`` (the data's) to ``target_shape`` (the model's).

    Attributes:
        source_shape: one input of the data, ``(C, H, W)`` or ``(D,)``.
        target_shape: one input of the model.
        steps: applied in order; empty for the identity.
        mode: the spatial rule it was chosen with (``"resize"`` or ``"pad"``).
    """

    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    steps: tuple[Step, ...] = ()
    mode: str = "resize"

    def __post_init__(self) -> None:
        shape = _shape(self.source_shape, "Adapter.source_shape")
        for step in self.steps:
            shape = step.out_shape(shape)
        if shape != tuple(self.target_shape):
            raise DataError(
                f"Adapter: its steps map {tuple(self.source_shape)} to {shape}, not to "
                f"target_shape {tuple(self.target_shape)}; build it with adapter_for"
            )

    @property
    def identity(self) -> bool:
        return not self.steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, *source_shape]`` → ``[N, *target_shape]`` (the input itself when the
        adapter is the identity)."""
        if tuple(x.shape[1:]) != tuple(self.source_shape):
            raise DataError(
                f"Adapter: inputs of shape {tuple(x.shape[1:])}, expected "
                f"{tuple(self.source_shape)}; build the adapter for this data with adapter_for"
            )
        for step in self.steps:
            x = step(x)
        return x

    def describe(self) -> str:
        """One line: ``1×8×8 → resize to 28×28 (bilinear) → 1×28×28``."""
        fmt = "×".join
        parts = [fmt(map(str, self.source_shape))]
        parts += [s.describe() for s in self.steps] or ["identity"]
        parts.append(fmt(map(str, self.target_shape)))
        return " → ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_shape": list(self.source_shape),
            "target_shape": list(self.target_shape),
            "mode": self.mode,
            "steps": [s.to_dict() for s in self.steps],
            "describe": self.describe(),
        }


def adapter_for(
    source_shape: Sequence[int], target_shape: Sequence[int], *, mode: str = "resize"
) -> Adapter:
    """The adapter feeding inputs of ``source_shape`` (the data's) to a model expecting
    ``target_shape`` (module doc for the rule).

    Raises:
        DataError: an unknown ``mode``, vector shapes that differ, an image/vector mix, or a
            channel change other than 1 → 3 and 3 → 1.

    Example:
        >>> adapter_for((1, 8, 8), (1, 28, 28)).describe()
        '1×8×8 → resize to 28×28 (bilinear) → 1×28×28'
        >>> adapter_for((3, 32, 32), (1, 28, 28), mode="pad").describe()
        '3×32×32 → greyscale (BT.601) → zero-pad/centre-crop to 28×28 → 1×28×28'
    """
    if mode not in ADAPT_MODES:
        raise DataError(f"adapter mode {mode!r} is unknown; valid modes: {', '.join(ADAPT_MODES)}")
    src = _shape(source_shape, "adapter_for: source_shape")
    dst = _shape(target_shape, "adapter_for: target_shape")
    if src == dst:
        return Adapter(src, dst, (), mode)
    if len(src) != 3 or len(dst) != 3:
        raise DataError(
            f"no adapter from inputs {src} to {dst}: only images (C, H, W) are adapted "
            "(vector data must match the model's shape); choose a target dataset of the "
            "model's input shape"
        )
    steps: list[Step] = []
    (c_in, *hw_in), (c_out, *hw_out) = src, dst
    if (c_in, c_out) not in ((1, 1), (3, 3), (1, 3), (3, 1)):
        raise DataError(
            f"no adapter from {c_in} to {c_out} channels (only 1→3 replication and 3→1 "
            "greyscale); choose a dataset with 1 or 3 channels"
        )
    if c_in == 3 and c_out == 1:
        steps.append(Greyscale())
    if hw_in != hw_out:
        size = (hw_out[0], hw_out[1])
        if mode == "resize":
            shrinks = hw_out[0] < hw_in[0] or hw_out[1] < hw_in[1]
            steps.append(Resize(size, antialias=shrinks))
        else:
            steps.append(PadCrop(size))
    if c_in == 1 and c_out == 3:
        steps.append(Replicate(3))
    return Adapter(src, dst, tuple(steps), mode)
