"""Multi-step adversarial training: PGD-AT (Madry et al. 2018), TRADES (Zhang et al. 2019)
and mixed batches (Tsipras et al. 2019, App. B). Conventions: :mod:`.base`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from robustscope.attacks.losses import kl_to_clean
from robustscope.evaluation import cross_entropy
from robustscope.training.objectives.base import (
    BoxParam,
    InnerAttack,
    Objective,
    SeededObjective,
    StepOutput,
    real,
    register,
    with_warmup,
)
from robustscope.training.objectives.inner import pgd_inner

__all__ = ["AdversarialTraining", "MixedTraining", "Trades", "mixed", "pgd", "trades", "trades_kl"]


def trades_kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """TRADES' robust term: ``(1/N) Σ_i KL(f(x_i) ‖ f(x′_i))`` ("batchmean").

    The direction is the clean prediction first, as in Zhang et al. 2019 and their code
    (``KLDivLoss(log_softmax(f(x′)), softmax(f(x)))``); gradients flow through both
    arguments. Equal to ``F.kl_div(log_softmax(adv), softmax(clean), reduction="batchmean")``.
    A single-logit (binary) model is read as the two logits ``(0, s)``.
    """
    return kl_to_clean(adv_logits, clean_logits).mean()


class AdversarialTraining(SeededObjective):
    """PGD adversarial training: cross-entropy at the inner attack's points.

    Attributes:
        attack: the inner maximisation ``attack(model, x, y, seed) -> x_adv`` (replaceable).
    """

    def __init__(self, attack: InnerAttack, seed: int) -> None:
        super().__init__(seed)
        self.attack = attack

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        x_adv = self.inner(self.attack)(model, x, y, self.next_seed())
        logits = model(x_adv)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)


class Trades(SeededObjective):
    """TRADES: ``CE(f(x), y) + β · (1/N) Σ KL(f(x) ‖ f(x′))`` with x′ from the KL attack.

    Reported logits (training accuracy) are the clean ones; extras ``natural_loss`` (the CE
    term) and ``kl_term`` (the KL, before multiplying by β).
    """

    def __init__(self, attack: InnerAttack, beta: float, seed: int) -> None:
        super().__init__(seed)
        self.attack = attack
        self.beta = float(beta)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        x_adv = self.inner(self.attack)(model, x, y, self.next_seed())
        logits = model(x)
        adv_logits = model(x_adv)
        natural = cross_entropy(logits, y)
        kl = trades_kl(logits, adv_logits)
        return StepOutput(
            loss=natural + self.beta * kl,
            logits=logits,
            extras={"natural_loss": float(natural.detach()), "kl_term": float(kl.detach())},
        )


class MixedTraining(SeededObjective):
    """Half natural, half adversarial: the first ``⌊n/2⌋`` examples of each batch are
    replaced by their PGD points, the rest stay clean; the loss is the mean cross-entropy
    over the whole batch (one forward pass). The loop shuffles the data every epoch, so the
    first half is a uniformly random half — no further randomness is needed.
    Reported logits: the mixed batch (aligned with the batch labels).
    """

    def __init__(self, attack: InnerAttack, seed: int) -> None:
        super().__init__(seed)
        self.attack = attack

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        k = len(x) // 2
        seed = self.next_seed()
        x_mix = x
        if k > 0:
            x_mix = torch.cat([self.inner(self.attack)(model, x[:k], y[:k], seed), x[k:]])
        logits = model(x_mix)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)


_PGD_DOC = """PGD adversarial training (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks"): minimise the cross-entropy at ``x′ = PGD(x)``, the last iterate of
``steps`` steps of :class:`~robustscope.attacks.PGD` with ``early_exit=False`` from a random start.

The default step size ``α = 2.5 ε / steps`` is Madry et al.'s rule (enough to cross the
ball). wen2020 §B.1 trains with 10 steps of 2/255 at ε ∈ {4, 8, 16}/255: the default
gives exactly 2/255 at ε = 8/255; pass ``step_size=2/255`` for the other two.

