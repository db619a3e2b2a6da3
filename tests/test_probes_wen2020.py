"""The wen2020 probes: margins, generalization_gap, confidence (checked against loops)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import data, models
from robustscope.attacks import PGD
from robustscope.data.box import UNBOUNDED, UNIT
from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeData
from robustscope.probes.confidence import confidence
from robustscope.probes.generalization import generalization_gap
from robustscope.probes.margins import fixed_histogram, margins
from robustscope.probes.registry import run_probe


class Table(nn.Module):
    """A "model" returning chosen logits: input ``[N, 1]`` holds the row index of each example."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits.double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()]


def _index_inputs(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64)[:, None]


def _tiny(k: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = models.create("mlp", k, (1, 4, 4), widths=(6,)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, data.ArrayDataset, data.ArrayDataset]:
    """An MLP trained for a few steps on digits (errors remain on the test split)."""
    train, test = data.load("digits", "train"), data.load("digits", "test")
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=(32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, len(train.x), (128,), generator=gen)
        loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, train, test


def _state(model: nn.Module) -> tuple[bool, list[bool], list[torch.Tensor]]:
    return (
        model.training,
        [p.requires_grad for p in model.parameters()],
        [b.clone() for b in model.buffers()],
    )


# ----------------------------------------------------------------------------- margins


def test_margins_match_per_example_loops() -> None:
    model = _tiny(k=4)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(25, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (25,), generator=gen)
    res = margins(model, x, y, batch_size=7).test
    for i in range(len(x)):
        z = [float(v) for v in model(x[i : i + 1])[0].detach()]
        yi = int(y[i])
        best_other = max(z[j] for j in range(4) if j != yi)
        top = max(z)
        log_sum = top + math.log(sum(math.exp(v - top) for v in z))
        assert res.margin[i].item() == pytest.approx(z[yi] - best_other, abs=1e-12)
        assert res.p_true[i].item() == pytest.approx(math.exp(z[yi] - log_sum), abs=1e-12)
        assert res.loss[i].item() == pytest.approx(log_sum - z[yi], abs=1e-12)
        assert bool(res.correct[i]) == (z.index(top) == yi)
    # the model has both correct and wrong examples here, so the check is not one-sided
    assert 0 < int(res.correct.sum()) < len(x)


def test_margins_binary_score_model_reads_two_logits() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 1)).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    res = margins(model, x, y).test
    s = model(x)[:, 0].detach()
    expected = torch.where(y == 1, s, -s)
    assert torch.allclose(res.margin, expected, atol=1e-12)
    assert torch.allclose(
        res.loss, F.binary_cross_entropy_with_logits(s, y.double(), reduction="none")
    )


