"""The planner: a :class:`StudySpec` expanded into runs, each with a stable id.

One run per (model, method, ε, training-set size, seed); ε = 0 of any adversarial method is the same
standard-training run (planned once). A run's id is a hash of everything that determines
its weights (its :class:`~robustscope.training.TrainConfig` without the fields that may
change on resume, such as ``device`` or tracking), so re-running a study finds its runs
again, and changing a training option makes a new run rather than resuming an old one.

A spec's ``train_sizes`` sets each run's ``train_subset`` (the first N training examples) to
each size in turn (tsipras2019 Fig. 6); without it there is one size (the spec's
``train.train_subset``, if any) and the runs — configs, ids, labels — are as before.

A spec's ``checkpoints`` add one run per checkpoint file, not trained but loaded
(:mod:`robustscope.studies.loaded`: its id is a hash of the file's content and its label;
``config`` is None and ``source`` says where the model comes from); they follow the trained
runs.

If the study tracks ``pgd`` during training without an ε, every run tracks it at the
largest ε of the study's grids, so that the tracked robust accuracies are comparable.

A probe option ``eps: train`` means each run's own training ε (:func:`probe_options`,
applied where the probes run): wen2020 compares models by the adversarial generalization
gap at the strength each was trained with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from robustscope.studies.loaded import LoadedModel, loaded_models
from robustscope.studies.spec import (
    MethodSpec,
    ModelSpecEntry,
    StudyError,
    StudySpec,
    sweep_param,
)
from robustscope.studies.store.vocab import LOADED
from robustscope.training.config import TrainConfig

__all__ = ["TRAIN_EPS", "RunPlan", "config_hash", "plan", "probe_options"]

#: the probe-option value that stands for the run's own training ε
TRAIN_EPS = "train"


@dataclass(frozen=True)
class RunPlan:
    """One member of a study's family.

    Attributes:
        run_id: 12 hex digits of :func:`config_hash` of ``config`` (a loaded run: of its
            file's content and label, :mod:`robustscope.studies.loaded`).
        label: human-readable, e.g. ``"cnn pgd ε=0.1 seed=0"``.
        model: the model's display name in the study.
        method: the training method (``standard`` for ε = 0; ``external`` for a loaded
            model the lab did not train).
        family: the method of the spec entry this run belongs to (``pgd`` for its ε = 0 too).
        eps: the training strength (ε, or the swept parameter's value); NaN: unknown.
        norm: the training threat model's norm (None: unknown).
        seed: the run's seed.
        config: the full training configuration; None for a loaded run.
        train_size: the size of the spec's ``train_sizes`` axis this run trains on (its
            ``config.train_subset``); None when the study has no such axis.
        source: where a loaded run's model comes from; None for a run the study trains.
    """

    run_id: str
    label: str
    model: str
    method: str
    family: str
    eps: float
    norm: str | None
    seed: int
    config: TrainConfig | None
    train_size: int | None = None
    source: LoadedModel | None = None

    @property
    def device(self) -> str:
        """The device the run trains or is measured on."""
        return self.source.device if self.source is not None else self._config.device

    @property
    def _config(self) -> TrainConfig:
        assert self.config is not None  # a run without a source is trained
        return self.config

    def settings(self) -> dict[str, Any]:
        """What determines the run's model, as JSON: its training configuration, or the
        training configuration its checkpoint records (``{}``: none)."""
        if self.source is not None:
            return dict(self.source.training)
        return self._config.model_dump(mode="json")

    def data(self) -> tuple[str, str | None, dict[str, Any]]:
        """The run's dataset: name, root folder (None: the default places) and options."""
        if self.source is not None:
            s = self.source
            return s.dataset, s.data_root, dict(s.dataset_params)
        c = self._config
        return c.dataset, c.data_root, dict(c.dataset_params)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "run_id": self.run_id,
            "label": self.label,
            "model": self.model,
            "method": self.method,
            "family": self.family,
            "eps": None if self.eps != self.eps else self.eps,  # JSON has no NaN
            "norm": self.norm,
            "seed": self.seed,
            "config": self.settings(),
        }
        if self.source is not None:
            out[LOADED] = self.source.to_dict()
        return out


