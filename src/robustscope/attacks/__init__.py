"""The attack engine: threat models, attacks, success criteria and ε-sweep evaluation.

Every attack is called as ``atk(x, y) -> x_adv`` on inputs in the model's input box
(``[0, 1]`` pixel space for images, unbounded for vector data);
``evaluate(model, x, y, attack, epsilons)`` measures clean and robust accuracy
over a list of ε in one call, with gradient-masking checks.
"""

from __future__ import annotations

# importing the attack modules registers them
from robustscope.attacks import apgd as _apgd  # noqa: F401
from robustscope.attacks import autoattack as _autoattack  # noqa: F401
from robustscope.attacks import fab as _fab  # noqa: F401
from robustscope.attacks import fisher as _fisher  # noqa: F401
from robustscope.attacks import gradient as _gradient  # noqa: F401
from robustscope.attacks import minimal as _minimal  # noqa: F401
from robustscope.attacks import square as _square  # noqa: F401
from robustscope.attacks.apgd import APGD, APGDT, AutoAttackLite
from robustscope.attacks.autoattack import AutoAttack, StageRecord
from robustscope.attacks.base import Attack, attack_mode, resolve_box
from robustscope.attacks.criteria import (
    AllOf,
    Confidence,
    Criterion,
    Misclassification,
    TargetedMisclassification,
)
from robustscope.attacks.evaluate import FLAG_NAMES, Flag, RobustnessCurve, evaluate
from robustscope.attacks.fab import FAB, FABT
from robustscope.attacks.fisher import FisherAttack
from robustscope.attacks.gradient import FGSM, PGD, CWLinf
from robustscope.attacks.minimal import CW, DeepFool
from robustscope.attacks.registry import ATTACKS, available, create, get, parameters, register
from robustscope.attacks.scores import (
    ChallengeScore,
    NoiseRobustness,
    accuracy_independent_robustness,
    challenge_score,
)
from robustscope.attacks.square import Square
from robustscope.attacks.threat import NORMS, ThreatModel

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "CW",
    "FAB",
    "FABT",
    "FGSM",
    "FLAG_NAMES",
    "NORMS",
    "PGD",
    "AllOf",
    "Attack",
    "AutoAttack",
    "AutoAttackLite",
    "CWLinf",
    "ChallengeScore",
    "Confidence",
    "Criterion",
    "DeepFool",
    "FisherAttack",
    "Flag",
    "Misclassification",
    "NoiseRobustness",
    "RobustnessCurve",
    "Square",
    "StageRecord",
    "TargetedMisclassification",
    "ThreatModel",
    "accuracy_independent_robustness",
    "attack_mode",
    "available",
    "challenge_score",
    "create",
    "evaluate",
    "get",
    "parameters",
    "register",
    "resolve_box",
]
