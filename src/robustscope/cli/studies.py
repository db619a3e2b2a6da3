"""Studies: ``study`` (train, attack and probe a family, then report), ``show`` (the summary
table), ``report`` (the HTML report), ``compare`` (one page setting studies side by side) and
``export`` (the results store as files)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from robustscope.cli.options import DatasetOpt, DeviceOpt, JsonFlag, StudyDirArg
from robustscope.cli.output import Column, TableView, emit, err_console, fixed, out_console
from robustscope.errors import RobustscopeError

__all__ = [
    "chosen_study",
    "compare_cmd",
    "export_cmd",
    "plan_rows",
    "plan_view",
    "report_cmd",
    "show_cmd",
    "study_cmd",
    "study_trackers",
    "summary_notes",
]


def summary_view(study_dir: Path, summary: Any) -> TableView | str:
    """The human form of a study's summary (:func:`robustscope.report.summarize`): one row
    per run; the robust-accuracy columns share one attack, named once, in the title. A
    collapsed run's reason and fix are lines of their own (:func:`summary_notes`)."""
    from robustscope.studies.store.vocab import HEALTH_FIX, HEALTH_REASON, format_eps

    rows = summary.rows
    if not rows:
        return f"{study_dir}: no finished runs yet"
    keys = [k for k in rows[0] if k not in (HEALTH_REASON, HEALTH_FIX)]
    if all(r.get("status") == "done" for r in rows):
        keys.remove("status")
    heads = {k: k for k in keys}
    title = str(study_dir)
    if summary.attack is not None:
        title += f" — robust accuracy under {summary.attack}"
        heads.update({k: f"ε={format_eps(eps)}" for k, eps in summary.robust.items()})
    columns = [Column(heads[k], k, fixed(3)) for k in keys]
    return TableView(columns, rows=rows, title=title, compact=True)


def summary_notes(summary: Any) -> str | None:
    """Lines under the summary table: every collapsed run (left out of the report) with why
    and the likely fix, and every run whose evaluation was escalated; None when there are
    none."""
    from rich.markup import escape

    from robustscope.studies.store.vocab import COLLAPSED, HEALTH, HEALTH_FIX, HEALTH_REASON

    lines = []
    for row in summary.rows:
        if row.get(HEALTH) == COLLAPSED:
            lines.append(
                f"[bold red]COLLAPSED[/] {escape(row['label'])} (left out of the report): "
                f"{escape(str(row.get(HEALTH_REASON)))}; likely fix: "
                f"{escape(str(row.get(HEALTH_FIX)))}"
            )
    for row in summary.rows:
        if row.get("escalated"):
            lines.append(
                f"[bold yellow]ESCALATED[/] {escape(row['label'])}: a gradient-masking check "
                f"fired on {escape(str(summary.attack))}; re-attacked with "
                f"{escape(str(row['escalated']))}, the lower robust accuracy is shown"
            )
    return "\n".join(lines) or None


def plan_rows(plans: list[Any]) -> list[dict[str, Any]]:
    """One row per planned run (``robustscope study --dry-run``): id, label, model, method,
    family, ε, norm, ``train_size`` (the run's ``train_subset``: None for the whole training
    split) and seed."""
    from robustscope.studies.store.vocab import TRAIN_SIZE

    return [
        {
            "run_id": p.run_id,
            "label": p.label,
            "model": p.model,
            "method": p.method,
            "family": p.family,
            "eps": p.eps,
            "norm": p.norm,
            TRAIN_SIZE: p.settings().get("train_subset"),
            "seed": p.seed,
        }
        for p in plans
    ]


