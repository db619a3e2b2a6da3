"""MLflow: a study as a parent run, each of its runs a nested child run.

:class:`MlflowTracker` is a :class:`~robustscope.studies.runner.StudyTracker`: the study driver
calls :meth:`~MlflowTracker.start` once the runs are planned and
:meth:`~MlflowTracker.record` for each outcome it stored; its owner calls
:meth:`~MlflowTracker.finish` after the report is written (``robustscope study --mlflow`` does
all three). What it logs, through :class:`mlflow.MlflowClient` (no global active run):

* **the study** — a run named after the study in the experiment ``experiment`` (default: the
  study's name; created when missing), with the spec as parameters (dotted keys,
  :func:`~robustscope.trackers.common.flat_params`) and as the artifact ``spec.json``, the tags
  ``robustscope.kind = study``, ``robustscope.study``, ``robustscope.study_dir`` and
  ``robustscope.spec_hash``; at the end the report (``report.html``) and its ``figures/`` as
  artifacts, the counts ``runs_planned``, ``runs_done``, ``runs_skipped``, ``runs_failed`` as
  metrics, and the status FINISHED (FAILED when a run failed, KILLED when interrupted). The
  same spec run again in the same study directory (a resumed or repeated study) continues
  that parent run rather than starting another; a changed spec is a new parent run.
* **each run** — a child run (tag ``mlflow.parentRunId``) named by the run's label, tagged
  ``robustscope.kind = run``, ``robustscope.run_id``, its health (``robustscope.health``, and
  the reason and likely fix of a collapse), its gradient-masking flags
  (``robustscope.flags.<label>``), why it stopped early or failed; its training configuration
  as parameters (the :class:`~robustscope.training.TrainConfig` fields, nested ones dotted:
  ``method_params.eps``) and its place in the study (``study.model``, ``study.family``,
  ``study.eps``, ``study.norm``, ``study.train_size``); as metrics every number of its
  history per epoch (step = epoch, the history's own keys: ``train_loss``, ``test_accuracy``,
  ``track/...``), its final metrics under their store names (``clean_accuracy``,
  ``train/<key>``, ``train_time_s``), each attack result as ``attack/<label>/<ε>/<quantity>``
  (the store's column names), each probe scalar as ``probe/<probe>/<key>``, and the seconds
  spent as ``seconds/<stage>``. Names are made acceptable to MLflow by
  :func:`~robustscope.trackers.common.metric_name` (``+`` and ``=`` become ``_``).

Only outcomes measured while the tracker was attached are logged: runs a study skips because
an earlier call measured them are in that call's child runs, if it had ``--mlflow``.

Where: a tracking server (``http://host:5000``; asked once for ``/health`` at the start, so a
wrong address fails before any training), a database (``sqlite:///mlflow.db``, MLflow's own
recommendation for local use), or a directory — a file store, by default ``./mlruns``
(:func:`resolve_uri`). MLflow 3 refuses file stores unless ``MLFLOW_ALLOW_FILE_STORE`` is
true; asking for a directory is taken as that opt-in, so the variable is set (unless already
set) for this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from robustscope.studies.store.vocab import attack_column
from robustscope.trackers.common import (
    TrackerError,
    flat_params,
    metric_name,
    require,
    row_scalars,
)

if TYPE_CHECKING:
    from robustscope.studies.execute import RunOutcome
    from robustscope.studies.plan import RunPlan
    from robustscope.studies.runner import StudySummary
    from robustscope.studies.spec import StudySpec

__all__ = ["DEFAULT_STORE", "MlflowTracker", "resolve_uri"]

#: where ``--mlflow`` logs without a URI and without ``MLFLOW_TRACKING_URI``: a file store
DEFAULT_STORE = "mlruns"

#: tags of the parent run that identify a study (with the spec's hash)
KIND, STUDY, STUDY_DIR, SPEC_HASH, RUN_ID = (
    "robustscope.kind",
    "robustscope.study",
    "robustscope.study_dir",
    "robustscope.spec_hash",
    "robustscope.run_id",
)
PARENT = "mlflow.parentRunId"

_NAMED_URIS = ("databricks", "databricks-uc", "uc")
#: MLflow keeps tag values up to 8000 characters; longer errors are cut to this
_TAG_CHARS = 4000
#: the longest parameter value MLflow keeps (older versions refuse, newer ones cut, longer ones)
_PARAM_CHARS = 6000


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to log to: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the file
    store :data:`DEFAULT_STORE` in the working directory. A plain path is a file store and
    becomes an absolute ``file:`` URI; any URI with a scheme is kept as it is.

    Example:
        >>> resolve_uri("http://127.0.0.1:5000")
        'http://127.0.0.1:5000'
        >>> resolve_uri("sqlite:///mlflow.db")
        'sqlite:///mlflow.db'
        >>> resolve_uri("/tmp/mlruns")
        'file:///tmp/mlruns'
    """
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    if chosen in _NAMED_URIS or urlparse(chosen).scheme not in ("", "file"):
        return chosen
    if chosen.startswith("file:"):
        return Path(urlparse(chosen).path).expanduser().resolve().as_uri()
    return Path(chosen).expanduser().resolve().as_uri()


