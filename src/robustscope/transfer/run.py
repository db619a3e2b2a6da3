"""Linear transferability (terzi2021 "Transferability Experiments": Tables 1–3, Figs. 3, 7).

For every backbone (standard and adversarially trained models of one source task) and every
target dataset: freeze the backbone, extract the features of the first ``n_train`` training
and ``n_test`` test examples of the target (through the :mod:`robustscope.data.adapt`
adapter from the target's shape to the backbone's), fit a new multinomial logistic-regression
head on the training features (:mod:`robustscope.transfer.head`), and measure its accuracy on
the test features — terzi2021's transfer accuracy.

Beside it:

* **task distance** (:mod:`robustscope.transfer.distance`): Cui et al.'s EMD from the source's
  first ``n_train`` training examples to each target's, all in the feature space of ONE model
  (``feature_model``, default the reference = the first model given, which should be the
  standard one), so every target is placed on one axis whatever backbone is transferred;
* **the gap correlation** (terzi2021 Figs. 3, 7: "the distance correlates well with the
  accuracy gap between robust and standard"): for every model other than the reference, its
  gap ``acc(model, target) − acc(reference, target)`` against the distances, Spearman's ρ
  and Pearson's r over the targets — NaN with a note for fewer than 3 targets or a constant
  series;
* **robustness of the transferred classifier** (terzi2021 Lemma 0.8 and "Robustness of
  fine-tuned models"): the PGD accuracy of :class:`TransferredClassifier` =
  ``head ∘ model.features ∘ adapter`` on the target's test examples, attacked in the target's
  own pixel space and box;
* the source accuracy of every model with its own head (the other side of the trade-off).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from robustscope import data
from robustscope.attacks import evaluate as attack_evaluate
from robustscope.data.adapt import Adapter, adapter_for
from robustscope.data.box import Box
from robustscope.data.dataset import ArrayDataset
from robustscope.device import model_device
from robustscope.params import parse_eps_list
from robustscope.transfer.distance import TaskDistance, task_distance
from robustscope.transfer.errors import TransferError
from robustscope.transfer.features import extract_features
from robustscope.transfer.head import LinearHead, fit_head

__all__ = [
    "GapCorrelation",
    "TransferCell",
    "TransferResult",
    "TransferredClassifier",
    "gap_correlation",
    "transfer",
]


class TransferredClassifier(nn.Module):
    """``head(backbone.features(adapter(x)))``: a frozen backbone with a new linear head, on
    the target's inputs (terzi2021's ``A₂ f_w(·) + b₂``). It declares the target's input box
    (``input_box``), so the lab's attacks run on it in the target's pixel space. The backbone
    is the caller's module, shared (not copied); the attacks freeze it and restore its mode."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, adapter: Adapter, box: Box):
        super().__init__()
        self.backbone = backbone
        self.head = head.to(model_device(backbone))
        self.adapter = adapter
        self.input_box = box

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(self.adapter(x))  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class TransferCell:
    """One backbone transferred to one target (terzi2021 Tables 1–3: one entry).

    Attributes:
        model, target: names.
        accuracy: the new head's accuracy on the target's first ``n_test`` test examples.
        train_accuracy: its accuracy on the ``n_train`` examples it was fitted on.
        n_train, n_test: examples used.
        feature_dim: the backbone's representation size.
        head: the fit's record (:meth:`LinearHead.to_dict`).
        adapter: the input adapter's record (:meth:`Adapter.to_dict`).
        robust: ε → PGD accuracy of the transferred classifier on the test examples (None
            when no ε was asked for); ε in the target's pixel units of ``pgd["norm"]``.
        pgd: the attack's settings and gradient-masking flags (empty without ``robust``).
    """

    model: str
    target: str
    accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    feature_dim: int
    head: dict[str, Any]
    adapter: dict[str, Any]
    robust: dict[float, float] | None = None
    pgd: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "robust"}
        out["robust"] = (
            None
            if self.robust is None
            else [{"eps": e, "accuracy": a} for e, a in self.robust.items()]
        )
        return out


