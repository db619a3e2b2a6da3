"""Exceptions of robustscope. Every message names the file or field and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class RobustscopeError(Exception):
    """Base class of every error robustscope raises on purpose."""


class ParameterError(RobustscopeError, ValueError):
    """A number or list of numbers (ε, a step size, ...) cannot be parsed or is out of range.

    Also a ``ValueError``, so pydantic validators report it as a validation error of the field.
    """


class AttackError(RobustscopeError):
    """An attack got bad parameters or cannot attack the given model or inputs."""


class DataError(RobustscopeError):
    """A dataset is missing, malformed or asked for with bad parameters."""


class ModelError(RobustscopeError):
    """An unknown architecture, or one that does not fit the input shape."""


class CheckpointError(RobustscopeError):
    """A checkpoint cannot be read safely or does not match its metadata."""


class TrainingError(RobustscopeError):
    """Training cannot go on (bad configuration, non-finite loss, ...)."""


def field_errors(
    errors: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None
) -> list[str]:
    """``"field: message"`` for each error of a pydantic ``ValidationError.errors()``: the
    location dotted (``methods.0.eps``), its first part renamed by ``names`` (e.g. a field
    → the CLI flag that gave it); errors of the whole object are their message alone.

    Example:
        >>> field_errors([{"loc": ("epochs",), "msg": "Value error, must be ≥ 1"}], {"epochs": "--epochs"})
        ['--epochs: must be ≥ 1']
    """
    parts = []
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc:
            parts.append(msg)
            continue
        head = (names or {}).get(loc[0], loc[0])
        parts.append(".".join([head, *loc[1:]]) + f": {msg}")
    return parts


def one_line(text: object) -> str:
    """``text`` with its white space (newlines included) collapsed: error messages are one
    line (a YAML parser's error, for one, spans several)."""
    return " ".join(str(text).split())


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """The message for an unknown registry name, listing the valid ones."""
    return f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}"


class ProbeError(RobustscopeError):
    """A probe is unknown, got bad options, or cannot measure the given model or data."""
