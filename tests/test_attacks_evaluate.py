"""evaluate(): ε-sweeps, both accuracy conventions, early stop per point, flags, wu2020 scores, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from robustscope import attacks, checkpoint, models
from robustscope.attacks import PGD, evaluate
from robustscope.attacks.base import Attack
from robustscope.attacks.registry import register
from robustscope.data.box import UNIT
from robustscope.errors import RobustscopeError


def _binary_linear(
    d: int = 20, seed: int = 0
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """A 2-class linear model with logits (0, wᵀx + b) on vectors in [0.3, 0.7], declared to
    live in the unit box (so the box-dependent checks run)."""
    g = torch.Generator().manual_seed(seed)
    model = models.create("linear", 2, (d,), box=UNIT)
    w = torch.randn(d, generator=g)
    b = -float(w.sum()) * 0.5  # boundary through the centre of the box
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[1] = w
        model.head.bias[1] = b
    x = 0.3 + 0.4 * torch.rand(400, d, generator=g)
    score = x @ w + b
    y = (score > 0).long()
    flip = torch.rand(400, generator=g) < 0.1  # some clean errors
    y[flip] = 1 - y[flip]
    return model.eval(), x, y, w, b


def _closed_form_linf(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: float, eps: float
) -> float:
    s = 2 * y.double() - 1
    return float(((s * (x.double() @ w.double() + b) - eps * w.abs().sum()) > 0).double().mean())


@pytest.mark.parametrize("attack", ["pgd", "fgsm", "apgd"])
def test_linear_closed_form_through_evaluate(attack: str) -> None:
    model, x, y, w, b = _binary_linear()
    epsilons = [0.0, 0.01, 0.02, 0.05]
    curve = evaluate(
        model, x, y, attack, epsilons, checks=False, **({"steps": 20} if attack != "fgsm" else {})
    )
    for eps in epsilons:
        assert curve.robust_accuracy[eps] == pytest.approx(
            _closed_form_linf(x, y, w, b, eps), abs=1e-12
        ), eps
    assert curve.robust_accuracy[0.0] == pytest.approx(curve.clean_accuracy)


class _Recorder(PGD):
    """PGD that records how many points each call received."""

    calls: ClassVar[list[int]] = []

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        type(self).calls.append(len(x))
        return super().run(x, y)

    def run_from(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        type(self).calls.append(len(x))
        return super().run_from(x, y, start)


register("test-recording-pgd")(_Recorder)


def test_only_points_still_robust_are_attacked() -> None:
    model, x, y, _, _ = _binary_linear(seed=1)
    _Recorder.calls = []
    curve = evaluate(
        model,
        x,
        y,
        "test-recording-pgd",
        [0.05, 0.01, 0.02],
        checks=False,
        batch_size=1000,
        steps=5,
    )
    # attacked in increasing ε order: all clean-correct points, then the survivors of each ε
    assert _Recorder.calls == [
        int(curve.clean_correct.sum()),
        int(curve.robust[1].sum()),
        int(curve.robust[2].sum()),
    ]
    assert curve.epsilons == [0.05, 0.01, 0.02]
    # non-increasing in ε and the two conventions
    accs = [curve.robust_accuracy[e] for e in sorted(curve.epsilons)]
    assert accs == sorted(accs, reverse=True)
    k = int(curve.clean_correct.sum())
    for e in curve.epsilons:
        assert curve.robust_accuracy_on_correct[e] == pytest.approx(
            curve.robust_accuracy[e] * len(x) / k
        )
    d = curve.to_dict()
    assert set(d) >= {
        "attack",
        "norm",
        "n",
        "clean_accuracy",
        "robust_accuracy",
        "robust_accuracy_on_correct",
        "flags",
    }
    assert d["robust_accuracy"]["0.01"] == curve.robust_accuracy[0.01]
    json.dumps(d)


def _closed_form_points(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: float, eps: float
) -> torch.Tensor:
    s = 2 * y.double() - 1
    return (s * (x.double() @ w.double() + b) - eps * w.abs().sum()) > 0


def test_after_attacks_only_the_survivors_and_reports_the_worst_case() -> None:
    """``after=``: the points an earlier evaluation broke (at its largest ε not above this
    one) are broken here without being attacked; the rest get the exact ℓ∞ attack."""
    model, x, y, w, b = _binary_linear(seed=2)
    clean = _closed_form_points(x, y, w, b, 0.0)
    g = torch.Generator().manual_seed(3)
    earlier_rows = [clean & (torch.rand(len(x), generator=g) < 0.7) for _ in range(2)]
    earlier_rows[1] &= earlier_rows[0]  # an earlier evaluation is non-increasing in ε too
    earlier = attacks.RobustnessCurve(
        attack="earlier", norm="linf", params={}, epsilons=[0.01, 0.05],
        clean_correct=clean, robust=torch.stack(earlier_rows), box=UNIT,
    )  # fmt: skip
    _Recorder.calls = []
    epsilons = [0.005, 0.02, 0.05]
    curve = evaluate(
        model, x, y, "test-recording-pgd", epsilons, checks=False, batch_size=1000, steps=20,
        after=earlier,
    )  # fmt: skip
    prior = {0.005: torch.ones_like(clean), 0.02: earlier_rows[0], 0.05: earlier_rows[1]}
    for e, eps in enumerate(epsilons):
        expected = prior[eps] & _closed_form_points(x, y, w, b, eps)
        assert torch.equal(curve.robust[e], expected), eps
    # ε = 0.005 attacks every correct point; ε = 0.02 only what both left robust
    assert _Recorder.calls[0] == int(clean.sum())
    assert _Recorder.calls[1] == int((curve.robust[0] & earlier_rows[0]).sum())
    assert curve.after == "earlier" and curve.to_dict()["after"] == "earlier"
    alone = evaluate(model, x, y, "pgd", epsilons, checks=False, steps=20)
    assert all(curve.robust_accuracy[e] <= alone.robust_accuracy[e] for e in epsilons)
    assert curve.robust_accuracy[0.05] < alone.robust_accuracy[0.05]  # the mask mattered


def test_after_must_be_the_same_points_and_norm() -> None:
    model, x, y, _, _ = _binary_linear(seed=2)
    first = evaluate(model, x, y, "fgsm", [0.01], checks=False)
    with pytest.raises(RobustscopeError, match="same model on the same x, y"):
        evaluate(model, x[:-1], y[:-1], "pgd", [0.01], checks=False, after=first)
    with pytest.raises(RobustscopeError, match="same norm"):
        evaluate(model, x, y, "pgd", [0.01], norm="l2", checks=False, after=first)


@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_epsilon_continuation_equals_a_hand_written_sweep(warm_start: bool, norm: str) -> None:
    """warm_start: each ε after the smallest attacks the survivors from their final iterate
    at the previous ε; without it every ε starts at random. Checked against a hand-written
    sweep with the same seed, over several batches."""
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[32]).eval()
    x, y = torch.rand(90, 1, 8, 8), torch.randint(0, 10, (90,))
    epsilons = [0.1, 0.03, 0.3] if norm == "linf" else [0.5, 0.2, 1.5]
    curve = evaluate(
        model, x, y, "pgd", epsilons, norm=norm, steps=3, seed=5, batch_size=32,
        checks=False, warm_start=warm_start,
    )  # fmt: skip
    assert curve.warm_start is warm_start
    alive = model(x).argmax(1) == y
    prev = None
    for eps in sorted(epsilons):
        atk = PGD(model, eps, steps=3, norm=norm, seed=5)
        reached = x.clone()
        idx = alive.nonzero()[:, 0]
        for s in range(0, len(idx), 32):
            b = idx[s : s + 32]
            start = prev[b] if (warm_start and prev is not None) else None
            reached[b] = atk(x[b], y[b], start=start)
            alive[b] = model(reached[b]).argmax(1) == y[b]
        prev = reached
        assert torch.equal(curve.robust[epsilons.index(eps)], alive), eps
    conventions = curve.to_dict()["conventions"]
    assert ("previous ε's final iterate" in conventions["warm_start"]) is warm_start


class _StartRecorder(PGD):
    """PGD that records every call: (ε, inputs, start or None, output)."""

    calls: ClassVar[list[tuple[float, torch.Tensor, torch.Tensor | None, torch.Tensor]]] = []

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = super().run(x, y)
        type(self).calls.append((self.eps, x.clone(), None, out.clone()))
        return out

    def run_from(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        out = super().run_from(x, y, start)
        type(self).calls.append((self.eps, x.clone(), start.clone(), out.clone()))
        return out


register("test-start-recording-pgd")(_StartRecorder)


def test_each_epsilon_starts_from_the_previous_final_iterate() -> None:
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[32]).eval()
    x = torch.rand(70, 1, 8, 8)
    y = model(x).argmax(1)
    _StartRecorder.calls = []
    epsilons = [0.02, 0.005, 0.05]
    evaluate(
        model, x, y, "test-start-recording-pgd", epsilons, steps=3, seed=1, batch_size=16,
        checks=False,
    )  # fmt: skip
    by_eps: dict[float, list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]] = {}
    for eps, xb, start, out in _StartRecorder.calls:
        by_eps.setdefault(eps, []).append((xb, start, out))
    assert sorted(by_eps) == sorted(epsilons)
    assert all(start is None for _, start, _ in by_eps[0.005])
    for lo, hi in ((0.005, 0.02), (0.02, 0.05)):
        reached = {
            xb[i].numpy().tobytes(): out[i] for xb, _, out in by_eps[lo] for i in range(len(xb))
        }
        n_checked = 0
        for xb, start, _ in by_eps[hi]:
            assert start is not None
            for i in range(len(xb)):
                assert torch.equal(start[i], reached[xb[i].numpy().tobytes()])
                n_checked += 1
        assert n_checked > 0


def test_repeated_epsilons_are_attacked_once() -> None:
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[32]).eval()
    x = torch.rand(60, 1, 8, 8)
    y = model(x).argmax(1)
    _Recorder.calls = []
    kw: dict[str, Any] = {"steps": 2, "seed": 3, "checks": False, "batch_size": 1000}
    rep = evaluate(model, x, y, "test-recording-pgd", [0.02, 0.0, 0.02, 0.01, 0.02], **kw)
    assert len(_Recorder.calls) == 2  # ε = 0.01 and 0.02, once each
    once = evaluate(model, x, y, "pgd", [0.0, 0.01, 0.02], **kw)
    for i, e in enumerate(rep.epsilons):
        assert torch.equal(rep.robust[i], once.robust[once.epsilons.index(e)]), e
    assert rep.warm_start


def test_warm_start_flag_needs_two_epsilons() -> None:
    model, x, y, _, _ = _binary_linear(seed=4)
    single = evaluate(model, x, y, "pgd", [0.0, 0.02], steps=3, checks=False)
    assert not single.warm_start
    assert "random" in single.to_dict()["conventions"]["warm_start"]
    cold = evaluate(model, x, y, "pgd", [0.01, 0.02], steps=3, checks=False, warm_start=False)
    assert not cold.warm_start


def test_warm_start_is_ignored_by_attacks_without_a_start() -> None:
    model, x, y, _, _ = _binary_linear(seed=3)
    curve = evaluate(model, x, y, "fgsm", [0.01, 0.02], checks=False, warm_start=True)
    assert not curve.warm_start
    assert "random" in curve.to_dict()["conventions"]["warm_start"]


def test_minimal_norm_attack_gives_distances() -> None:
    model, x, y, w, b = _binary_linear(seed=2)
    curve = evaluate(model, x, y, "deepfool", [0.0, 0.05, 0.1, 0.2], norm="l2", checks=False)
    assert curve.distances is not None
    correct = curve.clean_correct
    exact = (x @ w + b).abs() / w.norm()
    found = curve.distances[correct]
    assert torch.isfinite(found).all()
    # DeepFool on a linear model: one step to 1.02 (d + 1e-4) (overshoot, foolbox's escape),
    # then bisection along it: between d and d + 1.02 (d + 1e-4) · 2^-10
    d = exact[correct]
    assert bool((found >= d * (1 - 1e-6)).all())
    assert bool((found <= d + 1.02 * (d + 1e-4) * 2.0**-10 + 1e-6).all())
    for e, eps in enumerate(curve.epsilons):
        assert torch.equal(curve.robust[e], correct & (curve.distances > eps))


class _Masked(nn.Module):
    """Quantizes its input: gradients are zero, yet small changes flip decisions."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(torch.round(x * 8) / 8)


