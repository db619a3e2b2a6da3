"""Square Attack (Andriushchenko et al. 2020): score-based black-box random search, ℓ∞ and ℓ2.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search" (ECCV 2020), Algorithm 1 with the
ℓ∞ sampling distribution of their §3.1 and the ℓ2 one of §3.2. It uses only the model's
scores (forward passes under ``torch.no_grad``), so it is the lab's cross-check for gradient
masking: a white-box attack that Square beats is not finding the worst case.
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import ClassVar

import torch
from torch import nn

from robustscope.attacks.base import Attack
from robustscope.attacks.losses import margin
from robustscope.attacks.registry import register
from robustscope.data.box import BoxLike
from robustscope.errors import AttackError
from robustscope.evaluation import predict
from robustscope.numerics import per_example

__all__ = ["Square", "square_fraction", "square_pattern", "square_side"]

#: iterations (of a 10 000-query budget) after which p is halved (Andriushchenko et al. 2020)
HALVINGS: tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)

#: resampling rounds of a square's colours that would not change the current point
_RESAMPLE = 10

#: tiles per side of the ℓ2 initialisation (a 5 × 5 grid of patterns, as the paper)
_L2_TILES = 5

_TINY = 1e-12


def square_fraction(i: int, queries: int, p_init: float) -> float:
    """p at iteration ``i``: ``p_init`` halved at each of :data:`HALVINGS` passed so far,
    with ``i`` rescaled to a 10 000-query budget (``⌊i · 10000 / queries⌋``)."""
    scaled = int(i * 10_000 / queries)
    return p_init / 2 ** bisect.bisect_left(HALVINGS, scaled)


def square_side(p: float, h: int, w: int) -> int:
    """Side ``⌈√(p·h·w)⌉`` of the square, in ``[1, min(h, w) − 1]`` (1 for 1-pixel-wide inputs)."""
    side = math.ceil(math.sqrt(p * h * w) - 1e-9)
    return max(1, min(side, min(h, w) - 1))


def _l2_side(p: float, h: int, w: int) -> tuple[int, int]:
    """The ℓ2 window: side ``round(√(p·h·w))``, at least 3 and odd (the paper's ℓ2 rule), cut
    to the image (``[rows, cols]``)."""
    side = max(round(math.sqrt(p * h * w)), 3)
    side += 1 - side % 2
    return min(side, h), min(side, w)


def _rings(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """Concentric rectangles around the centre ``(rows // 2, cols // 2)``: a pixel at Chebyshev
    distance r from it gets ``Σ_{k ≥ r} 1/(k + 1)²`` (k up to the largest ring), normalised."""
    i = torch.arange(rows, device=like.device, dtype=like.dtype)
    j = torch.arange(cols, device=like.device, dtype=like.dtype)
    r = torch.maximum((i - rows // 2).abs()[:, None], (j - cols // 2).abs()[None, :]).long()
    k = max(rows // 2, cols // 2) + 1
    weights = 1.0 / torch.arange(1, k + 1, device=like.device, dtype=like.dtype) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[r] = Σ_{k ≥ r} 1/(k+1)²
    ring = tail[r]
    return ring / ring.norm()


def square_pattern(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """The ℓ2 update pattern η of Andriushchenko et al. (§3.2) on a ``rows × cols`` window:
    concentric rectangles (:func:`_rings`) of opposite signs on its two halves (split along
    the rows, or along the columns for a one-row window), unit ℓ2 norm, on ``like``'s device
    and dtype (the same tensor for the same arguments: do not modify it)."""
    return _pattern(rows, cols, like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _pattern(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    like = torch.empty(0, dtype=dtype, device=device)
    if rows >= 2:
        half = rows // 2
        eta = torch.cat([_rings(half, cols, like), -_rings(rows - half, cols, like)], dim=0)
    elif cols >= 2:
        half = cols // 2
        eta = torch.cat([_rings(rows, half, like), -_rings(rows, cols - half, like)], dim=1)
    else:
        eta = torch.ones(rows, cols, device=like.device, dtype=like.dtype)
    return eta / eta.norm()


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` view of the input: vectors ``[N, D]`` as ``[N, 1, 1, D]``."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 2:
        return x[:, None, None, :]
    raise AttackError(
        f"square: inputs must be [N, C, H, W], [N, H, W] or [N, D], got shape {tuple(x.shape)}"
    )


def _l2_normalise(delta: torch.Tensor, eps: float) -> torch.Tensor:
    n = delta.reshape(len(delta), -1).norm(dim=1)
    return delta * per_example(eps / (n + _TINY), delta)


@register("square")
class Square(Attack):
    """Square Attack in ℓ∞ and ℓ2 (Andriushchenko et al. 2020): random search over square patches.

    Minimises the margin ``L(x′) = z_y − max_{j≠y} z_j`` over ``ball(x, ε) ∩ box``
    with model scores only. At iteration ``i`` the window side follows ``p_i``, which starts
    at ``p_init`` and is halved at iterations 10, 50, 200, 500, 1k, 2k, 4k, 6k and 8k of a
    10 000-query budget — rescaled to ``queries`` as the paper does (:func:`square_fraction`);
    a candidate is accepted when its margin is lower than the current one. Each iteration
    draws one window position (uniform, shared by the batch: each example's sequence of
    windows has the paper's distribution) and per-example random signs.

    ℓ∞ (§3.1):

    1. start from vertical stripes: every column of every channel is shifted by
       ``±ε`` (random signs), i.e. ``x⁰ = clip(x + ε·s)``, ``s ∈ {−1, 1}^{C×1×W}``;
    2. the candidate sets the perturbation in a square of side ``⌈√(p_i·h·w)⌉``
       (:func:`square_side`) to ``±ε`` per channel (signs redrawn, up to 10 times, where
       that would not change the point).

    ℓ2 (§3.2):

    1. start from a 5 × 5 grid of tiles, each holding the pattern η of
       :func:`square_pattern` (two halves of concentric rectangles of opposite signs)
       times a random sign per channel, scaled to ‖δ‖₂ = ε and clipped to the box;
    2. the candidate takes the perturbation's mass out of two windows W₁, W₂ of side
       ``max(round(√(p_i·h·w)), 3)`` (odd): W₂ is emptied, and W₁ gets its own normalised
       content plus a random-sign η, scaled per channel to the energy the two windows held plus
       an equal share of the unused budget ``ε² − ‖δ‖²``; the whole perturbation is then scaled
       to ‖δ‖₂ = ε and clipped to the box.

    An example stops as soon as it is misclassified; each iteration evaluates only the
    examples not broken yet (one forward pass, no gradients). ``queries`` counts forward
    evaluations per example, the initial one included. Vector inputs ``[N, D]`` are treated
    as ``1 × 1 × D`` images (windows along the one row).

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        queries: query budget per example (≥ 1; 10 000 in the paper, 5 000 in AutoAttack,
            1 000 by default).
        p_init: initial fraction of the pixels covered by a square (0.8, AutoAttack's
            setting for both norms; the paper tunes it per dataset).
        norm: ``"linf"`` or ``"l2"``.
        seed: seed of the random search (None: the global RNG).

    Shape:
        ``x``: ``[N, C, H, W]``, ``[N, H, W]`` or ``[N, D]``; ``y``: ``[N]``; output: like ``x``.

    Example:
        >>> from robustscope import models
        >>> rgb = models.create("mlp", 4, (3, 6, 6), widths=[8])
        >>> pics = torch.rand(3, 3, 6, 6)
        >>> out = Square(rgb, eps=0.1, queries=50, seed=0)(pics, torch.tensor([0, 1, 2]))
        >>> bool((out - pics).abs().max() <= 0.1 + 1e-6)  # scores only, no gradient
        True
    """

    name: ClassVar[str] = "square"

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        queries: int = 1000,
        p_init: float = 0.8,
        norm: str = "linf",
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed)
        self.queries = self.positive_int("queries", queries)
        self.p_init = self.real("p_init", p_init, strict=True, maximum=1.0)

    def _signs(
        self, shape: tuple[int, ...], like: torch.Tensor, gen: torch.Generator | None
    ) -> torch.Tensor:
        s = torch.randint(0, 2, shape, generator=gen, device=like.device)
        return (2 * s - 1).to(like.dtype)

    @staticmethod
    def _position(
        h: int, w: int, rows: int, cols: int, gen: torch.Generator | None, like: torch.Tensor
    ) -> tuple[int, int]:
        """A uniform top-left corner of a ``rows × cols`` window in an ``h × w`` image."""
        span = w - cols + 1
        k = int(torch.randint(0, (h - rows + 1) * span, (1,), generator=gen, device=like.device))
        return k // span, k % span

    @torch.no_grad()
    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        gen = self.generator(x.device)
        shape = x.shape
        img = _as_image(x)
        n, c, _, w = img.shape
        eps = self.eps

        if self.norm == "linf":
            start = self.box.clamp(img + eps * self._signs((n, c, 1, w), img, gen))
        else:
            start = self._l2_start(img, gen)
        logits = self.model(start.reshape(shape))
        loss = margin(logits, y)
        result = start.clone()
        act = (predict(logits) == y).nonzero()[:, 0]
        # the examples still robust, compacted: clean inputs, current points, labels, margins
        x0, cur, ya, la = img[act], start[act], y[act], loss[act]
        for i in range(1, self.queries):
            if len(act) == 0:
                break
            p = square_fraction(i, self.queries, self.p_init)
            if self.norm == "linf":
                logits, accept = self._linf_step(x0, cur, ya, la, p, gen, shape[1:])
            else:
                logits, accept, cand = self._l2_step(x0, cur, ya, la, p, gen, shape[1:])
                cur = torch.where(per_example(accept, cur), cand, cur)
            new_loss = margin(logits, ya)
            la = torch.where(accept, new_loss, la)
            broken = accept & (predict(logits) != ya)
            if bool(broken.any()):
                result[act[broken]] = cur[broken]
                keep = ~broken
                act, x0, cur, ya, la = act[keep], x0[keep], cur[keep], ya[keep], la[keep]
        result[act] = cur
        return result.reshape(shape)

    # --- ℓ∞ ---------------------------------------------------------------------------------

    def _linf_step(
        self,
        x0: torch.Tensor,
        cur: torch.Tensor,
        y: torch.Tensor,
        loss: torch.Tensor,
        p: float,
        gen: torch.Generator | None,
        tail: tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write a candidate square into ``cur`` in place, query it, and put the old square
        back where the candidate is not better; returns (logits, accepted)."""
        m, c, h, w = cur.shape
        side = square_side(p, h, w)
        r, q = self._position(h, w, side, side, gen, cur)
        win = (slice(None), slice(None), slice(r, r + side), slice(q, q + side))
        old = cur[win].clone()
        base = x0[win]
        colours = self._signs((m, c, 1, 1), cur, gen)
        new = self.box.clamp(base + self.eps * colours)
        for _ in range(_RESAMPLE):
            same = (new == old).reshape(m, -1).all(dim=1)
            if not bool(same.any()):
                break
            redraw = self._signs((m, c, 1, 1), cur, gen)
            colours = torch.where(per_example(same, colours), redraw, colours)
            new = self.box.clamp(base + self.eps * colours)
        cur[win] = new
        logits = self.model(cur.reshape((m, *tail)))
        accept = margin(logits, y) < loss
        cur[win] = torch.where(per_example(accept, new), new, old)
        return logits, accept

    # --- ℓ2 ---------------------------------------------------------------------------------

    def _l2_start(self, img: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        n, c, h, w = img.shape
        th, tw = max(h // _L2_TILES, 1), max(w // _L2_TILES, 1)
        delta = torch.zeros_like(img)
        r0 = (h - th * (h // th)) // 2
        q0 = (w - tw * (w // tw)) // 2
        eta = square_pattern(th, tw, img)
        for r in range(r0, h - th + 1, th):
            for q in range(q0, w - tw + 1, tw):
                signs = self._signs((n, c, 1, 1), img, gen)
                delta[:, :, r : r + th, q : q + tw] = eta * signs
        return self.box.clamp(img + _l2_normalise(delta, self.eps))

    def _l2_step(
        self,
        x0: torch.Tensor,
        cur: torch.Tensor,
        y: torch.Tensor,
        loss: torch.Tensor,
        p: float,
        gen: torch.Generator | None,
        tail: tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m, c, h, w = cur.shape
        rows, cols = _l2_side(p, h, w)
        r1, q1 = self._position(h, w, rows, cols, gen, cur)
        r2, q2 = self._position(h, w, rows, cols, gen, cur)
        w1 = (slice(None), slice(None), slice(r1, r1 + rows), slice(q1, q1 + cols))
        w2 = (slice(None), slice(None), slice(r2, r2 + rows), slice(q2, q2 + cols))
        delta = cur - x0
        union = torch.zeros(h, w, dtype=cur.dtype, device=cur.device)
        union[r1 : r1 + rows, q1 : q1 + cols] = 1
        union[r2 : r2 + rows, q2 : q2 + cols] = 1
        sq = delta * delta
        energy = (sq * union).sum(dim=(2, 3))  # [m, c]: what the two windows hold
        spare = (self.eps**2 - sq.sum(dim=(1, 2, 3))).clamp_min(0)  # [m]
        eta = square_pattern(rows, cols, cur)
        if rows == cols and int(torch.randint(0, 2, (1,), generator=gen, device=cur.device)):
            eta = eta.T
        old = delta[w1]
        old = old / (old.norm(dim=(2, 3), keepdim=True) + _TINY)
        new = old + eta * self._signs((m, c, 1, 1), cur, gen)
        scale = (energy + spare[:, None] / c).sqrt()[:, :, None, None]
        new = new / (new.norm(dim=(2, 3), keepdim=True) + _TINY) * scale
        moved = delta.clone()
        moved[w2] = 0
        moved[w1] = new
        cand = self.box.clamp(x0 + _l2_normalise(moved, self.eps))
        logits = self.model(cand.reshape((m, *tail)))
        return logits, margin(logits, y) < loss, cand
