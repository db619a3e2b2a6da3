"""Runs of a study that are not trained: checkpoints listed in the spec's ``checkpoints``.

Each entry of ``checkpoints`` (a path, a run directory or a glob; see
:mod:`robustscope.studies.spec`) expands to checkpoint files (:func:`expand`); every file is
checked against the study's dataset before anything runs (:func:`checked_meta`) and becomes one
:class:`LoadedModel`, which the planner makes a run (:func:`robustscope.studies.plan.plan`).
The executor loads its model with :func:`robustscope.checkpoint.load` (:func:`load_model`)
and measures it as it measures a trained one (:func:`robustscope.studies.execute.measure`).

**Run id.** The first 12 hex digits of the SHA-256 of the file's SHA-256, the run's label
and the study's dataset (with its options): re-running the study skips a checkpoint already
measured, a file whose content changed is a new run (measured again; the study drops the
old one, :func:`robustscope.studies.record.register_study`), and the same file under two
labels is two runs.

**Where a run stands in the report.** A checkpoint written by the lab's training
(:func:`robustscope.training.train`: its metadata holds the training configuration) takes
its model, method, ε (the method's ``eps``, ``sigma`` for ``noise``; 0 for ``standard``),
norm, seed and training-set size (``train_subset``) from that configuration, so it joins the series of its
model and method like a run the study trained (post-hoc transforms recorded in the file
make the family ``<method>+<transform>…``). Any other checkpoint (imported weights:
``robustscope import``) is ``method = family = "external"`` with **no training ε** (NaN),
no norm and seed 0 (a placeholder): the report shows it as a point of its own, labelled —
on the trade-off frontier and in the robust accuracy against the attack's ε — and leaves it
out of every figure and claim along the training ε, saying so once.

**History.** A checkpoint the lab trained usually sits in its run directory beside
``history.json`` (one row per epoch, :mod:`robustscope.training.rundir`). The study reads
it as the run's training history — curves, tracked probes, the health rule's loss test —
when its last row is exactly the ``metrics`` the checkpoint recorded at save time (so the
file describes these weights, not a later epoch's) and no post-hoc transform is recorded
(:func:`training_history`); otherwise the run has no history, as an imported model.

**Refused**, with an error naming the file and the field: a checkpoint whose recorded
``dataset`` (or the entry's ``dataset``) is not the study's, whose training
``dataset_params`` differ from the study's, or whose ``model.num_classes``,
``model.input_shape`` or ``model.box`` differ from the dataset's; and a wrapped module's
checkpoint (:func:`robustscope.models.wrap`), whose architecture is Python code no study
can rebuild: import its weights onto a registered architecture (``robustscope import``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustscope.errors import RobustscopeError
from robustscope.studies.spec import (
    CheckpointEntry,
    ModelSpecEntry,
    StudyError,
    StudySpec,
    load_spec,
    sweep_param,
)

if TYPE_CHECKING:
    from robustscope.checkpoint import CheckpointMeta
    from robustscope.models import Classifier

__all__ = [
    "EXTERNAL",
    "LoadedModel",
    "Placement",
    "checked_meta",
    "checkpoint_study",
    "expand",
    "load_model",
    "loaded_models",
    "recorded_dataset",
    "training_history",
]

#: the method and family of a loaded run whose checkpoint records no training by the lab
EXTERNAL = "external"


@dataclass(frozen=True)
class LoadedModel:
    """Where a loaded run's model comes from and the data it is measured on.

    Attributes:
        path: the checkpoint file (absolute).
        sha256: the SHA-256 of its bytes when planned (checked again at load).
        dataset, dataset_params, data_root: the study's dataset (``data_root``: its
            ``train.data_root``).
        device: the device it is measured on.
        training: the training configuration the file records ({}: not trained by the lab).
        transforms: the names of the post-hoc transforms the file records, in order.
    """

    path: str
    sha256: str
    dataset: str
    dataset_params: dict[str, Any]
    data_root: str | None
    device: str
    training: dict[str, Any]
    transforms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """What the store records of it (the run config's ``loaded``)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "dataset": self.dataset,
            "transforms": list(self.transforms),
        }


@dataclass(frozen=True)
class Placement:
    """A loaded run's place among the study's runs (the module doc): its label, model,
    method, family, training ε (NaN: none), norm (None: none) and seed."""

    label: str
    model: str
    method: str
    family: str
    eps: float
    norm: str | None
    seed: int


def _name(path: Path) -> str:
    """A checkpoint's default label: its directory's name for a run directory's model file,
    else its stem."""
    from robustscope.checkpoint import MODEL_FILE

    return path.parent.name if path.name == MODEL_FILE and path.parent.name else path.stem


