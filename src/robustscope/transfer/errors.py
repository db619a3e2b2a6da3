"""The transfer package's exception."""

from __future__ import annotations

from robustscope.errors import RobustscopeError

__all__ = ["TransferError"]


class TransferError(RobustscopeError):
    """A transfer run got bad inputs (an unknown model name, too few examples of a class,
    features of mismatched sizes, ...); the message names the field and the fix."""
