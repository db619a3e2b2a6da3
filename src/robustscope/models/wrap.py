"""Any ``nn.Module`` as a lab model: :func:`wrap`.

A wrapped module takes pixel-space inputs (the normalization is the wrapper's first layer,
as in every registered architecture), returns the module's logits from ``forward`` and
exposes ``features(x)``: the output of a named layer (``features="layer.name"``), or by
default the input of the module's last ``nn.Linear`` (the representation its classifier
reads), caught by a forward hook. It records a :class:`~robustscope.models.ModelSpec`
(classes, input shape, normalization, box) under the reserved name :data:`WRAPPED`, so
attacks, probes and transforms treat it like any other model.

The architecture itself is Python code the lab cannot record: a checkpoint of a wrapped
model (``robustscope.checkpoint.save``) holds its weights and the module's class name, and
loading it needs the module again (``checkpoint.load(path, module=MyNet())``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robustscope.data.box import BoxLike
from robustscope.errors import ModelError
from robustscope.models.base import Classifier, ModelSpec, Normalize

__all__ = ["WRAPPED", "Wrapped", "class_path", "wrap"]

#: the spec name of every wrapped module (reserved: no registered architecture has it)
WRAPPED = "wrapped"


class _Reached(Exception):
    """Raised by the features hook once the layer has run: the rest of the forward is skipped."""


def class_path(module: nn.Module) -> str:
    """``package.module.ClassName`` of ``module`` (what a checkpoint records)."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _last_linear(module: nn.Module) -> str | None:
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


class Wrapped(Classifier):
    """``forward(x) = module(normalize(x))``; ``features(x)`` read at one layer of the module.

    Built by :func:`wrap`. The module is the submodule ``net`` (its weights are saved as
    ``net.<name>``); there is no ``body``/``head`` split, only ``features`` and ``forward``.

    Attributes:
        net: the wrapped module (shared, not copied).
        features_layer: the name of the layer ``features`` reads, in ``net.named_modules()``.
        features_at: ``"output"`` (a layer named by ``features=``) or ``"input"`` (the
            default: what the last ``nn.Linear`` receives).
    """

    def __init__(
        self, module: nn.Module, spec: ModelSpec, features_layer: str, features_at: str
    ) -> None:
        super().__init__()
        self.net = module
        self.spec = spec
        self.features_layer = features_layer
        self.features_at = features_at
        shape = spec.input_shape
        self.normalize = Normalize(spec.mean, spec.std, channels=shape[0], ndim=len(shape) + 1)

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """The representation ``[N, F]`` of an already-normalized input (the module runs up
        to the features layer only)."""
        layer = self.net.get_submodule(self.features_layer)
        caught: list[Any] = []

        def keep(value: Any) -> None:
            if not caught:
                caught.append(value)
                raise _Reached

        if self.features_at == "input":
            handle = layer.register_forward_pre_hook(lambda _m, args: keep(args[0]))
        else:
            handle = layer.register_forward_hook(lambda _m, _args, out: keep(out))
        try:
            self.net(z)
        except _Reached:
            pass
        finally:
            handle.remove()
        where = f"the {self.features_at} of layer {self.features_layer!r}"
        if not caught:
            raise ModelError(
                f"features: the module's forward never called {self.features_layer!r}; "
                "pass features='<a layer its forward runs>' to models.wrap"
            )
        value = caught[0]
        if not isinstance(value, torch.Tensor) or value.dim() < 1:
            raise ModelError(
                f"features: {where} is a {type(value).__name__}, not a batch of tensors; "
                "pass features='<a layer returning one tensor>' to models.wrap"
            )
        return value.flatten(1) if value.dim() > 1 else value.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The module's logits ``[N, K]`` for pixel-space inputs ``x``."""
        out: torch.Tensor = self.net(self.normalize(x))
        return out


