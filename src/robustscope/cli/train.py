"""``robustscope train``: its options are the fields of :class:`TrainConfig`.

Each configuration field becomes one option, derived from the model (:data:`FIELDS`): the
flag is the field's name (``weight_decay`` → ``--weight-decay``; a dict field takes
repeatable ``KEY=VALUE`` items under its singular, ``method_params`` → ``--method-param``),
the default is the field's and the help its description. Numbers are read by
:mod:`robustscope.params` (``--lr 1/20``), lists as comma lists (``--milestones 80,120``),
booleans as ``--x/--no-x``. The fields shared with other commands (dataset, data root,
device, seed, batch size) take the shared definitions of :mod:`robustscope.cli.options`.
Besides the fields: shortcuts that fill ``method_params`` (``--eps``, ``--steps``, ...),
the run options (``--out``, ``--resume``, ...) and ``--config FILE`` (fields from a YAML or
JSON file, e.g. a run's ``config.json``; options given on the command line override it).
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Mapping
from copy import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
import yaml
from click.core import ParameterSource
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from robustscope.cli.options import SHARED, JsonFlag, parse_kv, parse_nested
from robustscope.cli.output import emit
from robustscope.errors import RobustscopeError
from robustscope.params import parse_ints, parse_number
from robustscope.training import available as available_objectives
from robustscope.training.config import TrainConfig

__all__ = ["FIELDS", "FieldOption", "build_config", "train_cmd", "validation_message"]

CONFIG_PANEL = "Training configuration (saved as config.json)"
OBJECTIVE_PANEL = "Objective shortcuts (each sets one --method-param)"

#: help of the configuration fields whose TrainConfig field has no description
FIELD_HELP = {
    "model": "architecture (robustscope models)",
    "model_kwargs": "architecture options",
    "method": "training objective: " + ", ".join(available_objectives()),
    "method_params": "objective options (the objective shortcuts set one each)",
    "epochs": "number of epochs",
    "eval_batch_size": "examples per batch when evaluating",
    "optimizer": "the optimizer",
    "lr": "learning rate, the peak of the schedule (e.g. 0.05 or 1/20)",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum (SGD with momentum > 0)",
    "weight_decay": "L2 weight decay",
    "schedule": "learning-rate schedule",
    "milestones": "multistep: the epochs after which the rate is multiplied by --gamma",
    "gamma": "multistep: the factor applied at each milestone",
    "warmup_fraction": "onecycle: the fraction of the steps that ramps the rate up",
}


@dataclass(frozen=True)
class FieldOption:
    """One :class:`TrainConfig` field as an option of ``robustscope train``.

    Attributes:
        name: the field.
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


def _field_option(name: str, info: FieldInfo) -> FieldOption:
    """The option of one field, from its type, default and description."""
    tp: Any = info.annotation
    optional = get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)
    if optional:
        (tp,) = (a for a in get_args(tp) if a is not type(None))
    origin, args = get_origin(tp), get_args(tp)
    default = None if info.is_required() or info.default_factory else info.default
    flag = "--" + name.replace("_", "-")
    help_text = info.description or FIELD_HELP.get(name, "")
    decls: tuple[str, ...] = ()
    metavar: str | None = None
    convert: Callable[[Any], Any]
    if name in SHARED:  # the shared definition (same help as everywhere), this default
        annotation, option = get_args(SHARED[name])
        option = copy(option)
        option.default, option.rich_help_panel = default, CONFIG_PANEL
        parameter = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option)
        return FieldOption(name, flag, parameter.replace(annotation=annotation), _plain)
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
    elif origin is dict:
        nested = get_origin(args[1]) is dict
        flag = "--" + name.removesuffix("s").replace("_", "-")
        decls, annotation = (flag,), list[str]
        metavar = "NAME.KEY=VALUE" if nested else "KEY=VALUE"
        help_text += f" ({metavar}, repeatable)"
        convert = partial(parse_nested if nested else parse_kv, option=flag)
    else:
        raise TypeError(f"TrainConfig.{name}: no command-line form for {info.annotation}")
    option = typer.Option(
        default, *decls, help=help_text, metavar=metavar, rich_help_panel=CONFIG_PANEL
    )
    optional = optional or default is None
    parameter = inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=option,
        annotation=annotation | None if optional else annotation,
    )
    return FieldOption(name, flag, parameter, convert)


#: every TrainConfig field as a command-line option, in the model's order
FIELDS: dict[str, FieldOption] = {
    name: _field_option(name, info) for name, info in TrainConfig.model_fields.items()
}


