"""Adversarial-training objectives, the catastrophic-overfitting detector and tracking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from robustscope import checkpoint, data, models
from robustscope.attacks import attack_mode, evaluate
from robustscope.cli import app
from robustscope.errors import TrainingError
from robustscope.training import TrainConfig, make_objective, train
from robustscope.training.objectives import FreeTraining, MixedTraining, Trades
from robustscope.training.overfitting import (
    BEST_FILE,
    CatastrophicOverfittingDetector,
    CollapseCriteria,
)

QUIET: dict[str, Any] = {"progress": False, "log": None}


def _digits_config(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "dataset": "digits",
        "model": "mlp",
        "model_kwargs": {"widths": [64]},
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.05,
        "seed": 0,
        "device": "cpu",
        "train_subset": 192,
        "test_subset": 100,
    }
    base.update(kw)
    return TrainConfig(**base)


def _batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ds = data.load("digits", "train")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n]
    return ds.x[idx], ds.y[idx]


def _mlp(seed: int = 0) -> models.Classifier:
    torch.manual_seed(seed)
    return models.create("mlp", 10, (1, 8, 8), widths=[32])


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


METHODS: dict[str, dict[str, Any]] = {
    "pgd": {"eps": 0.1, "steps": 3},
    "trades": {"eps": 0.1, "steps": 3, "beta": 5},
    "fgsm": {"eps": 0.1},
    "fgsm-rs": {"eps": 0.1},
    "free": {"eps": 0.1, "replays": 2},
    "mixed": {"eps": 0.1, "steps": 3},
    "noise": {"sigma": 0.1},
}


# --- every objective -------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_every_objective_trains_on_digits(method: str) -> None:
    result = train(_digits_config(method=method, method_params=METHODS[method]), None, **QUIET)
    assert result.finished
    for row in result.history:
        assert torch.isfinite(torch.tensor(row["train_loss"]))
        assert 0 <= row["train_accuracy"] <= 1
    if method == "trades":
        assert {"kl_term", "natural_loss"} <= set(result.final)
        assert result.final["kl_term"] >= 0


def test_bad_method_params_are_clear_errors() -> None:
    with pytest.raises(TrainingError, match=r"method 'pgd'.*eps"):
        make_objective("pgd")
    with pytest.raises(TrainingError, match=r"attack_mode must be one of eval, train"):
        make_objective("pgd", eps=0.1, attack_mode="both")
    with pytest.raises(TrainingError, match=r"norm must be one of"):
        make_objective("trades", eps=0.1, norm="l1")
    with pytest.raises(TrainingError, match=r"unexpected keyword argument 'eps'"):
        make_objective("standard", eps=0.1)
    # fractions as in the papers, and the run's seed reaches only factories that take one
    assert make_objective("pgd", eps="8/255", run_seed=3) is not None
    assert make_objective("standard", run_seed=3) is not None


def test_trades_loss_is_ce_plus_beta_kl_on_a_fixed_x_adv() -> None:
    model = _mlp()
    with torch.no_grad():
        model.head.weight.mul_(20)  # confident predictions: a KL well above rounding
    x, y = _batch(16)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    x_adv = (x + 0.3 * noise).clamp(0, 1)
    objective = make_objective("trades", eps=0.1, beta=5.0, run_seed=0)
    assert isinstance(objective, Trades)
    objective.attack = lambda model, x_, y_, seed: x_adv  # fix x′
    out = objective(model, x, y)
    clean, adv = model(x), model(x_adv)
    natural = F.cross_entropy(clean, y)
    kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="batchmean")
    assert kl > 0.01
    torch.testing.assert_close(out.loss, natural + 5.0 * kl)
    torch.testing.assert_close(out.logits, clean)  # reported logits: clean
    assert out.extras["natural_loss"] == pytest.approx(float(natural.detach()), rel=1e-5)
    assert out.extras["kl_term"] == pytest.approx(float(kl.detach()), rel=1e-4)


def test_fgsm_objective_matches_a_float64_closed_form() -> None:
    """wen2020 §B.6's FGSM training: CE at clip(x + ε·sign(∇ₓ CE)), no random start. For a
    linear softmax model ∇ₓ CE_i = Wᵀ(softmax(z_i) − e_{y_i}), written out here in float64."""
    torch.manual_seed(0)
    model = models.create("linear", 10, (1, 8, 8)).double()
    with torch.no_grad():
        model.head.weight.mul_(5)
    x, y = _batch(16)
    x = x.double()
    w, b = model.head.weight.detach(), model.head.bias.detach()
    flat = x.reshape(len(x), -1)
    torch.testing.assert_close(model(x), flat @ w.T + b)  # no normalization in the way
    eps = 0.1
    p = torch.softmax(flat @ w.T + b, dim=1)
    grad = (p - F.one_hot(y, 10).double()) @ w  # [N, 64]
    x_ref = (flat + eps * grad.sign()).clamp(0, 1)
    z_ref = x_ref @ w.T + b
    ce_ref = (torch.logsumexp(z_ref, 1) - z_ref.gather(1, y[:, None])[:, 0]).mean()
    objective = make_objective("fgsm", eps=eps, run_seed=0)
    out = objective(model, x, y)
    torch.testing.assert_close(out.loss, ce_ref)
    torch.testing.assert_close(out.logits, z_ref)
    assert torch.equal(objective(model, x, y).loss, out.loss)  # no random start: deterministic
    # the random start is what sets FGSM-RS apart
    assert not torch.equal(
        make_objective("fgsm-rs", eps=eps, run_seed=0)(model, x, y).loss, out.loss
    )


def test_trades_inner_attack_increases_kl_inside_the_ball() -> None:
    model = _mlp()
    x, y = _batch(32)
    objective = make_objective("trades", eps=0.1, steps=5, run_seed=0)
    assert isinstance(objective, Trades)
    x_adv = objective.attack(model, x, y, 0)
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        noise = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
        assert F.kl_div(
            F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="batchmean"
        ) > 10 * F.kl_div(
            F.log_softmax(model(noise), 1), F.softmax(model(x), 1), reduction="batchmean"
        )


def test_mixed_attacks_exactly_the_first_half() -> None:
    model = _mlp()
    x, y = _batch(9)  # odd: ⌊9/2⌋ = 4 adversarial, 5 natural
    objective = make_objective("mixed", eps=0.1, steps=3, run_seed=0)
    assert isinstance(objective, MixedTraining)
    inner = objective.attack
    attacked: list[torch.Tensor] = []

    def counting(m: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, seed: int) -> torch.Tensor:
        attacked.append(xb)
        return inner(m, xb, yb, seed)

    objective.attack = counting
    out = objective(model, x, y)
    assert len(attacked) == 1 and torch.equal(attacked[0], x[:4])
    # the logits are those of [x_adv of the first half; the natural second half]
    with torch.no_grad():
        torch.testing.assert_close(out.logits[4:], model(x[4:]))
        assert not torch.allclose(out.logits[:4], model(x[:4]))
    assert out.y is None and len(out.logits) == 9


def test_noise_with_sigma_zero_is_standard_training_exactly() -> None:
    standard = train(_digits_config(), None, **QUIET)
    noise0 = train(_digits_config(method="noise", method_params={"sigma": 0.0}), None, **QUIET)
    _assert_same_weights(standard.model, noise0.model)
    noisy = train(_digits_config(method="noise", method_params={"sigma": 0.2}), None, **QUIET)
    assert not torch.equal(standard.model.head.weight, noisy.model.head.weight)


def test_objective_randomness_is_fresh_per_batch_and_reproducible() -> None:
    model = _mlp()
    x, y = _batch(8)
    a = make_objective("pgd", eps=0.1, steps=1, step_size=0.0, run_seed=0)
    b = make_objective("pgd", eps=0.1, steps=1, step_size=0.0, run_seed=0)
    starts: list[torch.Tensor] = []
    for obj in (a, a, b):
        model_input: list[torch.Tensor] = []
        hook = model.register_forward_pre_hook(lambda m, args, rec=model_input: rec.append(args[0]))
        obj(model, x, y)
        hook.remove()
        starts.append(model_input[-1])  # the training forward: x + random start (α = 0)
    assert not torch.equal(starts[0], starts[1])  # a new start for every batch
    assert torch.equal(starts[0], starts[2])  # same seed, same sequence
    assert float((starts[0] - x).abs().max()) <= 0.1 + 1e-6


# --- free adversarial training ---------------------------------------------------------------


def test_free_updates_delta_with_the_same_backward() -> None:
    model = _mlp()
    x, y = _batch(8)
    objective = make_objective("free", eps=0.1, replays=3)
    assert isinstance(objective, FreeTraining) and objective.replays == 3
    out = objective(model, x, y)
    assert objective.delta is not None and not objective.delta.any()  # δ starts at 0
    out.loss.backward()  # the loop's backward: weight grads and the δ update
    assert model.head.weight.grad is not None
    d = torch.zeros_like(x, requires_grad=True)
    (g,) = torch.autograd.grad(F.cross_entropy(model((x + d).clamp(0, 1)), y), d)
    torch.testing.assert_close(objective.delta, 0.1 * g.sign())
    # δ persists and stays in the ball; a smaller batch uses its first rows
    for _ in range(3):
        objective(model, x[:5], y[:5]).loss.backward()
    assert float(objective.delta.abs().max()) <= 0.1 + 1e-7
    assert objective.delta.shape == x.shape


def test_free_replays_each_batch_with_an_optimizer_step_each(tmp_path: Path) -> None:
    cfg = _digits_config(
        method="free",
        method_params={"eps": 0.1, "replays": 3},
        optimizer="adam",
        lr=1e-3,
        epochs=1,
    )
    result = train(cfg, tmp_path / "run", **QUIET)
    assert result.finished
    tensors, _ = checkpoint.load_tensors(tmp_path / "run" / "train_state.safetensors")
    steps = [
        v for k, v in tensors.items() if k.startswith("optimizer.state.") and k.endswith("step")
    ]
    assert steps and all(float(v) == 3 * (192 // 32) for v in steps)  # Adam's step counts


# --- resume ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params"),
    [("pgd", {"eps": 0.1, "steps": 3}), ("free", {"eps": 0.1, "replays": 2})],
)
def test_interrupted_and_resumed_equals_uninterrupted(
    tmp_path: Path, method: str, params: dict[str, Any]
) -> None:
    cfg = _digits_config(method=method, method_params=params, epochs=3, train_subset=160)
    straight = train(cfg, tmp_path / "straight", **QUIET)
    first = train(cfg, tmp_path / "resumed", stop_after_epochs=1, **QUIET)
    assert first.completed_epochs == 1
    torch.manual_seed(12345)  # a resumed process starts with an unrelated global RNG state
    second = train(cfg, tmp_path / "resumed", resume=True, stop_after_epochs=1, **QUIET)
    assert second.completed_epochs == 2
    third = train(cfg, tmp_path / "resumed", resume=True, **QUIET)
    assert third.finished
    _assert_same_weights(straight.model, third.model)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in third.history]
    tensors, _ = checkpoint.load_tensors(tmp_path / "resumed" / "train_state.safetensors")
    key = "objective.delta" if method == "free" else "objective.generator"
    assert key in tensors
    if method == "free":
        assert tensors[key].abs().max() > 0


# --- the trade-off ---------------------------------------------------------------------------


def test_pgd_training_buys_robustness_with_accuracy() -> None:
    """Digits, MLP 64-128, 10 epochs: PGD-AT at ε = 0.2 (5 steps) against standard training,
    both evaluated with PGD-10 at ε = 0.2 on the 500 test digits. Measured (CPU, seed 0):
    standard clean 0.962 / robust 0.022; PGD-AT clean 0.936 / robust 0.464."""
    test = data.load("digits", "test")

    def run(method: str, params: dict[str, Any]) -> dict[float, float]:
        cfg = _digits_config(
            method=method,
            method_params=params,
            model_kwargs={"widths": [128]},
            epochs=10,
            batch_size=64,
            train_subset=None,
            test_subset=None,
        )
        model = train(cfg, None, **QUIET).model
        curve = evaluate(model, test.x, test.y, "pgd", [0.0, 0.2], steps=10, seed=0, checks=False)
        return curve.robust_accuracy

    std = run("standard", {})
    adv = run("pgd", {"eps": 0.2, "steps": 5})
    assert adv[0.2] >= std[0.2] + 0.3, (std, adv)
    assert std[0.0] >= adv[0.0] - 0.005, (std, adv)  # clean accuracy: standard is not worse
    assert std[0.0] > 0.9 and adv[0.0] > 0.85


# --- attack mode -----------------------------------------------------------------------------


def _bn_model() -> models.Classifier:
    torch.manual_seed(0)
    model = models.create("resnet20", 10, (1, 8, 8), width=0.25)
    model.train()
    x, _ = _batch(32, seed=5)
    with torch.no_grad():
        model(x)  # non-trivial running statistics
    return model


def test_attack_mode_train_keeps_batchnorm_statistics() -> None:
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, _ = _batch(16)
    with attack_mode(model, train=True):
        assert model.training
        assert not any(p.requires_grad for p in model.parameters())
        model(x)
        model(x + 0.1)
    assert model.training and all(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with attack_mode(model):  # the default is unchanged: eval mode
        assert not model.training


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs"])
def test_objective_in_train_attack_mode_updates_statistics_only_in_its_training_forward(
    method: str,
) -> None:
    model = _bn_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch(16)
    objective = make_objective(method, eps=0.1, attack_mode="train", run_seed=0)
    inner = objective.attack
    seen: list[torch.Tensor] = []

    def recording(
        m: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, seed: int
    ) -> torch.Tensor:
        seen.append(inner(m, xb, yb, seed))
        return seen[-1]

    objective.attack = recording
    objective(model, x, y)
    # replay only the training forward on a copy: same running statistics
    twin = _bn_model()
    twin.load_state_dict(start)
    with torch.no_grad():
        twin(seen[0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, twin.state_dict()[k]), k
    # and the train-mode attack differs from the eval-mode one (batch statistics)
    model.load_state_dict(start)
    eval_obj = make_objective(method, eps=0.1, attack_mode="eval", run_seed=0)
    assert not torch.equal(eval_obj.attack(model, x, y, 0), inner(model, x, y, 0))


# --- catastrophic overfitting ----------------------------------------------------------------


def test_collapse_rule() -> None:
    rule = CollapseCriteria()
    assert rule.collapsed(pgd=0.05, fgsm=0.8, best=0.45, fgsm_at_best=0.6)  # PGD gone, FGSM up
    assert rule.collapsed(pgd=0.2, fgsm=0.55, best=0.45, fgsm_at_best=0.6)  # −25 points
    assert not rule.collapsed(pgd=0.35, fgsm=0.7, best=0.45, fgsm_at_best=0.6)  # −10 points
    assert not rule.collapsed(pgd=0.05, fgsm=0.1, best=0.45, fgsm_at_best=0.6)  # all worse
    assert not rule.collapsed(pgd=0.0, fgsm=0.5, best=0.05, fgsm_at_best=0.1)  # nothing to lose


def _crafted(monkeypatch: pytest.MonkeyPatch, values: list[tuple[float, float]]) -> None:
    """Make the detector see ``values[epoch - 1]`` (PGD, FGSM accuracy) at each epoch."""

    def measure(
        self: CatastrophicOverfittingDetector, model: torch.nn.Module
    ) -> tuple[float, float]:
        self.calls = getattr(self, "calls", 0) + 1
        return values[self.calls - 1]

    monkeypatch.setattr(CatastrophicOverfittingDetector, "measure", measure)


def test_early_stop_at_collapse_keeps_the_best_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [(0.30, 0.40), (0.50, 0.60), (0.45, 0.65), (0.05, 0.80), (0.0, 0.9), (0.0, 0.9)]
    cfg = _digits_config(method="fgsm-rs", method_params={"eps": 0.1}, epochs=6, early_stop=True)
    _crafted(monkeypatch, values)
    result = train(cfg, tmp_path / "run", **QUIET)
    assert not result.finished and result.completed_epochs == 4
    assert result.stop_reason and "catastrophic overfitting at epoch 4" in result.stop_reason
    assert [r["co_collapse"] for r in result.history] == [False, False, False, True]
    assert result.history[-1]["co_best_epoch"] == 2
    assert result.history[-1]["stop_reason"] == result.stop_reason
    assert "stop" not in result.history[-1]
    # best.safetensors holds the weights after epoch 2
    _crafted(monkeypatch, values)
    reference = train(cfg, tmp_path / "ref", stop_after_epochs=2, **QUIET)
    best, meta = checkpoint.load(tmp_path / "run" / BEST_FILE)
    _assert_same_weights(best, reference.model)
    assert meta.extra["epoch"] == 2 and meta.metrics["co_pgd_accuracy"] == 0.5
    # a stopped run stays stopped on --resume
    again = train(cfg, tmp_path / "run", resume=True, **QUIET)
    assert again.completed_epochs == 4 and again.stop_reason == result.stop_reason


def test_detector_state_survives_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = [(0.30, 0.40), (0.50, 0.60), (0.05, 0.80)]
    cfg = _digits_config(method="fgsm-rs", method_params={"eps": 0.1}, epochs=3, early_stop=True)
    _crafted(monkeypatch, values)
    train(cfg, tmp_path / "run", stop_after_epochs=2, **QUIET)
    _crafted(monkeypatch, values[2:])  # a new process: only epoch 3 is measured
    resumed = train(cfg, tmp_path / "run", resume=True, **QUIET)
    assert resumed.stop_reason and "from its best 0.500 (epoch 2)" in resumed.stop_reason


def test_detector_measures_a_real_model() -> None:
    cfg = _digits_config(method="fgsm-rs", method_params={"eps": 0.1}, co_detect=True, co_batch=64)
    row = train(cfg, None, **QUIET).final
    assert 0 <= row["co_pgd_accuracy"] <= row["co_fgsm_accuracy"] + 0.05
    assert row["co_pgd_accuracy"] <= row["test_accuracy"]
    with pytest.raises(TrainingError, match="needs eps"):
        train(_digits_config(co_detect=True), None, **QUIET)


# --- tracking --------------------------------------------------------------------------------


def test_tracking_rows_every_n_epochs_and_weights_unchanged() -> None:
    cfg = _digits_config(
        method="pgd",
        method_params={"eps": 0.1, "steps": 2},
        epochs=3,
        track=["clean", "pgd"],
        track_every=2,
        track_n=50,
        track_params={"pgd": {"steps": 5}},
    )
    tracked = train(cfg, None, **QUIET)
    keys = {
        f"track/{split}/{name}"
        for split in ("train", "test")
        for name in ("clean_accuracy", "clean_loss", "pgd_accuracy")
    }
    rows = tracked.history
    assert not keys & set(rows[0])  # epoch 1: not due
    assert keys <= set(rows[1]) and keys <= set(rows[2])  # epoch 2 (every 2) and the last
    assert rows[1]["track/test/pgd_accuracy"] <= rows[1]["track/test/clean_accuracy"]
    untracked = train(cfg.model_copy(update={"track": []}), None, **QUIET)
    _assert_same_weights(tracked.model, untracked.model)
    with pytest.raises(TrainingError, match="unknown tracking measurement"):
        train(cfg.model_copy(update={"track": ["nope"], "track_params": {}}), None, **QUIET)


# --- CLI -------------------------------------------------------------------------------------


def test_cli_flags_reach_the_config(tmp_path: Path) -> None:
    base = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--model-kwarg",
        "widths=[32]",
        "--train-subset",
        "64",
        "--test-subset",
        "32",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
    ]
    out = tmp_path / "run"
    method = ["--method", "trades", "--eps", "8/255", "--steps", "2", "--beta", "5"]
    extra = ["--attack-mode", "train", "--track", "clean,pgd", "--track-n", "16"]
    extra += ["--track-param", "pgd.steps=3", "--json"]
    result = CliRunner().invoke(app, [*base, "--out", str(out), *method, *extra])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["method_params"] == {
        "eps": pytest.approx(8 / 255),
        "steps": 2,
        "beta": 5.0,
        "attack_mode": "train",
    }
    assert config["track"] == ["clean", "pgd"] and config["track_params"] == {"pgd": {"steps": 3}}
    history = json.loads((out / "history.json").read_text())
    assert "track/test/pgd_accuracy" in history[0] and "kl_term" in history[0]
    bad = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "bad"), "--method", "standard", "--sigma", "0.1"]
    )
    assert isinstance(bad.exception, TrainingError)
    assert "unexpected keyword argument 'sigma'" in str(bad.exception)


@pytest.mark.parametrize("method", ["pgd", "trades", "fgsm", "fgsm-rs", "mixed"])
def test_eps_warmup_scales_the_inner_attack(method: str) -> None:
    obj = make_objective(method, eps=0.2, eps_warmup=0.5)
    full = obj.attack
    obj.set_progress(0.25)
    half = obj.inner(full)
    assert half.eps == pytest.approx(0.1) and half.step_size == pytest.approx(full.step_size / 2)
    obj.set_progress(0.5)
    assert obj.inner(full) is full
    plain = make_objective(method, eps=0.2)
    plain.set_progress(0.01)
    assert plain.inner(plain.attack) is plain.attack
    with pytest.raises(TrainingError, match="eps_warmup must be a fraction"):
        make_objective(method, eps=0.2, eps_warmup=1.5)


def test_eps_warmup_run_is_exactly_resumable(tmp_path: Path) -> None:
    cfg = _digits_config(method="pgd", method_params={"eps": 0.2, "steps": 2, "eps_warmup": 0.5})
    straight = train(cfg.model_copy(update={"epochs": 3}), tmp_path / "a", **QUIET)
    train(cfg.model_copy(update={"epochs": 3}), tmp_path / "b", stop_after_epochs=1, **QUIET)
    resumed = train(cfg.model_copy(update={"epochs": 3}), tmp_path / "b", resume=True, **QUIET)
    _assert_same_weights(straight.model, resumed.model)
    no_warm = train(
        cfg.model_copy(update={"epochs": 3, "method_params": {"eps": 0.2, "steps": 2}}),
        None,
        **QUIET,
    )
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            no_warm.model.state_dict().values(), straight.model.state_dict().values(), strict=True
        )
    )
