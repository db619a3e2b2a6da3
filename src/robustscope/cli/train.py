"""``robustscope train``: the options are the configuration's fields (:mod:`.fields`), the
objective shortcuts, the run options (``--out``, ``--resume``, ...) and ``--config FILE``
(fields from a YAML or JSON file, e.g. a run's ``config.json``; options given on the command
line override it)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from robustscope.cli.fields import FIELDS, SHORTCUTS, build_config
from robustscope.cli.options import JsonFlag
from robustscope.cli.output import emit
from robustscope.errors import RobustscopeError

__all__ = ["train_cmd"]


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given rather than left at its default (by name: typer's
    own ParameterSource or click's, whichever typer runs on)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


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
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            help="write every number of each epoch's history (losses, accuracies, tracked "
            "probes track/...) as TensorBoard scalars to DIR (needs robustscope\\[tensorboard])",
            metavar="DIR",
        ),
    ] = None,
    as_json: JsonFlag = False,
    **options: Any,
) -> None:
    """Train a model; a checkpoint is written to --out after every epoch.

    Distributed data-parallel: ``torchrun --nproc_per_node=N -m robustscope train ...``
    (--batch-size is the global batch; only rank 0 writes and prints).
    """
    from robustscope.training import distributed, train

    values = {name: option.convert(options[name]) for name, option in FIELDS.items()}
    given = {name for name in FIELDS if _given(ctx, name)}
    for key, shortcut in SHORTCUTS.items():
        value = shortcut.convert(options[key])
        if value is None:
            continue
        if key in values["method_params"]:
            raise RobustscopeError(
                f"{shortcut.flag} and --method-param {key}=... both given; keep one"
            )
        values["method_params"][key] = value
        given.add("method_params")
    train_config = build_config(values, given, config)
    writer = None
    if tensorboard is not None and distributed.is_main():  # rank 0 writes, as it logs
        from robustscope.trackers import TensorBoardWriter

        writer = TensorBoardWriter(tensorboard, resume=resume)
    try:
        result = train(
            train_config,
            out,
            resume=resume,
            callbacks=[writer] if writer is not None else [],
            progress=progress and sys.stderr.isatty(),
            stop_after_epochs=stop_after_epochs,
        )
    except BaseException:
        if writer is not None:  # the epochs written so far stay
            writer.close()
        raise
    if writer is not None:  # with the epochs of an earlier call (--resume) not written yet
        writer.close(result.history)
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
    + [p for p in _explicit if p.kind is p.KEYWORD_ONLY]
    + [option.parameter for option in (*FIELDS.values(), *SHORTCUTS.values())],
    return_annotation=None,
)