def config_hash(config: TrainConfig) -> str:
    """SHA-256 (hex) of the fields of ``config`` that determine the trained weights."""
    fields = {
        k: v
        for k, v in config.model_dump(mode="json").items()
        if k not in TrainConfig.RESUMABLE_CHANGES
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def probe_options(probe: str, options: dict[str, Any], run: RunPlan) -> dict[str, Any]:
    """A probe entry's ``options`` for ``run``: ``eps: train`` becomes the run's training ε
    (``run.eps``; 0 for standard training), and, when the probe has a ``norm`` option not
    given, ``norm`` becomes the run's training norm. Other options are returned unchanged.

    Example:
        >>> spec = StudySpec(name="s", methods=[MethodSpec(method="pgd", eps=[0.1])])
        >>> probe_options("generalization_gap", {"attack": "pgd", "eps": "train"}, plan(spec)[0])
        {'attack': 'pgd', 'eps': 0.1, 'norm': 'linf'}
    """
    if options.get("eps") != TRAIN_EPS:
        return dict(options)
    if run.eps != run.eps:  # a loaded checkpoint without a recorded training ε
        raise StudyError(
            f"probes.run: {probe!r} has eps: {TRAIN_EPS}, but run {run.label!r} was loaded "
            "from a checkpoint that records no training ε; give the probe a number"
        )
    if sweep_param(run.method) != "eps":
        raise StudyError(
            f"probes.run: {probe!r} has eps: {TRAIN_EPS}, but run {run.label!r} trains with "
            f"{run.method!r}, whose strength is not an ε; give the probe a number"
        )
    from robustscope.probes import get_probe

    out = {**options, "eps": run.eps}
    if "norm" not in options and "norm" in get_probe(probe).options:
        out["norm"] = run.norm
    return out


def plan(spec: StudySpec, *, device: str = "auto") -> list[RunPlan]:
    """The runs of ``spec`` in a stable order (model, method, ε, training-set size, seed),
    duplicates merged, then its loaded checkpoints in the spec's order.

    Raises:
        StudyError: a training option fails validation, or a checkpoint is refused
            (:mod:`robustscope.studies.loaded`).
    """
    max_eps = max((e for m in spec.methods for e in m.eps), default=0.0)
    base: dict[str, Any] = dict(spec.train)
    base["device"] = device
    track_params = {k: dict(v) for k, v in base.get("track_params", {}).items()}
    if "pgd" in base.get("track", []) and "eps" not in track_params.get("pgd", {}):
        if max_eps <= 0:
            raise StudyError(
                "train.track: 'pgd' needs an ε; the study's grids are all 0, so set "
                "train.track_params.pgd.eps"
            )
        track_params.setdefault("pgd", {})["eps"] = max_eps
    if track_params:
        base["track_params"] = track_params
    sizes: list[int | None] = list(spec.train_sizes) if spec.train_sizes else [None]
    runs: dict[str, RunPlan] = {}
    for entry in spec.models:
        for method in spec.methods:
            for eps in method.eps:
                for size in sizes:
                    for seed in spec.seeds:
                        run = _run(spec, base, entry, method, eps, size, seed)
                        runs.setdefault(run.run_id, run)
    for run_id, source, at in loaded_models(spec, device):
        runs.setdefault(
            run_id,
            RunPlan(
                run_id=run_id,
                label=at.label,
                model=at.model,
                method=at.method,
                family=at.family,
                eps=at.eps,
                norm=at.norm,
                seed=at.seed,
                config=None,
                source=source,
            ),
        )
    return list(runs.values())


def _run(
    spec: StudySpec,
    base: dict[str, Any],
    entry: ModelSpecEntry,
    method: MethodSpec,
    eps: float,
    size: int | None,
    seed: int,
) -> RunPlan:
    """The run of one point of the grid (``size`` None: no training-set-size axis)."""
    name = "standard" if eps == 0 and method.method != "standard" else method.method
    params: dict[str, Any] = {}
    if name != "standard":
        params = {**method.params, sweep_param(name): eps}
        if method.norm != "linf":
            params["norm"] = method.norm
    fields = {**base, **entry.train}
    if size is not None:
        fields["train_subset"] = size
    try:
        config = TrainConfig(
            **fields,
            dataset=spec.dataset,
            dataset_params=spec.dataset_params,
            model=entry.model,
            model_kwargs=entry.model_kwargs,
            method=name,
            method_params=params,
            seed=seed,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        where = "train_sizes" if field == "train_subset" and size is not None else f"train.{field}"
        raise StudyError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    eps_text = f"{eps:g}" if name != "standard" else "0"
    size_text = "" if size is None else f" n={size}"
    return RunPlan(
        run_id=config_hash(config)[:12],
        label=f"{entry.display()} {name} ε={eps_text}{size_text} seed={seed}",
        model=entry.display(),
        method=name,
        family=method.method,
        eps=eps,
        norm=method.norm,
        seed=seed,
        config=config,
        train_size=size,
    )
