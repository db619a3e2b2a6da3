"""The options of ``robustscope train``, derived from the fields of :class:`TrainConfig`.

Each configuration field becomes one option (:data:`FIELDS`): the flag is the field's name
(``weight_decay`` → ``--weight-decay``; a dict field takes repeatable ``KEY=VALUE`` items
under its singular, ``method_params`` → ``--method-param``), the default is the field's and
the help its description. Numbers are read by :mod:`robustscope.params` (``--lr 1/20``),
lists as comma lists (``--milestones 80,120``), booleans as ``--x/--no-x``, choices are
checked by the model. The fields other commands share (dataset, data root, device, seed,
batch size) take the shared definitions of :mod:`robustscope.cli.options`.
:data:`SHORTCUTS` (``--eps``, ``--steps``, ...) each set one key of ``method_params``.
:func:`build_config` makes the configuration, from a file (``--config``) too, and names
an invalid field by its flag.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from copy import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import typer
import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from robustscope.cli.options import SHARED, parse_kv, parse_nested
from robustscope.errors import RobustscopeError, field_errors, one_line
from robustscope.params import parse_ints, parse_number
from robustscope.training.config import TrainConfig

__all__ = [
    "FIELDS",
    "SHORTCUTS",
    "FieldOption",
    "build_config",
    "option_for",
    "validation_message",
]

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY

CONFIG_PANEL = "Training configuration (saved as config.json)"
OBJECTIVE_PANEL = "Objective shortcuts (each sets one --method-param)"


@dataclass(frozen=True)
class FieldOption:
    """An option of ``robustscope train`` that gives a :class:`TrainConfig` field (or, for
    a shortcut, one key of ``method_params``) its value.

    Attributes:
        name: the field (the key).
        flag: its option (``--weight-decay``).
        parameter: the command's parameter (typer reads it from the signature).
        convert: the option's value → the field's value.
    """

    name: str
    flag: str
    parameter: inspect.Parameter
    convert: Callable[[Any], Any]


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _number(value: Any, flag: str) -> float | None:
    return None if value is None else parse_number(value, flag)


def _names(text: str | None) -> list[str]:
    return [t for t in (text or "").replace(" ", "").split(",") if t]


def option_for(
    name: str, tp: Any, default: Any, help_text: str, panel: str | None = None
) -> FieldOption:
    """The option that gives a value of type ``tp`` (a TrainConfig field's type) to ``name``.

    Example:
        >>> option = option_for("weight_decay", float, 5e-4, "L2 weight decay")
        >>> option.flag, option.convert("1/1000")
        ('--weight-decay', 0.001)
        >>> option_for("model_kwargs", dict[str, Any], None, "architecture options").flag
        '--model-kwarg'
    """
    optional = get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)
    if optional:
        (tp,) = (a for a in get_args(tp) if a is not type(None))
    origin, args = get_origin(tp), get_args(tp)
    flag = "--" + name.replace("_", "-")
    decls: tuple[str, ...] = ()
    metavar: str | None = None
    convert: Callable[[Any], Any]
    if tp in (bool, int, str):
        annotation, convert = tp, _plain
    elif tp is float:
        annotation, metavar = str, "NUMBER"
        convert = partial(_number, flag=flag)
    elif origin is Literal:
        annotation, metavar, convert = str, "[" + "|".join(map(str, args)) + "]", _plain
    elif origin is list and args == (int,):
        annotation, metavar = str, "N,N,..."
        convert = partial(parse_ints, field=flag)
    elif origin is list and args == (str,):
        annotation, metavar, convert = str, "NAME,NAME,...", _names
        help_text += " (comma-separated)"
    elif origin is dict:  # repeatable items under the singular: model_kwargs → --model-kwarg
        nested = get_origin(args[1]) is dict
        flag = "--" + name.removesuffix("s").replace("_", "-")
        decls, annotation = (flag,), list[str]
        metavar = "NAME.KEY=VALUE" if nested else "KEY=VALUE"
        help_text += f" ({metavar}, repeatable)"
        convert = partial(parse_nested if nested else parse_kv, option=flag)
    else:
        raise TypeError(f"{name}: no command-line form for {tp}")
    option = typer.Option(default, *decls, help=help_text, metavar=metavar, rich_help_panel=panel)
    if optional or default is None:
        annotation = annotation | None
    parameter = inspect.Parameter(name, KEYWORD_ONLY, default=option, annotation=annotation)
    return FieldOption(name, flag, parameter, convert)


def _field_option(name: str, info: FieldInfo) -> FieldOption:
    """A field's option: its type, its default, its description as the help; the fields
    other commands share take the shared definition (same help everywhere)."""
    default = None if info.is_required() or info.default_factory else info.default
    if name not in SHARED:
        help_text = info.description or ""
        return option_for(name, info.annotation, default, help_text, CONFIG_PANEL)
    annotation, option = get_args(SHARED[name])
    option = copy(option)
    option.default, option.rich_help_panel = default, CONFIG_PANEL
    parameter = inspect.Parameter(name, KEYWORD_ONLY, default=option, annotation=annotation)
    return FieldOption(name, "--" + name.replace("_", "-"), parameter, _plain)


#: every TrainConfig field as a command-line option, in the model's order
FIELDS: dict[str, FieldOption] = {
    name: _field_option(name, info) for name, info in TrainConfig.model_fields.items()
}

#: options that each set one key of ``method_params`` (the objectives' common options)
SHORTCUTS: dict[str, FieldOption] = {
    name: option_for(name, tp, None, help_text, OBJECTIVE_PANEL)
    for name, tp, help_text in (
        ("eps", float, "objective's ε in pixel units, e.g. 0.1 or 8/255"),
        ("norm", str, "objective's norm: linf or l2"),
        ("steps", int, "steps of the inner attack"),
        ("step_size", float, "step of the inner attack, e.g. 2/255"),
        ("beta", float, "TRADES weight β of the KL term"),
        ("sigma", float, "noise: Gaussian standard deviation"),
        ("replays", int, "free AT: replays m of each batch"),
        ("attack_mode", str, "model mode during the inner attack: eval or train"),
    )
}


def validation_message(exc: ValidationError, names: Mapping[str, str]) -> str:
    """One line naming each invalid field as the user gave it (``names``: field → its flag,
    or where else it came from); errors of the whole configuration are shown as they are."""
    return "invalid options: " + "; ".join(field_errors(exc.errors(), names))


def _merge(base: Any, given: Any) -> Any:
    if isinstance(base, dict) and isinstance(given, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in given.items()}}
    return given


def _read_config(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RobustscopeError(f"--config {path}: cannot read it ({one_line(exc)})") from None
    if not isinstance(content, dict):
        raise RobustscopeError(f"--config {path}: expected a mapping of TrainConfig fields")
    return content


def build_config(
    values: Mapping[str, Any], given: set[str], file: Path | None = None
) -> TrainConfig:
    """The configuration of the option ``values`` (field → value). With ``file``, its
    fields, overridden by the ``given`` ones (those on the command line; dicts key by key).

    Example:
        >>> build_config({"epochs": 3, "lr": 0.1}, {"epochs"}).epochs
        3
        >>> build_config({"epochs": 0}, {"epochs"})
        Traceback (most recent call last):
        ...
        robustscope.errors.RobustscopeError: invalid options: --epochs: Input should be greater than or equal to 1
    """
    base = _read_config(file) if file else {}
    chosen = {k: v for k, v in values.items() if file is None or k in given}
    merged = {**base, **{k: _merge(base.get(k), v) for k, v in chosen.items()}}
    names = {k: f"{file}: {k}" for k in base} | {k: FIELDS[k].flag for k in chosen}
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        raise RobustscopeError(validation_message(exc, names)) from None
