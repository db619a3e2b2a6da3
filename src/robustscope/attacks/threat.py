"""Threat models: the set of allowed perturbations and the geometry attacks use in it.

A :class:`ThreatModel` is the ε-ball of an ℓp norm around the clean input,
intersected with the valid input box (:class:`~robustscope.data.box.Box`: ``[0, 1]`` for
images, unbounded for vector data; the box always comes from the data). It owns the three
operations an iterative attack needs (as MadryLab's ``robustness`` attack steps):

* :meth:`project` — back into ball ∩ box;
* :meth:`random_start` — a random point in ball ∩ box;
* :meth:`step` — the steepest-ascent step of the norm (sign for ℓ∞, the
  normalized gradient for ℓ2).

For ℓ∞ the projection onto ball ∩ box is exact (both sets are coordinate-wise
intervals). For ℓ2 it is the ball projection followed by the box clamp; the
result lies in both sets because clamping toward a box that contains the centre
only shrinks each coordinate of the perturbation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from robustscope.data.box import Box
from robustscope.errors import RobustscopeError
from robustscope.numerics import per_example

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")

_TINY = 1e-12


def check_norm(norm: str) -> Norm:
    if norm not in NORMS:
        raise RobustscopeError(f"unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")
    return norm  # type: ignore[return-value]


def flat_norms(v: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``v`` (``[N, ...]`` → ``[N]``)."""
    flat = v.reshape(len(v), -1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    raise RobustscopeError(f"unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")


@dataclass(frozen=True)
class ThreatModel:
    """ε-ball of ``norm`` around the clean input, intersected with the input ``box``.

    Attributes:
        norm: ``"linf"`` or ``"l2"``.
        eps: radius ε ≥ 0, in the units of the inputs (pixel units for images).
        box: the input box (:data:`~robustscope.data.box.UNIT` for images,
            :data:`~robustscope.data.box.UNBOUNDED` for vector data).

    Example:
        >>> from robustscope.data.box import UNIT
        >>> tm = ThreatModel("linf", 0.1, UNIT)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> d = tm.project(x + 1.0, x) - x
        >>> bool(d.abs().max() <= 0.1 + 1e-6)
        True
    """

    norm: str
    eps: float
    box: Box

    def __post_init__(self) -> None:
        check_norm(self.norm)
        if not (self.eps >= 0):
            raise RobustscopeError(f"eps must be ≥ 0, got {self.eps}")
        if not isinstance(self.box, Box):
            raise RobustscopeError(f"box must be a robustscope.data.Box, got {self.box!r}")

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp to the input box (no-op for unbounded inputs)."""
        return self.box.clamp(x)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The point of ball(x, ε) ∩ box reached by projecting ``x_adv`` (see module doc)."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            n = flat_norms(delta, "l2")
            factor = torch.clamp(self.eps / (n + _TINY), max=1.0)
            delta = delta * per_example(factor, delta)
        return self.clip(x + delta)

    def random_start(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A random point of ball(x, ε) ∩ box: uniform in the ℓ∞ cube, uniform in the ℓ2 ball."""
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            delta = (2 * u - 1) * self.eps
        else:
            g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            d = g[0].numel()
            r = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d)
            delta = g / per_example(flat_norms(g, "l2") + _TINY, g) * per_example(r * self.eps, g)
        return self.project(x + delta, x)

    def step(
        self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float | torch.Tensor
    ) -> torch.Tensor:
        """One steepest-ascent step of length ``step_size`` in this norm (not yet projected)."""
        if isinstance(step_size, torch.Tensor) and step_size.ndim == 1:
            step_size = per_example(step_size, x_adv)
        if self.norm == "linf":
            return x_adv + step_size * grad.sign()
        n = per_example(flat_norms(grad, "l2"), grad)
        return x_adv + step_size * grad / (n + _TINY)

    def bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For ℓ∞, the per-coordinate interval ``[lo, hi]`` of ball(x, ε) ∩ box (None for ℓ2).

        Computed once per attack so that :meth:`step_project` is a single clamp.
        """
        if self.norm != "linf":
            return None
        lo, hi = x - self.eps, x + self.eps
        if self.box.lo is not None:
            lo = lo.clamp_min(self.box.lo)
        if self.box.hi is not None:
            hi = hi.clamp_max(self.box.hi)
        return lo, hi

    def step_project(
        self,
        x_adv: torch.Tensor,
        grad: torch.Tensor,
        step_size: float | torch.Tensor,
        x: torch.Tensor,
        bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """:meth:`step` then :meth:`project` onto ball(x, ε) ∩ box, fused for ℓ∞ when the
        precomputed :meth:`bounds` of ``x`` are given (one clamp instead of seven passes)."""
        if bounds is None or self.norm != "linf":
            return self.project(self.step(x_adv, grad, step_size), x)
        if isinstance(step_size, torch.Tensor) and step_size.ndim == 1:
            step_size = per_example(step_size, x_adv)
        plain = (
            grad.shape != x_adv.shape
            or grad.dtype != x_adv.dtype
            or x_adv.requires_grad
            or grad.requires_grad
            or (isinstance(step_size, torch.Tensor) and step_size.dtype != x_adv.dtype)
        )
        if plain:
            return torch.clamp(x_adv + step_size * grad.sign(), bounds[0], bounds[1])
        # in place on one new buffer: same values as the line above, fewer passes over memory
        out = grad.sign().mul_(step_size).add_(x_adv)
        return torch.clamp(out, bounds[0], bounds[1], out=out)

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example distance ``‖x_adv − x‖`` in this norm, ``[N]``."""
        return flat_norms(x_adv - x, self.norm)

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
        """Per-example bool: inside the ε-ball (within ``atol``) and the box."""
        return (self.distance(x_adv, x) <= self.eps + atol) & self.box.contains(x_adv, atol)
