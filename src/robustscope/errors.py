"""Exceptions of robustscope. Every message names the file or field and the fix."""

from __future__ import annotations


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


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """The message for an unknown registry name, listing the valid ones."""
    return f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}"


class ProbeError(RobustscopeError):
    """A probe is unknown, got bad options, or cannot measure the given model or data."""
