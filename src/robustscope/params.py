"""Numbers as users and papers write them: the one parser of ε and other parameters.

Every CLI option, study spec field and training-objective option that takes a number goes
through here, so ``8/255`` (how the papers write ε), ``0.03``, ``1e-3`` and comma lists
``0,4/255,8/255`` mean the same thing everywhere. Errors name the field and show an example
of what is expected.

Example:
    >>> parse_number("8/255", "--eps") == 8 / 255
    True
    >>> parse_eps_list("0, 0.05,16/255", "--eps")
    [0.0, 0.05, 0.06274509803921569]
    >>> parse_eps("-1", "eps")
    Traceback (most recent call last):
    ...
    robustscope.errors.ParameterError: eps must be finite and ≥ 0, got -1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from robustscope.errors import ParameterError, RobustscopeError

__all__ = [
    "parse_eps",
    "parse_eps_list",
    "parse_ints",
    "parse_number",
    "parse_numbers",
    "parse_real",
    "positive_int",
]

_HINT = "a number such as 0.1 or 8/255"


def parse_number(
    value: Any, field: str, *, error: type[RobustscopeError] = ParameterError
) -> float:
    """A real number: an int or float, or a string ``"0.1"``, ``"1e-3"`` or ``"8/255"``.

    Args:
        value: what was given.
        field: its name, for the error message (``"--eps"``, ``"methods.0.eps"``, ...).
        error: the exception type to raise (a :class:`~robustscope.errors.RobustscopeError`).
    """
    if isinstance(value, bool):
        raise error(f"{field} must be {_HINT}, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        num, sep, den = value.strip().partition("/")
        try:
            return float(num) / float(den) if sep else float(num)
        except (ValueError, ZeroDivisionError):
            pass
    raise error(f"{field} must be {_HINT}, got {value!r}")


def _items(value: Any, field: str, error: type[RobustscopeError]) -> Sequence[Any]:
    if isinstance(value, str):
        items = [t for t in value.split(",") if t.strip()]
        if not items:
            raise error(f"{field} must be comma-separated numbers such as 0,0.05,8/255, got ''")
        return items
    if isinstance(value, Sequence):
        return value
    return [value]


def parse_numbers(
    value: Any, field: str, *, error: type[RobustscopeError] = ParameterError
) -> list[float]:
    """A list of numbers: a comma-separated string, a sequence, or a single number."""
    return [parse_number(v, field, error=error) for v in _items(value, field, error)]


def parse_real(
    value: Any,
    field: str,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    strict: bool = False,
    error: type[RobustscopeError] = ParameterError,
) -> float:
    """:func:`parse_number`, finite, ≥ ``minimum`` (``>`` with ``strict``) and ≤ ``maximum``.

    Example:
        >>> parse_real("1/2", "rho", minimum=0, strict=True, maximum=1)
        0.5
        >>> parse_real(0, "rho", minimum=0, strict=True, maximum=1)
        Traceback (most recent call last):
        ...
        robustscope.errors.ParameterError: rho must be finite and > 0 and ≤ 1, got 0
    """
    v = parse_number(value, field, error=error)
    low_ok = v > minimum if strict else v >= minimum
    if not (low_ok and v <= maximum and math.isfinite(v)):
        parts = ["finite"]
        if math.isfinite(minimum):
            parts.append(f"{'>' if strict else '≥'} {minimum:g}")
        if math.isfinite(maximum):
            parts.append(f"≤ {maximum:g}")
        shown = value.strip() if isinstance(value, str) else value
        raise error(f"{field} must be {' and '.join(parts)}, got {shown}")
    return v


def parse_eps(value: Any, field: str, *, error: type[RobustscopeError] = ParameterError) -> float:
    """A radius ε: :func:`parse_number`, finite and ≥ 0."""
    return parse_real(value, field, minimum=0.0, error=error)


def parse_eps_list(
    value: Any, field: str, *, error: type[RobustscopeError] = ParameterError
) -> list[float]:
    """A list of radii (each as :func:`parse_eps`), in the given order."""
    return [parse_eps(v, field, error=error) for v in _items(value, field, error)]


def parse_ints(
    value: Any, field: str, *, error: type[RobustscopeError] = ParameterError
) -> list[int]:
    """A list of integers: ``"1,2,3"`` or a sequence of ints ('' or None: empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    items = value.split(",") if isinstance(value, str) else value
    out = []
    for v in items:
        if isinstance(v, str) and not v.strip():
            continue
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            out.append(int(v.strip()) if isinstance(v, str) else int(v))
        except (TypeError, ValueError):
            raise error(f"{field} expects comma-separated integers, got {value!r}") from None
    return out


def positive_int(
    value: Any,
    field: str,
    *,
    minimum: int = 1,
    error: type[RobustscopeError] = ParameterError,
) -> int:
    """``value`` as an int ≥ ``minimum`` (an integral float is accepted; a bool is not)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and int(value) == value
        and value >= minimum
    )
    if not ok:
        raise error(f"{field} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)
