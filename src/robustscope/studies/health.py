"""Did a run train? The lab's one rule for a *collapsed* run, its reason and its likely fix.

A run that failed to train (a constant prediction, a loss that never moved) is no evidence
for or against any claim: a study marks it in the store (``runs.health``, with the reason
and the likely fix), ``robustscope show`` shows the mark, and the report leaves the run out
of its Findings and figures and names it in its checks section. :func:`assess` is the only
place the rule is written; the study calls it when it records a run, and the report calls it
for runs stored before runs were assessed.

A run is **collapsed** when either holds:

* **chance** — its clean accuracy on the ``n`` evaluated test points is not above chance
  (``p = 1/K`` for K classes) by more than :data:`CHANCE_Z` binomial standard errors of
  chance, ``sqrt(p (1 − p) / n)``: a constant prediction scores about ``1/K``. For K = 10 the
  line is 22 % at n = 100 and 13.8 % at n = 1000;
* **stuck loss** — over two or more epochs, the last epoch's training loss is not below the
  first epoch's by :data:`LOSS_DROP` (relative) *and* the last epoch's clean test loss is at
  least :data:`NEAR_GUESS` · ln K (ln K is the cross-entropy of a uniform guess): training
  never moved the model off a guess. The training loss alone does not decide, since with an
  ε warm-up an adversarial training loss may rightly rise while ε grows.

Example:
    >>> h = assess(clean_accuracy=0.097, n=1000, classes=10, method="pgd", eps=0.1)
    >>> h.status, h.collapsed
    ('collapsed', True)
    >>> h.reason
    'clean accuracy 9.7 % on 1000 test points is within 4 standard errors of chance (10.0 %)'
    >>> assess(clean_accuracy=0.85, n=1000, classes=10).status
    'ok'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robustscope.studies.loaded import EXTERNAL
from robustscope.studies.store.vocab import COLLAPSED, HEALTHY

__all__ = [
    "CHANCE_Z",
    "LOADED_FIX",
    "LOSS_DROP",
    "NEAR_GUESS",
    "Health",
    "assess",
    "chance_line",
    "likely_fix",
]

#: a run trained when its clean accuracy beats chance by more than this many standard errors
CHANCE_Z = 4.0
#: the relative fall of the training loss (first → last epoch) below which it "never fell"
LOSS_DROP = 0.02
#: a clean test loss at least this fraction of ln K (a uniform guess's) is a guess's loss
NEAR_GUESS = 0.9
#: the likely fix of a model a study loaded from outside the lab that scores at chance
LOADED_FIX = (
    "the model was loaded from a checkpoint: check that it was trained on this dataset, with "
    "the same class order and input scaling (pixels in [0, 1]; its normalization is the "
    "model's first layer: robustscope import --mean/--std)"
)


@dataclass(frozen=True)
class Health:
    """Whether a run trained (:func:`assess`).

    Attributes:
        status: ``"ok"`` or ``"collapsed"`` (:data:`~.store.vocab.HEALTH_STATUSES`).
        reason: why it collapsed, with the numbers (None when ok).
        fix: what would likely make it train (None when ok).
    """

    status: str = HEALTHY
    reason: str | None = None
    fix: str | None = None

    @property
    def collapsed(self) -> bool:
        return self.status == COLLAPSED


def chance_line(classes: int, n: int) -> tuple[float, float]:
    """``(chance, line)``: ``1/K`` and the clean accuracy a run must exceed to count as trained
    (chance + :data:`CHANCE_Z` standard errors on ``n`` points)."""
    p = 1.0 / classes
    return p, p + CHANCE_Z * math.sqrt(p * (1 - p) / max(n, 1))


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _stuck_loss(history: Sequence[Mapping[str, Any]], classes: int) -> str | None:
    """The stuck-loss reason (module doc), or None."""
    losses: list[tuple[Mapping[str, Any], float]] = []
    for row in history:
        value = _number(row.get("train_loss"))
        if value is not None:
            losses.append((row, value))
    if len(losses) < 2:
        return None
    (_, first), (last_row, last) = losses[0], losses[-1]
    test_loss = _number(last_row.get("test_loss"))
    guess = math.log(classes)
    fell = last <= first * (1 - LOSS_DROP)
    if test_loss is None or fell or test_loss < NEAR_GUESS * guess:
        return None
    return (
        f"the training loss never fell ({first:.3g} in the first epoch, {last:.3g} in the "
        f"last of {len(losses)}) and the clean test loss ({test_loss:.3g}) is a guess's "
        f"(ln {classes} = {guess:.3g})"
    )


def _takes_warmup(method: str) -> bool:
    """Whether the training method has the ``eps_warmup`` parameter."""
    from robustscope.training.objectives import OBJECTIVES
    from robustscope.training.objectives.base import accepts

    try:
        factory = OBJECTIVES.get(method)
    except Exception:  # an unknown method (a store written elsewhere): no advice about it
        return False
    return accepts(factory, "eps_warmup")


def likely_fix(method: str | None, eps: float | None, params: Mapping[str, Any] | None) -> str:
    """What would likely make a collapsed run of ``method`` at training ``eps`` train (for a
    model brought in from outside the lab, :data:`LOADED_FIX`)."""
    if method == EXTERNAL:
        return LOADED_FIX
    if method and method != "standard" and eps and _takes_warmup(method):
        warmup = _number((params or {}).get("eps_warmup")) or 0.0
        if warmup <= 0:
            return (
                "train with an ε warm-up (method param eps_warmup, e.g. 0.3: ε ramps up over "
                "the first 30 % of training), more epochs or a lower lr"
            )
        return (
            f"a longer ε warm-up (method param eps_warmup, now {warmup:g}), more epochs, a "
            "lower lr or a wider model"
        )
    return "more epochs or a lower lr (and check that the labels match the inputs)"


def assess(
    *,
    clean_accuracy: float | None,
    n: int,
    classes: int | None,
    history: Sequence[Mapping[str, Any]] = (),
    method: str | None = None,
    eps: float | None = None,
    method_params: Mapping[str, Any] | None = None,
) -> Health:
    """Whether a run trained (the rule of the module doc).

    Args:
        clean_accuracy: accuracy on the ``n`` evaluated test points (None: unknown).
        n: how many test points it was measured on.
        classes: K, the number of classes (None: unknown — the run is taken as trained).
        history: the training history, one mapping per epoch (``train_loss``, ``test_loss``).
        method, eps, method_params: the run's training method, ε and method parameters (for
            the likely fix).
    """
    if not classes or classes < 2:
        return Health()
    reasons = []
    acc = _number(clean_accuracy)
    if acc is not None:
        chance, line = chance_line(classes, n)
        if acc <= line:
            reasons.append(
                f"clean accuracy {100 * acc:.1f} % on {n} test points is within "
                f"{CHANCE_Z:g} standard errors of chance ({100 * chance:.1f} %)"
            )
    stuck = _stuck_loss(history, classes)
    if stuck is not None:
        reasons.append(stuck)
    if not reasons:
        return Health()
    return Health(COLLAPSED, "; ".join(reasons), likely_fix(method, eps, method_params))