def test_histograms_fixed_edges_and_counts(digits) -> None:
    model, _, test = digits
    other = models.create("mlp", 10, (1, 8, 8), widths=(16,))
    x, y = test.x[:200], test.y[:200]
    a = margins(model, x, y, bins=10, range=(-2.0, 2.0)).test
    b = margins(other, x[:50], y[:50], bins=10, range=(-2.0, 2.0)).test
    for field in ("margin_edges", "p_true_edges", "loss_edges"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert np.array_equal(a.margin_edges.numpy(), np.linspace(-2.0, 2.0, 11))
    assert np.array_equal(a.p_true_edges.numpy(), np.linspace(0.0, 1.0, 21))
    for r, n in ((a, 200), (b, 50)):
        assert int(r.margin_hist.sum()) == int(r.p_true_hist.sum()) == int(r.loss_hist.sum()) == n
    # the narrow range leaves values outside: they are counted in the end bins
    assert a.margin_above > 0
    edges = a.margin_edges.tolist()
    brute = [0] * 10
    for v in a.margin.tolist():
        v = min(max(v, -2.0), 2.0)
        j = next(i for i in range(10) if v < edges[i + 1]) if v < 2.0 else 9
        brute[j] += 1
    assert a.margin_hist.tolist() == brute
    assert a.margin_above == sum(v > 2.0 for v in a.margin.tolist())
    assert a.margin_below == sum(v < -2.0 for v in a.margin.tolist())


def test_fixed_histogram_ignores_nan_and_refuses_bad_ranges() -> None:
    v = torch.tensor([math.nan, -5.0, 0.1, 0.5, 7.0], dtype=torch.float64)
    edges, counts, below, above = fixed_histogram(v, 0.0, 1.0, 2, probe="t", field="f")
    assert edges.tolist() == [0.0, 0.5, 1.0] and counts.tolist() == [2, 2]
    assert (below, above) == (1, 1)
    with pytest.raises(ProbeError, match="range"):
        fixed_histogram(v, 1.0, 1.0, 2, probe="t", field="f")
    with pytest.raises(ProbeError, match="bins"):
        fixed_histogram(v, 0.0, 1.0, 0, probe="t", field="f")


def test_negative_margin_fraction_is_error_rate(digits) -> None:
    model, _, test = digits
    res = margins(model, test.x, test.y).test
    wrong = int((model(test.x).argmax(1) != test.y).sum())
    assert wrong > 0
    assert res.frac_negative_margin == res.error_rate == wrong / len(test.x)
    s = res.scalars()
    assert s["frac_negative_margin"] == s["error_rate"]
    assert s["margin_median"] == pytest.approx(float(np.median(res.margin.numpy())))


def test_input_margin_deepfool_on_digits(digits) -> None:
    model, _, test = digits
    x, y = test.x[:60], test.y[:60]
    res = margins(model, x, y, input_margin=True).test
    assert res.input_margin is not None and res.input_margin_norm == "l2"
    d = res.input_margin[res.correct]
    assert bool((d[torch.isfinite(d)] > 0).all())
    assert bool((res.input_margin[~res.correct] == 0).all())
    assert res.input_margin_success_rate == float(torch.isfinite(d).double().mean()) > 0.9
    assert res.input_margin_hist is not None
    assert int(res.input_margin_hist.sum()) == int((~torch.isnan(res.input_margin)).sum())


def test_input_margin_linear_binary_is_exact_distance() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 1).double()
    model = nn.Sequential(nn.Flatten(), lin)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    y = (model(x)[:, 0] > 0).long().detach()  # all correct
    params = {"overshoot": 0.02, "box": "unbounded"}  # Gaussian inputs: no box
    res = margins(model, x, y, input_margin=True, deepfool_params=params).test
    w, b = lin.weight.detach()[0], float(lin.bias.detach())
    exact = torch.tensor(
        [abs(float(w @ xi) + b) / float(w.norm()) for xi in x], dtype=torch.float64
    )
    assert res.input_margin is not None
    assert bool((res.input_margin >= exact * (1 - 1e-9)).all())
    # one DeepFool step to 1.02 × the distance, pulled back by its 2^-10 bisection
    assert bool((res.input_margin <= exact * (1 + 1.02 * 2.0**-10) * (1 + 1e-9)).all())


def test_input_margin_failure_is_nan() -> None:
    lin = nn.Linear(4, 1).double()
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(1.0)  # constant score: every point class 1, no gradient to follow
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.randn(5, 4, dtype=torch.float64)
    model.input_box = UNBOUNDED  # how a bare module declares its input box
    res = margins(model, x, torch.ones(5, dtype=torch.long), input_margin=True).test
    assert res.input_margin is not None and bool(torch.isnan(res.input_margin).all())
    assert res.input_margin_success_rate == 0.0
    assert math.isnan(res.scalars()["input_margin_mean"])
    json.dumps(res.to_json())


# ----------------------------------------------------------------------------- confidence


def test_confidence_matches_brute_force_loop() -> None:
    model = _tiny(k=3, seed=2)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(80, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=gen)
    bins = 7
    res = confidence(model, x, y, bins=bins, batch_size=9)
    edges = res.confidence_edges.tolist()  # the stored edges define the bins
    assert edges == pytest.approx([b / bins for b in range(bins + 1)], abs=1e-15)
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    entropies = []
    for i in range(len(x)):
        z = [float(v) for v in model(x[i : i + 1])[0].detach()]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        p = [v / sum(e) for v in e]
        entropies.append(-sum(q * math.log(q) for q in p if q > 0))
        conf, pred = max(p), p.index(max(p))
        b = next(j for j in range(bins) if conf <= edges[j + 1])
        members[b].append((conf, pred == int(y[i])))
    ece, mce = 0.0, 0.0
    for b, mem in enumerate(members):
        assert int(res.confidence_hist[b]) == len(mem)
        if not mem:
            assert math.isnan(float(res.bin_confidence[b]))
            continue
        acc = sum(c for _, c in mem) / len(mem)
        conf = sum(c for c, _ in mem) / len(mem)
        assert res.bin_accuracy is not None
        assert float(res.bin_accuracy[b]) == pytest.approx(acc, abs=1e-12)
        assert float(res.bin_confidence[b]) == pytest.approx(conf, abs=1e-12)
        ece += len(mem) / len(x) * abs(acc - conf)
        mce = max(mce, abs(acc - conf))
    assert res.ece == pytest.approx(ece, abs=1e-12) and res.ece > 0.01
    assert res.mce == pytest.approx(mce, abs=1e-12)
    assert np.allclose(res.entropy.numpy(), entropies, atol=1e-12)
    assert sum(1 for m in members if m) >= 3  # several bins are populated


