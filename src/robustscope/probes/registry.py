"""The probe registry: every probe by name, for the CLI, training's tracking hook and studies.

Each public probe function keeps its natural signature (``cckl(model, x, y)``,
``input_fisher(model, x)``...). Registration adds a uniform adapter
``adapter(model, data: ProbeData, **options) -> ProbeResult`` under a name::

    @register_probe("cckl", splits=("test",))
    def _cckl(model, data, **options):
        return cckl(model, *data.test, **options)

``splits`` says which subsets the probe reads (``("test",)`` or ``("train", "test")``);
``tracked`` says whether it may run inside training's tracking hook (on one split at a
time, so probes comparing two splits are not tracked; their per-split parts are).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeData, ProbeResult
from robustscope.registry import Registry, first_line

__all__ = ["PROBES", "ProbeInfo", "available_probes", "get_probe", "register_probe", "run_probe"]

ProbeAdapter = Callable[..., ProbeResult]


@dataclass(frozen=True)
class ProbeInfo:
    """A registered probe.

    Attributes:
        name: the registered name.
        doc: one line describing what it measures (and the paper it follows).
        adapter: ``adapter(model, data, **options) -> ProbeResult``.
        splits: the subsets it reads, among ``"train"`` and ``"test"``; empty for a probe of
            the weights alone (e.g. ``layer_spectra``), which tracking then runs once per epoch.
        tracked: whether training's tracking hook may run it.
        options: the option names it accepts (from the adapter's signature).
    """

    name: str
    doc: str
    adapter: ProbeAdapter
    splits: tuple[str, ...]
    tracked: bool
    options: tuple[str, ...]


#: every probe by name
PROBES: Registry[ProbeInfo] = Registry("probe", error=ProbeError, describe=lambda info: info.doc)


def register_probe(
    name: str,
    doc: str = "",
    *,
    splits: tuple[str, ...] = ("test",),
    tracked: bool = True,
) -> Callable[[ProbeAdapter], ProbeAdapter]:
    """Register ``adapter(model, data, **options)`` under ``name`` (see the module doc)."""

    def deco(adapter: ProbeAdapter) -> ProbeAdapter:
        params = inspect.signature(adapter).parameters
        options = tuple(k for k in params if k not in ("model", "data"))
        line = doc or first_line(adapter)
        PROBES.register(name, ProbeInfo(name, line, adapter, splits, tracked, options))
        return adapter

    return deco


def available_probes() -> dict[str, str]:
    """Registered probe names with a one-line description."""
    return PROBES.available()


def get_probe(name: str) -> ProbeInfo:
    """The :class:`ProbeInfo` of ``name``; unknown names are refused with the valid ones."""
    return PROBES.get(name)


def run_probe(name: str, model: nn.Module, data: ProbeData, **options: Any) -> ProbeResult:
    """Run probe ``name`` on ``model`` and ``data``; unknown options are refused by name."""
    info = get_probe(name)
    unknown = [k for k in options if k not in info.options]
    if unknown:
        raise ProbeError(
            f"probe {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(info.options) or '(none)'}"
        )
    if "train" in info.splits:
        data.require_train(name)
    return info.adapter(model, data, **options)
