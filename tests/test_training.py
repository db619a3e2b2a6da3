"""The training loop: schedules, learning, exact resume, refusal of unsafe resumes, NaN stop."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustscope import checkpoint, data
from robustscope.errors import TrainingError
from robustscope.training import StepOutput, TrainConfig, register, train
from robustscope.training.schedule import learning_rate
from robustscope.training.state import flatten, unflatten

QUIET = {"progress": False, "log": None}


def _digits_config(**kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "dataset": "digits",
        "model": "mlp",
        "model_kwargs": {"widths": [64]},
        "epochs": 3,
        "batch_size": 64,
        "lr": 0.05,
        "seed": 0,
        "device": "cpu",
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


# --- schedules ---------------------------------------------------------------------------


def test_multistep_schedule() -> None:
    cfg = _digits_config(epochs=160, lr=0.1, schedule="multistep", milestones=[80, 120])
    lrs = [learning_rate(cfg, e, 0, 10) for e in (0, 79, 80, 119, 120, 159)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_cosine_schedule_endpoints() -> None:
    cfg = _digits_config(epochs=4, lr=0.2, schedule="cosine")
    assert learning_rate(cfg, 0, 0, 10) == pytest.approx(0.2)
    assert learning_rate(cfg, 2, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cfg, 3, 9, 10) == pytest.approx(0.1 * (1 + math.cos(math.pi * 39 / 40)))


def test_onecycle_schedule_rises_then_falls() -> None:
    cfg = _digits_config(epochs=10, lr=0.2, schedule="onecycle", warmup_fraction=0.4)
    lrs = [learning_rate(cfg, e, s, 10) for e in range(10) for s in range(10)]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(0.2)
    assert peak == 39
    assert all(a <= b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert lrs[-1] < 0.01


def test_multistep_needs_milestones() -> None:
    with pytest.raises(ValueError, match="milestones"):
        _digits_config(schedule="multistep")


# --- state flattening ---------------------------------------------------------------------

nested = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.integers(0, 5) | st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(nested)
def test_flatten_round_trip(obj: object) -> None:
    tensors: dict[str, torch.Tensor] = {}
    assert unflatten(flatten(obj, "p", tensors), tensors) == obj


def test_flatten_round_trip_of_optimizer_state() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    restored = unflatten(flatten(opt.state_dict(), "o", tensors), tensors)
    original = opt.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for i, st_ in original["state"].items():
        for k, v in st_.items():
            assert torch.equal(restored["state"][i][k], v)


# --- training ------------------------------------------------------------------------------


def test_standard_training_learns_digits() -> None:
    result = train(_digits_config(epochs=4), None, **QUIET)  # type: ignore[arg-type]
    assert result.finished and result.completed_epochs == 4
    assert result.history[0]["test_accuracy"] < result.final["test_accuracy"]
    assert result.final["test_accuracy"] > 0.9
    assert result.final["train_loss"] < result.history[0]["train_loss"]


@register("test-noisy", "test objective drawing from the global RNG at every step")
def _noisy() -> object:
    def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        x = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
        logits = model(x)
        return StepOutput(torch.nn.functional.cross_entropy(logits, y), logits)

    return objective


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path, optimizer: str) -> None:
    cfg = _digits_config(
        model="smallcnn",
        model_kwargs={},
        train_subset=300,
        test_subset=100,
        epochs=3,
        batch_size=32,
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 1e-3,
        schedule="cosine",
        method="test-noisy",
    )
    straight = train(cfg, tmp_path / "straight", **QUIET)  # type: ignore[arg-type]
    first = train(cfg, tmp_path / "resumed", stop_after_epochs=1, **QUIET)  # type: ignore[arg-type]
    assert not first.finished and first.completed_epochs == 1
    torch.manual_seed(12345)  # a resumed process starts with an unrelated global RNG state
    second = train(cfg, tmp_path / "resumed", resume=True, stop_after_epochs=1, **QUIET)  # type: ignore[arg-type]
    assert second.completed_epochs == 2
    third = train(cfg, tmp_path / "resumed", resume=True, **QUIET)  # type: ignore[arg-type]
    assert third.finished
    a, b = straight.model.state_dict(), third.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in third.history]
    loaded, meta = checkpoint.load(tmp_path / "resumed")
    assert meta.extra["finished"] is True and meta.extra["epochs_completed"] == 3
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, a[k])


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    cfg = _digits_config(epochs=1, train_subset=100, test_subset=50)
    train(cfg, tmp_path / "run", **QUIET)  # type: ignore[arg-type]
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(TrainingError, match="--resume"):
        train(cfg, tmp_path / "run", **QUIET)  # type: ignore[arg-type]
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_resume_with_different_config_is_refused(tmp_path: Path) -> None:
    cfg = _digits_config(epochs=2, train_subset=100, test_subset=50)
    train(cfg, tmp_path / "run", stop_after_epochs=1, **QUIET)  # type: ignore[arg-type]
    changed = _digits_config(epochs=2, train_subset=100, test_subset=50, lr=0.5)
    with pytest.raises(TrainingError, match=r"lr: saved 0\.05 vs now 0\.5"):
        train(changed, tmp_path / "run", resume=True, **QUIET)  # type: ignore[arg-type]


@register("test-nan-later", "test objective whose loss becomes NaN in the second epoch")
def _nan_later(steps_before_nan: int = 5) -> object:
    count = {"n": 0}

    def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        count["n"] += 1
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if count["n"] > steps_before_nan:
            loss = loss * float("nan")
        return StepOutput(loss, logits)

    return objective


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    # 100 examples / batch 50 = 2 steps per epoch: NaN appears at step 1 of epoch 3
    cfg = _digits_config(
        epochs=5,
        train_subset=100,
        test_subset=50,
        batch_size=50,
        method="test-nan-later",
        method_params={"steps_before_nan": 4},
    )
    with pytest.raises(TrainingError, match=r"non-finite loss.*epoch 3.*epoch 2"):
        train(cfg, tmp_path / "run", **QUIET)  # type: ignore[arg-type]
    model, meta = checkpoint.load(tmp_path / "run")
    assert meta.extra["epochs_completed"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(TrainingError, match=r"valid training methods: .*standard"):
        train(_digits_config(method="nope", epochs=1, train_subset=10), None, **QUIET)  # type: ignore[arg-type]


def test_callbacks_add_to_history() -> None:
    seen: list[int] = []

    def cb(model: torch.nn.Module, epoch: int, row: dict[str, object]) -> dict[str, float]:
        seen.append(epoch)
        return {"custom": float(epoch) * 2}

    result = train(
        _digits_config(epochs=2, train_subset=100, test_subset=50),
        None,
        callbacks=[cb],
        **QUIET,  # type: ignore[arg-type]
    )
    assert seen == [1, 2]
    assert [r["custom"] for r in result.history] == [2.0, 4.0]


def test_digits_available_for_training() -> None:
    ds = data.load("digits", "train")
    assert ds.input_shape == (1, 8, 8)