def _calibrated_logits(groups: list[tuple[float, int, int]], k: int = 4):
    """Rows whose max-probability is ``c`` exactly, ``n`` per group, ``n_right`` labelled with
    the argmax (class 0) and the rest with class 1."""
    rows, labels = [], []
    for c, n, n_right in groups:
        p = torch.tensor([c] + [(1 - c) / (k - 1)] * (k - 1), dtype=torch.float64)
        rows += [p.log()] * n
        labels += [0] * n_right + [1] * (n - n_right)
    return torch.stack(rows), torch.tensor(labels)


def test_ece_zero_when_calibrated_and_exact_when_not() -> None:
    calibrated = [(0.3, 10, 3), (0.5, 4, 2), (0.75, 4, 3), (0.9, 10, 9)]
    logits, y = _calibrated_logits(calibrated)
    res = confidence(Table(logits), _index_inputs(len(y)), y, bins=15)
    assert res.ece == pytest.approx(0.0, abs=1e-12)
    assert int((res.confidence_hist > 0).sum()) == 4
    # the same confidences with every prediction right: |acc − conf| = 1 − c per group
    logits, _ = _calibrated_logits(calibrated)
    y_right = torch.zeros(len(logits), dtype=torch.long)
    res = confidence(Table(logits), _index_inputs(len(y_right)), y_right, bins=15)
    expected = sum(n * (1 - c) for c, n, _ in calibrated) / len(y_right)
    assert res.ece == pytest.approx(expected, abs=1e-12)
    assert res.mce == pytest.approx(0.7, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 8),
    n=st.integers(1, 20),
    scale=st.sampled_from([0.0, 1e-3, 1.0, 30.0, 1e3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_entropy_within_zero_and_log_k(k: int, n: int, scale: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=gen, dtype=torch.float64)
    res = confidence(Table(logits), _index_inputs(n), bins=5)
    assert bool((res.entropy >= 0).all())
    assert bool((res.entropy <= math.log(k) + 1e-12).all())
    assert bool((res.max_prob >= 1 / k - 1e-12).all()) and bool((res.max_prob <= 1).all())
    assert int(res.entropy_hist.sum()) == int(res.confidence_hist.sum()) == n
    assert res.entropy_edges[-1].item() == pytest.approx(math.log(k))
    assert res.ece is None and "ece" not in res.scalars()


# ----------------------------------------------------------------------------- generalization


def test_generalization_gap_clean_matches_direct(digits) -> None:
    model, train, test = digits
    xtr, ytr, xte, yte = train.x[:300], train.y[:300], test.x[:200], test.y[:200]
    res = generalization_gap(model, xtr, ytr, xte, yte, batch_size=64)

    def direct(x, y):
        with torch.no_grad():
            z = model(x).double()
        return float(F.cross_entropy(z, y)), float((z.argmax(1) != y).double().mean())

    (ltr, etr), (lte, ete) = direct(xtr, ytr), direct(xte, yte)
    assert res.train_loss == pytest.approx(ltr, rel=1e-6)
    assert res.test_loss == pytest.approx(lte, rel=1e-6)
    assert (res.train_error, res.test_error) == (etr, ete)
    assert res.loss_gap == pytest.approx(lte - ltr, rel=1e-5)
    assert res.error_gap == pytest.approx(ete - etr, abs=1e-15)
    assert res.loss_gap > 0 and res.headline == "loss_gap"
    assert res.adv_test_loss is None and "adv_test_loss" not in res.scalars()


def test_generalization_gap_under_pgd(digits) -> None:
    model, train, test = digits
    xtr, ytr, xte, yte = train.x[:150], train.y[:150], test.x[:150], test.y[:150]
    rng = torch.get_rng_state()
    res = generalization_gap(
        model,
        xtr,
        ytr,
        xte,
        yte,
        attack="pgd",
        eps=0.1,
        attack_params={"steps": 5},
        seed=3,
        batch_size=200,
    )
    assert torch.equal(rng, torch.get_rng_state())
    assert res.adv_test_error is not None and res.adv_train_error is not None
    assert res.adv_test_error >= res.test_error and res.adv_train_error >= res.train_error
    assert res.adv_test_error > res.test_error  # the attack does something at ε = 0.1
    assert res.adv_test_loss is not None and res.adv_test_loss > res.test_loss
    # the same attack, run here by hand (one batch, same seed), gives the same numbers
    atk = PGD(model, 0.1, steps=5, seed=3, early_exit=False)
    x_adv = atk(xte, yte)
    with torch.no_grad():
        z, z0 = model(x_adv).double(), model(xte).double()
    assert res.adv_test_loss == pytest.approx(float(F.cross_entropy(z, yte)), rel=1e-6)
    robust = (z.argmax(1) == yte) & (z0.argmax(1) == yte)
    assert res.adv_test_error == float((~robust).double().mean())
    assert res.adv_test_error_on_correct == float((~robust[z0.argmax(1) == yte]).double().mean())
    assert res.adv_loss_gap == pytest.approx(res.adv_test_loss - res.adv_train_loss)
    assert res.attack_params == {"steps": 5, "seed": 3, "early_exit": False}


def test_generalization_gap_refuses_bad_attack_options(digits) -> None:
    model, train, test = digits
    args = (model, train.x[:10], train.y[:10], test.x[:10], test.y[:10])
    with pytest.raises(ProbeError, match="eps"):
        generalization_gap(*args, attack="pgd")
    with pytest.raises(ProbeError, match="minimal-norm"):
        generalization_gap(*args, attack="deepfool", eps=0.1)
    with pytest.raises(ProbeError, match="bogus"):
        generalization_gap(*args, attack="pgd", eps=0.1, attack_params={"bogus": 1})


# ----------------------------------------------------------------------------- registry


def test_run_probe_json_and_state_restored(digits) -> None:
    _, train, test = digits
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(16, 10),
    )
    model.input_box = UNIT  # a bare module declares the box of its data (digits: [0, 1])
    model.train()
    model[1].weight.requires_grad_(False)
    before = _state(model)
    both = ProbeData(test=(test.x[:40], test.y[:40]), train=(train.x[:30], train.y[:30]))
    only_test = ProbeData(test=(test.x[:40], test.y[:40]))
    runs = [
        ("margins", both, {"input_margin": True, "bins": 20}),
        ("margins", only_test, {}),
        ("generalization_gap", both, {"attack": "pgd", "eps": 0.05, "steps": 3}),
        ("generalization_gap", both, {}),
        ("confidence", only_test, {"bins": 10}),
    ]
    for name, d, opts in runs:
        res = run_probe(name, model, d, **opts)
        text = json.dumps(res.to_json())
        assert json.loads(text)["scalars"]
        after = _state(model)
        assert after[0] == before[0] and after[1] == before[1]
        assert all(torch.equal(a, b) for a, b in zip(after[2], before[2], strict=True))
    m_both = run_probe("margins", model, both)
    assert m_both.train is not None and m_both.train.n == 30  # type: ignore[attr-defined]
    assert "train/margin_mean" in m_both.scalars() and "test/margin_hist" in m_both.arrays()
    assert run_probe("margins", model, only_test).train is None  # type: ignore[attr-defined]
    with pytest.raises(ProbeError, match="train"):
        run_probe("generalization_gap", model, only_test)


def test_confidence_bins_are_closed_on_the_right() -> None:
    # max-probabilities exactly 0.5 (equal logits) and 1.0 sit on bin edges
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, -1e9], [0.0, -2.0]], dtype=torch.float64)
    res = confidence(Table(logits), _index_inputs(4), torch.tensor([0, 1, 0, 0]), bins=4)
    assert res.max_prob[:3].tolist() == [0.5, 0.5, 1.0]
    assert res.confidence_hist.tolist() == [0, 2, 0, 2]  # (0.25, 0.5] and (0.75, 1]
    assert res.bin_accuracy is not None and res.bin_accuracy[1].item() == 0.5
