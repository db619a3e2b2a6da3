"""Transforms of trained models: the base class, the registry, ``apply`` and the record.

A :class:`Transform` changes a trained model's weights (or structure) after training —
spectral-norm clipping (wen2020 B.3/B.4.2), wu2020's M1/M2/M3 robustification. It is a
typed, frozen object whose parameters rebuild it (``create(name, **params)``); its
:meth:`~Transform.apply_` works in place on a model it is given and returns JSON details
of what it did. :func:`apply` is the public verb: it copies the model, applies the
transforms to the copy (the original is untouched) and returns the copy with the
:class:`TransformRecord` of every transform applied since training. A checkpoint keeps
that chain in its metadata's ``transforms`` list (:func:`save`, :func:`transform_checkpoint`,
:func:`records_of`), so a robustified model always says how it was made.

Transforms that measure the model first (wu2020's M1 counts how often each unit is
active) declare ``needs_data = True`` and receive a :class:`~robustscope.probes.ProbeData`.

Example:
    >>> from robustscope import models
    >>> model = models.create("mlp", 10, (1, 8, 8), widths=[16])
    >>> out = apply(model, create("spectral_clip", bound=0.5))
    >>> out.model is model, [r.name for r in out.transforms]
    (False, ['spectral_clip'])
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from robustscope import checkpoint
from robustscope.checkpoint import CheckpointMeta
from robustscope.errors import RobustscopeError
from robustscope.probes.base import ProbeData
from robustscope.registry import Registry


class TransformError(RobustscopeError):
    """A transform is unknown, got bad parameters, or cannot transform the given model."""


class Transform(ABC):
    """Base class of the transforms of trained models.

    Subclasses are frozen dataclasses whose fields are the parameters (JSON values), and
    are registered with :func:`register_transform`, which sets :attr:`name`.

    Attributes:
        name: the registered name.
        needs_data: :meth:`apply_` needs a :class:`~robustscope.probes.ProbeData`.
    """

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """The parameters that rebuild this transform: ``create(self.name, **params)``."""
        if not dataclasses.is_dataclass(self):
            raise TransformError(
                f"transform {self.name!r}: {type(self).__name__} must be a dataclass (its "
                "fields are its parameters) or override params()"
            )
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @abstractmethod
    def apply_(self, model: nn.Module, data: ProbeData | None = None) -> dict[str, Any]:
        """Transform ``model`` in place; JSON details of what was done (recorded)."""


@dataclass(frozen=True)
class TransformRecord:
    """One applied transform, as stored in a checkpoint's ``transforms`` metadata.

    Attributes:
        name: the transform's registered name.
        params: its parameters (``create(name, **params)`` rebuilds it).
        details: what it did (e.g. the norms before clipping), JSON values.
    """

    name: str
    params: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in the checkpoint."""
        return {"name": self.name, "params": self.params, "details": self.details}

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "") -> TransformRecord:
        """The record of a stored JSON object; a malformed one is refused with its source."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise TransformError(
                f"{source}: a transforms entry must be an object with a 'name', got {d!r}; "
                "the metadata was not written by robustscope.posthoc"
            )
        return cls(str(d["name"]), dict(d.get("params") or {}), dict(d.get("details") or {}))

    def transform(self) -> Transform:
        """The transform this record was made by (rebuilt from the registry)."""
        return create(self.name, **self.params)


@dataclass(frozen=True)
class Transformed:
    """The result of :func:`apply`.

    Attributes:
        model: the transformed copy.
        transforms: every transform applied since training, in order (the ``previous``
            records given to :func:`apply`, then the new ones).
    """

    model: nn.Module
    transforms: tuple[TransformRecord, ...]


TRANSFORMS: Registry[type[Transform]] = Registry("transform", error=TransformError)
"""Transform classes by name."""

T = TypeVar("T", bound=type[Transform])


def register_transform(name: str, doc: str = "") -> Callable[[T], T]:
    """Class decorator: register a :class:`Transform` subclass under ``name`` (sets ``name``)."""

    def deco(cls: T) -> T:
        if cls.__dict__.get("name"):
            raise TransformError(
                f"{cls.__name__} is already registered as {cls.name!r}; register one class "
                f"per name (it cannot also be {name!r})"
            )
        TRANSFORMS.register(name, cls, doc=doc)
        cls.name = name
        return cls

    return deco


def available() -> dict[str, str]:
    """Registered transform names with a one-line description."""
    return TRANSFORMS.available()


def create(name: str, **params: Any) -> Transform:
    """The transform ``name`` with ``params``; unknown names and bad parameters are refused."""
    cls = TRANSFORMS.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        accepted = ", ".join(p for p in inspect.signature(cls).parameters) or "(none)"
        raise TransformError(
            f"transform {name!r}: bad parameters {sorted(params)} ({exc}); its parameters "
            f"are: {accepted}"
        ) from None


def _check_json(name: str, what: str, obj: dict[str, Any]) -> None:
    try:
        json.dumps(obj, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TransformError(
            f"transform {name!r}: its {what} must be JSON values to be recorded ({exc})"
        ) from None


def apply(
    model: nn.Module,
    transforms: Transform | Sequence[Transform],
    *,
    data: ProbeData | None = None,
    previous: Sequence[TransformRecord] = (),
) -> Transformed:
    """Apply ``transforms`` in order to a copy of ``model``; the original is left untouched.

    Args:
        model: the trained model (any ``nn.Module``; robustscope models keep their ``spec``).
        transforms: one transform or several, applied in order.
        data: what transforms with ``needs_data`` measure the model on.
        previous: records of the transforms ``model`` already went through (e.g.
            :func:`records_of` its checkpoint's metadata), kept at the head of the chain.

    Returns:
        a :class:`Transformed`: the copy and the chain of records.

    Raises:
        TransformError: a transform needs data and none was given, or failed.
    """
    todo = [transforms] if isinstance(transforms, Transform) else list(transforms)
    new = copy.deepcopy(model)
    records = list(previous)
    for t in todo:
        if t.needs_data and data is None:
            raise TransformError(
                f"transform {t.name!r} measures the model on data: pass data=ProbeData(...)"
            )
        params = t.params()
        _check_json(t.name, "parameters", params)
        with torch.no_grad():
            details = t.apply_(new, data)
        _check_json(t.name, "details", details)
        records.append(TransformRecord(t.name, params, details))
    return Transformed(model=new, transforms=tuple(records))


def records_of(meta: CheckpointMeta, *, source: str = "") -> tuple[TransformRecord, ...]:
    """The transforms recorded in a checkpoint's metadata, in order."""
    return tuple(TransformRecord.from_dict(d, source=source) for d in meta.transforms)


def save(
    path: str | Path, transformed: Transformed, meta: CheckpointMeta | dict[str, Any] | None = None
) -> Path:
    """Save a transformed model as a checkpoint whose ``transforms`` metadata is its chain.

    ``meta`` (a :class:`~robustscope.checkpoint.CheckpointMeta` or a dict of its fields other
    than ``model``) gives the rest of the metadata; the transforms it already lists must
    be the head of ``transformed.transforms``.
    """
    if meta is None:
        meta = {}
    fields = dataclasses.asdict(meta) if isinstance(meta, CheckpointMeta) else dict(meta)
    for key in ("model", "robustscope_version", "torch_version", "python_version"):
        fields.pop(key, None)  # the model's own spec and the versions of this save
    chain = [r.to_dict() for r in transformed.transforms]
    before = list(fields.get("transforms") or [])
    if chain[: len(before)] != before:
        raise TransformError(
            f"{path}: the metadata lists transforms {[d.get('name') for d in before]} that do "
            "not begin the applied chain; pass previous=records_of(meta) to apply()"
        )
    fields["transforms"] = chain
    return checkpoint.save(path, transformed.model, fields)


def transform_checkpoint(
    source: str | Path,
    target: str | Path,
    transforms: Transform | Sequence[Transform],
    *,
    data: ProbeData | None = None,
) -> CheckpointMeta:
    """Load the checkpoint (file or run directory) ``source``, apply ``transforms``, and save
    the result to ``target`` with the source's metadata and the extended ``transforms``
    chain. The source's ``metrics`` describe the weights before these transforms: they move
    to ``extra["metrics_before_transforms"]`` (the first such metrics are kept).

    Returns:
        the metadata written.
    """
    model, meta = checkpoint.load(source)
    done = apply(model, transforms, data=data, previous=records_of(meta, source=str(source)))
    extra = dict(meta.extra)
    if meta.metrics:
        extra.setdefault("metrics_before_transforms", meta.metrics)
    new_meta = dataclasses.replace(meta, metrics={}, extra=extra)
    save(target, done, new_meta)
    return checkpoint.read_meta(target)
