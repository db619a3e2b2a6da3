"""Escalation: a run whose evaluation looks gradient-masked is attacked again, harder.

The first evaluation attack of a study runs with the gradient-masking checks of
:func:`robustscope.attacks.evaluate` (``evaluation.checks``). When one of
:data:`MASKING_FLAGS` fires on it, the study re-evaluates that run with the spec's
``evaluation.escalate`` attack (AutoAttack's ensemble, ``autoattack``, by default) at the same
ε and norm, on the same points and seed. It attacks only the points the first evaluation left
robust and counts the others as broken (``attacks.evaluate(after=...)``): the escalated
figure is the worst case of the two attacks per point — AutoAttack's own rule for its ensemble
— at the cost of the survivors alone. It is stored beside the first under the
label ``<label>+<attack>`` (:func:`~robustscope.studies.store.vocab.escalation_label`) with
``escalates = <label>``. Everything that reports robust accuracy — the report, ``robustscope
show`` — then takes the lower of the two figures at each ε
(:func:`robustscope.studies.store.views.fold_escalations`) and marks the run as escalated.

``outside_threat_model`` (a bug in an attack, not masking) and ``minimal_attack_failures``
(a minimal-norm attack's, which has no ε budget to escalate) do not escalate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustscope.studies.spec import AttackEval, EvaluationSpec

if TYPE_CHECKING:
    from robustscope.attacks import RobustnessCurve

__all__ = ["MASKING_FLAGS", "escalate", "masking_flags"]

#: the flags of :func:`robustscope.attacks.evaluate` that say its gradients may be masked
MASKING_FLAGS = ("zero_gradients", "non_monotone", "not_broken_at_large_eps", "black_box_stronger")


def masking_flags(curve: RobustnessCurve) -> list[str]:
    """The names of the :data:`MASKING_FLAGS` that ``curve``'s checks raised, in its order."""
    return [f.name for f in curve.flags if f.name in MASKING_FLAGS]


def escalate(
    model: Any,
    x: Any,
    y: Any,
    curve: RobustnessCurve,
    entry: AttackEval,
    evaluation: EvaluationSpec,
) -> RobustnessCurve | None:
    """The escalated evaluation of ``curve`` (``entry``'s evaluation of ``model`` on ``x``,
    ``y``), or None when the spec has no escalation or no masking flag fired on it.

    The escalation attack runs at ``entry``'s ε and norm with the evaluation's batch size and
    seed, without checks of its own (it is the cross-check), on the points ``curve`` left
    robust; its robust accuracy is that of the two attacks together.
    """
    from robustscope import attacks

    if evaluation.escalate is None or not masking_flags(curve):
        return None
    return attacks.evaluate(
        model,
        x,
        y,
        evaluation.escalate.attack,
        entry.eps,
        norm=entry.norm,
        batch_size=evaluation.batch_size,
        seed=evaluation.seed,
        checks=False,
        after=curve,
        **evaluation.escalate.params,
    )
