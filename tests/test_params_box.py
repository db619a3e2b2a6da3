"""The two conventions with one owner each: numbers as written (``robustscope.params``) and
the input box (``robustscope.data.box``), and how the box travels dataset → model →
checkpoint."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from robustscope import checkpoint, data, models
from robustscope.data.box import UNBOUNDED, UNIT, Box, box_for_layout
from robustscope.errors import DataError, ParameterError, RobustscopeError, TrainingError
from robustscope.models.base import ModelSpec
from robustscope.params import (
    parse_eps,
    parse_eps_list,
    parse_ints,
    parse_number,
    parse_numbers,
    positive_int,
)


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_fractions_parse_to_their_value(num: int, den: int) -> None:
    assert parse_number(f"{num}/{den}", "x") == pytest.approx(float(Fraction(num, den)))
    assert parse_eps(f" {num}/{den} ", "x") == pytest.approx(num / den)


def test_number_forms_and_lists() -> None:
    assert parse_number(3, "x") == 3.0 and parse_number("1e-3", "x") == 0.001
    assert parse_numbers("0, 0.1,8/255", "x") == [0.0, 0.1, 8 / 255]
    assert parse_numbers([1, "2/4"], "x") == [1.0, 0.5]
    assert parse_numbers(0.25, "x") == [0.25]
    assert parse_eps_list("0,16/255", "--eps") == [0.0, 16 / 255]
    assert parse_ints("80, 120", "--milestones") == [80, 120]
    assert parse_ints("", "--milestones") == [] and parse_ints(None, "m") == []
    assert positive_int(3.0, "steps") == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: parse_number("8/0", "--eps"), r"--eps must be a number such as 0.1 or 8/255"),
        (lambda: parse_number(True, "eps"), "eps must be a number"),
        (lambda: parse_number("ten", "step_size"), "step_size"),
        (lambda: parse_eps("-1/255", "--eps"), "finite and ≥ 0, got -1/255"),
        (lambda: parse_eps(float("inf"), "eps"), "finite"),
        (lambda: parse_eps_list("", "--eps"), "comma-separated"),
        (lambda: parse_ints("1,x", "--milestones"), "--milestones expects comma-separated"),
        (lambda: positive_int(0, "steps"), "steps must be an integer ≥ 1"),
        (lambda: positive_int(1.5, "steps"), "integer"),
    ],
)
def test_parse_errors_name_the_field(call: object, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        call()  # type: ignore[operator]


def test_parameter_error_is_a_value_error_and_callers_choose_the_type() -> None:
    assert issubclass(ParameterError, ValueError)
    with pytest.raises(TrainingError, match="beta"):
        parse_number("x", "beta", error=TrainingError)


def test_box_forms_and_operations() -> None:
    assert Box.parse("unit") == UNIT and Box.parse([None, None]) == UNBOUNDED
    assert Box.parse("0, 255") == Box(0.0, 255.0) and Box.parse(["-1", "null"]) == Box(-1.0, None)
    assert Box.from_json(UNIT.to_json()) == UNIT and str(Box(0.0, None)) == "[0, inf]"
    x = torch.tensor([[-0.5, 0.5], [0.2, 0.3]])
    assert UNIT.contains(x).tolist() == [False, True]
    assert UNIT.contains(x, atol=0.5).tolist() == [True, True]
    assert torch.equal(UNBOUNDED.clamp(x), x) and float(UNIT.clamp(x).min()) == 0.0
    assert (UNIT.width, UNBOUNDED.width) == (1.0, float("inf"))
    assert box_for_layout((3, 32, 32)) == UNIT and box_for_layout((10,)) == UNBOUNDED
    for bad in ([1, 0], [0, float("nan")], "bounded", [0, 1, 2], [True, 1]):
        with pytest.raises(RobustscopeError, match="box"):
            Box.parse(bad)  # type: ignore[arg-type]


def test_every_dataset_declares_its_box() -> None:
    for name in data.names():
        box = data.info(name).box
        assert box == (UNBOUNDED if name == "tsipras" else UNIT), name
    for name in ("digits", "tsipras"):  # always present: the loaded split carries it
        assert data.load(name, "test").box == data.info(name).box, name


def test_dataset_refuses_values_outside_its_box() -> None:
    x = torch.rand(4, 1, 2, 2) * 2
    with pytest.raises(DataError, match=r"outside the declared input box \[0, 1\]"):
        data.ArrayDataset(x, torch.zeros(4, dtype=torch.long), 2, ("a", "b"), "toy")
    ok = data.ArrayDataset(x, torch.zeros(4, dtype=torch.long), 2, ("a", "b"), "toy", box="0,2")
    assert ok.box == Box(0.0, 2.0) and ok.subset([0, 1]).box == ok.box


def test_model_spec_records_the_box_and_old_specs_get_the_layout_rule(tmp_path: Path) -> None:
    m = models.create("mlp", 2, (5,), widths=[4], box=Box(-3.0, 3.0))
    path = checkpoint.save(tmp_path / "m.safetensors", m)
    loaded, meta = checkpoint.load(path)
    assert meta.model.box == Box(-3.0, 3.0) and models.declared_box(loaded) == Box(-3.0, 3.0)
    legacy = m.spec.to_dict()
    del legacy["box"]  # a checkpoint written before boxes were recorded
    assert ModelSpec.from_dict(legacy).box == UNBOUNDED
    legacy_img = models.create("mlp", 2, (1, 4, 4), widths=[4]).spec.to_dict()
    del legacy_img["box"]
    assert ModelSpec.from_dict(legacy_img).box == UNIT
