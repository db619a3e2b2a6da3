"""Tracking during training: named measurements on fixed held-out subsets, every N epochs.

A measurement is registered by name with a factory, like the objectives::

    @register_measure("clean", "accuracy and mean cross-entropy")
    def clean(config: TrainConfig) -> Measure:
        def measure(model, x, y) -> dict[str, float]: ...
        return measure

The factory receives the run's :class:`TrainConfig` and the options
``config.track_params[name]`` (so bad options fail before training starts); the
measurement maps a model and a fixed subset ``(x, y)`` to named scalars. The
:class:`Tracker` callback, built by the loop from ``config.track``, runs every listed
measurement on the first ``track_n`` training examples (un-augmented) and the first
``track_n`` test examples after every ``track_every``-th epoch and after the last one, and
adds the results to the epoch's history row as ``track/<split>/<name>_<key>``, e.g.
``track/test/pgd_accuracy``. The probes (a later layer) become measurements of the same
names (e.g. ``input_fisher``) when :func:`robustscope.plugins.load` registers them.

Measurements must leave the model as they found it (mode, parameters, BatchNorm
statistics) and must not draw from the global RNG (attacks take a ``seed``), so tracking
never changes the trained weights. A measure registered with ``data_independent=True`` (a
function of the weights alone, e.g. the ``layer_spectra`` probe) is computed once per tracked
epoch and its values are written under both splits' keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustscope.attacks import PGD
from robustscope.attacks import evaluate as attack_evaluate
from robustscope.data.dataset import ArrayDataset
from robustscope.errors import RobustscopeError, TrainingError
from robustscope.evaluation import cross_entropy, predict
from robustscope.params import parse_eps, parse_real
from robustscope.registry import Registry, first_line
from robustscope.training.config import TrainConfig

__all__ = [
    "MEASURES",
    "Measure",
    "MeasureFactory",
    "Tracker",
    "available_measures",
    "make_measure",
    "register_measure",
]

Measure = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, float]]
"""``measure(model, x, y) -> {key: value}`` on a fixed subset."""

MeasureFactory = Callable[..., Measure]
"""``factory(config, **options) -> Measure``."""


@dataclass(frozen=True)
class MeasureEntry:
    """A registered measurement: its factory and whether it reads the data at all."""

    factory: MeasureFactory
    data_independent: bool = False


#: every tracking measurement by name (the probes' are added by robustscope.plugins.load)
MEASURES: Registry[MeasureEntry] = Registry(
    "tracking measurement",
    error=TrainingError,
    describe=lambda entry: first_line(entry.factory),
)


def register_measure(
    name: str, doc: str = "", *, data_independent: bool = False
) -> Callable[[MeasureFactory], MeasureFactory]:
    """Register a measurement factory ``factory(config, **options) -> Measure`` under ``name``.

    ``data_independent``: the measure is a function of the weights alone (it is run once
    per tracked epoch, its values written under both splits' keys).
    """

    def deco(factory: MeasureFactory) -> MeasureFactory:
        MEASURES.register(name, MeasureEntry(factory, data_independent), doc=doc)
        return factory

    return deco


def available_measures() -> dict[str, str]:
    """Registered measurement names with a one-line description."""
    return MEASURES.available()


def make_measure(name: str, config: TrainConfig, **options: Any) -> Measure:
    """Build the measurement ``name``; unknown names or options are refused."""
    try:
        entry = MEASURES.get(name)
    except TrainingError as exc:
        raise TrainingError(
            f"{exc} (the probes become measurements when robustscope.plugins.load() runs; "
            "the CLI and studies call it)"
        ) from None
    try:
        return entry.factory(config, **options)
    except TypeError as exc:
        raise TrainingError(f"tracking {name!r}: bad options {options}: {exc}") from None


class Tracker:
    """The epoch callback running the tracking measurements (see the module doc).

    Args:
        measures: name → measurement, run in this order.
        subsets: split name (``"train"``, ``"test"``) → fixed ``(x, y)``.
        every: run after epochs ``every, 2·every, ...``.
        last_epoch: also run after this epoch (the run's last).
        weights_only: the measurements of the weights alone (run once per epoch, their
            values written under every split's keys).
    """

    name = "track"

    def __init__(
        self,
        measures: dict[str, Measure],
        subsets: dict[str, tuple[torch.Tensor, torch.Tensor]],
        every: int = 1,
        last_epoch: int | None = None,
        weights_only: frozenset[str] = frozenset(),
    ) -> None:
        self.measures = measures
        self.subsets = subsets
        self.every = every
        self.last_epoch = last_epoch
        self.weights_only = weights_only

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        train_ds: ArrayDataset,
        test_ds: ArrayDataset,
        device: torch.device,
    ) -> Tracker | None:
        """The tracker described by ``config.track*`` (None when nothing is tracked)."""
        if not config.track:
            return None
        unknown = set(config.track_params) - set(config.track)
        if unknown:
            raise TrainingError(
                f"track_params names {sorted(unknown)} but track is {config.track}; "
                "options are given per tracked measurement"
            )
        measures = {
            name: make_measure(name, config, **config.track_params.get(name, {}))
            for name in config.track
        }
        subsets = {}
        for split, ds in (("train", train_ds), ("test", test_ds)):
            head = ds.head(config.track_n)
            subsets[split] = (head.x.to(device), head.y.to(device))
        weights_only = frozenset(n for n in measures if MEASURES.get(n).data_independent)
        return cls(measures, subsets, config.track_every, config.epochs, weights_only)

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0 or epoch == self.last_epoch

    def __call__(self, model: nn.Module, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        if not self.due(epoch):
            return {}
        out: dict[str, Any] = {}
        once: dict[str, dict[str, Any]] = {}  # measures of the weights alone: one run a call
        for split, (x, y) in self.subsets.items():
            for name, measure in self.measures.items():
                if name in self.weights_only:
                    if name not in once:
                        once[name] = measure(model, x, y)
                    values = once[name]
                else:
                    values = measure(model, x, y)
                for key, value in values.items():
                    out[f"track/{split}/{name}_{key}"] = value
        return out


# --- built-in measurements -------------------------------------------------------------------


@register_measure("clean", "clean accuracy and mean cross-entropy")
def clean(config: TrainConfig, batch_size: int | None = None) -> Measure:
    """Clean ``accuracy`` and mean cross-entropy ``loss`` (model in eval mode).

    Args:
        config: the run's configuration (``eval_batch_size`` is the default batch size).
        batch_size: examples per forward pass.
    """
    bs = int(batch_size or config.eval_batch_size)

    @torch.no_grad()
    def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        was_training = model.training
        model.eval()
        correct, loss = 0, 0.0
        try:
            for s in range(0, len(x), bs):
                logits = model(x[s : s + bs])
                loss += float(cross_entropy(logits, y[s : s + bs], reduction="sum"))
                correct += int((predict(logits) == y[s : s + bs]).sum())
        finally:
            model.train(was_training)
        n = len(x)
        return {
            "accuracy": correct / n if n else math.nan,
            "loss": loss / n if n else math.nan,
        }

    return measure


@register_measure("pgd", "robust accuracy under PGD at eps (default: the training eps)")
def pgd(
    config: TrainConfig,
    eps: float | str | None = None,
    norm: str | None = None,
    steps: int = 10,
    step_size: float | str | None = None,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 256,
) -> Measure:
    """Robust ``accuracy`` under :class:`~robustscope.attacks.PGD` (a point counts when it is
    classified correctly clean and at the attack's output), measured with
    :func:`robustscope.attacks.evaluate` without the gradient-masking checks.

    Args:
        config: the run's configuration; ε and norm default to ``method_params``' ``eps``
            and ``norm`` (the training threat model).
        eps: radius ε (a number or ``"8/255"``).
        norm: ``"linf"`` or ``"l2"`` (default: the training norm, else linf).
        steps, step_size, restarts: the PGD budget (step size default ``2.5 ε / steps``).
        seed: the attack's seed (the same random starts at every epoch).
        batch_size: examples per attack call.
    """
    if eps is None:
        eps = config.method_params.get("eps")
    if eps is None:
        raise TrainingError(
            "tracking 'pgd' needs eps: the method has none, so set track_params "
            "{'pgd': {'eps': ...}} (CLI: --track-param pgd.eps=0.1)"
        )
    eps_value = parse_eps(eps, "track_params.pgd.eps", error=TrainingError)
    norm_value = norm or str(config.method_params.get("norm", "linf"))
    step = (
        None
        if step_size is None
        else parse_real(step_size, "track_params.pgd.step_size", minimum=0.0, error=TrainingError)
    )
    options: dict[str, Any] = {"steps": steps, "restarts": restarts}
    if step is not None:
        options["step_size"] = step

    def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        curve = attack_evaluate(
            model,
            x,
            y,
            "pgd",
            [eps_value],
            norm=norm_value,
            batch_size=batch_size,
            seed=seed,
            checks=False,
            **options,
        )
        return {"accuracy": next(iter(curve.robust_accuracy.values()))}

    try:  # fail now, not after the first epoch, on bad attack options
        PGD(nn.Identity(), eps_value, norm=norm_value, seed=seed, box="unbounded", **options)
    except (RobustscopeError, TypeError, ValueError) as exc:
        raise TrainingError(f"tracking 'pgd': {exc}") from None
    return measure
