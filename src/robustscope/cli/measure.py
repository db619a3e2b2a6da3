"""Measuring a checkpoint: ``eval`` (clean accuracy), ``attack`` (robust accuracy over ε)
and ``probe`` (diagnostic measurements), each on the dataset it was trained on by default."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from robustscope.cli.options import (
    BatchSizeOpt,
    CheckpointArg,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    FirstNOpt,
    JsonFlag,
    SeedOpt,
    SplitOpt,
    parse_kv,
)
from robustscope.cli.output import Column, TableView, emit, err_console
from robustscope.errors import RobustscopeError
from robustscope.params import parse_eps_list

__all__ = ["Subject", "attack_cmd", "eval_cmd", "load_subject", "probe_cmd"]


def _dataset_params(meta: Any, dataset: str | None) -> dict[str, Any]:
    """The dataset options trained with (e.g. tsipras' d): they apply when ``dataset`` is
    the recorded one (or unset)."""
    params: dict[str, Any] = meta.training.get("dataset_params", {})
    return params if dataset in (None, meta.dataset) else {}


class Subject(NamedTuple):
    """A checkpoint to measure and the data to measure it on."""

    model: Any
    meta: Any
    data: Any
    device: Any


def load_subject(
    checkpoint_path: Path,
    dataset: str | None,
    split: str,
    first_n: int | None,
    data_root: Path | None,
    device: str,
) -> Subject:
    """A checkpoint's model (on ``device``: auto, cpu, cuda, ...) and metadata, and the first
    ``first_n`` examples of ``split`` of the dataset to measure it on (default: the one it
    was trained on, with its options)."""
    from robustscope import checkpoint, data
    from robustscope.device import resolve_device

    dev = resolve_device(device)
    model, meta = checkpoint.load(checkpoint_path, device=dev)
    name = dataset or meta.dataset
    if not name:
        raise RobustscopeError(
            f"{checkpoint_path}: the checkpoint records no dataset; pass --dataset NAME"
        )
    ds = data.load(name, split, root=data_root, **_dataset_params(meta, dataset))
    ds = ds.head(first_n)
    if ds.input_shape != meta.model.input_shape:
        raise RobustscopeError(
            f"dataset {name!r} has inputs {ds.input_shape} but the model expects "
            f"{meta.model.input_shape}; pass a matching --dataset"
        )
    if ds.box != meta.model.box:
        raise RobustscopeError(
            f"dataset {name!r} declares the input box {ds.box} but the model "
            f"({checkpoint_path}) was built for {meta.model.box}; pass a matching --dataset"
        )
    return Subject(model, meta, ds, dev)


def eval_cmd(
    checkpoint_path: CheckpointArg,
    dataset: DatasetOpt = None,
    split: SplitOpt = "test",
    subset: FirstNOpt = None,
    batch_size: BatchSizeOpt = 1000,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Clean accuracy and loss of a checkpoint on a dataset."""
    from robustscope import checkpoint
    from robustscope.evaluation import evaluate_clean

    model, _, ds, dev = load_subject(checkpoint_path, dataset, split, subset, data_root, device)
    result = evaluate_clean(model, ds, batch_size=batch_size, device=dev)
    payload = {
        "dataset": result.dataset,
        "split": result.split,
        "n": result.n,
        "clean_accuracy": result.accuracy,
        "loss": result.loss,
        "checkpoint": str(checkpoint.resolve(checkpoint_path)),
    }
    line = (
        f"{ds.name} ({split}, n={result.n}): clean accuracy {result.accuracy:.4f}, "
        f"loss {result.loss:.4f}"
    )
    emit(payload, as_json, line)


def attack_cmd(
    checkpoint_path: CheckpointArg,
    attack: Annotated[str, typer.Option(help="attack name (robustscope attacks)")] = "pgd",
    norm: Annotated[str, typer.Option(help="linf or l2")] = "linf",
    eps: Annotated[
        str, typer.Option(help="comma-separated radii, e.g. 0,0.05,0.1 or 0,8/255,16/255")
    ] = "0,0.05,0.1",
    steps: Annotated[int | None, typer.Option(help="iterations (attack default if unset)")] = None,
    restarts: Annotated[
        int | None, typer.Option(help="random restarts (attack default if unset)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="attack parameter KEY=VALUE, repeatable")
    ] = None,
    dataset: DatasetOpt = None,
    split: SplitOpt = "test",
    n: FirstNOpt = 1000,
    batch_size: BatchSizeOpt = 256,
    seed: SeedOpt = 0,
    checks: Annotated[bool, typer.Option(help="run the gradient-masking checks")] = True,
    warm_start: Annotated[
        bool,
        typer.Option(
            help="ε-continuation: attack each ε from the previous ε's final iterate "
            "(attacks that take a start point, e.g. pgd)"
        ),
    ] = True,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Clean and robust accuracy of a checkpoint under an attack at several ε."""
    from robustscope import attacks
    from robustscope.studies.store.vocab import format_eps

    model, _, ds, _ = load_subject(checkpoint_path, dataset, split, n, data_root, device)
    params = parse_kv(param, "--param")
    given = {"steps": steps, "restarts": restarts}
    params.update({k: v for k, v in given.items() if v is not None})
    curve = attacks.evaluate(
        model,
        ds.x,
        ds.y,
        attack,
        parse_eps_list(eps, "--eps"),
        norm=norm,
        batch_size=batch_size,
        seed=seed,
        checks=checks,
        progress=sys.stderr.isatty() and not as_json,
        warm_start=warm_start,
        **params,
    )
    for flag in curve.flags:
        err_console.print(f"[yellow]warning ({flag.name}):[/yellow] {flag.message}")
    on_correct = curve.robust_accuracy_on_correct
    table = TableView(
        [
            Column("ε", "eps", format_eps),
            Column("robust accuracy", "robust"),
            Column("on correctly classified", "on_correct"),
        ],
        rows=[
            {"eps": e, "robust": acc, "on_correct": on_correct[e]}
            for e, acc in curve.robust_accuracy.items()
        ],
        title=f"{attack} ({norm}) on {ds.name} {split}, n={curve.n}: "
        f"clean accuracy {curve.clean_accuracy:.4f}",
    )
    emit(curve.to_dict(), as_json, table)


def probe_cmd(
    checkpoint_path: CheckpointArg,
    probe: Annotated[
        str, typer.Option(help="probe name(s), comma-separated (robustscope probes)")
    ] = "input_fisher",
    opt: Annotated[
        list[str] | None,
        typer.Option(
            "--opt",
            help="probe option KEY=VALUE (all probes) or NAME.KEY=VALUE (one probe), repeatable",
        ),
    ] = None,
    dataset: DatasetOpt = None,
    n: FirstNOpt = 1000,
    train_n: Annotated[
        int, typer.Option(help="first N training examples for probes comparing splits (0: none)")
    ] = 1000,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    arrays: Annotated[
        bool, typer.Option(help="with --json, also print the per-example arrays and histograms")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Measure a checkpoint with one or more probes (input_fisher, cckl, margins, ...) on the
    first --n test examples."""
    from robustscope import data, probes

    names = [p for p in probe.replace(" ", "").split(",") if p]
    infos = [probes.get_probe(name) for name in names]
    options: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in parse_kv(opt, "--opt").items():
        name, sep, field = key.rpartition(".")
        if sep and name not in options:
            raise RobustscopeError(f"--opt {key}: {name!r} is not among --probe {probe}")
        for target in [name] if sep else names:
            options[target][field] = value
    model, meta, test, _ = load_subject(checkpoint_path, dataset, "test", n, data_root, device)
    train = None
    if train_n > 0 or any("train" in info.splits for info in infos):
        if train_n <= 0:
            raise RobustscopeError(f"--probe {probe} compares train and test; pass --train-n N > 0")
        params = _dataset_params(meta, dataset)
        ds = data.load(test.name, "train", root=data_root, **params).head(train_n)
        train = (ds.x, ds.y)
    probe_data = probes.ProbeData(test=(test.x, test.y), train=train)
    results = {name: probes.run_probe(name, model, probe_data, **options[name]) for name in names}
    measured = {name: result.to_json() for name, result in results.items()}
    if not arrays:
        for j in measured.values():
            j.pop("arrays", None)
    found = {"checkpoint": str(checkpoint_path), "n_test": len(test.x), "probes": measured}
    tables = (
        TableView(
            [Column("quantity", "name"), Column("value", "value", lambda v: f"{v:.6g}")],
            rows=result.scalars(),
            title=f"{name} on {test.name} test, n={len(test.x)}",
        )
        for name, result in results.items()
    )
    emit(found, as_json, *tables)
