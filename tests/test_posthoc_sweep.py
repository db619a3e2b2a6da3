"""The post-hoc sweep (wu2020 Fig. 1 and Table 1): every number against an independent
computation on the same members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustscope import attacks, models
from robustscope.attacks.scores import challenge_score
from robustscope.data import load
from robustscope.evaluation import predict
from robustscope.posthoc import TransformError, apply, create
from robustscope.posthoc.sweep import AttackSetting, SweepResult, run_sweep, transferred_examples
from robustscope.probes.base import ProbeData
from robustscope.training import TrainConfig, train

Fixture = tuple[nn.Module, ProbeData]
EPS = (0.0, 0.05, 0.1, 0.3)


@pytest.fixture(scope="module")
def digits() -> Fixture:
    cfg = TrainConfig(
        dataset="digits", model="mlp", model_kwargs={"widths": [64, 32]}, epochs=4, device="cpu"
    )
    model = train(cfg, None, progress=False, log=None).model.eval()
    te, tr = load("digits", "test"), load("digits", "train")
    return model, ProbeData(test=(te.x[:120], te.y[:120]), train=(tr.x[:400], tr.y[:400]))


@pytest.fixture(scope="module")
def sweep(digits: Fixture) -> SweepResult:
    model, d = digits
    return run_sweep(
        model,
        d,
        percents=[5, 30],
        transferred=[AttackSetting("fgsm", EPS), AttackSetting("deepfool", EPS)],
        adaptive=[AttackSetting("deepfool", norm="l2")],
        robust=[AttackSetting("pgd", (0.0, 0.1), params={"steps": 5})],
        noise_bound=0.1,
        noise_draws=3,
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((predict(model(x)) == y).double().mean())


def test_the_grid_has_p0_and_every_member_is_the_transform_applied(
    digits: Fixture, sweep: SweepResult
) -> None:
    model, d = digits
    x, y = d.test
    assert sweep.percents == (0.0, 5.0, 30.0) and sweep.methods == ("m1", "m2", "m3")
    assert sweep.n == 120
    for i, m in enumerate(sweep.methods):
        assert sweep.clean_accuracy[i, 0] == pytest.approx(accuracy(model, x, y), abs=1e-12)
        assert sweep.dropped[i, 0] == 0
        for j, p in enumerate(sweep.percents[1:], start=1):
            member = apply(model, create(m, percent=p), data=d).model
            assert sweep.clean_accuracy[i, j] == pytest.approx(accuracy(member, x, y), abs=1e-12)
    assert (sweep.dropped[:, 2] >= sweep.dropped[:, 1]).all() and sweep.dropped[:, 2].min() > 0


def test_transferred_examples_are_made_once_on_the_original(
    digits: Fixture, sweep: SweepResult
) -> None:
    model, d = digits
    x, y = d.test
    eps, acc = sweep.transferred["fgsm-linf"]
    assert eps == EPS and acc.shape == (3, 3, 4)
    member = apply(model, create("m2", percent=30), data=d).model
    for k, e in enumerate(EPS):
        x_adv = x if e == 0 else attacks.create("fgsm", model, eps=e)(x, y)
        assert acc[0, 0, k] == pytest.approx(accuracy(model, x_adv, y), abs=1e-12)
        assert acc[1, 2, k] == pytest.approx(accuracy(member, x_adv, y), abs=1e-12)
    assert acc[0, 0, 0] == sweep.clean_accuracy[0, 0]


def test_minimal_attack_perturbations_are_clipped_into_each_ball_and_the_box(
    digits: Fixture,
) -> None:
    model, d = digits
    x, y = d.test
    setting = AttackSetting("deepfool", (0.0, 0.02, 0.1, 10.0))
    made = transferred_examples(model, x, y, setting)
    full = attacks.create("deepfool", model, norm="linf")(x, y)
    for e, xa in zip(setting.eps, made, strict=True):
        assert float((xa - x).abs().max()) <= e + 1e-6
        assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    torch.testing.assert_close(made[-1], full)  # a ball larger than every δ clips nothing
    assert torch.equal(made[0], x)
    l2 = transferred_examples(model, x, y, AttackSetting("deepfool", (0.5,), norm="l2"))[0]
    assert float((l2 - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5


def test_adaptive_scores_robust_accuracy_and_noise_of_the_original(
    digits: Fixture, sweep: SweepResult
) -> None:
    model, d = digits
    x, y = d.test
    ref = challenge_score(model, x, y, "deepfool", norm="l2", seed=0)
    assert np.allclose(sweep.challenge["deepfool-l2"][:, 0], ref.score, rtol=1e-9)
    eps, rob = sweep.robust["pgd-linf"]
    assert eps == (0.0, 0.1)
    curve = attacks.evaluate(model, x, y, "pgd", [0.0, 0.1], steps=5, checks=False, seed=0)
    assert rob[0, 0, 1] == pytest.approx(curve.robust_accuracy[0.1], abs=1e-12)
    assert rob[:, :, 0] == pytest.approx(sweep.clean_accuracy, abs=1e-12)
    assert sweep.noise is not None and np.all(sweep.noise <= 1e-12 + 0.05)
    arrays = sweep.arrays()
    assert set(arrays) >= {
        "percents", "clean_accuracy", "dropped", "transferred/fgsm-linf",
        "transferred_eps/fgsm-linf", "robust/pgd-linf", "challenge/deepfool-l2", "noise",
    }  # fmt: skip


def test_bad_sweeps_are_refused(digits: Fixture) -> None:
    model, d = digits
    with pytest.raises(TransformError, match="unknown method 'm4'"):
        run_sweep(model, d, methods=["m4"])
    with pytest.raises(TransformError, match="minimal-norm attack"):
        run_sweep(model, d, methods=["m2"], adaptive=[AttackSetting("pgd", (0.1,))])
    with pytest.raises(TransformError, match="ascending"):
        run_sweep(model, d, methods=["m2"], transferred=[AttackSetting("fgsm", (0.1, 0.05))])
    with pytest.raises(TransformError, match=r"\[0, 100\)"):
        run_sweep(model, d, methods=["m2"], percents=[100])


def test_a_model_without_a_hidden_layer_sweeps_its_classifier() -> None:
    torch.manual_seed(0)
    model = models.create("linear", 3, (1, 4, 4)).eval()
    x = torch.rand(40, 1, 4, 4)
    y = torch.randint(0, 3, (40,))
    res = run_sweep(model, ProbeData(test=(x, y), train=(x, y)), methods=["m2"], percents=[50])
    assert res.dropped.tolist() == [[0, 1]]  # r = 3 singular values, ⌊1.5⌋ dropped


def test_every_member_is_evaluated_on_the_same_corrupted_copies(digits: Fixture) -> None:
    from robustscope import corruptions as corr
    from robustscope.posthoc.sweep import CorruptionSetting

    model, d = digits
    x, y = d.test
    setting = CorruptionSetting(("contrast", "fog"), (1, 5), seed=2)
    res = run_sweep(model, d, methods=["m2"], percents=[40], corruptions=setting)
    assert res.corruption_accuracy is not None and res.corruption_accuracy.shape == (1, 2, 2, 2)
    member = apply(model, create("m2", percent=40), data=d).model
    for j, m in enumerate((model, member)):
        ref = corr.evaluate(m, x, y, names=("contrast", "fog"), severities=(1, 5), seed=2)
        assert res.corruption_accuracy[0, j].tolist() == [list(ref.accuracy[t]) for t in ref.names]
    arrays = res.arrays()
    assert arrays["corruption_types"].tolist() == [
        corr.CORRUPTIONS.index("contrast"), corr.CORRUPTIONS.index("fog"),
    ]  # fmt: skip
    assert arrays["corruption_severities"].tolist() == [1.0, 5.0]
    hits = arrays["corruption_correct"]
    assert hits.shape == (1, 2, 1 + 2 * 2, len(x))
    assert hits[0, :, 1:].mean(-1).reshape(2, 2, 2) == pytest.approx(res.corruption_accuracy[0])
    assert hits[0, :, 0].mean(-1) == pytest.approx(res.clean_accuracy[0])
