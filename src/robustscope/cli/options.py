"""The options several commands share, defined once (same flag, same help everywhere), and
the parsers of ``KEY=VALUE`` options.

A command declares ``device: DeviceOpt = "auto"``; the default is the command's own, the
flag and its help are these. ``robustscope train`` takes the options of its configuration
fields that are listed in :data:`SHARED` from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from robustscope.errors import RobustscopeError

__all__ = [
    "SHARED",
    "BatchSizeOpt",
    "CheckpointArg",
    "DataRootOpt",
    "DatasetOpt",
    "DeviceOpt",
    "FirstNOpt",
    "JsonFlag",
    "SeedOpt",
    "SplitOpt",
    "StudyDirArg",
    "parse_kv",
    "parse_nested",
]

CheckpointArg = Annotated[
    Path, typer.Argument(metavar="CHECKPOINT", help="checkpoint file or run directory")
]
StudyDirArg = Annotated[
    Path, typer.Argument(metavar="STUDY_DIR", help="study directory, e.g. runs/tradeoff-fmnist")
]
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        help="dataset name (robustscope datasets); commands on a checkpoint default to "
        "the one it was trained on"
    ),
]
DataRootOpt = Annotated[Path | None, typer.Option(help="folder holding the dataset files")]
SplitOpt = Annotated[str, typer.Option(help="train or test")]
FirstNOpt = Annotated[int | None, typer.Option(help="use only the first N examples of the split")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")]
SeedOpt = Annotated[int, typer.Option(help="random seed: same seed, same numbers on the CPU")]
BatchSizeOpt = Annotated[int, typer.Option(help="examples per batch")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")]

#: shared definitions that are also fields of the training configuration
SHARED: dict[str, Any] = {
    "dataset": DatasetOpt,
    "data_root": DataRootOpt,
    "device": DeviceOpt,
    "seed": SeedOpt,
    "batch_size": BatchSizeOpt,
}


def parse_kv(items: list[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; values are read as YAML, ``-`` in keys becomes ``_``.

    Example:
        >>> parse_kv(["width=2", "widths=[64, 32]", "step-size=8/255"], "--model-kwarg")
        {'width': 2, 'widths': [64, 32], 'step_size': '8/255'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RobustscopeError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def parse_nested(items: list[str] | None, option: str) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` options as ``{name: {key: value}}``.

    Example:
        >>> parse_nested(["pgd.eps=0.1", "pgd.steps=20"], "--track-param")
        {'pgd': {'eps': 0.1, 'steps': 20}}
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_kv(items, option).items():
        name, sep, field = key.partition(".")
        if not sep or not name or not field:
            raise RobustscopeError(f"{option} expects NAME.KEY=VALUE, got key {key!r}")
        out.setdefault(name, {})[field] = value
    return out