@dataclass(frozen=True)
class GapCorrelation:
    """How one model's transfer-accuracy gap over the reference follows the task distance
    (terzi2021 Figs. 3, 7).

    Attributes:
        model, reference: the compared model and the reference (standard) one.
        targets: in the order of ``distances`` and ``gaps``.
        distances: the task distance of each target (one feature space, module doc).
        gaps: ``acc(model) − acc(reference)`` on each target.
        spearman, pearson: the correlations over targets (NaN: see ``note``).
        note: why a correlation is NaN ('' when both are numbers).
    """

    model: str
    reference: str
    targets: tuple[str, ...]
    distances: tuple[float, ...]
    gaps: tuple[float, ...]
    spearman: float
    pearson: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _constant(v: np.ndarray) -> bool:
    """Equal up to float rounding (accuracy differences like 0.3 − 0.2 vs 0.1)."""
    return bool(np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())))


def gap_correlation(
    model: str,
    reference: str,
    targets: Sequence[str],
    distances: Sequence[float],
    gaps: Sequence[float],
) -> GapCorrelation:
    """Spearman's ρ and Pearson's r between ``distances`` and ``gaps`` over the targets;
    NaN with a note when there are fewer than 3 targets or either series is constant."""
    d = np.asarray(distances, dtype=np.float64)
    g = np.asarray(gaps, dtype=np.float64)
    note = ""
    if len(d) < 3:
        note = f"{len(d)} target(s): a correlation needs at least 3 (add --targets)"
    elif not (np.isfinite(d).all() and np.isfinite(g).all()):
        note = "a distance or gap is not finite"
    elif _constant(d) or _constant(g):
        note = "the distances or the gaps are constant over the targets: no correlation"
    rho = r = math.nan
    if not note:
        rho = float(stats.spearmanr(d, g).statistic)
        r = float(stats.pearsonr(d, g).statistic)
    return GapCorrelation(
        model, reference, tuple(targets), tuple(map(float, d)), tuple(map(float, g)), rho, r, note
    )


@dataclass(frozen=True)
class TransferResult:
    """Linear transfer of several backbones from one source to several targets (terzi2021
    Tables 1–3, Figs. 3 and 7; module doc).

    Attributes:
        source: the dataset the backbones were trained on.
        targets: the target datasets, in the order given.
        models: the backbones' names, in the order given.
        reference: the model the gaps are taken against (the standard one).
        feature_model: the model whose feature space the distances are measured in.
        settings: n_train, n_test, l2, solver, adapter mode, PGD settings.
        source_accuracy: model → its own accuracy on the source's first n_test test examples.
        cells: one per model × target, model-major.
        distances: one per target.
        correlations: one per model other than the reference.
        seconds: wall time.
    """

    source: str
    targets: tuple[str, ...]
    models: tuple[str, ...]
    reference: str
    feature_model: str
    settings: dict[str, Any]
    source_accuracy: dict[str, float]
    cells: tuple[TransferCell, ...]
    distances: tuple[TaskDistance, ...]
    correlations: tuple[GapCorrelation, ...]
    seconds: float

    def cell(self, model: str, target: str) -> TransferCell:
        for c in self.cells:
            if c.model == model and c.target == target:
                return c
        raise TransferError(f"no transfer of model {model!r} to target {target!r} in this result")

    def distance(self, target: str) -> float:
        for d in self.distances:
            if d.target == target:
                return d.distance
        raise TransferError(f"no distance to target {target!r} in this result")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "targets": list(self.targets),
            "models": list(self.models),
            "reference": self.reference,
            "feature_model": self.feature_model,
            "settings": self.settings,
            "source_accuracy": self.source_accuracy,
            "cells": [c.to_dict() for c in self.cells],
            "distances": [d.to_dict() for d in self.distances],
            "correlations": [c.to_dict() for c in self.correlations],
            "seconds": self.seconds,
        }