Args:
    eps: radius ε (pixel units, in ``norm``).
    norm: ``"linf"`` or ``"l2"``.
    steps: PGD steps.
    step_size: α; default ``2.5 ε / steps``.
    random_start: start PGD from a uniform random point of the ball.
    attack_mode: ``"eval"`` (default) or ``"train"``: the model's mode during the attack
        (see the module doc; running statistics are never changed by the attack).
    box: the input box ``[lo, hi]`` (a side may be null) or ``"unbounded"``; None: the
        one the model declares (its dataset's box).
    eps_warmup: fraction of training over which ε and the step size ramp linearly
        from 0 to their values (0: none); helps large ε train from scratch.
    seed: seed of the objective's generator (the run's seed by default).
"""

_MIXED_DOC = """Mixed batches (Tsipras et al. 2019, App. B, after Kurakin et al. 2016): in every batch
the first ``⌊n/2⌋`` examples (a uniformly random half, since the loop reshuffles each
epoch) are replaced by their PGD points (as in :func:`pgd`), the others stay natural; the
loss is the mean cross-entropy of the whole batch.

Args: as :func:`pgd`.
"""


def _pgd_family(
    method: str, make: Callable[[InnerAttack, int], SeededObjective], doc: str
) -> Callable[..., Objective]:
    """The factory of an objective around Madry et al.'s PGD (``pgd``, ``mixed``): one
    signature, one construction, ``make(inner, seed)`` the objective."""

    def factory(
        eps: float,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        attack_mode: str = "eval",
        box: BoxParam = None,
        eps_warmup: float = 0.0,
        seed: int = 0,
    ) -> Objective:
        inner = pgd_inner(method, eps, norm, steps, step_size, random_start, attack_mode, box)
        return with_warmup(make(inner, seed), method, eps_warmup)

    factory.__name__ = factory.__qualname__ = method
    factory.__doc__ = doc
    return factory


pgd = register("pgd", "PGD adversarial training (Madry et al. 2018): CE at PGD points")(
    _pgd_family("pgd", AdversarialTraining, _PGD_DOC)
)


@register("trades", "TRADES (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x′))")
def trades(
    eps: float,
    beta: float = 6.0,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    attack_mode: str = "eval",
    box: BoxParam = None,
    eps_warmup: float = 0.0,
    seed: int = 0,
) -> Objective:
    """TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
    accuracy"): minimise ``CE(f(x), y) + β · (1/N) Σᵢ KL(f(xᵢ) ‖ f(x′ᵢ))``.

    ``x′`` maximises ``KL(f(x) ‖ f(x′))`` (clean prediction fixed) over the ball by
    :class:`~robustscope.attacks.PGD` with ``early_exit=False`` with ``loss="kl"``, from ``x + 0.001·N(0, I)``. The KL runs from the
    clean distribution to the adversarial one, is summed over classes and averaged over the
    batch ("batchmean"), and is differentiated through both distributions (:func:`trades_kl`).
    Reported logits are the clean ones, so the epoch's ``train_accuracy`` is clean accuracy;
    extras ``natural_loss`` (CE) and ``kl_term`` (the KL before the factor β).

    ``β = 1/λ`` trades accuracy for robustness: Zhang et al. use 6 (the default); shi2020
    Table 1 uses ``1/λ = 5`` with 10 steps of 2/255 at ε = 8/255 (the default step size
    ``2.5 ε / steps`` equals 2/255 there).

    Args:
        eps: radius ε (pixel units, in ``norm``).
        beta: weight β of the KL term (≥ 0).
        norm: ``"linf"`` or ``"l2"``.
        steps: steps of the KL attack.
        step_size: α; default ``2.5 ε / steps``.
        random_start: the Gaussian start (without it the KL attack cannot leave x).
        attack_mode: ``"eval"`` (default; as Zhang et al.'s code) or ``"train"``.
        box: the input box; None: the one the model declares (its dataset's box).
        eps_warmup: fraction of training over which ε and the step size ramp linearly
            from 0 to their values (0: none); helps large ε train from scratch.
        seed: seed of the objective's generator (the run's seed by default).
    """
    beta = real("trades", "beta", beta, minimum=0.0)
    inner = pgd_inner(
        "trades", eps, norm, steps, step_size, random_start, attack_mode, box, loss="kl"
    )
    return with_warmup(Trades(inner, beta, seed), "trades", eps_warmup)


mixed = register("mixed", "half natural, half PGD examples per batch (tsipras2019 App. B)")(
    _pgd_family("mixed", MixedTraining, _MIXED_DOC)
)