def _check_server(uri: str) -> None:
    """Fail now, with the fix, when nothing answers at the tracking server ``uri`` (any HTTP
    answer counts: the client reports the server's own errors)."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=10):
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackerError(
            f"--mlflow-uri {uri}: no MLflow tracking server answers there ({reason}); start "
            "one (mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000) or give "
            "a directory or sqlite:/// URI to log without a server"
        ) from None


def _spec_hash(spec: StudySpec) -> str:
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class MlflowTracker:
    """Logs a study to MLflow (see the module doc for what goes where).

    Args:
        uri: the tracking URI (:func:`resolve_uri`: None → ``$MLFLOW_TRACKING_URI`` or
            ``./mlruns``).
        experiment: the experiment's name (default: the study's name).

    Raises:
        TrackerError: MLflow is not installed (the message names the extra), or the tracking
            server does not answer.

    Example:
        >>> tracker = MlflowTracker("/tmp/never-written")  # doctest: +SKIP
        >>> run_study(spec, out, trackers=[tracker])  # doctest: +SKIP
        >>> tracker.finish(summary, report=out / "report.html")  # doctest: +SKIP
    """

    def __init__(self, uri: str | None = None, *, experiment: str | None = None) -> None:
        require("mlflow", "mlflow", "--mlflow")
        self.uri = resolve_uri(uri)
        if self.uri.startswith("file:"):  # asking for a directory is the opt-in MLflow 3 wants
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        elif urlparse(self.uri).scheme in ("http", "https"):
            _check_server(self.uri)
        from mlflow import MlflowClient

        try:
            self.client = MlflowClient(tracking_uri=self.uri)
        except Exception as exc:
            raise TrackerError(f"--mlflow-uri {self.uri}: MLflow cannot use it ({exc})") from None
        self.experiment = experiment
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.study = ""
        self.children: dict[str, str] = {}  # robustscope run id → MLflow run id (this call)

    def __str__(self) -> str:
        return f"MLflow ({self.uri})"

    # --- StudyTracker ---------------------------------------------------------------------

    def start(self, spec: StudySpec, out: Path, plans: list[RunPlan]) -> None:
        """Open (or continue) the study's parent run."""
        self.study = spec.name
        name = self.experiment or spec.name
        try:
            self.experiment_id = self._experiment(name)
            self.parent_id = self._parent(spec, Path(out), self.experiment_id)
        except TrackerError:
            raise
        except Exception as exc:
            raise TrackerError(f"{self}: cannot start the study's run ({exc})") from None

    def record(self, run: RunPlan, outcome: RunOutcome) -> None:
        """Log one run's outcome as a child run of the study's."""
        from mlflow.entities import Metric, Param

        if self.parent_id is None or self.experiment_id is None:
            raise TrackerError("MlflowTracker.record before start: the study has no run yet")
        tags = {
            PARENT: self.parent_id,
            KIND: "run",
            RUN_ID: run.run_id,
            STUDY: self.study,
            **_outcome_tags(outcome),
        }
        child = self.client.create_run(self.experiment_id, run_name=run.label, tags=tags)
        child_id = child.info.run_id
        params = [Param(metric_name(k), v[:_PARAM_CHARS]) for k, v in run_params(run).items()]
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(name, value, stamp, step) for name, value, step in outcome_metrics(outcome)
        ]
        status = "FINISHED" if outcome.ok else "FAILED"
        try:
            self.client.log_batch(child_id, metrics=metrics, params=params)
        except Exception:
            status = "FAILED"  # what was logged stays; the child does not stay RUNNING
            raise
        finally:
            with contextlib.redirect_stdout(io.StringIO()):  # a server's client prints links
                self.client.set_terminated(child_id, status)
        self.children[run.run_id] = child_id

    # --- the end --------------------------------------------------------------------------

    def finish(self, summary: StudySummary | None = None, report: Path | None = None) -> None:
        """Attach ``report`` (and the ``figures/`` beside it) and the run counts to the study's
        run and end it: FINISHED, or FAILED when ``summary`` lists failed runs."""
        from mlflow.entities import Metric

        if self.parent_id is None:
            return
        if report is not None and Path(report).is_file():
            self.client.log_artifact(self.parent_id, str(report))
            figures = Path(report).parent / "figures"
            if figures.is_dir() and any(figures.iterdir()):
                self.client.log_artifacts(self.parent_id, str(figures), "figures")
        status = "FINISHED"
        if summary is not None:
            stamp = int(time.time() * 1000)
            counts = {
                "runs_planned": summary.planned,
                "runs_done": summary.done,
                "runs_skipped": summary.skipped,
                "runs_failed": len(summary.failed),
            }
            self.client.log_batch(
                self.parent_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in counts.items()]
            )
            if summary.failed:
                status = "FAILED"
        self._end(status)

    def abort(self, status: str = "KILLED") -> None:
        """End the study's run with ``status`` (the study was interrupted or failed)."""
        self._end(status)

    def _end(self, status: str) -> None:
        parent, self.parent_id = self.parent_id, None
        if parent is None:
            return
        # the client of a tracking server prints the run's link on stdout: keep stdout for
        # the command's output (--json), the link goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            self.client.set_terminated(parent, status)

    # --- helpers --------------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            return str(self.client.create_experiment(name))
        if found.lifecycle_stage == "deleted":
            raise TrackerError(
                f"{self}: the experiment {name!r} is deleted; restore it (mlflow experiments "
                "restore) or log to another one with --mlflow-experiment"
            )
        return str(found.experiment_id)

    def _parent(self, spec: StudySpec, out: Path, experiment_id: str) -> str:
        """The study's parent run: the one this spec and study directory logged to before,
        set running again, else a new one with the spec as parameters."""
        from mlflow.entities import Param

        digest, where = _spec_hash(spec), str(out.resolve())
        before = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{SPEC_HASH}` = '{digest}'", max_results=1000
        )
        for r in before:
            if r.data.tags.get(STUDY_DIR) == where and r.data.tags.get(KIND) == "study":
                self.client.update_run(r.info.run_id, status="RUNNING")
                return str(r.info.run_id)
        tags = {KIND: "study", STUDY: spec.name, STUDY_DIR: where, SPEC_HASH: digest}
        run = self.client.create_run(experiment_id, run_name=spec.name, tags=tags)
        run_id = str(run.info.run_id)
        dump = spec.model_dump(mode="json")
        params = [Param(metric_name(k), v[:_PARAM_CHARS]) for k, v in flat_params(dump).items()]
        self.client.log_batch(run_id, params=params)
        self.client.log_dict(run_id, dump, "spec.json")
        return run_id


def run_params(run: RunPlan) -> dict[str, str]:
    """A run's parameters: its training configuration's fields (nested ones dotted; a loaded
    run: those its checkpoint records) and its place in the study under ``study.`` (display
    model, family, ε, norm, training-set size; a loaded run's checkpoint file and SHA-256).

    Example:
        >>> from robustscope.studies import plan, preset
        >>> params = run_params(plan(preset("smoke"), device="cpu")[1])
        >>> params["method_params.eps"], params["model_kwargs.widths"], params["study.model"]
        ('0.1', '[32]', 'mlp32')
    """
    place: dict[str, Any] = {
        "model": run.model,
        "family": run.family,
        "eps": run.eps,
        "norm": run.norm,
    }
    if run.train_size is not None:
        place["train_size"] = run.train_size
    if run.source is not None:
        place["checkpoint"] = run.source.path
        place["checkpoint_sha256"] = run.source.sha256
    return {**flat_params(run.settings()), **flat_params(place, "study.")}


def outcome_metrics(outcome: RunOutcome) -> list[tuple[str, float, int]]:
    """``(name, value, step)`` of everything numeric a run measured: its history per epoch
    (step = epoch), then at step 0 its final metrics, attack results
    (``attack/<label>/<ε>/<quantity>``), probe scalars (``probe/<probe>/<key>``) and timings
    (``seconds/<stage>``); names through :func:`~robustscope.trackers.common.metric_name`."""
    out: list[tuple[str, float, int]] = []
    for i, row in enumerate(outcome.history, 1):
        step = int(row.get("epoch", i))
        out.extend((metric_name(k), v, step) for k, v in row_scalars(row))
    out.extend((metric_name(k), v, 0) for k, v in row_scalars(outcome.metrics, skip=()))
    for a in outcome.attacks:
        for eps, quantity, value in a.rows():
            out.append((metric_name(f"attack/{attack_column(a.label, eps, quantity)}"), value, 0))
    for p in outcome.probes:
        out.extend(
            (metric_name(f"probe/{p.probe}/{k}"), v, 0) for k, v in row_scalars(p.scalars, skip=())
        )
    out.extend(
        (metric_name(f"seconds/{k}"), v, 0) for k, v in row_scalars(outcome.timings, skip=())
    )
    return out


def _outcome_tags(outcome: RunOutcome) -> dict[str, str]:
    tags: dict[str, str] = {}
    h = outcome.health
    if h is not None:
        tags["robustscope.health"] = h.status
        if h.reason:
            tags["robustscope.health_reason"] = h.reason[:_TAG_CHARS]
        if h.fix:
            tags["robustscope.health_fix"] = h.fix[:_TAG_CHARS]
    for a in outcome.attacks:
        if a.flags:
            tags[metric_name(f"robustscope.flags.{a.label}")] = ",".join(f.name for f in a.flags)
        if a.escalates is not None:
            tags[metric_name(f"robustscope.escalates.{a.label}")] = a.escalates
    if outcome.stop_reason:
        tags["robustscope.stop_reason"] = outcome.stop_reason[:_TAG_CHARS]
    if outcome.error:
        tags["robustscope.error"] = outcome.error[-_TAG_CHARS:]
    if outcome.checkpoint:
        tags["robustscope.checkpoint"] = outcome.checkpoint
    return tags
