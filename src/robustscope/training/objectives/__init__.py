"""Training objectives: one function of ``(model, x, y)`` → :class:`StepOutput` each, built by
a registered factory (:func:`make_objective`); the loop never branches on the method.

* :mod:`.base` — the interface, the registry (``OBJECTIVES``) and shared parameter checks;
* :mod:`.standard` — ``standard`` and ``noise`` (Gaussian augmentation);
* :mod:`.pgd` — ``pgd`` (Madry et al. 2018), ``trades`` (Zhang et al. 2019), ``mixed``
  (Tsipras et al. 2019, App. B);
* :mod:`.fast` — ``fgsm`` (Goodfellow et al. 2015, no random start; wen2020 §B.6),
  ``fgsm-rs`` (Wong et al. 2020) and ``free`` (Shafahi et al. 2019);
* :mod:`.inner` — the inner maximisation (the attack engine's PGD/FGSM).

Importing this package registers every objective.
"""

from __future__ import annotations

from robustscope.training.objectives import fast, pgd, standard  # noqa: F401  (registers)
from robustscope.training.objectives.base import (
    ATTACK_MODES,
    OBJECTIVES,
    Objective,
    ObjectiveFactory,
    SeededObjective,
    StepOutput,
    available,
    make_objective,
    real,
    register,
)
from robustscope.training.objectives.fast import FreeTraining
from robustscope.training.objectives.inner import InnerMaximizer
from robustscope.training.objectives.pgd import (
    AdversarialTraining,
    MixedTraining,
    Trades,
    trades_kl,
)
from robustscope.training.objectives.standard import NoiseAugmentation

__all__ = [
    "ATTACK_MODES",
    "OBJECTIVES",
    "AdversarialTraining",
    "FreeTraining",
    "InnerMaximizer",
    "MixedTraining",
    "NoiseAugmentation",
    "Objective",
    "ObjectiveFactory",
    "SeededObjective",
    "StepOutput",
    "Trades",
    "available",
    "make_objective",
    "real",
    "register",
    "trades_kl",
]
