"""One run of a study, start to end: train (or resume) → checkpoint → attacks → probes.

:func:`execute_run` is what an executor calls, in this process or in a Ray worker. It
writes only inside the run's own directory (checkpoints, via
:func:`robustscope.training.train`) and *returns* everything measured as a
:class:`RunOutcome` of plain Python and numpy values; the driver alone writes the results
store. Training resumes from the run directory's last checkpoint, so an interrupted run
continues where it stopped. A loaded run (a spec's ``checkpoints``,
:mod:`robustscope.studies.loaded`) is not trained: its model comes from its checkpoint file,
and it has the history and ``train/…`` metrics of the run directory it was saved in when
they belong to its weights (:func:`~robustscope.studies.loaded.training_history`), none
otherwise. Both are then measured by one function,
:func:`measure`.

What it measures (names from :mod:`robustscope.studies.store.vocab`):

* metrics: ``clean_accuracy`` — on the first ``evaluation.n`` test points;
  ``train/<key>`` — the last epoch's history row (``train/test_accuracy``, ...);
  ``train_time_s`` — the summed training time of the epochs;
* attack results: one :class:`~robustscope.studies.store.AttackResult` per
  ``evaluation.attacks`` entry (:func:`attack_result`), labelled with the entry's key
  (``label``, else ``<attack>-<norm>``), holding robust accuracy over all evaluated points
  and over the correctly classified ones (wen2020 §D.2) at each ε, and the
  gradient-masking flags raised; when a masking flag fired, the escalated evaluation
  (:mod:`robustscope.studies.escalation`) labelled ``<label>+<attack>``, which ``escalates``
  the first;
* health: whether the run trained (:func:`robustscope.studies.health.assess` on its clean
  accuracy and history), recorded as ``runs.health``;
* per-point evaluation: one :class:`ProbeOutput` named ``points``
  (:data:`~.store.vocab.POINTS_PROBE`, :func:`per_point`), what the report's intervals
  resample;
* probes: one :class:`ProbeOutput` per ``probes.run`` entry;
* post-hoc: with a spec's ``posthoc`` section, on the runs it selects (``standard``: the
  runs trained at ε = 0 and the loaded models the lab did not train), one more
  :class:`ProbeOutput` named ``posthoc`` (:data:`~.store.vocab.POSTHOC_PROBE`): the
  :class:`~robustscope.posthoc.sweep.SweepResult`'s scalars and arrays.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustscope.studies import escalation
from robustscope.studies.health import Health, assess
from robustscope.studies.loaded import load_model, training_history
from robustscope.studies.plan import RunPlan, probe_options
from robustscope.studies.spec import AttackEval, StudySpec
from robustscope.studies.store import vocab
from robustscope.studies.store.records import AttackFlag, AttackResult

if TYPE_CHECKING:
    from robustscope.attacks import RobustnessCurve
    from robustscope.posthoc.sweep import SweepResult

__all__ = [
    "ProbeOutput",
    "RunOutcome",
    "attack_result",
    "execute_run",
    "measure",
    "per_point",
    "posthoc_sweep",
]


@dataclass
class ProbeOutput:
    """The flattened result of one probe on one run."""

    probe: str
    scalars: dict[str, float]
    arrays: dict[str, np.ndarray]
    seconds: float


@dataclass
class RunOutcome:
    """Everything one run measured, returned to the driver (picklable, no tensors).

    Attributes:
        run_id: the run's id.
        ok: False when the run failed (``error`` says why; what was measured is kept).
        error: the error message (with the traceback's last lines) or None.
        history: the training history, one dict per epoch (empty for a loaded run).
        metrics: final scalars (see the module doc for the names).
        attacks: one :class:`~robustscope.studies.store.AttackResult` per evaluated attack.
        probes: one :class:`ProbeOutput` per probe that ran.
        checkpoint: the run directory holding the checkpoint (a loaded run: its file).
        timings: seconds spent in ``train`` (or ``load``), ``attacks`` and ``probes``.
        stop_reason: why training stopped early (catastrophic overfitting), else None.
        provenance: where and with what the run was computed
            (:func:`robustscope.studies.store.collect_provenance`, called in the process that
            ran it: a Ray worker records its own host and checkout).
        health: whether it trained (:mod:`robustscope.studies.health`); None when the run
            failed before it could be told.
    """

    run_id: str
    ok: bool = True
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    attacks: list[AttackResult] = field(default_factory=list)
    probes: list[ProbeOutput] = field(default_factory=list)
    checkpoint: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None
    provenance: dict[str, str | None] = field(default_factory=dict)
    health: Health | None = None


def _record_history(outcome: RunOutcome, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep a run's training history in ``outcome`` with the summed training time and the last
    epoch's numbers as ``train/<key>`` metrics; returns those numbers ({} without history)."""
    outcome.history = history
    if not history:
        return {}
    final = history[-1]
    outcome.metrics[vocab.TRAIN_TIME_S] = sum(
        float(row.get("train_time_s", 0.0)) for row in history
    )
    for key, value in final.items():
        number = _float(value)
        if number is not None and key != "epoch":
            outcome.metrics[vocab.train_metric(key)] = number
    return dict(final)


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out


def attack_result(curve: RobustnessCurve, label: str, escalates: str | None = None) -> AttackResult:
    """The stored form of an :class:`robustscope.attacks.RobustnessCurve`: its attack, norm,
    parameters, n, robust accuracies (over all points and over the correctly classified
    ones) at each distinct ε, and its flags, under the study's ``label`` for it;
    ``escalates``: the label of the evaluation it escalates."""
    acc, on_correct = curve.robust_accuracy, curve.robust_accuracy_on_correct
    eps = tuple(acc)  # distinct ε (a repeated ε shares one entry), in the order evaluated
    return AttackResult(
        label=label,
        attack=str(curve.attack),
        norm=str(curve.norm),
        params=dict(curve.params),
        n=int(curve.n),
        epsilons=tuple(float(e) for e in eps),
        robust_accuracy=tuple(float(acc[e]) for e in eps),
        robust_accuracy_on_correct=tuple(float(on_correct[e]) for e in eps),
        flags=tuple(
            AttackFlag(f.name, f.message, None if f.value is None else float(f.value))
            for f in curve.flags
        ),
        escalates=escalates,
    )


def per_point(curve: RobustnessCurve, label: str) -> dict[str, np.ndarray]:
    """The per-test-point arrays of one evaluation (:data:`~.store.vocab.POINTS_PROBE`):
    ``clean``, ``<label>`` ([E, n] still correct at each ε) and ``<label>/eps``."""
    return {
        "clean": curve.clean_correct.cpu().numpy().astype(bool),
        label: curve.robust.cpu().numpy().astype(bool),
        f"{label}/eps": np.asarray(curve.epsilons, dtype=np.float64),
    }


def posthoc_sweep(
    model: Any, spec: StudySpec, test: Any, run: RunPlan, *, progress: bool = False
) -> SweepResult:
    """The spec's post-hoc sweep (``spec.posthoc``) of one run's model."""
    from robustscope import data, probes
    from robustscope.posthoc.sweep import AttackSetting, CorruptionSetting, run_sweep

    ph = spec.posthoc
    assert ph is not None
    name, root, params = run.data()
    train_ds = data.load(name, "train", root=root, **params).head(ph.train_n)

    def setting(a: AttackEval) -> AttackSetting:
        return AttackSetting(a.attack, tuple(a.eps), a.norm, dict(a.params), a.key())

    robust = [setting(spec.evaluation.attacks[0])] if ph.robust and spec.evaluation.attacks else []
    corr = ph.corruptions
    return run_sweep(
        model,
        probes.ProbeData(test=(test.x[: ph.n], test.y[: ph.n]), train=(train_ds.x, train_ds.y)),
        methods=ph.methods,
        percents=ph.percents,
        layer=ph.layer,
        transferred=[setting(a) for a in ph.transferred],
        adaptive=[setting(a) for a in ph.adaptive],
        robust=robust,
        noise_bound=ph.noise,
        corruptions=None
        if corr is None
        else CorruptionSetting(
            tuple(corr.types) if corr.types else None, tuple(corr.severities), corr.seed
        ),
        batch_size=ph.batch_size,
        seed=ph.seed,
        progress=progress,
    )


def measure(
    model: Any,
    run: RunPlan,
    spec: StudySpec,
    outcome: RunOutcome,
    *,
    trained_accuracy: float | None = None,
    trained_n: int | None = None,
    progress: bool = False,
) -> None:
    """Everything a study measures on a run's model, trained or loaded, into ``outcome``:
    the evaluation's attacks (escalated where flagged) and their per-point results, the
    run's health, the probes and the post-hoc sweep (the module doc lists the names).

    Args:
        model: the run's model, on its device.
        trained_accuracy, trained_n: the test accuracy training measured and on how many
            points (None: all the test split) — the health's fallback when the evaluation
            has no attack to give the clean accuracy.
    """
    from robustscope import attacks, data, probes

    name, root, params = run.data()
    test = data.load(name, "test", root=root, **params)

    t0 = time.perf_counter()
    ev = spec.evaluation
    x, y = test.x[: ev.n], test.y[: ev.n]
    points: dict[str, np.ndarray] = {}
    for i, atk in enumerate(ev.attacks):
        curve = attacks.evaluate(
            model,
            x,
            y,
            atk.attack,
            atk.eps,
            norm=atk.norm,
            batch_size=ev.batch_size,
            seed=ev.seed,
            checks=ev.checks and i == 0,
            **atk.params,
        )
        outcome.metrics[vocab.CLEAN_ACCURACY] = curve.clean_accuracy
        outcome.attacks.append(attack_result(curve, atk.key()))
        points |= per_point(curve, atk.key())
        second = escalation.escalate(model, x, y, curve, atk, ev)
        if second is not None:
            label = vocab.escalation_label(atk.key(), second.attack)
            outcome.attacks.append(attack_result(second, label, escalates=atk.key()))
            points |= per_point(second, label)
    if points:
        outcome.probes.append(ProbeOutput(vocab.POINTS_PROBE, {}, points, 0.0))
    outcome.timings["attacks"] = time.perf_counter() - t0
    clean = outcome.metrics.get(vocab.CLEAN_ACCURACY)
    tested = min(len(test), trained_n or len(test))  # the history's test set
    outcome.health = assess(
        clean_accuracy=clean if clean is not None else trained_accuracy,
        n=len(x) if clean is not None else tested,
        classes=test.num_classes,
        history=outcome.history,
        method=run.method,
        eps=run.eps,
        method_params=run.settings().get("method_params"),
    )

    t0 = time.perf_counter()
    ps = spec.probes
    if ps.run:
        train_ds = None
        if ps.train_n > 0:
            head = data.load(name, "train", root=root, **params).head(ps.train_n)
            train_ds = (head.x, head.y)
        probe_data = probes.ProbeData(test=(test.x[: ps.n], test.y[: ps.n]), train=train_ds)
        for entry in ps.run:
            t1 = time.perf_counter()
            options = probe_options(entry.name, entry.options, run)
            res = probes.run_probe(entry.name, model, probe_data, **options)
            outcome.probes.append(
                ProbeOutput(entry.name, res.scalars(), res.arrays(), time.perf_counter() - t1)
            )
    outcome.timings["probes"] = time.perf_counter() - t0

    if spec.posthoc is not None and _posthoc_selects(spec.posthoc.runs, run):
        t0 = time.perf_counter()
        res = posthoc_sweep(model, spec, test, run, progress=progress)
        outcome.probes.append(
            ProbeOutput(vocab.POSTHOC_PROBE, res.scalars(), res.arrays(), time.perf_counter() - t0)
        )
        outcome.timings["posthoc"] = time.perf_counter() - t0


def _posthoc_selects(runs: str, run: RunPlan) -> bool:
    """Whether the spec's post-hoc sweep (``posthoc.runs``) takes ``run``: ``all``, or
    ``standard`` — the runs trained at ε = 0 and the loaded models of unknown training (the
    models a user brings to robustify)."""
    return runs == "all" or run.eps == 0 or (run.source is not None and run.eps != run.eps)


def execute_run(
    run: RunPlan,
    spec: StudySpec,
    run_dir: str | Path,
    *,
    progress: bool = False,
) -> RunOutcome:
    """Train (or load), attack and probe one run (see the module doc); never raises for a
    run's failure.

    Args:
        run: the run to execute.
        spec: its study (evaluation and probe settings).
        run_dir: the run's directory (checkpoints; resumed from when present); unused by a
            loaded run, whose ``checkpoint`` is its file.
        progress: show training progress bars.
    """
    from robustscope import plugins
    from robustscope.studies.store import collect_provenance
    from robustscope.training import train

    plugins.load()  # tracked probes as measurements (also in a Ray worker's process)
    outcome = RunOutcome(run_id=run.run_id, checkpoint=str(run_dir))
    try:
        outcome.provenance = collect_provenance(run.device, run.settings())
        if run.source is not None:
            outcome.checkpoint = run.source.path
            t0 = time.perf_counter()
            model, meta = load_model(run.source)
            outcome.timings["load"] = time.perf_counter() - t0
            history = training_history(run.source.path, meta)
            trained_n = run.source.training.get("test_subset") if history else None
        else:
            assert run.config is not None  # a run without a source is trained
            t0 = time.perf_counter()
            result = train(run.config, run_dir, resume=True, progress=progress, log=None)
            outcome.timings["train"] = time.perf_counter() - t0
            outcome.stop_reason = result.stop_reason
            model, history = result.model, [dict(row) for row in result.history]
            trained_n = run.config.test_subset
        final = _record_history(outcome, history)
        measure(
            model,
            run,
            spec,
            outcome,
            trained_accuracy=final.get("test_accuracy"),
            trained_n=trained_n,
            progress=progress,
        )
    except Exception as exc:  # a failed run is reported, not fatal to the study
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        outcome.ok = False
        outcome.error = f"{type(exc).__name__}: {exc}\n{tail}"
    return outcome
