"""Fixed-budget attacks: FGSM, PGD, CW-ℓ∞, APGD(-T), AutoAttackLite and Square.

Invariants on random models (hypothesis), exact worst cases on linear classifiers,
restart semantics, call counts, and strength on a digits MLP trained in the module fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from robustscope import data, models
from robustscope.attacks import registry
from robustscope.attacks.apgd import APGD, APGDT, AutoAttackLite, checkpoints, halve_step
from robustscope.attacks.base import Attack
from robustscope.attacks.gradient import FGSM, PGD, CWLinf, pgd_start
from robustscope.attacks.losses import ce_loss, kl_to_clean
from robustscope.attacks.square import Square, square_fraction, square_side
from robustscope.attacks.threat import ThreatModel, flat_norms
from robustscope.data.box import UNBOUNDED, UNIT, Box
from robustscope.errors import RobustscopeError
from robustscope.evaluation import predict
from robustscope.training import TrainConfig, train

Factory = Callable[..., Attack]

# --- helpers -----------------------------------------------------------------------------


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((predict(model(x)) == y).float().mean())


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return predict(model(x)) == y


class Counting(nn.Module):
    """Counts forward calls with and without autograd (a grad call is one backward too)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.grad_calls = 0
        self.plain_calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_calls += 1
        else:
            self.plain_calls += 1
        self.rows += len(x)
        return self.inner(x)

    @property
    def input_box(self) -> Box | None:
        return models.declared_box(self.inner)


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A (non-robust) MLP trained on sklearn digits (~97 % test accuracy) and 200 test points."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        model_kwargs={"widths": [64]},
        epochs=15,
        lr=0.1,
        batch_size=64,
        seed=0,
        device="cpu",
    )
    model = train(cfg, None, progress=False, log=None).model.eval()
    test = data.load("digits", "test")
    return model, test.x[:200], test.y[:200]


def test_pgd_l2_start_is_radially_uniform() -> None:
    tm = ThreatModel("l2", 0.5, UNBOUNDED)
    x = torch.zeros(4000, 64)
    r = flat_norms(pgd_start(tm, x, torch.Generator().manual_seed(0)), "l2")
    assert float(r.max()) <= 0.5 + 1e-6
    assert float(r.mean()) == pytest.approx(0.25, abs=0.01)
    assert float((r < 0.25).float().mean()) == pytest.approx(0.5, abs=0.03)


# --- exact worst cases on linear classifiers ------------------------------------------------


