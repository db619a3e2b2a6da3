"""The model registry: ``create(name, num_classes, input_shape, **kwargs)``, as timm's."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustscope.data.box import BoxLike
from robustscope.errors import ModelError
from robustscope.models.base import Classifier, ModelSpec, Normalize
from robustscope.models.wrap import WRAPPED
from robustscope.registry import Registry, first_line

Builder = Callable[..., Classifier]


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture.

    Attributes:
        name: registry name.
        builder: ``builder(num_classes, input_shape, **kwargs) -> Classifier``.
        notes: one line shown by ``robustscope models`` (paper, intended inputs).
        default_input_shape: the input shape used to count parameters in listings.
    """

    name: str
    builder: Builder
    notes: str
    default_input_shape: tuple[int, ...]


#: every architecture by name
MODELS: Registry[ModelEntry] = Registry(
    "model", error=ModelError, describe=lambda entry: entry.notes
)


def register(
    name: str, *, notes: str = "", default_input_shape: tuple[int, ...] = (1, 28, 28)
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name``; ``notes`` (shown by ``robustscope
    models``) default to the first line of the builder's docstring."""

    if name == WRAPPED:
        raise ModelError(f"model name {WRAPPED!r} is reserved for models.wrap; choose another")

    def deco(builder: Builder) -> Builder:
        entry = ModelEntry(name, builder, notes or first_line(builder), default_input_shape)
        MODELS.register(name, entry)
        return builder

    return deco


def entries() -> list[ModelEntry]:
    """All registered architectures, sorted by name."""
    return [entry for _, entry in MODELS.items()]


def available() -> list[str]:
    """Names of all registered architectures."""
    return MODELS.names()


def get(name: str) -> ModelEntry:
    return MODELS.get(name)


def create(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    box: BoxLike | None = None,
    **kwargs: Any,
) -> Classifier:
    """Build architecture ``name`` for ``num_classes`` outputs and inputs of ``input_shape``.

    Args:
        name: a name from :func:`available`.
        num_classes: number of logits K (≥ 2; ``linear`` also accepts 1 for a binary score).
        input_shape: one input's shape, ``(C, H, W)`` or ``(D,)``.
        mean, std: per-channel normalization applied as the model's first layer.
        box: the input domain of the data (the dataset's declared ``box``); None: the lab's
            rule for ``input_shape`` (:func:`~robustscope.data.box.box_for_layout`).
        **kwargs: architecture options (e.g. ``width`` for resnets); unknown ones are refused.

    Returns:
        a :class:`Classifier` with ``.spec`` recording how to rebuild it.

    Example:
        >>> m = create("smallcnn", 10, (1, 28, 28))
        >>> m(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    entry = get(name)
    shape = tuple(int(s) for s in input_shape)
    if num_classes < 1:
        raise ModelError(f"num_classes must be ≥ 1, got {num_classes}")
    if len(shape) not in (1, 3) or any(s <= 0 for s in shape):
        raise ModelError(f"input_shape must be (C, H, W) or (D,), got {shape}")
    params = inspect.signature(entry.builder).parameters
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    valid = [k for k in params if k not in ("num_classes", "input_shape")]
    unknown = [k for k in kwargs if k not in valid]
    if unknown and not accepts_var_kw:
        raise ModelError(
            f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or '(none)'}"
        )
    model = entry.builder(num_classes=num_classes, input_shape=shape, **kwargs)
    channels = shape[0]
    try:
        model.normalize = Normalize(mean, std, channels=channels, ndim=len(shape) + 1)
    except ValueError as exc:
        raise ModelError(f"model {name!r}: {exc}") from exc
    model.spec = ModelSpec(
        name=name,
        num_classes=num_classes,
        input_shape=shape,
        kwargs=dict(kwargs),
        mean=tuple(float(v) for v in mean) if mean is not None else None,
        std=tuple(float(v) for v in std) if std is not None else None,
        box=box,  # type: ignore[arg-type]  # parsed by ModelSpec
    )
    return model


def from_spec(spec: ModelSpec) -> Classifier:
    """Rebuild a (freshly initialised) model from its recorded :class:`ModelSpec`.

    A spec of a wrapped module (:func:`robustscope.models.wrap`) cannot be rebuilt from the
    registry: the module's code is needed again (``checkpoint.load(path, module=...)``).
    """
    if spec.name == WRAPPED:
        raise ModelError(
            f"this model wraps a {spec.kwargs.get('module', 'custom module')} "
            "(robustscope.models.wrap): its architecture is not in the registry; build the "
            "module again and wrap it (checkpoint.load(path, module=<the module>))"
        )
    return create(
        spec.name,
        spec.num_classes,
        spec.input_shape,
        mean=spec.mean,
        std=spec.std,
        box=spec.box,
        **spec.kwargs,
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