def plan_view(name: str, rows: list[dict[str, Any]]) -> TableView:
    """The human form of :func:`plan_rows`."""
    from robustscope.studies.store.vocab import TRAIN_SIZE, format_eps

    sizes = sorted({r[TRAIN_SIZE] for r in rows if r[TRAIN_SIZE] is not None})
    title = f"{name}: {len(rows)} run(s) planned"
    if len(sizes) > 1:
        title += f" over {len(sizes)} training-set sizes ({', '.join(map(str, sizes))})"
    columns = [
        Column("run", "run_id"),
        Column("model", "model"),
        Column("method", "method"),
        Column("ε", lambda r: format_eps(r["eps"]) if r["eps"] == r["eps"] else "none"),
        Column("train size", lambda r: r[TRAIN_SIZE] if r[TRAIN_SIZE] is not None else "all"),
        Column("seed", "seed"),
    ]
    return TableView(columns, rows=rows, title=title, compact=True)


def _summary(study_dir: Path) -> Any:
    from robustscope.report import load_study, summarize

    return summarize(load_study(study_dir))


def study_cmd(
    preset: Annotated[
        str | None,
        typer.Option(help="built-in preset (robustscope presets); default tradeoff-fmnist"),
    ] = None,
    spec: Annotated[Path | None, typer.Option(help="a study spec YAML file")] = None,
    checkpoints: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoints",
            metavar="PATH|GLOB",
            help="checkpoints to measure without training (files, run directories or globs "
            "such as 'runs/*/model.safetensors'; repeatable): alone, with the default preset's "
            "evaluation and probes on --dataset; with --spec/--preset, added to that study",
        ),
    ] = None,
    dataset: DatasetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="study directory (default runs/<preset or spec name>)")
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray executor; default: local Ray)")
    ] = None,
    device: DeviceOpt = "auto",
    report: Annotated[bool, typer.Option(help="write the HTML report at the end")] = True,
    progress: Annotated[bool, typer.Option(help="show training progress bars")] = True,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="list the planned runs (ε, training-set size, seed) and stop"
        ),
    ] = False,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="log the study to MLflow: the study a parent run, each run a nested child "
            "run (configuration as params, history and attack/probe results as metrics), the "
            "report as artifacts; where: --mlflow-uri (needs robustscope\\[mlflow])",
        ),
    ] = False,
    mlflow_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI, implies --mlflow: a server (http://host:5000), a "
            "database (sqlite:///mlflow.db) or a directory (a file store); default "
            "$MLFLOW_TRACKING_URI, else ./mlruns",
        ),
    ] = None,
    mlflow_experiment: Annotated[
        str | None,
        typer.Option(help="MLflow experiment, implies --mlflow (default: the study's name)"),
    ] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            help="write each run's training history as TensorBoard scalars to DIR/<run label> "
            "(needs robustscope\\[tensorboard])",
            metavar="DIR",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run (or resume) a study: train the family (or load checkpoints), attack and probe every
    member, report."""
    from robustscope.studies import plan, runner

    study = chosen_study(preset, spec, checkpoints or [], dataset, out)
    if dry_run:
        rows = plan_rows(plan(study, device=device))
        emit(rows, as_json, plan_view(study.name, rows))
        return
    trackers = study_trackers(
        mlflow or mlflow_uri is not None or mlflow_experiment is not None,
        mlflow_uri,
        mlflow_experiment,
        tensorboard,
    )
    try:
        summary = runner.run_study(
            study,
            out,
            executor=executor,  # type: ignore[arg-type]
            address=address,
            device=device,
            progress=progress and sys.stderr.isatty() and not as_json,
            echo=None if as_json else (lambda line: err_console.print(line, soft_wrap=True)),
            trackers=trackers,
        )
        from robustscope.report import load_study, summarize, write_report

        data = load_study(summary.out)  # read once, for the report and the summary table
        report_path = write_report(summary.out, data) if report else None
    except BaseException as exc:
        for tracker in trackers:
            tracker.abort("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    for tracker in trackers:
        tracker.finish(summary, report_path)
    found = {
        "out": str(summary.out),
        "planned": summary.planned,
        "skipped": summary.skipped,
        "done": summary.done,
        "failed": summary.failed,
        "held": summary.held,
        "seconds": summary.seconds,
        "report": str(report_path) if report_path else None,
    }
    shown = summarize(data)
    emit(
        found,
        as_json,
        summary_view(summary.out, shown),
        summary_notes(shown),
        f"report: {report_path}" if report_path else None,
    )
    if summary.failed:
        raise SystemExit(1)


def chosen_study(
    preset: str | None,
    spec: Path | None,
    checkpoints: list[str],
    dataset: str | None,
    out: Path | None,
) -> Any:
    """The study ``robustscope study`` runs: the ``--spec`` file or the ``--preset`` (default
    :data:`~robustscope.studies.presets.DEFAULT_PRESET`), with ``--checkpoints`` added to it;
    or, with ``--checkpoints`` alone, those checkpoints measured on ``--dataset`` (default:
    the one they record) with the default preset's evaluation and probes, named after
    ``--out`` (:func:`robustscope.studies.loaded.checkpoint_study`)."""
    import re

    from robustscope.studies import loaded, presets
    from robustscope.studies.spec import load_spec

    if preset and spec:
        raise RobustscopeError("give --preset or --spec, not both")
    if checkpoints and not (preset or spec):
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", out.name if out else "").lstrip("._-")
        return loaded.checkpoint_study(checkpoints, dataset, name or "checkpoints")
    study = load_spec(spec) if spec else presets.preset(preset or presets.DEFAULT_PRESET)
    if dataset is not None and dataset != study.dataset:
        raise RobustscopeError(
            f"--dataset {dataset} differs from the study's dataset {study.dataset!r}: --dataset "
            "goes with --checkpoints alone (the one-line form); a spec names its dataset"
        )
    if checkpoints:
        raw = study.model_dump(mode="json")
        raw["checkpoints"] = [*(raw.get("checkpoints") or []), *checkpoints]
        study = load_spec(raw)
    return study


def study_trackers(
    mlflow: bool, uri: str | None, experiment: str | None, tensorboard: Path | None
) -> list[Any]:
    """The experiment trackers ``study`` was asked for (checked now, before any training: a
    missing extra or an unreachable server is an error naming the fix)."""
    from robustscope import trackers

    out: list[Any] = []
    if mlflow:
        out.append(trackers.MlflowTracker(uri, experiment=experiment))
    if tensorboard is not None:
        out.append(trackers.TensorBoardStudyTracker(tensorboard))
    return out


def show_cmd(study_dir: StudyDirArg, as_json: JsonFlag = False) -> None:
    """Print a study's summary table (one row per run)."""
    summary = _summary(study_dir)
    emit(summary.rows, as_json, summary_view(study_dir, summary), summary_notes(summary))


