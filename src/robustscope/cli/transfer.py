"""``robustscope transfer``: linear transferability of frozen backbones to other datasets
(terzi2021 Tables 1–3, Figs. 3, 7) — a new logistic-regression head per checkpoint × target,
the task distance of each target from the source, and the correlation of the robust − standard
accuracy gap with it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from robustscope.cli.options import BatchSizeOpt, DataRootOpt, DeviceOpt, JsonFlag, SeedOpt
from robustscope.cli.output import Column, TableView, emit, fixed
from robustscope.errors import RobustscopeError
from robustscope.params import parse_number, positive_int

__all__ = ["transfer_cmd"]


def _names(paths: list[Path]) -> list[str]:
    """Short, unique model names: a run directory's name or a file's stem; the paths as
    given when those collide."""
    short = [p.name if p.is_dir() else p.stem for p in paths]
    if len(set(short)) == len(short):
        return short
    return [str(p) for p in paths]


def _robust_at(eps: float) -> Callable[[Mapping[str, Any]], Any]:
    """A column of the robust table: the row's accuracy at ``eps``."""
    return lambda row: row["robust"][eps]


def transfer_cmd(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            metavar="CHECKPOINT...",
            help="checkpoint files or run directories; the first is the reference (standard) "
            "model the gaps are taken against and whose features measure the distances",
        ),
    ],
    targets: Annotated[
        str, typer.Option(help="comma-separated target datasets, e.g. mnist-5k,digits")
    ],
    source: Annotated[
        str | None,
        typer.Option(help="the dataset the checkpoints were trained on (default: recorded)"),
    ] = None,
    n_train: Annotated[
        int, typer.Option(help="first N training examples of each dataset (head fit, distance)")
    ] = 5000,
    n_test: Annotated[int, typer.Option(help="first N test examples of each dataset")] = 1000,
    l2: Annotated[
        str, typer.Option(help="L2 strength of the head on standardized features, e.g. 1e-4")
    ] = "1e-4",
    solver: Annotated[str, typer.Option(help="head solver: lbfgs-torch or sklearn")] = (
        "lbfgs-torch"
    ),
    adapter: Annotated[
        str,
        typer.Option(help="how a target of another shape reaches the model: resize or pad"),
    ] = "resize",
    pgd_eps: Annotated[
        str | None,
        typer.Option(help="radii for PGD on the transferred classifiers, e.g. 0.5,1.0"),
    ] = None,
    pgd_norm: Annotated[str, typer.Option(help="PGD's norm: linf or l2")] = "linf",
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations")] = 20,
    cache: Annotated[
        Path | None,
        typer.Option(help="folder caching the features (one safetensors file per model × data)"),
    ] = None,
    batch_size: BatchSizeOpt = 500,
    seed: SeedOpt = 0,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Transfer each checkpoint's frozen features to other datasets with a new linear head;
    report target accuracies, task distances and the gap–distance correlation."""
    from robustscope import checkpoint
    from robustscope.device import resolve_device
    from robustscope.transfer import file_digest, transfer

    names = _names(checkpoints)
    if len(set(names)) != len(names):
        raise RobustscopeError("a CHECKPOINT is given twice; pass each model once")
    target_list = [t for t in targets.replace(" ", "").split(",") if t]
    if not target_list:
        raise RobustscopeError("--targets is empty; pass dataset names, e.g. mnist-5k,digits")
    dev = resolve_device(device)
    models: dict[str, Any] = {}
    keys: dict[str, str] = {}
    recorded: dict[str, str] = {}
    for name, path in zip(names, checkpoints, strict=True):
        models[name], meta = checkpoint.load(path, device=dev)
        keys[name] = file_digest(checkpoint.resolve(path))
        recorded[name] = meta.dataset
    if source is None:
        found = set(recorded.values())
        if len(found) != 1 or not next(iter(found)):
            raise RobustscopeError(
                f"the checkpoints record source datasets {sorted(found)}; pass --source NAME"
            )
        source = next(iter(found))
    result = transfer(
        models,
        source,
        target_list,
        n_train=positive_int(n_train, "--n-train"),
        n_test=positive_int(n_test, "--n-test"),
        l2=parse_number(l2, "--l2"),
        solver=solver,
        adapter_mode=adapter,
        pgd_eps=pgd_eps,
        pgd_norm=pgd_norm,
        pgd_steps=positive_int(pgd_steps, "--pgd-steps"),
        batch_size=positive_int(batch_size, "--batch-size"),
        seed=seed,
        cache_dir=cache,
        model_keys=keys,
        data_root=data_root,
    )
    payload = {"checkpoints": [str(p) for p in checkpoints], **result.to_dict()}

    acc = {(c.model, c.target): c for c in result.cells}
    accuracy = TableView(
        [
            Column("model", "model"),
            Column(f"{result.source} (own head)", "source", fixed(4)),
            *(Column(t, t, fixed(4)) for t in result.targets),
        ],
        rows=[
            {
                "model": m,
                "source": result.source_accuracy[m],
                **{t: acc[m, t].accuracy for t in result.targets},
            }
            for m in result.models
        ],
        title=f"transfer accuracy from {result.source} (linear head, n_train={n_train}, "
        f"n_test={n_test}, l2={l2}, {adapter})",
    )
    distances = TableView(
        [
            Column("target", "target"),
            Column("EMD", "distance", fixed(4)),
            Column("adapter", "adapter"),
        ],
        rows=[
            {
                "target": d.target,
                "distance": d.distance,
                "adapter": acc[result.feature_model, d.target].adapter["describe"],
            }
            for d in result.distances
        ],
        title=f"task distance from {result.source} (Cui et al. 2018, features of "
        f"{result.feature_model})",
    )

    def robust() -> TableView | None:
        cells = [c for c in result.cells if c.robust is not None]
        if not cells:
            return None
        eps = list(cells[0].robust or {})
        return TableView(
            [
                Column("model", "model"),
                Column("target", "target"),
                *(Column(f"ε={e:g}", _robust_at(e), fixed(4)) for e in eps),
            ],
            rows=[{"model": c.model, "target": c.target, "robust": c.robust} for c in cells],
            title=f"PGD ({pgd_norm}, {pgd_steps} steps) accuracy of the transferred classifiers",
        )

    lines = [
        f"gap {c.model} − {c.reference} vs distance: Spearman {c.spearman:.3f}, "
        f"Pearson {c.pearson:.3f}" + (f" ({c.note})" if c.note else "")
        for c in result.correlations
    ]
    emit(payload, as_json, accuracy, distances, robust, *lines)
