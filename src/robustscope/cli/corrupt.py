"""``robustscope corrupt``: a checkpoint's accuracy under the 15 common corruptions of
Hendrycks & Dietterich (2019), with CE / mCE / relative mCE and wu2020's RmCE coordinates
against a ``--baseline``; or, with ``--show``, a picture of every corruption."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from robustscope.cli.measure import load_subject
from robustscope.cli.options import (
    BatchSizeOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    FirstNOpt,
    JsonFlag,
    SeedOpt,
)
from robustscope.cli.output import Column, TableView, emit, fixed
from robustscope.errors import RobustscopeError
from robustscope.params import parse_ints

__all__ = ["corrupt_cmd"]

#: resamples of the paired bootstrap of the --baseline coordinates' standard errors
BOOTSTRAP = 500


def _types(value: str | None) -> tuple[str, ...]:
    from robustscope.corruptions import CORRUPTIONS

    if value is None:
        return CORRUPTIONS
    return tuple(t for t in value.replace(" ", "").split(",") if t)


def _show(
    dataset: str,
    out: Path | None,
    n: int | None,
    names: tuple[str, ...],
    severities: list[int],
    seed: int,
    data_root: Path | None,
    as_json: bool,
) -> None:
    from robustscope import data
    from robustscope.corruptions import corruption_grid

    if out is None:
        raise RobustscopeError("--show DATASET needs --out DIR, the folder to write the grid to")
    ds = data.load(dataset, "test", root=data_root).head(n or 4)
    path = corruption_grid(
        ds.x,
        out / f"corruptions-{dataset}.png",
        names=names,
        severities=severities,
        seed=seed,
        title=f"{dataset} test, first {len(ds.x)}, seed {seed}",
    )
    payload = {"path": str(path), "dataset": dataset, "n": len(ds.x), "seed": seed}
    emit(payload, as_json, str(path))


def corrupt_cmd(
    checkpoint_path: Annotated[
        Path | None,
        typer.Argument(metavar="[CHECKPOINT]", help="checkpoint file or run directory"),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="reference checkpoint: adds CE, mCE, relative mCE and wu2020's RmCE "
            "robustness/accuracy coordinates against it"
        ),
    ] = None,
    show: Annotated[
        str | None,
        typer.Option(
            metavar="DATASET",
            help="instead of evaluating: write a PNG of every type × severity on the first "
            "--n test examples of DATASET to --out",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder of the --show picture")] = None,
    dataset: DatasetOpt = None,
    n: FirstNOpt = None,
    seed: SeedOpt = 0,
    types: Annotated[
        str | None, typer.Option(help="comma-separated corruption names (default: all 15)")
    ] = None,
    severities: Annotated[str, typer.Option(help="comma-separated severities in 1..5")] = (
        "1,2,3,4,5"
    ),
    batch_size: BatchSizeOpt = 500,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Accuracy of a checkpoint under the 15 common corruptions (Hendrycks & Dietterich
    2019) at each severity, on the first --n (default 1,000) test examples; with --baseline,
    CE / mCE / relative mCE and wu2020's RmCE coordinates. With --show DATASET --out DIR
    (no checkpoint): a picture of the corruptions on the first --n (default 4) examples."""
    from robustscope.corruptions import CORRUPTIONS, category_of, compare, evaluate_many
    from robustscope.corruptions.registry import check_names, check_severities

    names = check_names(_types(types))
    levels = list(check_severities(parse_ints(severities, "--severities")))
    if show is not None:
        if checkpoint_path is not None or baseline is not None:
            raise RobustscopeError("--show draws corruptions only; drop the CHECKPOINT/--baseline")
        _show(show, out, n, names, levels, seed, data_root, as_json)
        return
    if checkpoint_path is None:
        raise RobustscopeError(
            "pass a CHECKPOINT to evaluate, or --show DATASET --out DIR to draw the corruptions"
        )
    from robustscope import checkpoint

    model, meta, ds, dev = load_subject(
        checkpoint_path, dataset, "test", 1000 if n is None else n, data_root, device
    )
    models = [model]
    if baseline is not None:
        base, base_meta = checkpoint.load(baseline, device=dev)
        if base_meta.model.input_shape != meta.model.input_shape:
            raise RobustscopeError(
                f"--baseline {baseline} takes inputs {base_meta.model.input_shape}, the "
                f"checkpoint {meta.model.input_shape}: they must be measured on the same data"
            )
        models.append(base)
    results = evaluate_many(
        models,
        ds.x,
        ds.y,
        names=names,
        severities=levels,
        seed=seed,
        batch_size=batch_size,
        progress=sys.stderr.isatty() and not as_json,
    )
    result = results[0]
    comparison = compare(result, results[1], bootstrap=BOOTSTRAP) if baseline is not None else None
    payload: dict[str, Any] = {
        "checkpoint": str(checkpoint.resolve(checkpoint_path)),
        "dataset": ds.name,
        "split": "test",
        **result.to_dict(),
        "mean_accuracy": result.mean_accuracy(),
        "category_accuracy": result.category_accuracy(),
    }
    rows = [
        {
            "name": t,
            "category": category_of(t),
            **{f"s{s}": a for s, a in zip(levels, result.accuracy[t], strict=True)},
            "mean": sum(result.accuracy[t]) / len(levels),
            **(
                {"ce": comparison.ce[t], "rel": comparison.relative_ce[t]}
                if comparison is not None
                else {}
            ),
        }
        for t in names
    ]
    columns = [Column("corruption", "name"), Column("category", "category")]
    columns += [Column(f"s={s}", f"s{s}") for s in levels] + [Column("mean", "mean")]
    summary = (
        f"clean accuracy {result.clean_accuracy:.4f}, mean corrupted accuracy "
        f"{result.mean_accuracy():.4f}"
    )
    cat_rows: list[dict[str, Any]] = [
        {"name": c, "accuracy": a} for c, a in result.category_accuracy().items()
    ]
    cat_columns = [Column("category", "name"), Column("mean accuracy", "accuracy")]
    lines: list[str | None] = [None]
    if comparison is not None and baseline is not None:
        columns += [Column("CE", "ce", fixed(3)), Column("relative CE", "rel", fixed(3))]
        payload["baseline"] = {
            "checkpoint": str(checkpoint.resolve(baseline)),
            **results[1].to_dict(),
        }
        payload["comparison"] = comparison.to_dict()
        for row in cat_rows:
            row["baseline"] = comparison.reference_category_accuracy[row["name"]]
        cat_columns.append(Column("baseline", "baseline"))
        note = ""
        if comparison.undefined_relative or comparison.undefined_ce:
            left = sorted(set(comparison.undefined_ce) | set(comparison.undefined_relative))
            note = f" (undefined, left out: {', '.join(left)})"
        lines = [
            f"baseline clean accuracy {comparison.reference_clean_accuracy:.4f}; "
            f"mCE {comparison.mce:.4f}, relative mCE {comparison.relative_mce:.4f}{note}",
            f"wu2020: RmCE {comparison.rmce:.4f} (baseline 1), robustness "
            f"{comparison.robustness:+.4f} ± {comparison.robustness_se:.4f}, accuracy "
            f"{comparison.accuracy:+.4f} ± {comparison.accuracy_se:.4f} ({comparison.se_method})",
        ]
    partial = "" if names == CORRUPTIONS else f", {len(names)} of 15 types"
    table = TableView(
        columns,
        rows=rows,
        title=f"{ds.name} test, n={result.n}, seed {seed}{partial}: accuracy by severity",
    )
    emit(payload, as_json, table, summary, TableView(cat_columns, rows=cat_rows), *lines)
