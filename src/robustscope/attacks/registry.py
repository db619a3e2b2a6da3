"""The attack registry: ``create(name, model, **params)``, ``get``, ``available()``.

Built on :class:`robustscope.registry.Registry` (the lab's one registry): a name registered
twice is refused; an unknown name lists the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from robustscope.attacks.base import Attack
from robustscope.errors import AttackError
from robustscope.registry import Registry

__all__ = ["ATTACKS", "available", "create", "get", "parameters", "register"]

A = TypeVar("A", bound=type[Attack])

#: every registered :class:`Attack` subclass by name
ATTACKS: Registry[type[Attack]] = Registry("attack", error=AttackError)


def register(name: str) -> Callable[[A], A]:
    """Class decorator registering an :class:`Attack` subclass under ``name``."""

    def deco(cls: A) -> A:
        ATTACKS.register(name, cls)
        return cls

    return deco


def available() -> dict[str, str]:
    """Registered attack names with the first line of their docstring."""
    return ATTACKS.available()


def get(name: str) -> type[Attack]:
    """The attack class registered as ``name``."""
    return ATTACKS.get(name)


def parameters(name: str) -> list[str]:
    """The parameters attack ``name`` takes (besides the model)."""
    sig = inspect.signature(get(name).__init__)
    return [k for k in sig.parameters if k not in ("self", "model")]


def create(name: str, model: nn.Module, **params: Any) -> Attack:
    """Build attack ``name`` on ``model``; unknown parameters are refused with the valid ones."""
    valid = parameters(name)
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise AttackError(
            f"attack {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
            f"its parameters are: {', '.join(valid)}"
        )
    return get(name)(model, **params)
