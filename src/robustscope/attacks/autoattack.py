"""AutoAttack (Croce & Hein 2020): the ensemble APGD-CE, APGD-T, FAB-T, Square.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020). The attacks run in turn, each only on the points that
every earlier attack left correctly classified, so a point counts as robust only if it
resists all of them (the worst case over the attacks, per point).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from robustscope.attacks.apgd import APGD, usable_loss
from robustscope.attacks.base import Attack
from robustscope.attacks.fab import FAB, FABT
from robustscope.attacks.registry import register
from robustscope.attacks.square import Square
from robustscope.data.box import BoxLike
from robustscope.errors import AttackError
from robustscope.evaluation import predict

__all__ = ["STAGES", "VERSIONS", "AutoAttack", "StageRecord"]

#: the attacks a stage list can name
STAGES: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")

#: AutoAttack's versions: the stages in order and each stage's restarts (Croce & Hein's code)
VERSIONS: dict[str, tuple[tuple[str, int], ...]] = {
    "standard": (("apgd-ce", 1), ("apgd-t", 1), ("fab-t", 1), ("square", 1)),
    "plus": (
        ("apgd-ce", 5),
        ("apgd-dlr", 5),
        ("fab", 5),
        ("square", 1),
        ("apgd-t", 1),
        ("fab-t", 1),
    ),
}


@dataclass(frozen=True)
class StageRecord:
    """What one stage of the last call did.

    Attributes:
        stage: the stage's name (one of :data:`STAGES`).
        attacked: points it ran on (those still robust before it).
        broken: points it misclassified.
        seconds: its wall time.
    """

    stage: str
    attacked: int
    broken: int
    seconds: float


def _parse_stages(stages: str | Sequence[str]) -> tuple[str, ...]:
    items = stages.split(",") if isinstance(stages, str) else list(stages)
    names = tuple(str(s).strip() for s in items if str(s).strip())
    bad = [s for s in names if s not in STAGES]
    if bad or not names:
        raise AttackError(
            f"autoattack: stages must be a non-empty list of {', '.join(STAGES)}; got {stages!r}"
        )
    if len(set(names)) != len(names):
        raise AttackError(f"autoattack: stages lists an attack twice: {stages!r}")
    return names


@register("autoattack")
class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020, ICML): APGD-CE, APGD-T, FAB-T, Square, worst case per point.

    The ``"standard"`` version, the one used for published robust accuracies (RobustBench),
    in this order and each on the points still correctly classified after the ones before:

    1. APGD-CE (:class:`~robustscope.attacks.apgd.APGD`, cross-entropy, 1 restart, ``steps``
       iterations — 100);
    2. APGD-T (targeted DLR against the ``n_target_classes`` most likely other classes — 9 —,
       ``steps`` iterations each);
    3. FAB-T (:class:`~robustscope.attacks.fab.FABT`, the same targets, ``steps`` iterations
       each; a point found farther than ε is not a success);
    4. Square (:class:`~robustscope.attacks.square.Square`, ``queries`` queries — 5,000 —,
       ``p_init`` 0.8).

    ``"plus"``: APGD-CE and APGD-DLR with 5 restarts, FAB (untargeted, 5 restarts),
    Square, APGD-T, FAB-T. ``stages`` runs any other sequence (``"apgd-ce,square"``).
    Every stage uses ``seed``. Models with fewer than 4 classes cannot use targeted DLR:
    APGD-T becomes APGD-DLR (3 classes) or APGD with the margin loss (2 classes or a single
    score), as in :class:`~robustscope.attacks.apgd.AutoAttackLite`.

    A point misclassified clean is returned unchanged; a point broken by a stage gets that
    stage's adversarial example; the others get the input back. What each stage did in the
    last call is in :attr:`stages_run`. Same ℓ∞ and ℓ2 budgets as the paper; the cost is
    dominated, on robust models, by the stages after APGD-CE on the points that resist
    them (``benchmarks/README.md``, AutoAttack). ``autoattack-lite`` (APGD-CE + APGD-T) is
    the fast check. torchattacks' ``AutoAttack(version="standard")`` runs its APGD, APGD-T
    and FAB at 10 iterations (their class default): ``steps=10`` is the matching budget.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        version: ``"standard"`` (default) or ``"plus"``.
        stages: the stages to run instead of the version's, in order: a list or a
            comma-separated string of ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab``,
            ``fab-t``, ``square`` (one restart each).
        steps: iterations of the APGD and FAB stages (100).
        queries: the Square stage's query budget (5,000).
        n_target_classes: target classes of APGD-T and FAB-T (9; capped at K − 1).
        seed: seed of every stage's randomness (None: the global RNG).

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 10, (1, 8, 8), widths=[16])
        >>> imgs = torch.rand(4, 1, 8, 8)
        >>> labels = net(imgs).argmax(1)  # the four points count as correctly classified
        >>> aa = AutoAttack(net, eps="8/255", steps=5, queries=20, n_target_classes=2, seed=0)
        >>> out = aa(imgs, labels)
        >>> bool((out - imgs).abs().max() <= 8 / 255 + 1e-6), aa.stages_run[0].attacked
        (True, 4)
    """

    name: ClassVar[str] = "autoattack"

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        norm: str = "linf",
        version: str = "standard",
        stages: str | Sequence[str] | None = None,
        steps: int = 100,
        queries: int = 5000,
        n_target_classes: int = 9,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed)
        if version not in VERSIONS:
            raise AttackError(
                f"{self.name}: unknown version {version!r}; valid versions: "
                f"{', '.join(VERSIONS)} (or give stages=...)"
            )
        self.version = version
        plan = VERSIONS[version]
        if stages is not None:
            plan = tuple((s, 1) for s in _parse_stages(stages))
        self.stages: tuple[tuple[str, int], ...] = plan
        self.steps = self.positive_int("steps", steps)
        self.queries = self.positive_int("queries", queries)
        self.n_target_classes = self.positive_int("n_target_classes", n_target_classes)
        self._stages_run: list[StageRecord] = []

    @property
    def stages_run(self) -> list[StageRecord]:
        """What each stage did in the last call (stages after the last robust point: none)."""
        return list(self._stages_run)

    def _stage(self, stage: str, restarts: int, k: int) -> Attack:
        """The attack of one stage for a model with ``k`` logits."""
        m, eps, norm, seed, box = self.model, self.eps, self.norm, self.seed, self.box
        if stage == "square":
            return Square(m, eps, queries=self.queries, p_init=0.8, norm=norm, seed=seed, box=box)
        if stage == "fab":
            return FAB(m, eps, norm=norm, steps=self.steps, restarts=restarts, seed=seed, box=box)
        if stage == "fab-t":
            return FABT(
                m,
                eps,
                norm=norm,
                steps=self.steps,
                restarts=restarts,
                n_target_classes=self.n_target_classes,
                seed=seed,
                box=box,
            )
        loss = usable_loss({"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}[stage], k)
        return APGD(
            m,
            eps,
            norm=norm,
            steps=self.steps,
            restarts=restarts,
            loss=loss,
            seed=seed,
            n_target_classes=self.n_target_classes,
            box=box,
        )

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._stages_run = []
        out = x.clone()
        if self.eps == 0:
            return out
        with torch.no_grad():
            logits = self.model(x)
        robust = predict(logits) == y
        k = logits.shape[1]
        for stage, restarts in self.stages:
            idx = robust.nonzero()[:, 0]
            if len(idx) == 0:
                break
            t0 = time.perf_counter()
            adv = self._stage(stage, restarts, k).run(x[idx], y[idx])
            with torch.no_grad():
                broken = predict(self.model(adv)) != y[idx]
            out[idx[broken]] = adv[broken]
            robust[idx[broken]] = False
            self._stages_run.append(
                StageRecord(stage, len(idx), int(broken.sum()), time.perf_counter() - t0)
            )
        return out