def _binary_linear(d: int, single_logit: bool, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """A binary linear classifier in float64, scores s = wᵀx + b centred on the box centre."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = -0.5 * w.sum()
    if single_logit:
        model = models.create("linear", 1, (d,)).double()
        model.head.weight.data = w[None].clone()
        model.head.bias.data = b.reshape(1).clone()
    else:  # logits (0, wᵀx + b)
        model = models.create("linear", 2, (d,)).double()
        model.head.weight.data = torch.stack([torch.zeros(d, dtype=torch.float64), w])
        model.head.bias.data = torch.stack([torch.zeros((), dtype=torch.float64), b])
    return model.eval(), w


def _linear_data(
    model: nn.Module, w: torch.Tensor, n: int, seed: int, lo: float = 0.3, hi: float = 0.7
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs in [lo, hi]^d, labels = clean prediction with 10 % flipped; and scores s."""
    g = torch.Generator().manual_seed(seed + 1)
    x = lo + (hi - lo) * torch.rand(n, len(w), generator=g, dtype=torch.float64)
    s = x @ w - 0.5 * w.sum()
    y = (s > 0).long()
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = 1 - y[flip]
    return x, y, s


def _closed_form(
    s: torch.Tensor, y: torch.Tensor, budget: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(robust under the worst case, usable): robust iff ŷ·s − budget > 0, with ŷ = 2y − 1.

    Points within 1e-6 of the decision (floating-point ties) are marked unusable.
    """
    gap = (2 * y - 1).to(s.dtype) * s - budget
    return gap > 0, gap.abs() > 1e-6


LINF_EXACT: dict[str, Callable[[nn.Module, float], Attack]] = {
    "fgsm": lambda m, e: FGSM(m, e),
    "pgd-ce": lambda m, e: PGD(m, e, steps=10, seed=0),
    "pgd-cw": lambda m, e: PGD(m, e, steps=10, loss="cw", seed=0),
    "cw-linf": lambda m, e: CWLinf(m, e, steps=10, seed=0),
    "apgd-ce": lambda m, e: APGD(m, e, steps=10, seed=0),
    "apgd-cw": lambda m, e: APGD(m, e, steps=10, loss="cw", seed=0),
    "autoattack-lite": lambda m, e: AutoAttackLite(m, e, steps=10, seed=0),
}


@pytest.mark.parametrize("single_logit", [True, False])
@pytest.mark.parametrize("name", list(LINF_EXACT))
def test_linf_exact_robust_accuracy_on_binary_linear(name: str, single_logit: bool) -> None:
    """Worst case in ball_∞(x, ε): x − ε·ŷ·sign(w), margin ŷs − ε‖w‖₁ (inputs in [0.3, 0.7],
    ε ≤ 0.2, so the [0, 1] box is never active)."""
    model, w = _binary_linear(20, single_logit, seed=1)
    x, y, s = _linear_data(model, w, 300, seed=1)
    for eps in (0.01, 0.02, 0.05, 0.2):
        robust, usable = _closed_form(s, y, eps * float(w.abs().sum()))
        assert 0 < float(robust[usable].float().mean()) < 1 or eps == 0.2
        x_adv = LINF_EXACT[name](model, eps)(x, y)
        got = _correct(model, x_adv, y)
        assert torch.equal(got[usable], robust[usable]), (name, eps)


@pytest.mark.parametrize("name", ["pgd-ce", "apgd-ce"])
def test_linf_exact_without_box(name: str) -> None:
    """Same worst case for unbounded inputs (Gaussian x; the vector model declares the
    unbounded box, so nothing is clamped)."""
    model, w = _binary_linear(15, True, seed=3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 15, generator=g, dtype=torch.float64)
    s = x @ w - 0.5 * w.sum()
    y = (s > 0).long()
    eps = 0.1
    robust, usable = _closed_form(s, y, eps * float(w.abs().sum()))
    atk = (
        PGD(model, eps, steps=10, seed=0)
        if name == "pgd-ce"
        else APGD(model, eps, steps=10, seed=0)
    )
    got = _correct(model, atk(x, y), y)
    assert torch.equal(got[usable], robust[usable])


L2_EXACT: dict[str, Callable[[nn.Module, float], Attack]] = {
    "fgsm-l2": lambda m, e: FGSM(m, e, norm="l2"),
    # from x the iterates move along the fixed direction −ŷw/‖w‖ and stop on the sphere
    "pgd-l2-no-start": lambda m, e: PGD(m, e, norm="l2", steps=10, random_start=False),
    # from a random start each projection shrinks the off-direction part by ε/‖δ + αu‖ ≈ 1/3
    "pgd-l2-random-start": lambda m, e: PGD(m, e, norm="l2", steps=40, step_size=2 * e, seed=0),
    "apgd-l2": lambda m, e: APGD(m, e, norm="l2", steps=30, seed=0),
}


@pytest.mark.parametrize("single_logit", [True, False])
@pytest.mark.parametrize("name", list(L2_EXACT))
def test_l2_exact_robust_accuracy_on_binary_linear(name: str, single_logit: bool) -> None:
    """Worst case in ball₂(x, ε): x − ε·ŷ·w/‖w‖₂, margin ŷs − ε‖w‖₂ (box inactive)."""
    model, w = _binary_linear(20, single_logit, seed=2)
    x, y, s = _linear_data(model, w, 300, seed=2)
    for eps in (0.05, 0.1, 0.2):
        robust, usable = _closed_form(s, y, eps * float(w.norm()))
        assert 0 < float(robust[usable].float().mean()) < 1
        got = _correct(model, L2_EXACT[name](model, eps)(x, y), y)
        assert torch.equal(got[usable], robust[usable]), (name, eps)


# --- restarts ------------------------------------------------------------------------------


class StepModel(nn.Module):
    """Binary score +5 if x₀ > 0.5 else −5: zero input gradient everywhere, so an attack
    never moves from its start and the outcome of each restart is its random start."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[:, :1] > 0.5, 5.0, -5.0).to(x.dtype) + 0 * x[:, :1]


@pytest.mark.parametrize("kind", ["pgd", "apgd"])
def test_success_kept_whenever_any_restart_succeeds(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    eps = 0.1
    g = torch.Generator().manual_seed(0)
    n = 64
    x = torch.rand(n, 3, generator=g)
    x[:, 0] = 0.5 + eps * (0.05 + 0.9 * torch.rand(n, generator=g))
    y = torch.ones(n, dtype=torch.long)
    starts: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = ThreatModel.random_start

    def recording(self: ThreatModel, xs: torch.Tensor, gen: Any = None) -> torch.Tensor:
        out = original(self, xs, gen)
        starts.append((xs.clone(), out.clone()))
        return out

    monkeypatch.setattr(ThreatModel, "random_start", recording)
    model = StepModel()
    restarts = 4
    atk = (
        PGD(model, eps, steps=3, restarts=restarts, seed=0, box=UNIT)
        if kind == "pgd"
        else APGD(model, eps, steps=3, restarts=restarts, seed=0, box=UNIT)
    )
    x_adv = atk(x, y)
    success = ~_correct(model, x_adv, y)
    assert len(starts) == restarts
    any_success = torch.zeros(n, dtype=torch.bool)
    first_success = torch.full((n,), -1)
    for r, (xs, out) in enumerate(starts):
        pos = (xs[:, None, :] == x[None, :, :]).all(-1).float().argmax(1)  # rows of x
        # a restart runs only on the examples no earlier restart broke
        assert not bool(any_success[pos].any())
        hit = ~_correct(model, out, y[pos])
        first_success[pos[hit]] = torch.where(
            first_success[pos[hit]] < 0, r, first_success[pos[hit]]
        )
        any_success[pos[hit]] = True
    assert torch.equal(success, any_success)
    assert 0 < int(success.sum()) < n
    assert len(set(first_success[success].tolist())) > 1, (
        "successes should come from several restarts"
    )


def _record_steps(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    sizes: list[torch.Tensor] = []
    original = ThreatModel.step

    def recording(self: ThreatModel, x_adv: torch.Tensor, grad: torch.Tensor, step: Any) -> Any:
        sizes.append(torch.as_tensor(step).clone())
        return original(self, x_adv, grad, step)

    monkeypatch.setattr(ThreatModel, "step", recording)
    return sizes


def test_apgd_halves_step_at_every_checkpoint_without_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flat objective: condition 1 holds at every checkpoint, so η halves at each of them."""
    eps, steps = 0.1, 20
    x = torch.rand(5, 3)
    x[:, 0] = 0.5 + 2 * eps  # never misclassified inside the ball
    sizes = _record_steps(monkeypatch)
    APGD(StepModel(), eps, steps=steps, seed=0, box=UNIT)(x, torch.ones(5, dtype=torch.long))
    ckpts = checkpoints(steps)
    assert ckpts == [0, 5, 9, 12, 14, 16, 18, 19, 20]
    assert len(sizes) == steps
    for k, eta in enumerate(sizes, start=1):
        halvings = sum(1 for w in ckpts if 0 < w < k)
        assert torch.allclose(eta, torch.full((5,), 2 * eps / 2**halvings)), k


def test_apgd_checkpoint_conditions() -> None:
    t, f = True, False
    #                 increases  reduced_last  f_best  f_best_last  → halve
    table = [
        (10, f, 2.0, 1.0, f),  # all steps rose, f_max improved
        (7, f, 2.0, 1.0, t),  # 7 < 0.75 · 10: condition 1
        (8, f, 2.0, 1.0, f),  # 8 ≥ 7.5
        (10, f, 1.0, 1.0, t),  # no improvement and η kept last time: condition 2
        (10, t, 1.0, 1.0, f),  # no improvement but η was just halved
        (0, t, 1.0, 1.0, t),  # condition 1 alone
    ]
    inc, red, fb, fl, want = (torch.tensor(c) for c in zip(*table, strict=True))
    got = halve_step(inc, 10, 0.75, red, fb.double(), fl.double())
    assert got.tolist() == want.tolist()


def test_more_restarts_never_weaker(digits: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = digits
    one = PGD(model, 0.08, steps=5, restarts=1, seed=3)(x, y)
    three = PGD(model, 0.08, steps=5, restarts=3, seed=3)(x, y)
    c1, c3 = _correct(model, one, y), _correct(model, three, y)
    assert not bool((c3 & ~c1).any()), "every point broken by restart 1 stays broken"
    assert float(c3.float().mean()) <= float(c1.float().mean())
    # unbroken points: the kept loss is the best over all restarts
    both = c1 & c3
    with torch.no_grad():
        l1, l3 = ce_loss(model(one[both]), y[both]), ce_loss(model(three[both]), y[both])
    assert bool((l3 >= l1 - 1e-6).all())


# --- cost: model calls ----------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "cw", "kl"])
def test_pgd_call_count(loss: str, digits: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = digits
    steps, restarts = 7, 3
    counting = Counting(model)
    PGD(counting, 0.1, steps=steps, restarts=restarts, loss=loss, seed=0)(x, y)
    assert counting.grad_calls <= steps * restarts
    assert counting.plain_calls <= 2 * restarts
    # at ε = 0 nothing correct gets broken: exactly `steps` gradient calls and one forward
    # per restart (+ the clean forward of the KL loss)
    correct = _correct(model, x, y)
    counting = Counting(model)
    PGD(counting, 0.0, steps=steps, restarts=restarts, loss=loss, seed=0)(x[correct], y[correct])
    assert counting.grad_calls == steps * restarts
    assert counting.plain_calls == restarts + (loss == "kl")


def test_apgd_call_count(digits: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = digits
    correct = _correct(model, x, y)
    counting = Counting(model)
    APGD(counting, 0.0, steps=12, restarts=2, seed=0)(x[correct], y[correct])
    # per restart: gradients at x⁰ … x¹¹ and a forward of the last iterate x¹²
    assert (counting.grad_calls, counting.plain_calls) == (24, 2)


# --- strength on a trained model -----------------------------------------------------------


def test_pgd_is_strong_on_a_standard_mlp(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    clean = _accuracy(model, x, y)
    robust = _accuracy(model, PGD(model, 0.1, steps=20, seed=0)(x, y), y)
    fgsm = _accuracy(model, FGSM(model, 0.1)(x, y), y)
    assert clean > 0.9
    assert robust < clean - 0.25
    assert robust <= fgsm + 0.01


def test_pgd_loss_increases_over_steps(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CE of the iterates rises from step to step on average (every step, every example)."""
    model, x, y = digits
    trace: list[torch.Tensor] = []
    original = PGD.input_grad

    def recording(self: PGD, *a: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = original(self, *a)
        trace.append(out[1].clone())
        return out

    monkeypatch.setattr(PGD, "input_grad", recording)
    PGD(model, 0.05, steps=10, random_start=False, early_exit=False)(x, y)
    curve = torch.stack(trace)
    assert curve.shape == (10, len(x))
    diffs = curve[1:] - curve[:-1]
    assert float(diffs.mean()) > 0
    assert float((diffs > 0).float().mean()) > 0.8
    assert bool((curve[-1] > curve[0]).all())


def test_apgd_at_least_as_strong_as_pgd(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    for eps in (0.05, 0.1):
        pgd = _accuracy(model, PGD(model, eps, steps=20, seed=0)(x, y), y)
        apgd = _accuracy(model, APGD(model, eps, steps=20, seed=0)(x, y), y)
        assert apgd <= pgd + 0.01, (eps, apgd, pgd)


def test_autoattack_lite_not_weaker_than_apgd_ce(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    ce_adv = APGD(model, 0.1, steps=10, seed=1)(x, y)
    aa_adv = AutoAttackLite(model, 0.1, steps=10, n_target_classes=3, seed=1)(x, y)
    ce_ok, aa_ok = _correct(model, ce_adv, y), _correct(model, aa_adv, y)
    assert not bool((aa_ok & ~ce_ok).any())
    assert int(aa_ok.sum()) <= int(ce_ok.sum())
    assert torch.equal(aa_adv[~ce_ok], ce_adv[~ce_ok]), "APGD-T runs only on robust points"


def test_apgd_targeted_and_dlr_find_adversarials(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    clean = _accuracy(model, x, y)
    for atk in (
        APGD(model, 0.1, steps=10, loss="dlr", seed=0),
        APGDT(model, 0.1, steps=10, n_target_classes=3, seed=0),
        APGD(model, 0.5, norm="l2", steps=10, seed=0),
    ):
        assert _accuracy(model, atk(x, y), y) < clean - 0.2, atk


def test_square_breaks_a_standard_mlp_with_forward_passes_only(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits

    class NoGrad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.rows = 0

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            assert not torch.is_grad_enabled() and not inp.requires_grad
            self.rows += len(inp)
            return self.inner(inp)

    wrapped = NoGrad()
    queries = 200
    x_adv = Square(wrapped, 0.1, queries=queries, seed=0, box=UNIT)(x, y)
    assert bool(ThreatModel("linf", 0.1, UNIT).contains(x_adv, x).all())
    clean = _accuracy(model, x, y)
    robust = _accuracy(model, x_adv, y)
    assert robust < clean - 0.2
    # early stop: broken points are no longer queried
    assert wrapped.rows < len(x) * queries
    # a black-box attack cannot beat white-box PGD by much on a smooth model
    assert robust >= _accuracy(model, PGD(model, 0.1, steps=20, seed=0)(x, y), y) - 0.05


def test_square_schedule() -> None:
    assert square_fraction(0, 10_000, 0.8) == 0.8
    assert square_fraction(10, 10_000, 0.8) == 0.8
    assert square_fraction(11, 10_000, 0.8) == 0.4
    assert square_fraction(8001, 10_000, 0.8) == pytest.approx(0.8 / 512)
    # a 1000-query budget: iteration i plays the role of 10 i
    assert square_fraction(1, 1000, 0.8) == 0.8
    assert square_fraction(2, 1000, 0.8) == 0.4
    assert square_fraction(999, 1000, 0.8) == pytest.approx(0.8 / 512)
    assert square_side(0.8, 32, 32) == 29
    assert square_side(0.8, 8, 8) == 7  # never the whole image
    assert square_side(0.001, 8, 8) == 1
    assert square_side(0.8, 1, 40) == 1


def test_kl_loss_increases_kl_to_clean(
    digits: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits
    eps = 0.05
    g = torch.Generator().manual_seed(0)
    start = ThreatModel("linf", eps, UNIT).project(x + 1e-3 * torch.randn(x.shape, generator=g), x)
    with torch.no_grad():
        clean = model(x)
        kl_start = kl_to_clean(model(start), clean)
        x_adv = PGD(model, eps, steps=10, loss="kl", seed=0)(x, y)
        kl_adv = kl_to_clean(model(x_adv), clean)
    assert float(kl_adv.mean()) > 100 * float(kl_start.mean())
    assert float(kl_adv.mean()) > 0.05
    assert float((kl_adv > kl_start).float().mean()) > 0.95


def test_against_torchattacks_pgd(digits: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    try:
        import torchattacks  # type: ignore[import-not-found]
    except ImportError:
        print("torchattacks is not installed: comparison skipped")
        pytest.skip("torchattacks is not installed (optional extra 'bench')")
    model, x, y = digits
    eps, steps, alpha = 0.1, 10, 0.025
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    ours = PGD(model, eps, steps=steps, step_size=alpha, seed=0)(x, y)
    assert _accuracy(model, ours, y) <= _accuracy(model, theirs, y) + 0.01


# --- parameters, defaults, registry ----------------------------------------------------------


def test_defaults_and_registry() -> None:
    model = models.create("mlp", 10, (1, 8, 8), widths=[8])
    names = registry.available()
    for name in ("fgsm", "pgd", "cw-linf", "apgd", "apgd-t", "autoattack-lite", "square"):
        assert name in names
    pgd = registry.create("pgd", model, eps=0.1, steps=4)
    assert isinstance(pgd, PGD) and pgd.step_size == pytest.approx(2.5 * 0.1 / 4)
    assert FGSM(model, 0.1).step_size == pytest.approx(0.1)
    assert FGSM(model, 0.1, random_start=True).step_size == pytest.approx(0.125)
    assert APGD(model, 0.1).steps == 100
    assert AutoAttackLite(model, 0.1).steps == 100
    assert CWLinf(model, 0.1).loss == "cw" and CWLinf(model, 0.1).norm == "linf"
    apgdt = registry.create("apgd-t", model, eps=0.1)
    assert isinstance(apgdt, APGD) and apgdt.loss == "dlr-targeted"
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: PGD(m, 0.1, loss="dlr"),
        lambda m: PGD(m, 0.1, steps=0),
        lambda m: PGD(m, -0.1),
        lambda m: PGD(m, 0.1, norm="l1"),
        lambda m: APGD(m, 0.1, loss="kl"),
        lambda m: APGD(m, 0.1, rho=0.0),
        lambda m: Square(m, 0.1, norm="l1"),
        lambda m: Square(m, 0.1, p_init=1.5),
    ],
)
def test_bad_parameters_are_refused(make: Callable[[nn.Module], Attack]) -> None:
    with pytest.raises(RobustscopeError):
        make(models.create("mlp", 3, (4,), widths=[4]))


def test_dlr_needs_enough_classes() -> None:
    x = torch.rand(3, 4)
    for k, loss in ((2, "dlr"), (3, "dlr-targeted"), (1, "dlr")):
        model = models.create("linear", k, (4,))
        with pytest.raises(RobustscopeError, match="at least"):
            APGD(model, 0.1, steps=2, loss=loss)(x, torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_autoattack_lite_with_few_classes(k: int) -> None:
    torch.manual_seed(0)
    model = models.create("linear", k, (5,))
    x, y = torch.rand(6, 5), torch.randint(0, max(k, 2), (6,))
    x_adv = AutoAttackLite(model, 0.3, steps=3, seed=0)(x, y)
    assert bool(ThreatModel("linf", 0.3, UNBOUNDED).contains(x_adv, x).all())


def test_pgd_without_early_exit_takes_every_step_for_every_example() -> None:
    """early_exit=False (the adversarial-training maximiser) returns the last iterate of a
    plain PGD loop, also for examples misclassified along the way."""
    from robustscope import models
    from robustscope.attacks.gradient import PGD, pgd_start
    from robustscope.attacks.losses import ce_loss

    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16]).eval()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    atk = PGD(model, eps=0.3, steps=4, seed=7, early_exit=False)
    out = atk(x, y)
    gen = torch.Generator().manual_seed(7)
    ref = pgd_start(atk.threat, x, gen)
    for _ in range(4):
        ref = ref.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(ce_loss(model(ref), y).sum(), ref)
        ref = atk.threat.project(atk.threat.step(ref.detach(), g, atk.step_size), x)
    assert torch.equal(out, ref)
    early = PGD(model, eps=0.3, steps=4, seed=7)(x, y)
    assert not torch.equal(early, out)  # with early exit, broken points stop moving


# --- warm start (start=...) ------------------------------------------------------------------
# (the property "any start gives an output in ball ∩ box" is in test_attacks_registry.py)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("early_exit", [True, False])
def test_pgd_warm_start_begins_at_the_projected_start(norm: str, early_exit: bool) -> None:
    """With a zero step size PGD cannot move: it returns the projected start point (or, with
    early exit, the start itself), not a random point."""
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16]).eval()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    start = x + 0.5 * torch.randn(x.shape)
    atk = PGD(model, 0.2, steps=3, step_size=0.0, norm=norm, seed=1, early_exit=early_exit)
    expected = atk.threat.project(start, x)
    assert torch.equal(atk(x, y, start=start), expected)
    assert not torch.equal(atk(x, y), expected)


def test_pgd_warm_start_equals_a_hand_written_loop_from_that_point() -> None:
    from robustscope.attacks.losses import ce_loss

    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16]).eval()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    atk = PGD(model, eps=0.3, steps=4, seed=7, early_exit=False)
    start = atk.threat.project(x + 0.3 * torch.randn(x.shape), x)
    ref = start
    for _ in range(4):
        ref = ref.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(ce_loss(model(ref), y).sum(), ref)
        ref = atk.threat.project(atk.threat.step(ref.detach(), g, atk.step_size), x)
    assert torch.equal(atk(x, y, start=start), ref)


def test_start_is_refused_where_it_does_not_apply() -> None:
    torch.manual_seed(0)
    model = models.create("mlp", 3, (6,), widths=[8]).eval()
    x, y = torch.rand(4, 6), torch.randint(0, 3, (4,))
    with pytest.raises(RobustscopeError, match="does not take a start point"):
        FGSM(model, 0.1)(x, y, start=x)
    with pytest.raises(RobustscopeError, match="start must have the shape of x"):
        PGD(model, 0.1)(x, y, start=x[:2])


def test_step_project_equals_the_plain_expression_and_leaves_its_inputs() -> None:
    tm = ThreatModel("linf", 0.1, UNIT)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 5, generator=g)
    bounds = tm.bounds(x)
    assert bounds is not None
    cases = [
        (x + 0.05, torch.randn(4, 3, 5, generator=g), 0.03),
        (x.double(), torch.randn(4, 3, 5, generator=g), 0.03),  # grad of another dtype
        (x + 0.0, torch.randn(1, 3, 5, generator=g), 0.03),  # grad broadcast
        (x + 0.0, torch.randn(4, 3, 5, generator=g), torch.tensor([0.01, 0.02, 0.03, 0.04])),
        ((x + 0.0).requires_grad_(), torch.randn(4, 3, 5, generator=g), 0.02),
    ]
    for x_adv, grad, step in cases:
        before = (x_adv.detach().clone(), grad.clone())
        s = step.reshape(-1, 1, 1) if isinstance(step, torch.Tensor) else step
        want = torch.clamp(x_adv + s * grad.sign(), bounds[0], bounds[1])
        got = tm.step_project(x_adv, grad, step, x, bounds)
        assert got.dtype == want.dtype and torch.equal(got, want)
        assert torch.equal(x_adv.detach(), before[0]) and torch.equal(grad, before[1])