def wrap(
    module: nn.Module,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    features: str | None = None,
    box: BoxLike | None = None,
) -> Wrapped:
    """Make ``module`` (logits from *normalized* inputs) a lab model on pixel-space inputs.

    Args:
        module: any ``nn.Module`` mapping ``[N, *input_shape]`` to logits ``[N, K]``; it is
            wrapped, not copied (training the wrapper trains it).
        input_shape: one input's shape, ``(C, H, W)`` or ``(D,)``.
        num_classes: K, the number of logits the module returns.
        mean, std: the normalization the module expects (per channel, or one value), applied
            as the wrapper's first layer; None: inputs reach the module as they are.
        features: the name of the layer (``module.named_modules()``) whose output is the
            representation ``features(x)``, flattened to ``[N, F]``; None: the input of the
            last ``nn.Linear`` the module registers.
        box: the input domain of the data (e.g. ``"0,1"``); None: the lab's rule for
            ``input_shape`` (images [0, 1], vectors unbounded).

    Returns:
        a :class:`Wrapped` model, in the module's train/eval mode. One forward pass on a
        batch of zeros checks the shapes of the logits and the features first.

    Raises:
        ModelError: naming the option to fix (shape, K, layer, normalization).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> model = wrap(net, (1, 2, 2), 3, mean=[0.5], std=[0.25])
        >>> x = torch.rand(5, 1, 2, 2)
        >>> model(x).shape, model.features(x).shape
        (torch.Size([5, 3]), torch.Size([5, 8]))
        >>> torch.equal(model(x), net((x - 0.5) / 0.25))
        True
        >>> model.spec.name, model.features_layer
        ('wrapped', '3')
    """
    if not isinstance(module, nn.Module):
        raise ModelError(f"wrap: expected an nn.Module, got {type(module).__name__}")
    if isinstance(input_shape, int) or not isinstance(input_shape, Sequence):
        raise ModelError(
            f"wrap: input_shape must be a sequence such as (1, 28, 28) or (D,), got "
            f"{input_shape!r} (the order is wrap(module, input_shape, num_classes))"
        )
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 3) or any(s <= 0 for s in shape):
        raise ModelError(f"wrap: input_shape must be (C, H, W) or (D,), got {shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"wrap: num_classes must be an integer ≥ 1, got {num_classes!r}")
    layers = dict(module.named_modules())
    if features is None:
        name = _last_linear(module)
        if name is None:
            raise ModelError(
                f"wrap: {class_path(module)} has no nn.Linear layer to read features from; "
                "pass features='<layer name>' (the layer whose output is the representation)"
            )
        layer, at = name, "input"
    else:
        if features not in layers or features == "":
            listed = ", ".join(repr(n) for n in list(layers)[1:13])
            raise ModelError(
                f"wrap: features={features!r} is not a layer of {class_path(module)}; "
                f"its layers include {listed}"
            )
        layer, at = features, "output"
    try:
        spec = ModelSpec(
            name=WRAPPED,
            num_classes=num_classes,
            input_shape=shape,
            kwargs={"module": class_path(module), "features": features},
            mean=tuple(float(v) for v in mean) if mean is not None else None,
            std=tuple(float(v) for v in std) if std is not None else None,
            box=box,  # type: ignore[arg-type]  # parsed by ModelSpec
        )
        model = Wrapped(module, spec, layer, at)
    except ValueError as exc:
        raise ModelError(f"wrap: {exc}") from None
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    if first is not None:
        model.normalize.to(first.device)
    _check(model, first)
    return model


def _check(model: Wrapped, first: torch.Tensor | None) -> None:
    """One forward pass (eval mode, no gradients) on zeros: logits ``[2, K]``, features 2-D."""
    spec = model.spec
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    x = torch.zeros((2, *spec.input_shape), dtype=dtype, device=device)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                out = model(x)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(
                    f"wrap: the module fails on a batch of shape {tuple(x.shape)} "
                    f"(input_shape={spec.input_shape}): {type(exc).__name__}: {exc}"
                ) from None
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ModelError(
                    f"wrap: the module returns {got} for a batch of 2 but num_classes="
                    f"{spec.num_classes} needs logits of shape (2, {spec.num_classes})"
                )
            model.features(x)
    finally:
        model.train(was)
