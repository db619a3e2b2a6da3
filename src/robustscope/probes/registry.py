"""The probe registry: every probe by name, for the CLI, training's tracking hook and studies.

A probe is registered from its function, whose signature says everything the registry needs::

    @register_probe("cckl", "cross-class KL divergence (shi2020)")
    def cckl(model, x, y, *, batch_size=1000, train=None) -> CCKLResult: ...

* The positional parameters after ``model`` say what the probe reads from the
  :class:`~robustscope.probes.base.ProbeData`: ``x`` and ``y`` the test inputs and labels,
  ``input_shape`` one test input's shape, ``data`` the whole ``ProbeData`` (for a probe that
  translates its options before calling a function of its own, e.g. ``generalization_gap``).
* A keyword-only ``train`` receives the train subset (``(x, y)`` or None).
* Every other keyword-only parameter is an option (``robustscope probe --opt``, study specs,
  ``track_params``), with its default. Options annotated ``int`` or ``float`` may be given
  as text (YAML reads ``1e-6`` as a string): they go through the lab's one number parser
  (:mod:`robustscope.params`).

``splits`` says which subsets the probe reads: by default ``("test",)`` when it reads ``x``,
``y`` or ``data``, else ``()`` — a probe of the weights alone (``input_shape`` is not the
data), which tracking then runs once per epoch; ``("train", "test")`` is given explicitly
by a probe that needs both. ``tracked`` says whether it may run inside
training's tracking hook (on one split at a time, so probes comparing two splits are not
tracked; their per-split parts are).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from robustscope.errors import ProbeError
from robustscope.params import parse_number
from robustscope.probes.base import ProbeData, ProbeResult
from robustscope.registry import Registry, first_line

__all__ = ["PROBES", "ProbeInfo", "available_probes", "get_probe", "register_probe", "run_probe"]

ProbeAdapter = Callable[..., ProbeResult]
ProbeFn = TypeVar("ProbeFn", bound=Callable[..., ProbeResult])

#: what each positional parameter of a probe function (after ``model``) receives
_READS: dict[str, Callable[[ProbeData], Any]] = {
    "data": lambda data: data,
    "x": lambda data: data.test[0],
    "y": lambda data: data.test[1],
    "input_shape": lambda data: tuple(data.test[0].shape[1:]),
}
#: the keyword-only parameter that receives the train subset (not an option)
_TRAIN = "train"


@dataclass(frozen=True)
class ProbeInfo:
    """A registered probe.

    Attributes:
        name: the registered name.
        doc: one line describing what it measures (and the paper it follows).
        adapter: ``adapter(model, data, **options) -> ProbeResult``, built from the probe's
            function (module doc).
        splits: the subsets it reads, among ``"train"`` and ``"test"``; empty for a probe of
            the weights alone (e.g. ``layer_spectra``), which tracking then runs once per epoch.
        tracked: whether training's tracking hook may run it.
        options: the option names it accepts (the function's keyword-only parameters).
    """

    name: str
    doc: str
    adapter: ProbeAdapter
    splits: tuple[str, ...]
    tracked: bool
    options: tuple[str, ...]


#: every probe by name
PROBES: Registry[ProbeInfo] = Registry("probe", error=ProbeError, describe=lambda info: info.doc)


def _parse_int(value: Any, field: str) -> int:
    number = parse_number(value, field, error=ProbeError)
    if not number.is_integer():
        raise ProbeError(f"{field} must be an integer, got {value!r}")
    return int(number)


def _parse_float(value: Any, field: str) -> float:
    return parse_number(value, field, error=ProbeError)


_PARSERS: dict[Any, Callable[[Any, str], Any]] = {int: _parse_int, float: _parse_float}


def _adapter(name: str, fn: ProbeAdapter) -> tuple[ProbeAdapter, tuple[str, ...], tuple[str, ...]]:
    """``adapter(model, data, **options)`` calling ``fn`` as its signature asks, the option
    names and the splits it reads by default (module doc)."""
    params = list(inspect.signature(fn, eval_str=True).parameters.values())
    reads = [p.name for p in params[1:] if p.kind is not p.KEYWORD_ONLY]
    unknown = [r for r in reads if r not in _READS]
    if not params or params[0].name != "model" or unknown:
        raise ProbeError(
            f"probe {name!r}: its function must take (model, <what it reads>, *, <options>) "
            f"with what it reads among {', '.join(_READS)}; got {', '.join(p.name for p in params)}"
        )
    keywords = [p for p in params if p.kind is p.KEYWORD_ONLY]
    takes_train = any(p.name == _TRAIN for p in keywords)
    parsers = {p.name: _PARSERS.get(p.annotation) for p in keywords if p.name != _TRAIN}

    def adapter(model: nn.Module, data: ProbeData, **options: Any) -> ProbeResult:
        for key, value in options.items():
            parse = parsers.get(key)
            if parse is not None:
                options[key] = parse(value, f"probe {name!r}: option {key}")
        if takes_train:
            options[_TRAIN] = data.train
        return fn(model, *(_READS[r](data) for r in reads), **options)

    reads_data = any(r in ("x", "y", "data") for r in reads)
    return adapter, tuple(parsers), ("test",) if reads_data else ()


def register_probe(
    name: str,
    doc: str = "",
    *,
    splits: tuple[str, ...] | None = None,
    tracked: bool = True,
) -> Callable[[ProbeFn], ProbeFn]:
    """Register the probe function ``fn`` under ``name`` (see the module doc); returns ``fn``.
    ``splits`` defaults to what the signature reads."""

    def deco(fn: ProbeFn) -> ProbeFn:
        adapter, options, read = _adapter(name, fn)
        line = doc or first_line(fn)
        chosen = read if splits is None else splits
        PROBES.register(name, ProbeInfo(name, line, adapter, chosen, tracked, options))
        return fn

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
