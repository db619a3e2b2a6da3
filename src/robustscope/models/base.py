"""What every robustscope model is: normalization first, ``features`` then a linear head.

Inputs are pixel-space tensors in [0, 1] (images) or unbounded vectors; the optional
per-channel mean/std normalization is the model's first layer, so attacks and probes all
work in the same space and ε means the same thing everywhere (DESIGN.md, conventions).
A model records the input box of the data it is for (``spec.box``, saved in checkpoints):
:func:`declared_box` is where attacks, objectives and probes read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from robustscope.data.box import Box, box_for_layout


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel (dimension 1); mean 0 and std 1 when both are None.

    mean/std are buffers, so they are saved with the weights and follow ``.to(device)``;
    the layer always applies them, so loaded weights alone decide what it does.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        channels: int,
        ndim: int,
    ) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean) if mean is not None else [0.0], dtype=torch.float32)
        std_t = torch.as_tensor(list(std) if std is not None else [1.0], dtype=torch.float32)
        for label, t in (("mean", mean_t), ("std", std_t)):
            if t.numel() not in (1, channels):
                raise ValueError(
                    f"normalization {label} has {t.numel()} values; expected 1 or {channels} (one per channel)"
                )
        if bool((std_t <= 0).any()):
            raise ValueError(f"normalization std must be positive, got {std_t.tolist()}")
        shape = (1, -1) + (1,) * (ndim - 2) if ndim > 2 else (1, -1)
        self.register_buffer("mean", mean_t.reshape(shape))
        self.register_buffer("std", std_t.reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: recorded in every checkpoint.

    Attributes:
        name: registry name (``robustscope.models.available()``).
        num_classes: number of output logits K.
        input_shape: shape of one input, ``(C, H, W)`` or ``(D,)``.
        kwargs: architecture keyword arguments given to ``create``.
        mean, std: per-channel normalization applied as the first layer (None: none).
        box: the input domain (:mod:`robustscope.data.box`) of the data the model is for;
            ``None`` given to the constructor means the lab's rule for ``input_shape``
            (images [0, 1], vectors unbounded), which is also what a checkpoint written
            before boxes were recorded gets.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    box: Box = None  # type: ignore[assignment]  # resolved in __post_init__

    def __post_init__(self) -> None:
        box = box_for_layout(self.input_shape) if self.box is None else Box.parse(self.box)
        object.__setattr__(self, "box", box)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["mean"] = list(self.mean) if self.mean is not None else None
        d["std"] = list(self.std) if self.std is not None else None
        d["box"] = self.box.to_json()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            name=str(d["name"]),
            num_classes=int(d["num_classes"]),
            input_shape=tuple(int(s) for s in d["input_shape"]),
            kwargs=dict(d.get("kwargs") or {}),
            mean=tuple(float(v) for v in d["mean"]) if d.get("mean") is not None else None,
            std=tuple(float(v) for v in d["std"]) if d.get("std") is not None else None,
            box=Box.from_json(d["box"], what="model.box") if "box" in d else None,  # type: ignore[arg-type]
        )


def declared_box(model: nn.Module) -> Box | None:
    """The input box ``model`` declares: its ``input_box`` attribute when it has one (a
    wrapper forwarding its inner model's, or a bare module told its box with
    ``module.input_box = UNIT``), else its spec's box (models built by
    :func:`robustscope.models.create` or loaded from a checkpoint); None when it declares
    none (e.g. a bare ``nn.Sequential``).

    Example:
        >>> from robustscope.data.box import UNIT
        >>> bare = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> declared_box(bare) is None
        True
        >>> bare.input_box = UNIT
        >>> declared_box(bare)
        Box(lo=0.0, hi=1.0)
    """
    box = getattr(model, "input_box", None)
    if isinstance(box, Box):
        return box
    spec = getattr(model, "spec", None)
    box = getattr(spec, "box", None)
    return box if isinstance(box, Box) else None


class Classifier(nn.Module):
    """Base class: ``forward(x) = head(features(x))`` with normalization applied first.

    Subclasses build ``self.body`` (normalized input → representation, flattened
    to ``[N, F]``) and ``self.head`` (the last linear layer, ``F → K``), and may
    override :meth:`embed` when the body is not a single module.
    """

    spec: ModelSpec
    body: nn.Module
    head: nn.Module

    def __init__(self) -> None:
        super().__init__()
        # identity until ``robustscope.models.create`` installs the requested normalization
        self.normalize = Normalize(None, None, channels=1, ndim=2)

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """Representation of an already-normalized input, ``[N, F]``."""
        return torch.flatten(self.body(z), 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation before the last linear layer, ``[N, F]``, for pixel-space ``x``."""
        return self.embed(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, K]`` for pixel-space inputs ``x``."""
        return self.head(self.features(x))
