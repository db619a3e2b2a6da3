"""What every probe shares: the result base class, the data it reads, batching helpers.

A *probe* is a pure function measuring a (model, data) pair and returning a frozen
dataclass derived from :class:`ProbeResult`. The result carries its conventions in its
docstring (which paper and equation, which sign, natural log, ...) and flattens itself
for the rest of the lab:

* :meth:`ProbeResult.scalars` — named floats (tracked per epoch during training, rows of
  the results store, ``--json`` output);
* :meth:`ProbeResult.arrays` — named arrays (histograms, spectra, per-example values;
  ``.npz`` artifacts of the results store);
* :meth:`ProbeResult.to_json` — both, JSON-ready (arrays as lists).

The default flattening walks the dataclass fields: ``int``/``float``/``bool`` fields are
scalars, tensors and numpy arrays are arrays (0-d ones become scalars), dicts and nested
results are flattened with ``/`` between the keys, strings and ``None`` are skipped
(strings go into :meth:`to_json` only). Subclasses override :meth:`scalars` or
:meth:`arrays` when a different summary is wanted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustscope.device import model_device
from robustscope.errors import ProbeError

__all__ = ["ProbeData", "ProbeResult", "batches", "check_inputs", "logits_of"]


def _flatten(
    prefix: str, value: Any, scalars: dict[str, float], arrays: dict[str, np.ndarray]
) -> None:
    if value is None or isinstance(value, str):
        return
    if isinstance(value, bool | int | float):
        scalars[prefix] = float(value)
    elif isinstance(value, torch.Tensor | np.ndarray):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if arr.ndim == 0:
            scalars[prefix] = float(arr)
        else:
            arrays[prefix] = arr
    elif isinstance(value, ProbeResult):
        sub_s, sub_a = value.scalars(), value.arrays()
        scalars.update({f"{prefix}/{k}": v for k, v in sub_s.items()})
        arrays.update({f"{prefix}/{k}": v for k, v in sub_a.items()})
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}/{key}" if prefix else str(key), item, scalars, arrays)
    elif isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value):
        arrays[prefix] = np.asarray(value, dtype=np.float64)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _flatten(f"{prefix}/{i}", item, scalars, arrays)


@dataclass(frozen=True)
class ProbeResult:
    """Base class of every probe's result (see the module doc for the flattening rules)."""

    def _flat(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        scalars: dict[str, float] = {}
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            _flatten(f.name, getattr(self, f.name), scalars, arrays)
        return scalars, arrays

    def scalars(self) -> dict[str, float]:
        """Named scalar summaries (floats; NaN allowed where a quantity is undefined)."""
        return ProbeResult._flat(self)[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays (per-example values, histograms, spectra)."""
        return ProbeResult._flat(self)[1]

    def to_json(self) -> dict[str, Any]:
        """Scalars, arrays (as lists) and string fields, JSON-ready (NaN/inf become None)."""

        def clean(v: float) -> float | None:
            return v if math.isfinite(v) else None

        out: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), str)
        }
        out["scalars"] = {k: clean(v) for k, v in self.scalars().items()}
        out["arrays"] = {
            k: [clean(float(x)) for x in np.asarray(v, dtype=np.float64).ravel()]
            if np.asarray(v).ndim <= 1
            else np.where(np.isfinite(v), v, np.nan).tolist()
            for k, v in self.arrays().items()
        }
        return out


@dataclass(frozen=True)
class ProbeData:
    """The data a probe reads: a test subset and, for probes comparing splits, a train subset.

    Attributes:
        test: ``(x, y)`` — pixel-space inputs ``[N, ...]`` in [0, 1] and integer labels ``[N]``.
        train: ``(x, y)`` of a training subset (un-augmented), or None.
    """

    test: tuple[torch.Tensor, torch.Tensor]
    train: tuple[torch.Tensor, torch.Tensor] | None = None

    def require_train(self, probe: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.train is None:
            raise ProbeError(
                f"probe {probe!r} compares the train and test splits; pass train=(x, y)"
            )
        return self.train


def check_inputs(
    probe: str, x: torch.Tensor, y: torch.Tensor | None = None, *, min_n: int = 1
) -> None:
    """Refuse inputs a probe cannot measure, naming the probe and the fix."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise ProbeError(f"probe {probe!r}: x must be a floating-point tensor, got {type(x)}")
    if len(x) < min_n:
        raise ProbeError(f"probe {probe!r}: needs at least {min_n} examples, got {len(x)}")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32):
            raise ProbeError(f"probe {probe!r}: y must be an integer tensor of labels")
        if y.shape != (len(x),):
            raise ProbeError(
                f"probe {probe!r}: y must have shape ({len(x)},), got {tuple(y.shape)}"
            )


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)`` in steps of ``batch_size``."""
    if batch_size < 1:
        raise ProbeError(f"batch_size must be ≥ 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's logits ``[N, K]`` for ``x`` in eval mode (its mode is restored), on the CPU
    as float64. A single-score binary model ``[N, 1]`` becomes the two logits ``(0, s)``.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        out = [model(x[s].to(device)).double().cpu() for s in batches(len(x), batch_size)]
    finally:
        model.train(was_training)
    z = torch.cat(out)
    if z.ndim != 2:
        raise ProbeError(f"the model must return logits [N, K], got shape {tuple(z.shape)}")
    if z.shape[1] == 1:
        z = torch.cat([torch.zeros_like(z), z], dim=1)
    return z
