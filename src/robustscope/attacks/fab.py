"""FAB, the fast adaptive boundary attack (Croce & Hein 2020), untargeted and targeted.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack" (ICML 2020), Algorithm 1, in ℓ∞ and ℓ2 and inside the input box. FAB looks for a
*small* adversarial perturbation: at each iterate it linearises the decision boundary,
projects both the iterate and the original point onto that hyperplane (the minimal-norm
projection that stays in the box, :func:`boundary_projection`), moves to a convex
combination of the two projections biased towards the original point, and, once on the
other side, steps back towards the original point.

Here FAB is a fixed-budget attack, as AutoAttack uses it (its FAB-T stage): an adversarial
point found at distance > ε is not a success. Each example stops at its first iterate that is
misclassified within ε; an example never misclassified within ε is returned unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from robustscope.attacks._jacobian import output_grads
from robustscope.attacks.base import Attack
from robustscope.attacks.losses import _binary_as_two, classes_by_logit
from robustscope.attacks.registry import register
from robustscope.attacks.threat import flat_norms
from robustscope.data.box import Box, BoxLike
from robustscope.errors import AttackError
from robustscope.evaluation import predict
from robustscope.numerics import per_example

__all__ = ["FAB", "FABT", "boundary_projection"]

#: FAB's defaults (Croce & Hein 2020, as in AutoAttack): largest bias α towards the original
#: point, overshoot η, backward-step factor β
ALPHA_MAX, ETA, BETA = 0.1, 1.05, 0.9

#: the floor of the projection lengths in the bias α = ‖δ_k‖ / (‖δ_k‖ + ‖δ_0‖)
_MIN_LENGTH = 1e-8


def boundary_projection(
    p: torch.Tensor,
    w: torch.Tensor,
    c: torch.Tensor,
    norm: str,
    box: Box,
    newton_steps: int = 32,
) -> torch.Tensor:
    """The shortest ``δ`` (in ``norm``) with ``c + ⟨w, δ⟩ = 0`` and ``p + δ`` in ``box``.

    Per example: the point of the hyperplane ``{z : c + ⟨w, z − p⟩ = 0}`` ∩ box closest to
    ``p``, returned as the step ``δ`` from ``p``. Moving coordinate i by ``mᵢ ≥ 0`` in the
    direction of ``sign(−c·wᵢ)`` gains ``|wᵢ| mᵢ`` towards the hyperplane, up to the room
    ``rᵢ`` left in the box on that side. The optimum is

    * ℓ∞: ``mᵢ = min(t, rᵢ)`` with the smallest t reaching ``|c|``;
    * ℓ2: ``mᵢ = min(λ|wᵢ|, rᵢ)`` with the smallest λ reaching ``|c|`` (the KKT conditions of
      the box-constrained least-norm problem).

    The gain ``h(t) = Σ |wᵢ| mᵢ(t)`` is concave, piecewise linear and non-decreasing, so
    Newton's method from t = 0 climbs to the root from below and ends exactly once an
    iteration leaves the set of saturated coordinates unchanged (usually 2–4 iterations);
    examples not done after ``newton_steps`` iterations are solved by sorting the breakpoints
    (exact too, slower). When even the whole box does not reach the hyperplane, every
    coordinate moves to its bound (the closest the box gets). Computed in ``p``'s dtype (at
    least float32).

    Args:
        p: ``[N, ...]`` points inside ``box``.
        w: ``[N, ...]`` normals of the hyperplanes (zero rows give ``δ = 0``).
        c: ``[N]`` the value of the affine function at ``p``.
        norm: ``"linf"`` or ``"l2"``.
        box: the input box.
        newton_steps: Newton iterations before the sorting fallback (≥ 0).

    Returns:
        ``δ`` like ``p``.

    Example:
        >>> from robustscope.data.box import UNIT
        >>> p = torch.tensor([[0.5, 0.9]])
        >>> boundary_projection(p, torch.tensor([[1.0, 1.0]]), torch.tensor([-0.6]), "linf", UNIT)
        tensor([[0.5000, 0.1000]])
    """
    if norm not in ("linf", "l2"):
        raise AttackError(f"boundary_projection: unknown norm {norm!r}; valid norms: linf, l2")
    n = len(p)
    dtype = torch.promote_types(p.dtype, torch.float32)
    pf = p.reshape(n, -1).to(dtype)
    v = w.reshape(n, -1).to(dtype) * torch.sign(-c.to(dtype))[:, None]  # ⟨v, δ⟩ must reach |c|
    a = v.abs()
    # (float masks and arithmetic: torch.where with a full-size mask is ~10× slower on CPU)
    up_f, down_f = (v > 0).to(dtype), (v < 0).to(dtype)
    if box.lo is not None and box.hi is not None:
        room = (box.hi - pf).clamp_min(0) * up_f + (pf - box.lo).clamp_min(0) * down_f
    else:  # an unbounded side: infinite room there
        inf = torch.full_like(pf, float("inf"))
        up = inf if box.hi is None else (box.hi - pf).clamp_min(0)
        down = inf if box.lo is None else (pf - box.lo).clamp_min(0)
        room = torch.where(v > 0, up, torch.where(v < 0, down, torch.zeros_like(pf)))
    target = c.to(dtype).abs()
    # coordinate i saturates at t = bp_i (ℓ∞: its room; ℓ2: room / |w_i|); below that it
    # gains at the rate weight_i (ℓ∞: |w_i|; ℓ2: w_i²), after it the constant gain_i (an
    # unbounded coordinate never saturates: its gain is never counted)
    weight = a if norm == "linf" else a * a
    bp = room if norm == "linf" else room / (a + (1 - up_f - down_f))
    gain = (a * room).nan_to_num(posinf=0.0)
    t = torch.zeros_like(target)
    todo = target > 0
    count: torch.Tensor | None = None  # free coordinates at the previous iterate
    for _ in range(newton_steps):
        if not bool(todo.any()):
            break
        free = (bp > t[:, None]).to(dtype)
        slope = (free * weight).sum(1)
        gap = target - ((1 - free) * gain).sum(1) - t * slope
        now = free.sum(1)
        # the last step stayed on one linear piece (the free set only shrinks as t grows, so
        # an equal count is an equal set), or nothing is left to gain: t is the root
        settled = (gap <= 0) | (slope == 0)
        if count is not None:
            settled |= now == count
        todo = todo & ~settled
        t = torch.where(todo, t + gap / torch.where(slope > 0, slope, 1), t)
        count = now
    if bool(todo.any()):
        t[todo] = _sorted_root(a[todo], room[todo], target[todo], norm)
    t = t.clamp(max=torch.finfo(dtype).max)[:, None]  # inf (the box falls short): every bound
    m = torch.minimum(t if norm == "linf" else t * a, room)  # room is 0 where w_i = 0
    return (torch.sign(v) * m).reshape(p.shape).to(p.dtype)


def _sorted_root(
    a: torch.Tensor, room: torch.Tensor, target: torch.Tensor, norm: str
) -> torch.Tensor:
    """The root t of the gain ``h(t) = target`` (see :func:`boundary_projection`) by sorting
    the breakpoints where coordinates saturate; inf where the whole box falls short."""
    moving = a > 0
    gain = a * room
    if norm == "linf":
        slope, bp = a, room
    else:
        slope = a * a
        bp = torch.where(moving, room / torch.where(moving, a, 1), room)
    bp, order = bp.sort(dim=1)
    gain, slope = gain.gather(1, order), slope.gather(1, order)
    # the gain at each breakpoint: saturated coordinates before it, the others at their slope
    before = torch.cat([torch.zeros_like(gain[:, :1]), gain.cumsum(1)[:, :-1]], dim=1)
    after = slope.flip(1).cumsum(1).flip(1)
    at_bp = before + torch.where(after > 0, bp * after, 0)
    k = (at_bp < target[:, None]).sum(1)  # breakpoints passed below the target
    kk = k.clamp(max=a.shape[1] - 1)[:, None]
    pre, suf = before.gather(1, kk)[:, 0], after.gather(1, kk)[:, 0]
    t = torch.where(suf > 0, (target - pre) / torch.where(suf > 0, suf, 1), 0)
    return torch.where(k < a.shape[1], t, float("inf"))


@register("fab")
class FAB(Attack):
    """FAB (Croce & Hein 2020, ICML): the fast adaptive boundary attack, untargeted, within ε.

    Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
    attack". From ``x⁰ = x`` (or, for restarts after the first, a random point at distance
    ε/2 from x), per example and iteration k, with ``f`` the logit difference ``z_j − z_y``
    of the class j whose linearised boundary is nearest, ``|f_j| / ‖∇f_j‖_q`` (q the dual
    norm: 1 for ℓ∞, 2 for ℓ2)::

        δᵏ  = boundary projection of xᵏ onto {f(xᵏ) + ⟨∇f(xᵏ), z − xᵏ⟩ = 0} ∩ box
        δ⁰ᵏ = boundary projection of x  onto the same hyperplane ∩ box
        α   = min(‖δᵏ‖ / (‖δᵏ‖ + ‖δ⁰ᵏ‖), α_max)
        xᵏ⁺¹ = P_box((1 − α)(xᵏ + η δᵏ) + α (x + η δ⁰ᵏ))

    and, when ``xᵏ⁺¹`` is misclassified, the backward step ``xᵏ⁺¹ ← x + β (xᵏ⁺¹ − x)``
    (:func:`boundary_projection` solves the box-constrained projections exactly).

    As a budget attack (AutoAttack's use of FAB): an example is done at its first
    misclassified iterate within ε of x, which is returned; one never misclassified within ε
    is returned unchanged (an adversarial point found farther than ε is not a success, only a
    reason to step back). Points misclassified clean are returned unchanged. Restarts run on
    the examples not yet broken.

    Cost per iteration, on the examples not yet broken: one forward and ``K − 1``
    input-gradient backward passes (the gradients of every logit difference), plus one
    forward to classify the new iterate. :class:`FABT` (``fab-t``) needs a single backward
    per iteration.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        steps: iterations per restart (default 100, as in AutoAttack).
        restarts: runs per example, the first from x, the others from random points at
            distance ε/2.
        alpha_max: the largest bias α towards the original point (0.1).
        eta: the overshoot η ≥ 1 of the projection step (1.05).
        beta: the backward-step factor β ∈ (0, 1] (0.9).
        seed: seed of the random restarts (None: the global RNG).

    Example:
        >>> from robustscope import models
        >>> mlp = models.create("mlp", 4, (12,), widths=[16])
        >>> v = torch.randn(5, 12)
        >>> out = FAB(mlp, eps=1.0, norm="l2", steps=10)(v, torch.arange(5) % 4)
        >>> bool(((out - v).norm(dim=1) <= 1.0).all())
        True
    """

    name: ClassVar[str] = "fab"
    #: attack each of the top ``n_target_classes`` classes in turn (FAB-T)
    targeted: ClassVar[bool] = False
    #: the number of target classes (FAB-T only)
    n_target_classes: int = 1

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = ALPHA_MAX,
        eta: float = ETA,
        beta: float = BETA,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed)
        self.steps = self.positive_int("steps", steps)
        self.restarts = self.positive_int("restarts", restarts)
        self.alpha_max = self.real("alpha_max", alpha_max, maximum=1.0)
        self.eta = self.real("eta", eta, minimum=1.0)
        self.beta = self.real("beta", beta, strict=True, maximum=1.0)

    @torch.no_grad()
    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        if self.eps == 0:
            return out
        gen = self.generator(x.device)
        clean = self.model(x)
        done = predict(clean) != y  # misclassified clean: x itself, at distance 0
        targets: list[torch.Tensor | None] = [None]
        if self.targeted:
            order = classes_by_logit(_binary_as_two(clean), y)
            targets = [order[:, j] for j in range(min(self.n_target_classes, order.shape[1]))]
        for target in targets:
            for r in range(self.restarts):
                idx = (~done).nonzero()[:, 0]
                if len(idx) == 0:
                    return out
                self._run_once(x, y, target, idx, r > 0, out, done, gen)
        return out

    # --- pieces -------------------------------------------------------------------------

    def _random_start(self, xs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """A point at distance ε/2 from ``xs`` (before the box clamp), as FAB's restarts."""
        if self.norm == "linf":
            t = 2 * torch.rand(xs.shape, generator=gen, device=xs.device, dtype=xs.dtype) - 1
        else:
            t = torch.randn(xs.shape, generator=gen, device=xs.device, dtype=xs.dtype)
        length = flat_norms(t, self.norm).clamp_min(1e-12)
        return self.box.clamp(xs + t * per_example(0.5 * self.eps / length, t))

    def _linearise(
        self, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, ∇f)`` at ``z``: the logit difference whose boundary FAB projects on."""
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(z)
            two = _binary_as_two(logits)
            zy = two.gather(1, y[:, None])
            if target is not None:
                f = (two.gather(1, target[:, None]) - zy)[:, 0]
                (g,) = torch.autograd.grad(f.sum(), z)
                return f.detach(), g.detach()
            k = two.shape[1]
            others = torch.arange(k, device=z.device).expand(len(z), k)
            others = others[others != y[:, None]].reshape(len(z), k - 1)
            diffs = two.gather(1, others) - zy  # [m, K − 1]
            grads = output_grads(diffs, z)  # [m, K − 1, ...]
        diffs = diffs.detach()
        flat = grads.reshape(len(z), k - 1, -1)  # the dual norm of the step's: ℓ1 for ℓ∞
        gnorm = flat.abs().sum(2) if self.norm == "linf" else flat.norm(dim=2)
        j = (diffs.abs() / (gnorm + 1e-12)).argmin(dim=1)
        rows = torch.arange(len(z), device=z.device)
        return diffs[rows, j], grads[rows, j]

    def _run_once(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        idx: torch.Tensor,
        random_start: bool,
        out: torch.Tensor,
        done: torch.Tensor,
        gen: torch.Generator | None,
    ) -> None:
        xs, ys = x[idx], y[idx]
        ts = target[idx] if target is not None else None
        cur = self._random_start(xs, gen) if random_start else xs.clone()
        for _ in range(self.steps):
            f, g = self._linearise(cur, ys, ts)
            c_orig = f + (g * (xs - cur)).reshape(len(xs), -1).sum(1)
            # the iterate and the original point onto the same hyperplane, in one call
            both = boundary_projection(
                torch.cat([cur, xs]), torch.cat([g, g]), torch.cat([f, c_orig]), self.norm, self.box
            )
            d_cur, d_orig = both[: len(xs)], both[len(xs) :]
            a_cur = flat_norms(d_cur, self.norm).clamp_min(_MIN_LENGTH)
            a_orig = flat_norms(d_orig, self.norm).clamp_min(_MIN_LENGTH)
            alpha = per_example((a_cur / (a_cur + a_orig)).clamp(0.0, self.alpha_max), cur)
            cur = self.box.clamp(
                (1 - alpha) * (cur + self.eta * d_cur) + alpha * (xs + self.eta * d_orig)
            )
            adv = predict(self.model(cur)) != ys
            if not bool(adv.any()):
                continue
            # misclassified within ε: done; misclassified farther: step back towards x
            within = adv & (flat_norms(cur - xs, self.norm) <= self.eps)
            if bool(within.any()):
                out[idx[within]] = cur[within]
                done[idx[within]] = True
                keep = ~within
                if not bool(keep.any()):
                    return
                idx, xs, ys, cur, adv = idx[keep], xs[keep], ys[keep], cur[keep], adv[keep]
                ts = ts[keep] if ts is not None else None
            back = per_example(adv, cur)
            cur = torch.where(back, xs + self.beta * (cur - xs), cur)


@register("fab-t")
class FABT(FAB):
    """FAB-T (Croce & Hein 2020): FAB against each of the top ``n_target_classes`` classes.

    :class:`FAB` with the boundary of one target class t at a time, ``f = z_t − z_y``: for
    each of the ``n_target_classes`` classes of highest clean logit other than y, in order
    (capped at K − 1), a FAB run of ``steps`` iterations on the examples not broken yet —
    AutoAttack's FAB-T (9 targets, 100 iterations, one restart). One forward and one
    input-gradient backward per iteration, whatever the number of classes. Within ε, as FAB.

    Args: as :class:`FAB`, and ``n_target_classes`` (9 in AutoAttack).

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 10, (1, 6, 6), widths=[16])
        >>> imgs = torch.rand(3, 1, 6, 6)
        >>> out = FABT(net, eps=0.1, steps=5, n_target_classes=3)(imgs, torch.tensor([0, 1, 2]))
        >>> bool((out - imgs).abs().max() <= 0.1) and bool((out >= 0).all())
        True
    """

    name: ClassVar[str] = "fab-t"
    targeted: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        alpha_max: float = ALPHA_MAX,
        eta: float = ETA,
        beta: float = BETA,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
    ) -> None:
        super().__init__(
            model,
            eps,
            norm=norm,
            steps=steps,
            restarts=restarts,
            alpha_max=alpha_max,
            eta=eta,
            beta=beta,
            seed=seed,
            box=box,
        )
        self.n_target_classes = self.positive_int("n_target_classes", n_target_classes)
