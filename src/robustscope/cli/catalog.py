"""What the lab holds: ``datasets``, ``models``, ``attacks``, ``probes``, ``presets`` and a
checkpoint's ``info``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from robustscope.cli.options import CheckpointArg, JsonFlag
from robustscope.cli.output import Column, TableView, emit, err_console
from robustscope.errors import RobustscopeError
from robustscope.params import parse_ints

__all__ = ["attacks_cmd", "datasets_cmd", "info_cmd", "models_cmd", "presets_cmd", "probes_cmd"]


def datasets_cmd(
    as_json: JsonFlag = False,
    download: Annotated[
        str | None, typer.Option(help="download (and verify) this dataset into the cache")
    ] = None,
) -> None:
    """List the datasets, whether each is present on this machine, and where."""
    from robustscope import data

    if download:
        path = data.fetch(download)
        err_console.print(f"{download}: files verified in {path}")
    rows = data.available()
    table = TableView(
        [
            Column("dataset", "name"),
            Column("present", "present"),
            Column("location", lambda r: r["location"] if r["present"] else "not found"),
            Column("description", "description"),
        ]
    )
    missing = (
        "Missing datasets: `robustscope datasets --json` lists the folders searched; "
        "the README's Data section says how to get each."
    )
    emit(rows, as_json, table, None if all(r.present for r in rows) else missing)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "n/a"


def models_cmd(
    input_shape: Annotated[
        str | None, typer.Option(help="count parameters for this input shape, e.g. 3,32,32")
    ] = None,
    num_classes: Annotated[int, typer.Option(help="number of classes for the counts")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """List the architectures with parameter counts and notes."""
    from robustscope import models

    shape = tuple(parse_ints(input_shape, "--input-shape")) if input_shape else None
    rows: list[dict[str, Any]] = []
    for entry in models.entries():
        use = shape or entry.default_input_shape
        try:
            n: int | str = models.count_parameters(models.create(entry.name, num_classes, use))
        except RobustscopeError as exc:
            n = f"n/a ({exc})"
        rows.append(
            {"name": entry.name, "input_shape": list(use), "parameters": n, "notes": entry.notes}
        )
    table = TableView(
        [
            Column("model", "name"),
            Column("input shape", "input_shape", lambda s: "×".join(map(str, s))),
            Column("parameters", "parameters", _count),
            Column("notes", "notes"),
        ]
    )
    emit(rows, as_json, table)


def attacks_cmd(as_json: JsonFlag = False) -> None:
    """List the attacks, their norms and their parameters (``--param KEY=VALUE``)."""
    from robustscope import attacks

    common = {"model", "eps", "norm", "box", "seed", "criterion"}
    rows = {
        name: {
            "description": doc,
            "norms": list(attacks.get(name).norms),
            "parameters": [p for p in attacks.parameters(name) if p not in common],
        }
        for name, doc in attacks.available().items()
    }
    columns = [Column("attack", "name"), Column("description", "description")]
    emit(
        rows,
        as_json,
        TableView(
            [
                *columns,
                Column("norms", "norms", ", ".join),
                Column("parameters", "parameters", ", ".join),
            ]
        ),
    )


def probes_cmd(as_json: JsonFlag = False) -> None:
    """List the probes (diagnostic measurements) and their options."""
    from robustscope import probes

    rows = {
        name: {"description": doc, "options": list(probes.get_probe(name).options)}
        for name, doc in probes.available_probes().items()
    }
    columns = [Column("probe", "name"), Column("description", "description")]
    emit(rows, as_json, TableView([*columns, Column("options", "options")]))


def presets_cmd(as_json: JsonFlag = False) -> None:
    """List the built-in study presets (robustscope study --preset NAME)."""
    from robustscope.studies.presets import DEFAULT_PRESET, PRESETS

    rows = {
        name: {
            "default": name == DEFAULT_PRESET,
            "dataset": spec.get("dataset", ""),
            "reproduces": spec.get("reproduces", ""),
            "description": spec.get("description", ""),
            "deviations": list(spec.get("deviations", [])),
        }
        for name, spec in sorted(PRESETS.items())
    }
    table = TableView(
        [
            Column("preset", lambda r: f"{r['name']} (default)" if r["default"] else r["name"]),
            Column("dataset", "dataset"),
            Column("reproduces", "reproduces"),
            Column("description", "description"),
        ]
    )
    emit(rows, as_json, table)


def info_cmd(checkpoint_path: CheckpointArg, as_json: JsonFlag = False) -> None:
    """Show a checkpoint's metadata (architecture, dataset, training, metrics, versions)."""
    from robustscope import checkpoint

    meta = checkpoint.read_meta(checkpoint_path).to_dict()
    lines = (f"[bold]{k}[/bold]: {json.dumps(v, default=str)}" for k, v in meta.items())
    emit(meta, as_json, *lines)
