"""The input box: the domain every valid input lies in (the one owner of this convention).

Images are pixel-space tensors in ``[0, 1]`` (:data:`UNIT`); vector data such as the
Tsipras et al. (2019) distribution (eq. 3) is unbounded (:data:`UNBOUNDED`). A dataset
declares its box (:class:`~robustscope.data.registry.DatasetInfo.box`, carried by every
:class:`~robustscope.data.dataset.ArrayDataset`), a model built for it records the box in
its spec and checkpoint, and attacks, the evaluation, training objectives and probes take
it from there: an adversarial point is always in ``ball(x, ε) ∩ box``, and nothing clamps
vector data into ``[0, 1]``.

:func:`box_for_layout` holds the lab's rule for data that declares nothing (a tensor of
images ``[N, C, H, W]`` → ``[0, 1]``; vectors ``[N, D]`` → unbounded); it is used only where
no declaration exists (a model built without a dataset, a checkpoint written before boxes
were recorded).

Example:
    >>> Box.parse("unbounded"), Box.parse([0, 1]), Box.parse("0,255")
    (Box(lo=None, hi=None), Box(lo=0.0, hi=1.0), Box(lo=0.0, hi=255.0))
    >>> UNIT.clamp(torch.tensor([-0.5, 0.5, 1.5]))
    tensor([0.0000, 0.5000, 1.0000])
    >>> UNIT.width, UNBOUNDED.width
    (1.0, inf)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustscope.errors import RobustscopeError

__all__ = ["UNBOUNDED", "UNIT", "Box", "BoxLike", "box_for_layout"]


@dataclass(frozen=True)
class Box:
    """The coordinate-wise interval ``[lo, hi]`` valid inputs lie in (None: unbounded side).

    Attributes:
        lo: the smallest valid value of every coordinate, or None (no lower bound).
        hi: the largest valid value of every coordinate, or None (no upper bound).
    """

    lo: float | None
    hi: float | None

    def __post_init__(self) -> None:
        for side in ("lo", "hi"):
            v = getattr(self, side)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise RobustscopeError(f"box {side} must be a finite number or None, got {v!r}")
            object.__setattr__(self, side, float(v))
        if self.lo is not None and self.hi is not None and not self.lo < self.hi:
            raise RobustscopeError(f"box must have lo < hi, got [{self.lo}, {self.hi}]")

    @property
    def bounded(self) -> bool:
        """Both sides are bounded (a finite box, e.g. images)."""
        return self.lo is not None and self.hi is not None

    @property
    def unbounded(self) -> bool:
        """Neither side is bounded (R^D)."""
        return self.lo is None and self.hi is None

    @property
    def width(self) -> float:
        """``hi − lo`` (inf unless bounded): the ℓ∞ radius that covers the whole box."""
        if self.lo is None or self.hi is None:
            return math.inf
        return self.hi - self.lo

    def __iter__(self) -> Iterator[float | None]:
        """``lo, hi = box``."""
        return iter((self.lo, self.hi))

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` clamped into the box (``x`` itself when unbounded)."""
        if self.unbounded:
            return x
        return x.clamp(self.lo, self.hi)

    def contains(self, x: torch.Tensor, atol: float = 0.0) -> torch.Tensor:
        """Per-example bool ``[N]``: every coordinate of ``x[i]`` within the box (± ``atol``)."""
        ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
        flat = x.reshape(len(x), -1)
        if flat.shape[1] == 0:
            return ok
        if self.lo is not None:
            ok &= flat.amin(1) >= self.lo - atol
        if self.hi is not None:
            ok &= flat.amax(1) <= self.hi + atol
        return ok

    def to_json(self) -> list[float | None]:
        """``[lo, hi]`` with null for an unbounded side (as checkpoints record it)."""
        return [self.lo, self.hi]

    def __str__(self) -> str:
        if self.unbounded:
            return "unbounded"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"[{lo}, {hi}]"

    @classmethod
    def parse(cls, value: BoxLike, *, what: str = "box") -> Box:
        """A box from any of the forms users write.

        Accepted: a :class:`Box`; ``"unit"`` (``[0, 1]``); ``"unbounded"``, ``"none"`` or
        ``[None, None]``; a pair ``(lo, hi)`` whose sides are numbers or None; a string
        ``"lo,hi"``. ``what`` names the field in error messages.
        """
        if isinstance(value, Box):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "unit":
                return UNIT
            if text in ("unbounded", "none", "null"):
                return UNBOUNDED
            value = [t.strip() for t in text.strip("[]()").split(",")]
        if isinstance(value, Sequence) and len(value) == 2:
            try:
                lo, hi = (_side(v) for v in value)
                return cls(lo, hi)
            except (TypeError, ValueError, RobustscopeError) as exc:
                raise RobustscopeError(f"{what}: {exc}") from None
        raise RobustscopeError(
            f"{what} must be 'unit' ([0, 1]), 'unbounded' or a pair [lo, hi] "
            f"(a side may be null), got {value!r}"
        )

    @classmethod
    def from_json(cls, value: Any, *, what: str = "box") -> Box:
        """The inverse of :meth:`to_json`."""
        return cls.parse(value, what=what)


def _side(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        text = v.strip().lower()
        if text in ("", "none", "null"):
            return None
        return float(text)
    if isinstance(v, bool):
        raise TypeError(f"a box side must be a number or None, got {v!r}")
    return float(v)


BoxLike = Box | str | Sequence[float | None] | Sequence[str]
"""What :meth:`Box.parse` accepts."""

#: images: every pixel in [0, 1]
UNIT = Box(0.0, 1.0)
#: vectors with no constraint (R^D)
UNBOUNDED = Box(None, None)


def box_for_layout(input_shape: Sequence[int]) -> Box:
    """The lab's rule for inputs that declare no box: one input shaped ``(C, H, W)`` is an
    image in ``[0, 1]``; ``(D,)`` is an unbounded vector.

    Used only where no dataset declared a box (see the module doc).

    Example:
        >>> box_for_layout((1, 28, 28)), box_for_layout((11,))
        (Box(lo=0.0, hi=1.0), Box(lo=None, hi=None))
    """
    return UNIT if len(tuple(input_shape)) == 3 else UNBOUNDED
