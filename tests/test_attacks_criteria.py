"""Success criteria (foolbox 3's pattern): untargeted by default, targeted and composite ones
for the attacks that take any criterion, and a clear refusal elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustscope import attacks, data, models
from robustscope.attacks import (
    ATTACKS,
    PGD,
    Confidence,
    Misclassification,
    TargetedMisclassification,
)
from robustscope.attacks.losses import ce_loss
from robustscope.errors import AttackError
from robustscope.evaluation import predict
from robustscope.training import TrainConfig, train


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=8, lr=0.1, device="cpu", seed=0)
    model = train(cfg, None, progress=False, log=None).model.eval()
    test = data.load("digits", "test").head(100)
    return model, test.x, test.y


def _targets(y: torch.Tensor, k: int = 10) -> torch.Tensor:
    return (y + 1 + torch.arange(len(y)) % (k - 1)) % k


def test_targeted_pgd_reaches_its_targets(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    t = _targets(y)
    untargeted = PGD(model, 0.3, steps=30, seed=0)(x, y)
    targeted = PGD(model, 0.3, steps=30, seed=0, criterion=TargetedMisclassification())(x, t)
    with torch.no_grad():
        hit = predict(model(targeted)) == t
        hit_by_chance = predict(model(untargeted)) == t
    assert float(hit.double().mean()) > 0.8
    assert float(hit.double().mean()) > float(hit_by_chance.double().mean()) + 0.3
    assert bool(((targeted - x).abs().amax(1) <= 0.3 + 1e-6).all())


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_targeted_objective_moves_towards_the_target(
    loss: str, digits: tuple[nn.Module, torch.Tensor, torch.Tensor]
) -> None:
    model, x, y = digits
    t = _targets(y)
    atk = PGD(model, 0.1, steps=10, loss=loss, seed=0, early_exit=False,
              criterion=TargetedMisclassification())  # fmt: skip
    with torch.no_grad():
        before, after = ce_loss(model(x), t), ce_loss(model(atk(x, t)), t)
    assert float((after < before).double().mean()) > 0.95


def test_composite_criterion_keeps_only_confident_mistakes(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    crit = Misclassification() & Confidence(0.9)
    x_adv = PGD(model, 0.3, steps=20, seed=0, criterion=crit)(x, y)
    with torch.no_grad():
        z = model(x_adv)
    plain = PGD(model, 0.3, steps=20, seed=0)(x, y)
    with torch.no_grad():
        z_plain = model(plain)
    # the plain attack stops at the first (often unconfident) mistake; the composite one
    # goes on until the mistake is confident, so it satisfies the criterion on more points
    assert float(torch.softmax(z_plain, 1).amax(1)[predict(z_plain) != y].min()) < 0.9
    assert int(crit(z, y).sum()) > int(crit(z_plain, y).sum()) + 10


def test_criteria_compose_and_refuse_contradictions() -> None:
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
    y = torch.tensor([1, 0])
    assert (Misclassification() & Confidence(0.8))(logits, y).tolist() == [True, False]
    assert (TargetedMisclassification() & Confidence(0.8)).targeted
    with pytest.raises(AttackError, match="both targeted and untargeted"):
        TargetedMisclassification() & Misclassification()
    with pytest.raises(AttackError, match="threshold"):
        Confidence(1.5)


@pytest.mark.parametrize(
    "name", [n for n, c in ATTACKS.items() if not c.any_criterion and not n.startswith("test-")]
)
def test_attacks_without_criteria_support_refuse_them(name: str) -> None:
    model = models.create("mlp", 10, (1, 8, 8), widths=[8])
    cls = ATTACKS.get(name)
    kw = {} if cls.minimal_norm else {"eps": 0.1}
    if "criterion" in attacks.parameters(name):
        with pytest.raises(AttackError, match="only the untargeted Misclassification"):
            attacks.create(name, model, criterion=TargetedMisclassification(), **kw)
    else:
        with pytest.raises(AttackError, match="no parameter"):
            attacks.create(name, model, criterion=TargetedMisclassification(), **kw)


def test_kl_loss_has_no_targeted_form() -> None:
    model = models.create("mlp", 10, (1, 8, 8), widths=[8])
    with pytest.raises(AttackError, match="no targeted form"):
        PGD(model, 0.1, loss="kl", criterion=TargetedMisclassification())