def report_cmd(study_dir: StudyDirArg) -> None:
    """Write STUDY_DIR/report.html (figures embedded) and the figures as PNGs beside it."""
    from robustscope.report import write_report

    out_console.print(str(write_report(study_dir)))


def compare_cmd(
    study_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="STUDY_DIR...",
            help="two or more study directories; the first is the reference of every difference",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="folder for compare.html, its figures and differences.csv")
    ],
    eval_eps: Annotated[
        str | None,
        typer.Option(
            help="attack ε of the frontiers and robust-accuracy claims, e.g. 8/255 (default: "
            "the reference's)"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Compare studies on one page: frontiers, robust accuracy and probes overlaid (one colour
    per study), a table of the differences and the Findings side by side."""
    from robustscope.params import parse_eps
    from robustscope.report.compare import write_comparison

    eps = None if eval_eps is None else parse_eps(eval_eps, "--eval-eps")
    page = write_comparison(study_dirs, out, eval_eps=eps)
    found = {
        "page": str(page),
        "figures": str(page.parent / "figures"),
        "differences": str(page.parent / "differences.csv"),
        "studies": [str(d) for d in study_dirs],
    }
    emit(found, as_json, str(page))


def export_cmd(
    study_dir: StudyDirArg,
    format: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    out: Annotated[Path | None, typer.Option(help="folder (default STUDY_DIR/export)")] = None,
) -> None:
    """Export every table of a study's results store as CSV or Parquet files."""
    from robustscope.studies import export

    for path in export(study_dir, format=format, out=out):
        out_console.print(str(path))