def expand(entry: CheckpointEntry, where: str) -> list[tuple[Path, str]]:
    """The checkpoint files of one ``checkpoints`` entry with their labels, in path order:
    the path itself (a run directory: its ``model.safetensors``), or every match of a glob
    (``**`` included; directories without a ``model.safetensors`` are passed over).

    Raises:
        StudyError: naming ``where`` (``checkpoints.<i>``) when nothing is found.
    """
    from robustscope.checkpoint import MODEL_FILE, resolve
    from robustscope.errors import CheckpointError

    if not any(c in entry.path for c in "*?["):  # a path, not a glob
        try:
            path = resolve(Path(entry.path).expanduser())
        except CheckpointError as exc:
            raise StudyError(f"{where}: {exc}") from None
        return [(path.resolve(), entry.label or _name(path))]
    found: dict[Path, str] = {}
    for match in sorted(glob.glob(str(Path(entry.path).expanduser()), recursive=True)):
        try:
            path = resolve(match)
        except CheckpointError:  # a directory without a model file
            continue
        name = _name(path)
        found.setdefault(path.resolve(), f"{entry.label}/{name}" if entry.label else name)
    if not found:
        raise StudyError(
            f"{where}: {entry.path!r} matches no checkpoint file (nor a run directory holding "
            f"{MODEL_FILE}); paths are relative to the current directory"
        )
    return list(found.items())


def _transform_names(meta: CheckpointMeta) -> list[str]:
    """The names of the post-hoc transforms ``meta`` records, in order."""
    return [str(t.get("name", "?")) for t in meta.transforms]


def _refuse(where: str, path: Path, field: str, what: str) -> StudyError:
    return StudyError(f"{where}: {path}: field '{field}' {what}")


def checked_meta(path: Path, entry: CheckpointEntry, spec: StudySpec, where: str) -> CheckpointMeta:
    """The metadata of a checkpoint the study is to load, checked against the study's
    dataset (the module doc says what is refused); the tensors are not read."""
    from robustscope import data
    from robustscope.checkpoint import read_meta
    from robustscope.models import WRAPPED

    try:
        meta = read_meta(path)
    except RobustscopeError as exc:
        raise StudyError(f"{where}: {exc}") from None
    if meta.model.name == WRAPPED:
        module = meta.model.kwargs.get("module", "a custom module")
        raise StudyError(
            f"{where}: {path} holds the weights of {module} wrapped with "
            "robustscope.models.wrap; its architecture is Python code the checkpoint does not "
            "record, so a study cannot rebuild it. Import the weights onto a registered "
            "architecture ('robustscope import WEIGHTS --model NAME --dataset "
            f"{spec.dataset} --out CKPT.safetensors', robustscope.checkpoint.import_weights) "
            "and list that file"
        )
    recorded = meta.dataset or None
    if recorded and entry.dataset and recorded != entry.dataset:
        raise _refuse(
            where, path, "dataset", f"records {recorded!r} but the entry gives {entry.dataset!r}"
        )
    known = recorded or entry.dataset
    if known and known != spec.dataset:
        raise _refuse(
            where,
            path,
            "dataset",
            f"records {known!r} but the study's dataset is {spec.dataset!r}: list it in a "
            f"study of {known!r}",
        )
    trained_with = meta.training.get("dataset_params")
    if meta.training.get("method") and (trained_with or {}) != spec.dataset_params:
        raise _refuse(
            where,
            path,
            "training.dataset_params",
            f"records {trained_with or {}} but the study's dataset_params are "
            f"{spec.dataset_params}",
        )
    info = data.info(spec.dataset, **spec.dataset_params)
    ms = meta.model
    for field, mine, theirs in (
        ("model.num_classes", ms.num_classes, info.num_classes),
        ("model.input_shape", tuple(ms.input_shape), tuple(info.input_shape)),
        ("model.box", ms.box, info.box),
    ):
        if mine != theirs:
            raise _refuse(
                where,
                path,
                field,
                f"is {mine} but the study's dataset {spec.dataset!r} has {theirs}: the "
                "model was not made for this dataset",
            )
    return meta


def _place(meta: CheckpointMeta, label: str, where: str) -> Placement:
    """The run's model, method, ε, ... from the checkpoint's recorded training (module doc)."""
    from robustscope.params import parse_eps

    training = meta.training
    transforms = _transform_names(meta)
    if not training.get("method"):
        model = ModelSpecEntry(model=meta.model.name, model_kwargs=meta.model.kwargs)
        return Placement(label, model.display(), EXTERNAL, EXTERNAL, math.nan, None, 0)
    method = str(training["method"])
    params = dict(training.get("method_params") or {})
    eps = 0.0
    if method != "standard":
        value = params.get(sweep_param(method))
        try:
            eps = math.nan if value is None else parse_eps(value, f"{where}: training ε")
        except RobustscopeError as exc:
            raise StudyError(str(exc)) from None
    entry = ModelSpecEntry(
        model=str(training.get("model", meta.model.name)),
        model_kwargs=dict(training.get("model_kwargs") or {}),
    )
    return Placement(
        label=label,
        model=entry.display(),
        method=method,
        family="+".join([method, *transforms]),
        eps=eps,
        norm=str(params.get("norm", "linf")),
        seed=int(training.get("seed", 0)),
    )


