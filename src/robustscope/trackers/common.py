"""What the trackers share: the optional-import check, the error, the numbers of a history
row, flat parameters and names every tracker accepts."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from robustscope.errors import RobustscopeError

__all__ = ["TrackerError", "flat_params", "metric_name", "require", "row_scalars"]


class TrackerError(RobustscopeError):
    """An experiment tracker cannot be used: its package is missing, its server does not
    answer, or it refused what was logged."""


def require(module: str, extra: str, flag: str) -> ModuleType:
    """Import ``module`` of the optional extra ``extra`` that ``flag`` needs, or raise a
    :class:`TrackerError` saying which extra to install.

    Example:
        >>> require("json", "mlflow", "--mlflow").__name__
        'json'
        >>> require("no_such_module_here", "mlflow", "--mlflow")
        Traceback (most recent call last):
        ...
        robustscope.trackers.common.TrackerError: --mlflow needs the optional package no_such_module_here, which is not installed: pip install 'robustscope[mlflow]' (or pip install -e '.[mlflow]' in a checkout)
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrackerError(
            f"{flag} needs the optional package {module}, which is not installed: "
            f"pip install 'robustscope[{extra}]' (or pip install -e '.[{extra}]' in a checkout)"
        ) from None


def row_scalars(
    row: Mapping[str, Any], skip: tuple[str, ...] = ("epoch",)
) -> Iterator[tuple[str, float]]:
    """The numbers of a history row (or any mapping) as ``(key, float)``, in its order:
    ints, floats, numpy scalars and booleans (as 0/1); text, None and containers are left
    out, and so are the keys in ``skip`` (the epoch is the step, not a value).

    Example:
        >>> list(row_scalars({"epoch": 2, "train_loss": 0.5, "stop_reason": "x", "ok": True}))
        [('train_loss', 0.5), ('ok', 1.0)]
    """
    for key, value in row.items():
        if key in skip:
            continue
        if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
            yield key, float(value)


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def flat_params(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``mapping`` as text parameters with dotted keys: nested mappings are opened (an empty
    one stays as ``{}``), every other value is its text (strings as they are, the rest as
    JSON: ``null``, ``true``, ``[32]``).

    Example:
        >>> flat_params({"lr": 0.05, "model_kwargs": {"widths": [32]}, "root": None, "p": {}})
        {'lr': '0.05', 'model_kwargs.widths': '[32]', 'root': 'null', 'p': '{}'}
    """
    out: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, prefix=f"{name}."))
        else:
            out[name] = _param_value(value)
    return out


_NOT_ALLOWED = re.compile(r"[^\w./\- ]")


def metric_name(key: str) -> str:
    """``key`` as a name MLflow accepts for a metric, parameter or tag (letters, digits,
    ``_ - . /`` and spaces; no empty, ``.`` or ``..`` path parts): every other character
    becomes ``_``.

    Example:
        >>> metric_name("attack/pgd-linf+autoattack/0.0313725/robust_accuracy")
        'attack/pgd-linf_autoattack/0.0313725/robust_accuracy'
        >>> metric_name("probe/posthoc/m1/p=5//acc")
        'probe/posthoc/m1/p_5/acc'
    """
    parts = [_NOT_ALLOWED.sub("_", p) for p in key.split("/")]
    parts = [p if p not in (".", "..") else p.replace(".", "_") for p in parts if p]
    return "/".join(parts) or "_"
