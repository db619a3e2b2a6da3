"""Shape checks and small helpers shared by the architecture modules (private)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from robustscope.errors import ModelError

#: the image shapes the test-suite exercises; quoted in error messages as examples
EXAMPLE_IMAGE_SHAPES = "(1, 28, 28), (3, 32, 32)"

ACTIVATIONS = ("relu", "tanh", "linear")


def image_dims(
    model: str, input_shape: Sequence[int], min_side: int, sizes: str | None = None
) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``input_shape``, or a :class:`ModelError` saying what ``model`` supports.

    Args:
        model: registry name, quoted in the message.
        input_shape: the shape given to ``create``.
        min_side: the smallest height/width the architecture works with.
        sizes: how to describe the supported sizes (default: "with H, W ≥ min_side").
    """
    shape = tuple(int(s) for s in input_shape)
    sizes = sizes or f"with H, W ≥ {min_side}"
    if len(shape) != 3:
        raise ModelError(
            f"model {model!r} is image-only: it needs input_shape (C, H, W) {sizes} "
            f"(e.g. {EXAMPLE_IMAGE_SHAPES}); got input_shape {shape}. "
            f"For vector inputs (D,) use 'linear' or 'mlp'."
        )
    c, h, w = shape
    if h < min_side or w < min_side:
        raise ModelError(
            f"model {model!r} needs images of at least {min_side}×{min_side} "
            f"(e.g. {EXAMPLE_IMAGE_SHAPES}); got input_shape {shape}"
        )
    return c, h, w


def check_width(model: str, width: float, option: str = "width") -> float:
    """``width`` as a positive finite float, or a :class:`ModelError`."""
    if isinstance(width, bool) or not isinstance(width, int | float):
        raise ModelError(f"model {model!r}: {option} must be a positive number, got {width!r}")
    if not math.isfinite(width) or width <= 0:
        raise ModelError(f"model {model!r}: {option} must be a positive number, got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """``channels × width`` rounded to an integer, at least 1."""
    return max(1, round(channels * width))


def activation(model: str, name: str) -> nn.Module:
    """A fresh activation module for ``name`` in :data:`ACTIVATIONS` (``linear``: identity)."""
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "linear":
        return nn.Identity()
    raise ModelError(
        f"model {model!r}: unknown activation {name!r}; valid activations: {', '.join(ACTIVATIONS)}"
    )


def check_choice(model: str, option: str, value: str, valid: Sequence[str]) -> str:
    """``value`` if it is one of ``valid``, else a :class:`ModelError` listing them."""
    if value not in valid:
        raise ModelError(
            f"model {model!r}: unknown {option} {value!r}; valid {option}s: {', '.join(valid)}"
        )
    return value
