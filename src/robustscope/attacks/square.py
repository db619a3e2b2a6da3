"""Square Attack (Andriushchenko et al. 2020): score-based black-box random search in ℓ∞.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search" (ECCV 2020), Algorithm 1 with the
ℓ∞ sampling distribution of their §3.1. It uses only the model's scores (forward
passes under ``torch.no_grad``), so it is the lab's cross-check for gradient
masking: a white-box attack that Square beats is not finding the worst case.
"""

from __future__ import annotations

import bisect
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

__all__ = ["Square", "square_fraction", "square_side"]

#: iterations (of a 10 000-query budget) after which p is halved (Andriushchenko et al. 2020)
HALVINGS: tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)

#: resampling rounds of a square's colours that would not change the current point
_RESAMPLE = 10


def square_fraction(i: int, queries: int, p_init: float) -> float:
    """p at iteration ``i``: ``p_init`` halved at each of :data:`HALVINGS` passed so far,
    with ``i`` rescaled to a 10 000-query budget (``⌊i · 10000 / queries⌋``)."""
    scaled = int(i * 10_000 / queries)
    return p_init / 2 ** bisect.bisect_left(HALVINGS, scaled)


def square_side(p: float, h: int, w: int) -> int:
    """Side ``⌈√(p·h·w)⌉`` of the square, in ``[1, min(h, w) − 1]`` (1 for 1-pixel-wide inputs)."""
    side = math.ceil(math.sqrt(p * h * w) - 1e-9)
    return max(1, min(side, min(h, w) - 1))


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


@register("square")
class Square(Attack):
    """Square Attack in ℓ∞ (Andriushchenko et al. 2020): random search over square patches.

    Minimises the margin ``L(x′) = z_y − max_{j≠y} z_j`` over ``ball_∞(x, ε) ∩ box``
    with model scores only:

    1. start from vertical stripes: every column of every channel is shifted by
       ``±ε`` (random signs), i.e. ``x⁰ = clip(x + ε·s)``, ``s ∈ {−1, 1}^{C×1×W}``;
    2. at iteration ``i``, per example, draw a square of side
       ``⌈√(p_i·h·w)⌉`` at a uniform position and set the perturbation in it to
       ``±ε`` per channel (random signs; redrawn when that would not change the point);
       accept the candidate if its margin is lower than the current one.
       ``p_i`` starts at ``p_init`` and is halved at iterations 10, 50, 200, 500, 1k, 2k,
       4k, 6k and 8k of a 10 000-query budget — rescaled to ``queries`` as the paper
       does (:func:`square_fraction`);
    3. an example stops as soon as it is misclassified; each iteration evaluates
       only the examples not broken yet (one forward pass, no gradients).

    ``queries`` counts forward evaluations per example, the initial one included.
    Vector inputs ``[N, D]`` are treated as ``1 × 1 × D`` images (squares of one coordinate).
    Only ℓ∞ is implemented; ``norm="l2"`` raises.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        queries: query budget per example (≥ 1; 10 000 in the paper, 1000 by default).
        p_init: initial fraction of the pixels covered by a square (0.8, AutoAttack's
            setting; the paper tunes it per dataset).
        norm: ``"linf"`` only.
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
    norms: ClassVar[tuple[str, ...]] = ("linf",)

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

    @torch.no_grad()
    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        gen = self.generator(x.device)
        shape = x.shape
        img = _as_image(x)
        n, c, h, w = img.shape
        tm, eps = self.threat, self.eps

        best = tm.clip(img + eps * self._signs((n, c, 1, w), img, gen))
        logits = self.model(best.reshape(shape))
        loss = margin(logits, y)
        done = predict(logits) != y
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)

        for i in range(1, self.queries):
            act = (~done).nonzero()[:, 0]
            if len(act) == 0:
                break
            m = len(act)
            side = square_side(square_fraction(i, self.queries, self.p_init), h, w)
            x0, cur, ya = img[act], best[act], y[act]
            r = torch.randint(0, h - side + 1, (m,), generator=gen, device=x.device)
            q = torch.randint(0, w - side + 1, (m,), generator=gen, device=x.device)
            in_r = (rows >= r[:, None]) & (rows < r[:, None] + side)
            in_c = (cols >= q[:, None]) & (cols < q[:, None] + side)
            window = in_r[:, None, :, None] & in_c[:, None, None, :]  # [m, 1, h, w]
            colours = self._signs((m, c, 1, 1), img, gen)
            cand = tm.clip(torch.where(window, x0 + eps * colours, cur))
            for _ in range(_RESAMPLE):
                same = (cand == cur).reshape(m, -1).all(dim=1)
                if not bool(same.any()):
                    break
                redraw = self._signs((m, c, 1, 1), img, gen)
                colours = torch.where(same[:, None, None, None], redraw, colours)
                cand = tm.clip(torch.where(window, x0 + eps * colours, cur))
            logits = self.model(cand.reshape((m, *shape[1:])))
            new_loss = margin(logits, ya)
            accept = new_loss < loss[act]
            hit = act[accept]
            best[hit] = cand[accept]
            loss[hit] = new_loss[accept]
            done[hit] = (predict(logits) != ya)[accept]
        return best.reshape(shape)