def _input_shape(model: nn.Module, name: str) -> tuple[int, ...]:
    spec = getattr(model, "spec", None)
    shape = getattr(spec, "input_shape", None)
    if shape is None:
        raise TransferError(
            f"model {name!r} records no input shape (model.spec.input_shape); pass a robustscope "
            "Classifier (models.create or checkpoint.load)"
        )
    return tuple(int(s) for s in shape)


@torch.no_grad()
def _own_accuracy(model: nn.Module, ds: ArrayDataset, adapter: Adapter, batch_size: int) -> float:
    device = model_device(model)
    was = model.training
    model.eval()
    try:
        hits = 0
        for i in range(0, len(ds), batch_size):
            x = adapter(ds.x[i : i + batch_size].to(device))
            hits += int((model(x).argmax(1).cpu() == ds.y[i : i + batch_size]).sum())
    finally:
        model.train(was)
    return hits / len(ds) if len(ds) else math.nan


def transfer(
    models: Mapping[str, nn.Module],
    source: str,
    targets: Sequence[str],
    *,
    n_train: int = 5000,
    n_test: int = 1000,
    l2: float = 1e-4,
    solver: str = "lbfgs-torch",
    adapter_mode: str = "resize",
    reference: str | None = None,
    feature_model: str | None = None,
    pgd_eps: Sequence[float | str] | str | None = None,
    pgd_norm: str = "linf",
    pgd_steps: int = 20,
    pgd_checks: bool = False,
    batch_size: int = 500,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    model_keys: Mapping[str, str] | None = None,
    data_root: str | Path | None = None,
) -> TransferResult:
    """Transfer every backbone of ``models`` from ``source`` to each of ``targets`` by a new
    linear head (module doc).

    Args:
        models: name → robustscope ``Classifier`` (``features``, ``spec.input_shape``); the
            first is the reference (standard) model unless ``reference`` says otherwise.
        source: the dataset the models were trained on (for the distances and the source
            accuracy).
        targets: dataset names to transfer to.
        n_train, n_test: the first examples of each target's train / test split (the source's
            first ``n_train`` training examples enter the distances).
        l2, solver: the head's fit (:func:`~robustscope.transfer.head.fit_head`).
        adapter_mode: ``"resize"`` or ``"pad"`` (:func:`~robustscope.data.adapt.adapter_for`).
        reference: the model the gaps are taken against (default: the first).
        feature_model: the model whose features measure every distance (default: the
            reference).
        pgd_eps: radii for the transferred classifiers' PGD accuracy (None: not attacked).
        pgd_norm, pgd_steps, pgd_checks: the attack's norm, iterations and whether to run
            the gradient-masking checks.
        batch_size: inputs per forward pass and per attack batch.
        seed: the attack's seed.
        cache_dir: the feature cache (:mod:`robustscope.transfer.features`).
        model_keys: name → cache key of the weights (e.g. the checkpoint file's SHA-256).
        data_root: a folder holding the dataset files.

    Raises:
        TransferError, DataError: no models, an unknown model name, an unknown dataset,
            shapes no adapter rule covers, bad sizes.
    """
    t0 = time.perf_counter()
    names = list(models)
    if not names:
        raise TransferError("transfer: no models; pass at least one checkpoint")
    if not targets:
        raise TransferError("transfer: no targets; pass --targets NAME[,NAME...]")
    if len(set(targets)) != len(targets):
        raise TransferError(f"transfer: a target is repeated in {list(targets)}")
    for what, size in (("n_train", n_train), ("n_test", n_test), ("batch_size", batch_size)):
        if int(size) < 1:
            raise TransferError(f"transfer: {what} must be ≥ 1, got {size}")
    reference = reference or names[0]
    feature_model = feature_model or reference
    for what, name in (("reference", reference), ("feature_model", feature_model)):
        if name not in models:
            raise TransferError(
                f"transfer: {what} {name!r} is not among the models ({', '.join(names)})"
            )
    eps = parse_eps_list(pgd_eps, "--pgd-eps") if pgd_eps is not None else None

    # every dataset's facts and every adapter before any work: bad input fails at once
    facts = {name: data.info(name) for name in [source, *targets]}
    shapes = {m: _input_shape(models[m], m) for m in names}
    adapters = {
        (m, d): adapter_for(facts[d].input_shape, shapes[m], mode=adapter_mode)
        for m in names
        for d in facts
    }

    splits: dict[tuple[str, str], ArrayDataset] = {}

    def split(name: str, which: str) -> ArrayDataset:
        if (name, which) not in splits:
            n = n_train if which == "train" else n_test
            splits[name, which] = data.load(name, which, root=data_root).head(n)
        return splits[name, which]

    feats: dict[tuple[str, str, str], torch.Tensor] = {}

    def features(model: str, name: str, which: str) -> torch.Tensor:
        if (model, name, which) not in feats:
            feats[model, name, which] = extract_features(
                models[model],
                split(name, which),
                adapter=adapters[model, name],
                batch_size=batch_size,
                cache_dir=cache_dir,
                model_key=(model_keys or {}).get(model),
            )
        return feats[model, name, which]

    source_accuracy = {
        m: _own_accuracy(models[m], split(source, "test"), adapters[m, source], batch_size)
        for m in names
    }

    cells: list[TransferCell] = []
    for m in names:
        for t in targets:
            train_ds, test_ds = split(t, "train"), split(t, "test")
            z_train, z_test = features(m, t, "train"), features(m, t, "test")
            head: LinearHead = fit_head(
                z_train, train_ds.y, l2=l2, solver=solver, num_classes=facts[t].num_classes
            )
            robust, pgd = None, {}
            if eps is not None:
                clf = TransferredClassifier(models[m], head.linear(), adapters[m, t], test_ds.box)
                curve = attack_evaluate(
                    clf,
                    test_ds.x,
                    test_ds.y,
                    "pgd",
                    eps,
                    norm=pgd_norm,
                    steps=pgd_steps,
                    batch_size=batch_size,
                    seed=seed,
                    checks=pgd_checks,
                )
                robust = curve.robust_accuracy
                pgd = {
                    "norm": pgd_norm,
                    "steps": pgd_steps,
                    "clean_accuracy": curve.clean_accuracy,
                    "flags": [f.name for f in curve.flags],
                }
            cells.append(
                TransferCell(
                    model=m,
                    target=t,
                    accuracy=head.accuracy(z_test, test_ds.y),
                    train_accuracy=head.accuracy(z_train, train_ds.y),
                    n_train=len(train_ds),
                    n_test=len(test_ds),
                    feature_dim=int(z_train.shape[1]),
                    head=head.to_dict(),
                    adapter=adapters[m, t].to_dict(),
                    robust=robust,
                    pgd=pgd,
                )
            )

    z_source = features(feature_model, source, "train")
    y_source = split(source, "train").y
    distances = tuple(
        task_distance(
            z_source,
            y_source,
            features(feature_model, t, "train"),
            split(t, "train").y,
            source=source,
            target=t,
            feature_model=feature_model,
        )
        for t in targets
    )
    acc = {(c.model, c.target): c.accuracy for c in cells}
    correlations = tuple(
        gap_correlation(
            m,
            reference,
            targets,
            [d.distance for d in distances],
            [acc[m, t] - acc[reference, t] for t in targets],
        )
        for m in names
        if m != reference
    )
    settings = {
        "n_train": n_train,
        "n_test": n_test,
        "l2": l2,
        "solver": solver,
        "adapter_mode": adapter_mode,
        "pgd_eps": eps,
        "pgd_norm": pgd_norm if eps is not None else None,
        "pgd_steps": pgd_steps if eps is not None else None,
        "seed": seed,
    }
    return TransferResult(
        source=source,
        targets=tuple(targets),
        models=tuple(names),
        reference=reference,
        feature_model=feature_model,
        settings=settings,
        source_accuracy=source_accuracy,
        cells=tuple(cells),
        distances=distances,
        correlations=correlations,
        seconds=time.perf_counter() - t0,
    )
