"""Typed records the store writes: one attack's evaluation of one run, and its flags.

A :class:`AttackResult` is what :func:`robustscope.studies.execute_run` builds from an
:class:`robustscope.attacks.RobustnessCurve` and what :meth:`Store.set_attack_results`
stores as rows of ``attack_results`` (one per ε × quantity) and ``attack_flags``.

Example:
    >>> r = AttackResult("pgd-linf", "pgd", "linf", {"steps": 20}, n=100,
    ...                  epsilons=(0.0, 0.1), robust_accuracy=(0.9, 0.4),
    ...                  robust_accuracy_on_correct=(1.0, 0.44))
    >>> [(eps, q, v) for eps, q, v in r.rows()][:2]
    [(0.0, 'robust_accuracy', 0.9), (0.0, 'robust_accuracy_on_correct', 1.0)]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from robustscope.params import parse_eps_list
from robustscope.studies.store.base import StoreError
from robustscope.studies.store.vocab import (
    NORMS,
    ROBUST_ACCURACY,
    ROBUST_ACCURACY_ON_CORRECT,
    canonical_params,
)

__all__ = ["AttackFlag", "AttackResult"]


@dataclass(frozen=True)
class AttackFlag:
    """A warning that an evaluation may overestimate robustness (``attacks.Flag``).

    Attributes:
        name: one of ``robustscope.attacks.FLAG_NAMES`` (e.g. ``zero_gradients``).
        message: the warning in words (None for flags migrated from a v2 store, which kept
            only the name).
        value: the number behind the warning (e.g. a count of points), None when it has none.
    """

    name: str
    message: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class AttackResult:
    """One attack evaluated on one run at several ε, with the conventions of
    :func:`robustscope.attacks.evaluate`.

    Attributes:
        label: the study's name of this evaluation: the spec entry's ``label``, else
            ``<attack>-<norm>`` (:func:`~robustscope.studies.store.vocab.attack_label`).
            Unique within a run.
        attack: the attack's registry name (``pgd``, ``cw-linf``, ...).
        norm: ``linf`` or ``l2``; ε is the radius in pixel units of [0, 1] inputs in it.
        params: the attack's parameters without ε (stored as canonical JSON).
        n: the number of points evaluated.
        epsilons: the distinct ε evaluated (any order).
        robust_accuracy: per ε, the fraction of **all** ``n`` points still correctly
            classified under the attack.
        robust_accuracy_on_correct: per ε, the same over the points correctly classified
            clean (wen2020 §D.2); NaN when there are none.
        flags: the gradient-masking warnings the evaluation raised.
        escalates: the label of the run's evaluation this one escalates — the same ε and norm
            re-attacked with the spec's ``evaluation.escalate`` attack because a
            gradient-masking flag fired on it (``vocab.escalation_label`` names it); None for
            the spec's own evaluations.
    """

    label: str
    attack: str
    norm: str
    params: Mapping[str, Any]
    n: int
    epsilons: tuple[float, ...]
    robust_accuracy: tuple[float, ...]
    robust_accuracy_on_correct: tuple[float, ...]
    flags: tuple[AttackFlag, ...] = field(default=())
    escalates: str | None = None

    def __post_init__(self) -> None:
        where = f"attack result {self.label!r}"
        if not self.label or not self.attack:
            raise StoreError(f"{where}: label and attack must be non-empty")
        if self.escalates is not None and (not self.escalates or self.escalates == self.label):
            raise StoreError(
                f"{where}: escalates names another evaluation of the run, got {self.escalates!r}"
            )
        if self.norm not in NORMS:
            raise StoreError(f"{where}: norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        sizes = {
            len(self.epsilons),
            len(self.robust_accuracy),
            len(self.robust_accuracy_on_correct),
        }
        if len(sizes) != 1:
            raise StoreError(
                f"{where}: epsilons, robust_accuracy and robust_accuracy_on_correct must have "
                f"one entry per ε, got lengths {len(self.epsilons)}, "
                f"{len(self.robust_accuracy)}, {len(self.robust_accuracy_on_correct)}"
            )
        if len(set(self.epsilons)) != len(self.epsilons):
            raise StoreError(f"{where}: an ε is listed twice in {list(self.epsilons)}")
        parse_eps_list(list(self.epsilons), f"{where}: ε", error=StoreError)
        if self.n < 0:
            raise StoreError(f"{where}: n must be ≥ 0, got {self.n}")
        try:
            canonical_params(self.params)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{where}: params are not JSON-serialisable ({exc})") from None

    def rows(self) -> Iterator[tuple[float, str, float]]:
        """``(ε, quantity, value)`` for every ε, in the order of :attr:`epsilons`."""
        for eps, acc, on_correct in zip(
            self.epsilons, self.robust_accuracy, self.robust_accuracy_on_correct, strict=True
        ):
            yield eps, ROBUST_ACCURACY, acc
            yield eps, ROBUST_ACCURACY_ON_CORRECT, on_correct
