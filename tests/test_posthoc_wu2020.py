"""wu2020's M1/M2/M3 against brute-force references on small models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import checkpoint, models, posthoc
from robustscope.posthoc import TransformError, apply, create
from robustscope.probes.base import ProbeData

torch.set_default_dtype(torch.float32)


def mlp(seed: int = 0, widths: tuple[int, ...] = (24, 12)) -> nn.Module:
    torch.manual_seed(seed)
    return models.create("mlp", 5, (1, 6, 6), widths=list(widths)).eval()


def data(n: int = 200, seed: int = 1) -> ProbeData:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)
    return ProbeData(test=(x[:50], y[:50]), train=(x, y))


def hidden(model: nn.Module, x: torch.Tensor, upto: int) -> torch.Tensor:
    """Post-activation output of ``model.body[:upto + 2]`` (Linear at index ``upto``, then
    its ReLU), computed by hand from the weights in float64."""
    h = model.normalize(x).reshape(len(x), -1).double()
    for i, m in enumerate(model.body):
        if isinstance(m, nn.Linear):
            h = torch.relu(h @ m.weight.double().T + m.bias.double())
            if i == upto:
                return h
    raise AssertionError(upto)


def test_every_method_at_p0_is_the_identity() -> None:
    model, d = mlp(), data()
    for method in posthoc.METHODS:
        out = apply(model, create(method, percent=0), data=d)
        for (name, a), (_, b) in zip(
            model.state_dict().items(), out.model.state_dict().items(), strict=True
        ):
            if method == "m1":
                assert torch.equal(a, b), (method, name)
            else:  # the SVD reconstruction: equal to float32 rounding
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_m1_drops_exactly_the_rarely_active_units_of_the_penultimate_layer() -> None:
    model, d = mlp(), data()
    x = d.train[0]  # type: ignore[index]
    act = (hidden(model, x, 3) > 0).double().mean(0)  # body.3 is the penultimate Linear
    p = float(torch.quantile(act, 0.5) * 100) + 1e-3  # about half the units
    expect = act < p / 100
    assert 0 < int(expect.sum()) < len(act)
    out = apply(model, create("m1", percent=p), data=d)
    new = out.model
    assert out.transforms[0].details["dropped"] == {"body.3": int(expect.sum())}
    assert out.transforms[0].details["units"] == {"body.3": 12}
    assert torch.all(new.body[3].weight[expect] == 0) and torch.all(new.body[3].bias[expect] == 0)
    assert torch.equal(new.body[3].weight[~expect], model.body[3].weight[~expect])
    assert torch.all(new.head.weight[:, expect] == 0)
    assert torch.equal(new.head.weight[:, ~expect], model.head.weight[:, ~expect])
    assert torch.equal(new.body[1].weight, model.body[1].weight)  # other layers untouched
    assert not torch.equal(model.head.weight[:, expect], new.head.weight[:, expect])


def test_m1_dropping_never_active_units_keeps_the_outputs_on_the_counting_set() -> None:
    model, d = mlp(widths=(24, 40)), data()
    x = d.train[0]  # type: ignore[index]
    with torch.no_grad():
        model.body[3].bias[:20] = -50.0  # 20 units that are never active
    out = apply(model, create("m1", percent=1e-6), data=d)
    dead = int(((hidden(model, x, 3) > 0).sum(0) == 0).sum())
    assert dead >= 20
    assert out.transforms[0].details["dropped"] == {"body.3": dead}
    with torch.no_grad():
        assert torch.equal(model(x), out.model(x))
        assert torch.all(out.model.head.weight[:, :20] == 0)


def test_m1_on_a_model_whose_only_linear_layer_is_the_classifier_drops_input_columns() -> None:
    torch.manual_seed(0)
    model = models.create("linear", 5, (1, 6, 6)).eval()
    g = torch.Generator().manual_seed(3)
    on = torch.linspace(0, 1, 36).reshape(1, 1, 6, 6)  # pixel i is non-zero with probability i/35
    x = torch.rand(300, 1, 6, 6, generator=g) * (torch.rand(300, 1, 6, 6, generator=g) < on)
    d = ProbeData(test=(x, torch.zeros(300, dtype=torch.long)), train=(x, x.new_zeros(300).long()))
    act = (model.normalize(x).reshape(len(x), -1) > 0).double().mean(0)
    out = apply(model, create("m1", percent=50), data=d)
    drop = act < 0.5
    assert 0 < int(drop.sum()) < len(act)
    assert torch.all(out.model.head.weight[:, drop] == 0)
    assert torch.equal(out.model.head.weight[:, ~drop], model.head.weight[:, ~drop])
    assert torch.equal(out.model.head.bias, model.head.bias)


def test_m1_all_layers_skips_the_classifier_inputs_already_covered() -> None:
    model, d = mlp(), data()
    out = apply(model, create("m1", percent=40, layer="all"), data=d)
    assert set(out.transforms[0].details["dropped"]) == {"body.1", "body.3"}


def singular_values(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(w.detach().double())


@pytest.mark.parametrize("p", [1, 10, 25, 50, 99])
def test_m2_zeroes_the_trailing_singular_values_against_float64_svd(p: float) -> None:
    model = mlp(widths=(24, 20))
    out = apply(model, create("m2", percent=p))
    before, after = singular_values(model.body[3].weight), singular_values(out.model.body[3].weight)
    k = math.floor(p * 20 / 100)
    assert out.transforms[0].details["dropped"] == {"body.3": k}
    torch.testing.assert_close(after[: 20 - k], before[: 20 - k], rtol=1e-5, atol=1e-5)
    assert torch.all(after[20 - k :] < 1e-5)
    fro = out.transforms[0].details["frobenius_after"]["body.3"]
    assert fro == pytest.approx(float(before.detach()[: 20 - k].square().sum().sqrt()), rel=1e-9)
    assert torch.equal(out.model.body[3].bias, model.body[3].bias)
    assert torch.equal(out.model.head.weight, model.head.weight)


def test_m2_on_every_layer() -> None:
    model = mlp(widths=(24, 20))
    out = apply(model, create("m2", percent=50, layer="all"))
    assert out.transforms[0].details["dropped"] == {"body.1": 12, "body.3": 10, "head": 2}


def test_m3_is_m1_then_m2() -> None:
    model, d = mlp(), data()
    both = apply(model, create("m3", percent=30), data=d).model
    seq = apply(model, [create("m1", percent=30), create("m2", percent=30)], data=d).model
    for (name, a), (_, b) in zip(both.state_dict().items(), seq.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0, 99.99), q=st.floats(0, 99.99))
def test_more_percent_drops_more(p: float, q: float) -> None:
    lo, hi = sorted((p, q))
    model, d = mlp(), data(n=60)
    for method in ("m1", "m2"):
        a = apply(model, create(method, percent=lo), data=d).transforms[0].details["dropped"]
        b = apply(model, create(method, percent=hi), data=d).transforms[0].details["dropped"]
        assert a["body.3"] <= b["body.3"]


@pytest.mark.parametrize("bad", [100, 150, -1, "x", float("nan")])
def test_percent_outside_0_100_is_refused(bad: object) -> None:
    with pytest.raises(TransformError, match="percent"):
        create("m2", percent=bad)


def test_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(TransformError, match=r"valid layers: body\.1, body\.3, head"):
        apply(mlp(), create("m2", percent=5, layer="body.2"))


def test_model_without_a_linear_layer_is_refused() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(TransformError, match=r"no fully connected \(nn.Linear\) layer"):
        apply(conv, create("m2", percent=5))


def test_m1_without_training_data_is_refused() -> None:
    with pytest.raises(TransformError, match="measures the model on data"):
        apply(mlp(), create("m1", percent=5))
    x = torch.rand(4, 1, 6, 6)
    only_test = ProbeData(test=(x, torch.zeros(4, dtype=torch.long)))
    with pytest.raises(TransformError, match="training examples"):
        apply(mlp(), create("m3", percent=5), data=only_test)


def test_a_robustified_checkpoint_says_how_it_was_made(tmp_path: Path) -> None:
    model, d = mlp(), data()
    src = checkpoint.save(tmp_path / "a.safetensors", model, {"dataset": "x"})
    meta = posthoc.transform_checkpoint(
        src, tmp_path / "b.safetensors", create("m3", percent=20), data=d
    )
    assert [r["name"] for r in meta.transforms] == ["m3"]
    assert meta.transforms[0]["params"] == {"percent": 20.0, "layer": None}
    loaded, meta2 = checkpoint.load(tmp_path / "b.safetensors")
    records = posthoc.records_of(meta2)
    rebuilt = apply(model, records[0].transform(), data=d).model
    for (name, a), (_, b) in zip(
        rebuilt.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