def test_gradient_masking_is_flagged() -> None:
    base, x, y, _, _ = _binary_linear(seed=3)
    masked = _Masked(base)
    curve = evaluate(masked, x[:200], y[:200], "pgd", [0.05, 0.15], steps=5, check_n=60, box=UNIT)
    names = {f.name for f in curve.flags}
    assert {"zero_gradients", "black_box_stronger", "not_broken_at_large_eps"} <= names
    honest = evaluate(base, x[:200], y[:200], "pgd", [0.05, 0.15], steps=10, check_n=60)
    assert not {f.name for f in honest.flags} & {
        "zero_gradients",
        "black_box_stronger",
        "not_broken_at_large_eps",
    }


def test_gradient_masking_is_flagged_in_l2() -> None:
    """The black-box cross-check runs Square in the evaluation's norm (ℓ2 here)."""
    base, x, y, _, _ = _binary_linear(seed=3)
    masked = _Masked(base)
    curve = evaluate(
        masked, x[:200], y[:200], "pgd", [0.3, 1.0], norm="l2", steps=5, check_n=60, box=UNIT
    )
    assert "black_box_stronger" in curve.checks_run
    assert {"zero_gradients", "black_box_stronger"} <= {f.name for f in curve.flags}
    honest = evaluate(base, x[:200], y[:200], "pgd", [0.3, 1.0], norm="l2", steps=10, check_n=60)
    assert "black_box_stronger" in honest.checks_run
    assert "black_box_stronger" not in {f.name for f in honest.flags}


