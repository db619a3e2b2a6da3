"""Every tracked probe as a measurement of training's tracking hook (``--track NAME``).

:func:`register_tracked_probes` (called by :func:`robustscope.plugins.load`, the one
composition point) registers, for each probe with ``tracked=True``, a measurement of the
same name in :mod:`robustscope.training.tracking` whose options are the probe's options. During training it runs on each fixed subset in turn (train, then test)
and adds the probe's :meth:`~robustscope.probes.ProbeResult.scalars` to the epoch's history
as ``track/<split>/<probe>_<scalar>``, e.g. ``track/test/input_fisher_frobenius_mean`` or
``track/train/margins_margin_mean`` (a per-split probe's ``test/`` prefix is dropped: the
split is the one in the key).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustscope.errors import TrainingError
from robustscope.probes.base import ProbeData
from robustscope.probes.registry import PROBES, ProbeInfo, run_probe
from robustscope.training.config import TrainConfig
from robustscope.training.tracking import Measure, available_measures, register_measure

__all__ = ["register_tracked_probes"]


def _factory(info: ProbeInfo) -> Any:
    def factory(config: TrainConfig, **options: Any) -> Measure:
        unknown = [k for k in options if k not in info.options]
        if unknown:
            raise TrainingError(
                f"tracking {info.name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"its options are: {', '.join(info.options) or '(none)'}"
            )

        def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
            # the subset always goes in as ProbeData.test; a probe that reports per split
            # prefixes its scalars "test/", which would mislabel the train subset's row
            scalars = run_probe(info.name, model, ProbeData(test=(x, y)), **options).scalars()
            return {k.removeprefix("test/"): v for k, v in scalars.items()}

        return measure

    factory.__doc__ = info.doc
    return factory


def register_tracked_probes() -> list[str]:
    """Register every tracked probe not yet known to the tracking hook; returns their names."""
    known = set(available_measures())
    added = []
    for name, info in PROBES.items():
        if info.tracked and name not in known:
            register_measure(name, f"probe: {info.doc}", data_independent=not info.splits)(
                _factory(info)
            )
            added.append(name)
    return added
