"""Attack registry: ``create(name, model, **params)`` and ``available()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from robustscope.attacks.base import Attack
from robustscope.errors import RobustscopeError, unknown_name

A = TypeVar("A", bound=type[Attack])

_ATTACKS: dict[str, type[Attack]] = {}


def register(name: str) -> Callable[[A], A]:
    """Class decorator registering an :class:`Attack` subclass under ``name``."""

    def deco(cls: A) -> A:
        if name in _ATTACKS:
            raise RobustscopeError(f"attack {name!r} registered twice")
        _ATTACKS[name] = cls
        return cls

    return deco


def available() -> dict[str, str]:
    """Registered attack names with the first line of their docstring."""
    return {k: (v.__doc__ or "").strip().split("\n")[0] for k, v in sorted(_ATTACKS.items())}


def get(name: str) -> type[Attack]:
    try:
        return _ATTACKS[name]
    except KeyError:
        raise RobustscopeError(unknown_name("attack", name, list(_ATTACKS))) from None


def create(name: str, model: nn.Module, **params: Any) -> Attack:
    """Build attack ``name`` on ``model``; unknown parameters are refused with the valid ones."""
    cls = get(name)
    sig = inspect.signature(cls.__init__)
    valid = [k for k in sig.parameters if k not in ("self", "model")]
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise RobustscopeError(
            f"attack {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
            f"its parameters are: {', '.join(valid)}"
        )
    return cls(model, **params)
