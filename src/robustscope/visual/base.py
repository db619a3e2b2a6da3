"""What the visual modules share: their error type, input checks and the input box.

Images are float ``[N, C, H, W]`` in the model's declared box (``[0, 1]`` for the lab's
image datasets; :mod:`robustscope.data.box` owns that convention); the box is read from the
model with :func:`robustscope.models.declared_box` unless given.
"""

from __future__ import annotations

import torch
from torch import nn

from robustscope.data.box import Box, BoxLike
from robustscope.errors import RobustscopeError
from robustscope.models.base import declared_box

__all__ = ["VisualError", "check_batch", "check_images", "resolve_box"]


class VisualError(RobustscopeError):
    """A visualisation got bad inputs or parameters (the message names the field and fix)."""


def check_batch(what: str, x: torch.Tensor, name: str = "x") -> None:
    """``x`` is a non-empty floating-point batch ``[N, ...]`` of finite values."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise VisualError(f"{what}: {name} must be a float tensor [N, ...], got {shape}")
    if len(x) == 0:
        raise VisualError(f"{what}: {name} is empty; pass at least one example")
    if not bool(torch.isfinite(x).all()):
        raise VisualError(f"{what}: {name} holds NaN or inf values")


def check_images(what: str, x: torch.Tensor, name: str = "x") -> None:
    """``x`` is a batch of images ``[N, C, H, W]`` (C = 1 or 3 to be drawn)."""
    check_batch(what, x, name)
    if x.dim() != 4:
        raise VisualError(
            f"{what}: {name} must be images [N, C, H, W], got shape {tuple(x.shape)} "
            "(vector data cannot be drawn as images)"
        )


def resolve_box(model: nn.Module | None, box: BoxLike | None, what: str) -> Box:
    """``box`` if given, else the box ``model`` declares; an error naming the fix otherwise."""
    if box is not None:
        return Box.parse(box, what=f"{what}: box")
    declared = declared_box(model) if model is not None else None
    if declared is None:
        raise VisualError(
            f"{what}: the model declares no input box and none was given; pass box=(0, 1) "
            "for images in [0, 1] (models built by robustscope.models.create or loaded from a "
            "checkpoint declare theirs)"
        )
    return declared
