"""``robustscope import``: external PyTorch weights as a lab checkpoint that every other
command loads (:func:`robustscope.checkpoint.import_weights`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from robustscope.cli.options import DatasetOpt, JsonFlag, parse_kv
from robustscope.cli.output import emit, err_console
from robustscope.errors import RobustscopeError
from robustscope.params import parse_ints, parse_numbers

__all__ = ["import_cmd"]


def _shape_and_classes(
    dataset: str | None, input_shape: str | None, num_classes: int | None
) -> tuple[tuple[int, ...], int, Any]:
    """The input shape, K and box: given, or the dataset's (both given: they must agree)."""
    shape = tuple(parse_ints(input_shape, "--input-shape")) if input_shape else None
    box = None
    if dataset:
        from robustscope import data

        info = data.info(dataset)
        box = info.box
        for flag, given, own in (
            ("--input-shape", shape, info.input_shape),
            ("--num-classes", num_classes, info.num_classes),
        ):
            if given is not None and given != own:
                raise RobustscopeError(
                    f"{flag} {given} differs from dataset {dataset!r}'s {own}; drop {flag} "
                    "or pass the dataset the weights are for"
                )
        shape, num_classes = info.input_shape, info.num_classes
    if shape is None or num_classes is None:
        raise RobustscopeError(
            "pass --num-classes K and --input-shape C,H,W (or D), or --dataset NAME to take "
            "both from the dataset the weights are for"
        )
    return shape, num_classes, box


def import_cmd(
    weights: Annotated[
        Path,
        typer.Argument(
            metavar="WEIGHTS",
            help="PyTorch weights (.pt/.pth, read with torch.load(weights_only=True) only) "
            "or a .safetensors file",
        ),
    ],
    model: Annotated[
        str, typer.Option(help="the architecture the weights are for (robustscope models)")
    ],
    out: Annotated[Path, typer.Option(help="the checkpoint to write, e.g. mine.safetensors")],
    model_kwarg: Annotated[
        list[str] | None,
        typer.Option("--model-kwarg", help="architecture option KEY=VALUE, repeatable"),
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="number of classes K (default: the --dataset's)")
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(help="one input's shape, e.g. 3,32,32 (default: the --dataset's)"),
    ] = None,
    mean: Annotated[
        str | None,
        typer.Option(
            help="normalization mean per channel, e.g. 0.4914,0.4822,0.4465 (default: the "
            "file's normalization layer, else none)"
        ),
    ] = None,
    std: Annotated[
        str | None,
        typer.Option(
            help="normalization std per channel, e.g. 0.2471,0.2435,0.2616 (default: the "
            "file's normalization layer, else 1 when --mean is given, else none)"
        ),
    ] = None,
    dataset: DatasetOpt = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="the entry holding the state dict, e.g. ema or a/b for a nested one "
            "(default: found: state_dict, model_state_dict, model, net, network)"
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="refuse missing and unexpected tensors (--no-strict: load the matching ones "
            "and keep the model's initial values for the missing)"
        ),
    ] = True,
    by_order: Annotated[
        bool,
        typer.Option(
            help="pair tensors by position instead of by name (files whose names differ "
            "but whose tensors come in the architecture's order and shapes)"
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import external PyTorch weights (a state dict in any common layout) onto a registered
    architecture and save them as a robustscope checkpoint."""
    from robustscope import checkpoint, models

    shape, k, box = _shape_and_classes(dataset, input_shape, num_classes)
    kwargs = parse_kv(model_kwarg, "--model-kwarg")
    net, report = checkpoint.import_weights(
        weights,
        model,
        k,
        shape,
        mean=parse_numbers(mean, "--mean") if mean else None,
        std=parse_numbers(std, "--std") if std else None,
        box=box,
        key=key,
        strict=strict,
        by_order=by_order,
        **kwargs,
    )
    path = checkpoint.save(
        out, net, {"dataset": dataset or "", "extra": {"imported": report.to_dict()}}
    )
    if report.normalization == "none":
        err_console.print(
            "[yellow]warning (normalization):[/yellow] the file has no normalization layer and "
            "no --mean/--std was given: the model sees inputs in their own range (images in "
            "[0, 1]); pass --mean/--std if it was trained on normalized inputs",
            soft_wrap=True,
        )
    for what, names in (("missing", report.missing), ("unexpected", report.unexpected)):
        if names:
            err_console.print(
                f"[yellow]warning ({what}):[/yellow] {len(names)} {what} tensor(s) "
                + ("kept at the model's initial values" if what == "missing" else "ignored")
                + f": {', '.join(names)}",
                soft_wrap=True,
            )
    spec = net.spec
    payload = {
        "checkpoint": str(path),
        "model": spec.to_dict(),
        "dataset": dataset or "",
        "parameters": models.count_parameters(net),
        "imported": report.to_dict(),
    }
    lines = [
        f"{weights} → {path}: {spec.name} ({models.count_parameters(net):,} parameters), "
        f"K={spec.num_classes}, input {'×'.join(map(str, spec.input_shape))}",
        f"layout: {'; '.join(report.layout) or 'a bare state dict, names as the architecture'}",
        f"normalization ({report.normalization}): mean {report.mean}, std {report.std}",
    ]
    if not dataset:
        lines.append("no --dataset recorded: pass --dataset NAME to eval, attack and probe it")
    emit(payload, as_json, *lines)