def validation_message(exc: ValidationError, names: Mapping[str, str]) -> str:
    """One line naming each invalid field as the user gave it (``names``: field → its flag,
    or where else it came from); errors of the whole configuration are shown as they are."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc:
            parts.append(msg)
            continue
        where = names.get(loc[0], loc[0]) + "".join(f" {p}" for p in loc[1:])
        parts.append(f"{where}: {msg}")
    return "invalid options: " + "; ".join(parts)


def _merge(base: Any, given: Any) -> Any:
    if isinstance(base, dict) and isinstance(given, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in given.items()}}
    return given


def _read_config(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RobustscopeError(f"--config {path}: cannot read it ({exc})") from None
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
    merged = {k: v for k, v in values.items() if not base or k in given}
    merged = {**base, **{k: _merge(base.get(k), v) for k, v in merged.items()}}
    names = {k: f"{file}: {k}" for k in base}
    names.update({k: f.flag for k, f in FIELDS.items() if not base or k in given or k not in base})
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        raise RobustscopeError(validation_message(exc, names)) from None


def _outcome(result: Any) -> str:
    """One line: how the run ended, its epochs, clean test accuracy and directory."""
    acc = result.final.get("test_accuracy")
    acc_text = f"{acc:.4f}" if acc is not None else "n/a"
    if result.finished:
        state = "finished" + (f" ({result.stop_reason})" if result.stop_reason else "")
    elif result.stop_reason:
        state = f"stopped early ({result.stop_reason})"
    else:
        state = "stopped (resume with --resume)"
    return (
        f"{state}: {result.completed_epochs} epoch(s); clean test accuracy {acc_text}; "
        f"run directory {result.run_dir}"
    )


def train_cmd(
    ctx: typer.Context,
    *,
    out: Annotated[Path, typer.Option(help="run directory (checkpoints, history, config)")],
    config: Annotated[
        Path | None,
        typer.Option(
            help="configuration fields from a YAML or JSON file (e.g. a run's config.json); "
            "the options given here override it"
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its last epoch")
    ] = False,
    stop_after_epochs: Annotated[
        int | None, typer.Option(help="stop (resumably) after N epochs in this call")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    as_json: JsonFlag = False,
    eps: Annotated[
        str | None,
        typer.Option(
            help="objective's ε in pixel units, e.g. 0.1 or 8/255", rich_help_panel=OBJECTIVE_PANEL
        ),
    ] = None,
    norm: Annotated[
        str | None,
        typer.Option(help="objective's norm: linf or l2", rich_help_panel=OBJECTIVE_PANEL),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="steps of the inner attack", rich_help_panel=OBJECTIVE_PANEL)
    ] = None,
    step_size: Annotated[
        str | None,
        typer.Option(help="step of the inner attack, e.g. 2/255", rich_help_panel=OBJECTIVE_PANEL),
    ] = None,
    beta: Annotated[
        str | None,
        typer.Option(help="TRADES weight β of the KL term", rich_help_panel=OBJECTIVE_PANEL),
    ] = None,
    sigma: Annotated[
        str | None,
        typer.Option(help="noise: Gaussian standard deviation", rich_help_panel=OBJECTIVE_PANEL),
    ] = None,
    replays: Annotated[
        int | None,
        typer.Option(help="free AT: replays m of each batch", rich_help_panel=OBJECTIVE_PANEL),
    ] = None,
    attack_mode: Annotated[
        str | None,
        typer.Option(
            help="model mode during the inner attack: eval or train",
            rich_help_panel=OBJECTIVE_PANEL,
        ),
    ] = None,
    **fields: Any,
) -> None:
    """Train a model; a checkpoint is written to --out after every epoch.

    Distributed data-parallel: ``torchrun --nproc_per_node=N -m robustscope train ...``
    (--batch-size is the global batch; only rank 0 writes and prints).
    """
    from robustscope.training import distributed, train

    values = {name: option.convert(fields[name]) for name, option in FIELDS.items()}
    given = {n for n in FIELDS if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT}
    shortcuts = {
        "eps": _number(eps, "--eps"),
        "norm": norm,
        "steps": steps,
        "step_size": _number(step_size, "--step-size"),
        "beta": _number(beta, "--beta"),
        "sigma": _number(sigma, "--sigma"),
        "replays": replays,
        "attack_mode": attack_mode,
    }
    for key, value in shortcuts.items():
        if value is None:
            continue
        if key in values["method_params"]:
            flag = "--" + key.replace("_", "-")
            raise RobustscopeError(f"{flag} and --method-param {key}=... both given; keep one")
        values["method_params"][key] = value
        given.add("method_params")
    result = train(
        build_config(values, given, config),
        out,
        resume=resume,
        progress=progress and sys.stderr.isatty(),
        stop_after_epochs=stop_after_epochs,
    )
    if not distributed.is_main():
        return
    summary = {
        "run_dir": str(result.run_dir),
        "epochs_completed": result.completed_epochs,
        "finished": result.finished,
        "stop_reason": result.stop_reason,
        **{k: result.final.get(k) for k in ("test_accuracy", "test_loss", "train_accuracy")},
    }
    emit(summary, as_json, _outcome(result))


# typer reads the command's options from its signature: the fields join the ones above
_explicit = list(inspect.signature(train_cmd, eval_str=True).parameters.values())
train_cmd.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p for p in _explicit if p.kind is p.POSITIONAL_OR_KEYWORD]  # ctx
    + [f.parameter for f in FIELDS.values()]  # the configuration panel before the shortcuts
    + [p for p in _explicit if p.kind is p.KEYWORD_ONLY],
    return_annotation=None,
)
