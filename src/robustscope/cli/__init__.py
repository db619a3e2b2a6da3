"""The ``robustscope`` command line: a thin typer layer over the Python API.

Every command that takes a CHECKPOINT accepts a checkpoint file or a run directory;
``--json`` prints one JSON object for scripts. Errors print one line naming what is wrong
and how to fix it, and exit with status 2.

The commands live by idea: :mod:`~robustscope.cli.catalog` (datasets, models, attacks,
probes, presets, a checkpoint's info), :mod:`~robustscope.cli.train`,
:mod:`~robustscope.cli.external` (import: external weights as a checkpoint),
:mod:`~robustscope.cli.measure` (eval, attack, probe), :mod:`~robustscope.cli.posthoc`
(robustify), :mod:`~robustscope.cli.corrupt` (corrupt), :mod:`~robustscope.cli.transfer`
(transfer), :mod:`~robustscope.cli.visualize` (visualize), :mod:`~robustscope.cli.studies`
(study, show, report, compare, export) and
:mod:`~robustscope.cli.theory` (theory tsipras, theory mnist); they share
:mod:`~robustscope.cli.options` (one definition of each common option) and
:mod:`~robustscope.cli.output` (one printer of JSON or tables).
"""

from __future__ import annotations

import typer
from rich.markup import escape

from robustscope import plugins
from robustscope.cli import (
    catalog,
    corrupt,
    external,
    measure,
    posthoc,
    studies,
    theory,
    train,
    transfer,
    visualize,
)
from robustscope.cli.output import err_console
from robustscope.errors import RobustscopeError

__all__ = ["app", "main"]

#: the commands in the order ``robustscope --help`` lists them
COMMANDS = (
    ("datasets", catalog.datasets_cmd),
    ("models", catalog.models_cmd),
    ("train", train.train_cmd),
    ("import", external.import_cmd),
    ("eval", measure.eval_cmd),
    ("attacks", catalog.attacks_cmd),
    ("attack", measure.attack_cmd),
    ("probes", catalog.probes_cmd),
    ("probe", measure.probe_cmd),
    ("robustify", posthoc.robustify_cmd),
    ("corrupt", corrupt.corrupt_cmd),
    ("transfer", transfer.transfer_cmd),
    ("visualize", visualize.visualize_cmd),
    ("presets", catalog.presets_cmd),
    ("study", studies.study_cmd),
    ("show", studies.show_cmd),
    ("report", studies.report_cmd),
    ("compare", studies.compare_cmd),
    ("export", studies.export_cmd),
    ("info", catalog.info_cmd),
)


def _build_app() -> typer.Typer:
    cli = typer.Typer(
        name="robustscope",
        help="A laboratory for the robustness–accuracy trade-off of neural networks.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @cli.callback()
    def plugged() -> None:
        # every command, however the app is invoked: tracked probes as training measurements
        plugins.load()

    for name, command in COMMANDS:
        cli.command(name)(command)
    cli.add_typer(theory.app, name="theory")
    return cli


app = _build_app()


def main() -> None:
    """Console entry point: run the app (which loads the plugins) and turn robustscope errors
    into one-line messages (exit status 2)."""
    try:
        app()
    except RobustscopeError as exc:
        # the message is text, not markup: "pip install 'robustscope[mlflow]'" keeps its brackets
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; completed epochs are saved (resume with --resume)")
        raise SystemExit(130) from None
