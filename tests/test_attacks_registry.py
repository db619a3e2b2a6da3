"""Every registered attack, one parametrised suite (foolbox 3's pattern): the cases come from
``robustscope.attacks.ATTACKS``, so an attack added to the registry is tested here.

Properties (hypothesis), over image inputs in [0, 1] and vector inputs with unbounded or
half-bounded boxes: the output has the input's shape and dtype, is finite, lies in the
declared box and (fixed-budget attacks) in the ε-ball; the same seed gives the same output;
ε = 0 returns the input; the model's mode, ``requires_grad`` flags and BatchNorm statistics
are restored. Then the box is the data's: vector inputs are never clamped into [0, 1], and an
undeclared box is an error, not a silent default.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import attacks, models
from robustscope.attacks import ATTACKS, Attack
from robustscope.attacks.threat import flat_norms
from robustscope.data.box import UNBOUNDED, UNIT, Box
from robustscope.errors import AttackError

#: the attacks robustscope registers (other test modules register "test-…" attacks)
REGISTERED = {n: cls for n, cls in ATTACKS.items() if not n.startswith("test-")}
FIXED = [n for n, cls in REGISTERED.items() if not cls.minimal_norm]
CASES = [(name, norm) for name, cls in REGISTERED.items() for norm in cls.norms]
#: variants of registered attacks that change their code path
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "fgsm-rs": ("fgsm", {"random_start": True}),
    "pgd-cw": ("pgd", {"loss": "cw"}),
    "pgd-kl": ("pgd", {"loss": "kl"}),
    "apgd-dlr": ("apgd", {"loss": "dlr"}),
    "deepfool-freeze": ("deepfool", {"box_rule": "freeze", "refine_steps": 3}),
}
VARIANT_CASES = [(v, norm) for v, (name, _) in VARIANTS.items() for norm in ATTACKS.get(name).norms]


def small_budget(name: str, steps: int) -> dict[str, Any]:
    """A few iterations of whatever the attack iterates, from its parameter names."""
    budget = {
        "steps": steps,
        "queries": 4 * steps,
        "restarts": 2,
        "n_target_classes": 2,
        "binary_steps": 2,
        "power_iters": 5,
        "refine_steps": 2,
    }
    return {k: v for k, v in budget.items() if k in attacks.parameters(name)}


def build(
    case: str, model: nn.Module, eps: float, norm: str, steps: int, seed: int, box: Box
) -> Attack:
    name, extra = VARIANTS.get(case, (case, {}))
    kw: dict[str, Any] = {**small_budget(name, steps), **extra, "seed": seed, "box": box}
    if "norm" in attacks.parameters(name):
        kw["norm"] = norm
    if not ATTACKS.get(name).minimal_norm:
        kw["eps"] = eps
    return attacks.create(name, model, **kw)


class TinyCNN(nn.Module):
    """A bare module (declares no box): attacks on it get ``box=`` explicitly."""

    def __init__(self, c: int, h: int, w: int, k: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * h * w, k)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@st.composite
def problems(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 5))
    image = draw(st.booleans())
    k = draw(st.sampled_from([1, 2, 3, 4, 5]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shape: tuple[int, ...]
    if image:
        shape = (draw(st.integers(1, 3)), draw(st.integers(2, 6)), draw(st.integers(2, 6)))
        box = UNIT
        x = torch.rand((n, *shape), generator=gen, dtype=dtype)
    else:
        shape = (draw(st.integers(1, 12)),)
        box = draw(st.sampled_from([UNBOUNDED, Box(0.0, None), Box(None, 2.0)]))
        x = 3 * torch.randn((n, *shape), generator=gen, dtype=dtype)
        x = x.abs() if box.lo == 0 else x
        x = x.clamp(max=box.hi) if box.hi is not None else x
    if k == 1:
        model: nn.Module = models.create("linear", 1, shape, box=box)
    elif image and draw(st.booleans()):
        model = TinyCNN(*shape, k)
    else:
        model = models.create("mlp", k, shape, widths=[8], box=box)
    return {
        "model": model.to(dtype).train(),  # attacks must run in eval mode and restore this
        "x": x,
        "y": torch.randint(0, max(k, 2), (n,), generator=gen),
        "box": box,
        "eps": draw(st.floats(0.0, 0.5)),
        "steps": draw(st.integers(1, 4)),
        "seed": seed,
    }


def _attack_or_skip(case: str, p: dict[str, Any], norm: str, eps: float) -> torch.Tensor | None:
    """The attack's output, or None where the attack declines the problem with a clear
    error: too few classes for its loss (APGD-T), or a half-bounded box (CW's change of
    variables needs both bounds or none)."""
    try:
        atk = build(case, p["model"], eps, norm, p["steps"], p["seed"], p["box"])
        return atk(p["x"], p["y"])
    except AttackError as exc:
        declined = ("at least" in str(exc) and "classes" in str(exc)) or (
            "both sides or neither" in str(exc) and not (p["box"].bounded or p["box"].unbounded)
        )
        if declined:
            return None
        raise


SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("case", "norm"), CASES + VARIANT_CASES)
@SETTINGS
@given(p=problems())
def test_output_in_box_and_ball_deterministic_state_restored(
    case: str, norm: str, p: dict[str, Any]
) -> None:
    x, model = p["x"], p["model"]
    flags = [q.requires_grad for q in model.parameters()]
    x_adv = _attack_or_skip(case, p, norm, p["eps"])
    if x_adv is None:
        return
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool(torch.isfinite(x_adv).all())
    assert bool(p["box"].contains(x_adv, atol=1e-6).all()), "left the declared box"
    name = VARIANTS.get(case, (case, {}))[0]
    if not ATTACKS.get(name).minimal_norm:
        assert bool((flat_norms(x_adv - x, norm) <= p["eps"] + 1e-5).all()), "left the ε-ball"
    again = _attack_or_skip(case, p, norm, p["eps"])
    assert again is not None and torch.equal(again, x_adv), "same seed, same output"
    assert model.training and [q.requires_grad for q in model.parameters()] == flags
    assert all(q.grad is None for q in model.parameters())


WARM_CASES = [
    (case, norm)
    for case, norm in CASES + VARIANT_CASES
    if ATTACKS.get(VARIANTS.get(case, (case, {}))[0]).warm_start
]


@pytest.mark.parametrize(("case", "norm"), WARM_CASES)
@SETTINGS
@given(p=problems(), spread=st.floats(0.0, 2.0))
def test_warm_started_output_in_box_and_ball_and_deterministic(
    case: str, norm: str, p: dict[str, Any], spread: float
) -> None:
    """Any start point, even far outside ball ∩ box, gives an output inside it."""
    x, y = p["x"], p["y"]
    atk = build(case, p["model"], p["eps"], norm, p["steps"], p["seed"], p["box"])
    g = torch.Generator().manual_seed(p["seed"])
    start = x + spread * (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1)
    x_adv = atk(x, y, start=start)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool((flat_norms(x_adv - x, norm) <= p["eps"] + 1e-5).all())
    assert bool(p["box"].contains(x_adv, atol=1e-6).all())
    assert torch.equal(atk(x, y, start=start), x_adv)


FIXED_CASES = [
    (case, norm)
    for case, norm in CASES + VARIANT_CASES
    if not ATTACKS.get(VARIANTS.get(case, (case, {}))[0]).minimal_norm
]


@pytest.mark.parametrize(("case", "norm"), FIXED_CASES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_eps_zero_returns_the_input(case: str, norm: str, p: dict[str, Any]) -> None:
    x_adv = _attack_or_skip(case, p, norm, 0.0)
    if x_adv is not None:
        assert float((x_adv - p["x"]).abs().max()) <= 1e-7


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


@pytest.mark.parametrize(("case", "norm"), CASES)
def test_batchnorm_statistics_untouched_even_under_no_grad(case: str, norm: str) -> None:
    torch.manual_seed(0)
    model = BNNet().train()
    model.fc1.bias.requires_grad_(False)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x, y = torch.rand(8, 10), torch.randint(0, 5, (8,))
    with torch.no_grad():  # the gradient attacks must still get their input gradients
        x_adv = build(case, model, 0.1, norm, 3, 0, UNIT)(x, y)
    assert x_adv.shape == x.shape and model.training
    assert not model.fc1.bias.requires_grad and model.fc1.weight.requires_grad
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k


@pytest.mark.parametrize(("case", "norm"), CASES)
def test_vector_inputs_are_not_clamped_into_the_unit_box(case: str, norm: str) -> None:
    """The bug of issue 11: attacks clamped Gaussian vectors into [0, 1]. On a vector model
    (declared box: unbounded) with inputs near 0, some adversarial coordinates go below 0."""
    torch.manual_seed(0)
    model = models.create("mlp", 5, (6,), widths=[16]).eval()
    assert models.declared_box(model) == UNBOUNDED
    x = 0.05 * torch.rand(64, 6)
    y = torch.randint(0, 5, (64,))
    if ATTACKS.get(case).minimal_norm:  # their default budgets
        kw = {"norm": norm} if "norm" in attacks.parameters(case) else {}
        x_adv = attacks.create(case, model, seed=0, **kw)(x, y)
    else:
        x_adv = build(case, model, 0.3, norm, 5, 0, model.spec.box)(x, y)
    moved = (x_adv - x).abs().amax(1) > 0
    assert bool(moved.any())
    assert float(x_adv.min()) < 0, "the unit box was applied to unbounded data"


@pytest.mark.parametrize("name", list(REGISTERED))
def test_undeclared_box_is_an_error_naming_the_fix(name: str) -> None:
    bare = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    kw: dict[str, Any] = {} if ATTACKS.get(name).minimal_norm else {"eps": 0.1}
    if ATTACKS.get(name).norms == ("l2",):
        kw["norm"] = "l2"
    with pytest.raises(AttackError, match=r"declares no input box.*box=\(0, 1\)"):
        attacks.create(name, bare, **kw)
    assert isinstance(attacks.create(name, bare, box="unbounded", **kw), Attack)


@pytest.mark.parametrize("name", FIXED)
def test_inputs_outside_the_box_are_refused(name: str) -> None:
    model = models.create("mlp", 3, (1, 4, 4), widths=[8])
    atk = attacks.create(name, model, eps=0.1)
    with pytest.raises(AttackError, match=r"outside the input box \[0, 1\]"):
        atk(torch.rand(2, 1, 4, 4) + 1.0, torch.tensor([0, 1]))


@pytest.mark.parametrize("name", FIXED)
def test_eps_as_fraction_and_bad_eps(name: str) -> None:
    model = models.create("mlp", 3, (1, 4, 4), widths=[8])
    norm = ATTACKS.get(name).norms[0]
    kw = {"norm": norm} if "norm" in attacks.parameters(name) else {}
    assert attacks.create(name, model, eps="8/255", **kw).eps == pytest.approx(8 / 255)
    for bad in (-0.1, float("inf"), "eight", True):
        with pytest.raises(AttackError, match="eps"):
            attacks.create(name, model, eps=bad, **kw)


@pytest.mark.parametrize("name", [n for n, c in REGISTERED.items() if c.norms != ("linf", "l2")])
def test_unsupported_norm_is_refused(name: str) -> None:
    model = models.create("mlp", 3, (1, 4, 4), widths=[8])
    other = "l2" if ATTACKS.get(name).norms == ("linf",) else "linf"
    kw: dict[str, Any] = {} if ATTACKS.get(name).minimal_norm else {"eps": 0.1}
    # an attack with a norm parameter refuses the other norm; one without takes no norm at all
    match = "norm" if "norm" in attacks.parameters(name) else "has no parameter"
    with pytest.raises(AttackError, match=match):
        attacks.create(name, model, norm=other, **kw)
