"""The Linear/Conv2d layers of a model and the input shape each one sees."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from robustscope.errors import ModelError

__all__ = ["layer_input_shapes", "linear_layers"]


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` of every ``nn.Linear`` and ``nn.Conv2d`` in ``model``, in
    registration order (Normalize, BatchNorm, activations... are not linear-map layers)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def layer_input_shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Per-example input shape of every Linear/Conv2d layer that ``model``'s forward reaches.

    One forward pass of a zero batch ``[1, *input_shape]`` (on the model's device, without
    gradients, in eval mode so BatchNorm statistics do not move; the mode is restored) with
    forward hooks. A layer called on inputs of different shapes is refused; layers the
    forward never reaches are left out.

    Example:
        >>> from robustscope import models
        >>> m = models.create("cnn", 10, (1, 8, 8))
        >>> layer_input_shapes(m, (1, 8, 8))["body.2"]
        (16, 4, 4)
    """
    seen: dict[str, set[tuple[int, ...]]] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
            seen.setdefault(name, set()).add(tuple(inputs[0].shape[1:]))

        return record

    layers = linear_layers(model)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    was_training = model.training
    try:
        for name, module in layers:
            handles.append(module.register_forward_hook(hook(name)))
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out: dict[str, tuple[int, ...]] = {}
    for name, _ in layers:
        if name not in seen:
            continue
        if len(seen[name]) > 1:
            raise ModelError(
                f"layer {name!r} is applied to inputs of several shapes {sorted(seen[name])}; "
                "its operator is not one matrix"
            )
        out[name] = next(iter(seen[name]))
    return out