def _run_id(sha256: str, label: str, spec: StudySpec) -> str:
    key = {
        "checkpoint": sha256,
        "label": label,
        "dataset": spec.dataset,
        "dataset_params": spec.dataset_params,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def loaded_models(spec: StudySpec, device: str) -> list[tuple[str, LoadedModel, Placement]]:
    """``(run id, source, placement)`` of every checkpoint of ``spec.checkpoints``, in the
    spec's order (a file listed twice under one label is one run).

    Raises:
        StudyError: an entry that finds nothing, a checkpoint the study refuses (module
            doc), or two files under one label.
    """
    from robustscope.checkpoint import file_sha256

    out: dict[str, tuple[str, LoadedModel, Placement]] = {}
    labels: dict[str, Path] = {}
    for i, entry in enumerate(spec.checkpoints or []):
        where = f"checkpoints.{i}"
        for path, label in expand(entry, where):
            if labels.setdefault(label, path) != path:
                raise StudyError(
                    f"{where}: {path} and {labels[label]} are both labelled {label!r}: give "
                    "the entries labels (label: ...) that tell them apart"
                )
            meta = checked_meta(path, entry, spec, where)
            sha = file_sha256(path)
            source = LoadedModel(
                path=str(path),
                sha256=sha,
                dataset=spec.dataset,
                dataset_params=dict(spec.dataset_params),
                data_root=spec.train.get("data_root"),
                device=device,
                training=dict(meta.training),
                transforms=tuple(_transform_names(meta)),
            )
            run_id = _run_id(sha, label, spec)
            out.setdefault(run_id, (run_id, source, _place(meta, label, where)))
    return list(out.values())


def load_model(source: LoadedModel) -> tuple[Classifier, CheckpointMeta]:
    """The model of a loaded run, on its device, in eval mode, and its file's metadata.

    Raises:
        StudyError: the file changed since the study was planned (run the study again: it
            is then a new run), or cannot be loaded.
    """
    from robustscope.checkpoint import file_sha256, load
    from robustscope.device import resolve_device

    path = Path(source.path)
    if not path.is_file() or file_sha256(path) != source.sha256:
        raise StudyError(
            f"{path}: the checkpoint changed (or went away) after the study was planned; run "
            "the study again to measure its new content"
        )
    return load(path, device=resolve_device(source.device))


def training_history(path: str | Path, meta: CheckpointMeta | None = None) -> list[dict[str, Any]]:
    """The training history of the lab checkpoint at ``path`` (module doc; ``meta``: its
    metadata when already read), or ``[]`` when there is none that belongs to these
    weights."""
    from robustscope.checkpoint import read_meta
    from robustscope.io import read_json
    from robustscope.training.rundir import HISTORY_FILE

    beside = Path(path).parent / HISTORY_FILE
    if not beside.is_file():
        return []
    if meta is None:
        meta = read_meta(path)
    if meta.transforms or not meta.training or not meta.metrics:
        return []
    try:
        rows = read_json(beside)
    except (OSError, ValueError, RobustscopeError):
        return []
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return []
    same = json.dumps(rows[-1], sort_keys=True) == json.dumps(meta.metrics, sort_keys=True)
    return [dict(r) for r in rows] if same else []  # JSON text: NaN equals NaN


def recorded_dataset(patterns: list[str]) -> str:
    """The one dataset the checkpoints matched by ``patterns`` record.

    Raises:
        StudyError: none records a dataset, or they record several.
    """
    from robustscope.checkpoint import read_meta

    found: dict[str, Path] = {}
    for pattern in patterns:
        for path, _ in expand(CheckpointEntry(path=pattern), f"--checkpoints {pattern!r}"):
            try:
                name = read_meta(path).dataset
            except RobustscopeError as exc:
                raise StudyError(str(exc)) from None
            if name:
                found.setdefault(name, path)
    if len(found) != 1:
        seen = ", ".join(f"{n!r} ({p})" for n, p in found.items()) or "none"
        raise StudyError(
            f"the checkpoints record {'no dataset' if not found else 'several datasets'} "
            f"({seen}): pass --dataset NAME"
        )
    return next(iter(found))


def checkpoint_study(
    patterns: list[str], dataset: str | None = None, name: str = "checkpoints"
) -> StudySpec:
    """The spec of ``robustscope study --checkpoints …`` without a spec file: the
    checkpoints matched by ``patterns`` measured on ``dataset`` (default: the one they
    record, :func:`recorded_dataset`) with the evaluation and probes of the default preset
    (:data:`robustscope.studies.presets.DEFAULT_PRESET`); nothing is trained."""
    from robustscope.studies.presets import DEFAULT_PRESET, preset

    base = preset(DEFAULT_PRESET).model_dump(mode="json")
    return load_spec(
        {
            "name": name,
            "description": (
                f"Checkpoints measured with the evaluation and probes of the {DEFAULT_PRESET} "
                "preset; nothing trained."
            ),
            "dataset": dataset or recorded_dataset(patterns),
            "checkpoints": list(patterns),
            "evaluation": base["evaluation"],
            "probes": base["probes"],
        }
    )