class _Erratic(Attack):
    """Breaks points at small ε only: an attack that does not converge at larger ε."""

    name = "test-erratic"

    def __init__(self, model: nn.Module, eps: float, seed: int | None = None) -> None:
        super().__init__(model, eps=eps, seed=seed)

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps < 0.1:
            return PGD(self.model, eps=self.eps, steps=10, seed=self.seed)(x, y)
        return x


register("test-erratic")(_Erratic)


def test_non_monotone_attack_is_flagged() -> None:
    model, x, y, _, _ = _binary_linear(seed=4)
    curve = evaluate(model, x, y, "test-erratic", [0.05, 0.2], check_n=100)
    assert "non_monotone" in {f.name for f in curve.flags}
    # the reported curve itself stays monotone (adversarials found are final)
    assert curve.robust_accuracy[0.2] <= curve.robust_accuracy[0.05]


def test_accuracy_independent_robustness() -> None:
    model, x, y, _, _ = _binary_linear(seed=5)
    zero = attacks.accuracy_independent_robustness(model, x, y, 0.0, draws=3)
    assert zero.score == 0.0
    big = attacks.accuracy_independent_robustness(model, x, y, 0.3, draws=5, seed=1)
    assert -1.0 <= big.score < 0.0
    assert big.noisy_accuracy == pytest.approx(big.clean_accuracy + big.score)
    again = attacks.accuracy_independent_robustness(model, x, y, 0.3, draws=5, seed=1)
    assert again == big


