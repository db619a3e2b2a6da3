"""The in-memory dataset every loader returns.

Shape conventions:

* image datasets: ``x`` is float32 ``[N, C, H, W]`` with values in [0, 1];
* vector datasets (e.g. the synthetic ``tsipras`` distribution): ``x`` is
  float32 ``[N, D]`` (not clamped to [0, 1]; their threat model is ℓp in R^D);
* ``box`` is the declared input domain (:mod:`robustscope.data.box`): ``[0, 1]`` for
  images, unbounded for vectors unless the loader declares otherwise; every value of
  ``x`` lies in it;
* ``y`` is int64 ``[N]`` with values in ``[0, num_classes)``. Binary ±1 labels
  are stored as 0/1 with ``classes`` naming the signs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from robustscope.data.box import Box, box_for_layout
from robustscope.errors import DataError


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled dataset held in memory as two tensors.

    Attributes:
        x: inputs, float32, ``[N, C, H, W]`` in [0, 1] (images) or ``[N, D]`` (vectors).
        y: labels, int64 ``[N]``.
        num_classes: number of classes K.
        classes: the K class names, index-aligned with labels.
        name: registry name of the dataset (e.g. ``"fashion-mnist"``).
        split: ``"train"`` or ``"test"``.
        source: where the data came from (a folder, a package, ``"synthetic"``).
        meta: anything else the loader records.
        box: the input domain every value of ``x`` lies in (default: the lab's rule for the
            layout, :func:`~robustscope.data.box.box_for_layout`; loaders pass the
            dataset's declared box).
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    classes: tuple[str, ...]
    name: str
    split: str = "train"
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)
    box: Box = None  # type: ignore[assignment]  # resolved in __post_init__

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            raise DataError(f"{self.name}: x must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.int64:
            raise DataError(f"{self.name}: y must be int64, got {self.y.dtype}")
        if self.x.ndim not in (2, 4):
            raise DataError(
                f"{self.name}: x must be [N, C, H, W] or [N, D], got shape {tuple(self.x.shape)}"
            )
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise DataError(
                f"{self.name}: y must be [N] with N = {len(self.x)}, got shape {tuple(self.y.shape)}"
            )
        if len(self.classes) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes"
            )
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise DataError(
                f"{self.name}: labels must lie in [0, {self.num_classes}), "
                f"got [{int(self.y.min())}, {int(self.y.max())}]"
            )
        box = box_for_layout(self.x.shape[1:]) if self.box is None else Box.parse(self.box)
        object.__setattr__(self, "box", box)
        if len(self.x) and not bool(box.contains(self.x).all()):
            raise DataError(
                f"{self.name}: inputs range over [{float(self.x.min()):g}, "
                f"{float(self.x.max()):g}], outside the declared input box {box}; "
                "rescale the data or declare its box"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: ``(C, H, W)`` or ``(D,)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    def subset(self, index: torch.Tensor | slice | list[int]) -> ArrayDataset:
        """The examples at ``index`` (a slice, index list or boolean mask), same metadata."""
        return dataclasses.replace(self, x=self.x[index], y=self.y[index], meta=dict(self.meta))

    def head(self, n: int | None) -> ArrayDataset:
        """The first ``n`` examples (all when ``n`` is None or larger than the set)."""
        if n is None or n >= len(self):
            return self
        return self.subset(slice(0, n))

    def to(self, device: torch.device | str) -> ArrayDataset:
        """A copy with both tensors on ``device``."""
        return dataclasses.replace(
            self, x=self.x.to(device), y=self.y.to(device), meta=dict(self.meta)
        )
