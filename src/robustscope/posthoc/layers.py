"""Which fully connected layers a post-hoc transform acts on, and the units they feed.

wu2020's methods perturb "the neural networks' fully connected layer": for AlexNet "the
second-to-last layer", for ResNet "the last layer as this is the only fully connected
layer". :func:`select_linear` turns a transform's ``layer`` parameter into layers:

* ``None`` — the penultimate ``nn.Linear`` (the last hidden fully connected layer); a
  model whose only ``nn.Linear`` is the classifier gets that one;
* ``"all"`` — every ``nn.Linear``;
* a module name (``model.named_modules()``, e.g. ``"body.5"`` or ``"head"``) — that layer;
  a name that is not a Linear layer is refused with the list of valid names.

Only ``nn.Linear`` layers are transformed (convolutions are left as they are).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from robustscope.posthoc.base import TransformError

__all__ = ["consumer_of", "input_activity", "linear_names", "select_linear"]


def linear_names(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Linear`` modules, in registration (forward) order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def select_linear(model: nn.Module, layer: str | None, *, transform: str) -> list[str]:
    """The names of the Linear layers ``layer`` designates (module doc); refused with the
    valid names when it designates none."""
    names = linear_names(model)
    if not names:
        raise TransformError(
            f"transform {transform!r}: the model has no fully connected (nn.Linear) layer; "
            "wu2020's methods act on fully connected layers only"
        )
    if layer is None:
        return [names[-2] if len(names) >= 2 else names[-1]]
    if layer == "all":
        return names
    if layer not in names:
        raise TransformError(
            f"transform {transform!r}: layer {layer!r} is not a fully connected layer of "
            f"the model; valid layers: {', '.join(names)} (or 'all'; default: the "
            "penultimate one)"
        )
    return [layer]


def consumer_of(model: nn.Module, name: str, *, transform: str) -> tuple[str, bool]:
    """The Linear layer reading the units of layer ``name`` and whether they are its inputs
    only (``True`` for the last Linear layer: its units are its own input features).

    A hidden layer's units are its outputs; they are read (after the activation) by the next
    Linear layer, whose input width must equal the layer's output width.
    """
    names = linear_names(model)
    i = names.index(name)
    if i == len(names) - 1:
        return name, True
    nxt = names[i + 1]
    modules = dict(model.named_modules())
    here, there = modules[name], modules[nxt]
    assert isinstance(here, nn.Linear) and isinstance(there, nn.Linear)
    if there.in_features != here.out_features:
        raise TransformError(
            f"transform {transform!r}: layer {name!r} has {here.out_features} outputs but the "
            f"next fully connected layer {nxt!r} reads {there.in_features} features; its units "
            "do not feed that layer directly"
        )
    return nxt, False


@torch.no_grad()
def input_activity(
    model: nn.Module, readers: list[str], x: torch.Tensor, *, batch_size: int = 512
) -> dict[str, torch.Tensor]:
    """For each layer in ``readers``, the fraction of the examples ``x`` on which each of its
    input features is positive (float64 ``[in_features]``), by forward pre-hooks in eval
    mode (the model's mode is restored)."""
    modules = dict(model.named_modules())
    counts: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def count(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            feats = inputs[0].reshape(len(inputs[0]), -1)
            add = (feats > 0).sum(0).to(torch.float64).cpu()
            counts[name] = counts[name] + add if name in counts else add

        return count

    was_training = model.training
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    try:
        for name in dict.fromkeys(readers):
            handles.append(modules[name].register_forward_pre_hook(hook(name)))
        model.eval()
        for s in range(0, len(x), batch_size):
            model(x[s : s + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n = max(len(x), 1)
    return {name: c / n for name, c in counts.items()}