def test_challenge_score_on_linear_model() -> None:
    model, x, y, w, b = _binary_linear(seed=6)
    result = attacks.challenge_score(model, x, y, "deepfool")
    correct = ((x @ w + b) > 0).long() == y
    # DeepFool's distances here are the exact ones up to its 2^-10 bisection (see above)
    expected = float((((x @ w + b).abs() / w.norm()) ** 2 * correct).sum() / len(x))
    assert expected * (1 - 1e-6) <= result.score <= expected * (1 + 1.02 * 2.0**-9) + 1e-6
    assert result.successes == int(correct.sum())
    per = torch.tensor(result.per_point, dtype=torch.float64)
    exact = ((x @ w + b).abs() / w.norm()).double() ** 2 * correct
    assert len(per) == len(x) and float(per.sum()) / len(x) == pytest.approx(result.score)
    assert torch.all(per[~correct] == 0)  # each d_i at its own point, misclassified ones 0
    torch.testing.assert_close(per, exact, rtol=1.02 * 2.0**-9 * 2, atol=1e-6)
    assert result.std_error == pytest.approx(float(per.std()) / len(x) ** 0.5)


def test_unknown_attack_and_parameters() -> None:
    model, x, y, _, _ = _binary_linear()
    with pytest.raises(RobustscopeError, match=r"valid attacks: .*pgd"):
        evaluate(model, x, y, "nope", [0.1])
    with pytest.raises(RobustscopeError, match="no parameter"):
        evaluate(model, x, y, "pgd", [0.1], checks=False, bogus=1)


def test_cli_attack_json(tmp_path: Path) -> None:
    import subprocess
    import sys

    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[32])
    checkpoint.save(tmp_path / "m.safetensors", model, {"dataset": "digits"})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustscope",
            "attack",
            str(tmp_path / "m.safetensors"),
            "--attack",
            "pgd",
            "--eps",
            "0,0.05,0.1",
            "--steps",
            "3",
            "--n",
            "50",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["attack"] == "pgd" and out["norm"] == "linf" and out["n"] == 50
    assert set(out["robust_accuracy"]) == {"0", "0.05", "0.1"}
    assert out["robust_accuracy"]["0"] == out["clean_accuracy"]
    assert isinstance(out["flags"], list)
