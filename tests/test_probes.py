"""The probe framework: registry, result flattening, input_fisher, tracking during training."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from robustscope import models, plugins, probes
from robustscope.attacks.fisher import input_fisher_gram
from robustscope.errors import ProbeError, TrainingError
from robustscope.probes import ProbeData, ProbeResult, input_fisher, run_probe
from robustscope.training import TrainConfig, train

QUIET: dict[str, Any] = {"progress": False, "log": None}

plugins.load()  # tracked probes as training measurements (the CLI and studies do this)


def _tiny(k: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = models.create("mlp", k, (1, 4, 4), widths=(6,)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model


def _dense_fisher(model: nn.Module, xi: torch.Tensor) -> torch.Tensor:
    def logp(t: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(model(t[None]), 1)[0]

    jac = torch.autograd.functional.jacobian(logp, xi).reshape(-1, xi.numel())
    p = logp(xi).exp().detach()
    return jac.T @ torch.diag(p) @ jac


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class _Nested(ProbeResult):
    a: float
    v: torch.Tensor


@dataclass(frozen=True)
class _Result(ProbeResult):
    name: str
    count: int
    per_example: torch.Tensor
    zero_d: torch.Tensor
    layers: dict[str, float]
    child: _Nested
    missing: float | None = None


def test_result_flattening_rules() -> None:
    r = _Result(
        name="x",
        count=3,
        per_example=torch.tensor([1.0, 2.0]),
        zero_d=torch.tensor(float("nan")),
        layers={"fc1": 0.5, "fc2": 1.5},
        child=_Nested(2.0, torch.ones(2, 2)),
    )
    s, a = r.scalars(), r.arrays()
    assert s["count"] == 3.0 and s["layers/fc1"] == 0.5 and s["child/a"] == 2.0
    assert np.isnan(s["zero_d"]) and "missing" not in s and "name" not in s
    assert set(a) == {"per_example", "child/v"} and a["child/v"].shape == (2, 2)
    j = json.loads(json.dumps(r.to_json()))
    assert j["name"] == "x" and j["scalars"]["zero_d"] is None
    assert j["arrays"]["per_example"] == [1.0, 2.0]


# ----------------------------------------------------------------------------- registry


def test_registry_lists_and_refuses() -> None:
    names = probes.available_probes()
    assert "input_fisher" in names and "shi2020" in names["input_fisher"]
    with pytest.raises(ProbeError, match=r"unknown probe 'nope'.*input_fisher"):
        probes.get_probe("nope")
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ProbeError, match=r"no option.*'bogus'.*method"):
        run_probe(
            "input_fisher", _tiny(), ProbeData(test=(x, torch.zeros(2, dtype=torch.long))), bogus=1
        )


def test_probe_registered_from_its_function() -> None:
    """The positional parameters say what a probe reads, the keyword-only ones are its
    options (``train`` excepted: it receives the train subset), and a function taking
    something the registry cannot give is refused."""
    from robustscope.probes import registry

    assert probes.get_probe("cckl").options == ("batch_size",)
    assert probes.get_probe("taylor_split").options == ("n_pairs", "seed", "batch_size", "scale")
    model, gen = _tiny(k=3), torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 4, 4, generator=gen, dtype=torch.float64), torch.arange(6) % 3
    assert run_probe("cckl", model, ProbeData(test=(x, y))).train_ce_loss is None  # type: ignore[attr-defined]
    both = run_probe("cckl", model, ProbeData(test=(x, y), train=(x[:3], y[:3])))
    assert both.train_ce_loss == pytest.approx(probes.cckl(model, x[:3], y[:3]).ce_loss)  # type: ignore[attr-defined]

    def needs_labels_only(model: nn.Module, labels: torch.Tensor) -> ProbeResult:
        return ProbeResult()

    with pytest.raises(ProbeError, match=r"among data, x, y, input_shape; got model, labels"):
        registry.register_probe("bad")(needs_labels_only)
    assert "bad" not in probes.available_probes()


def test_layer_spectra_probe_reads_the_input_shape_and_parses_text_options() -> None:
    model = models.create("cnn", 10, (1, 8, 8), width=0.25)
    data = ProbeData(test=(torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)))
    # YAML reads 1e-6 as text (`robustscope probe --opt tol=1e-6`)
    res = run_probe("layer_spectra", model, data, tol="1e-6", k="1")
    assert res.input_shape == (1, 8, 8)  # type: ignore[attr-defined]
    assert res.scalars() == probes.layer_spectra(model, (1, 8, 8), tol=1e-6, k=1).scalars()
    with pytest.raises(ProbeError, match=r"option k must be an integer, got 2.5"):
        run_probe("layer_spectra", model, data, k=2.5)
    with pytest.raises(ProbeError, match=r"option tol must be a number"):
        run_probe("layer_spectra", model, data, tol="small")


# ----------------------------------------------------------------------------- input_fisher


def test_input_fisher_matches_dense_reference() -> None:
    model = _tiny()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    stats = input_fisher(model, x, batch_size=2)  # several batches
    for i in range(len(x)):
        dense = _dense_fisher(model, x[i])
        vals = torch.linalg.eigvalsh(dense).flip(0)
        torch.testing.assert_close(stats.spectral[i], vals[0], rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(stats.trace[i], dense.trace(), rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(
            stats.frobenius[i], torch.linalg.matrix_norm(dense), rtol=1e-9, atol=1e-14
        )
        torch.testing.assert_close(stats.eigenvalues[i], vals[:4], rtol=1e-7, atol=1e-12)
        v = stats.top_eigenvector[i].reshape(-1)
        torch.testing.assert_close(v.norm(), torch.tensor(1.0, dtype=v.dtype), rtol=1e-9, atol=0)
        torch.testing.assert_close(dense @ v, vals[0] * v, rtol=1e-6, atol=1e-10)


def test_input_fisher_power_agrees_with_gram() -> None:
    model = _tiny(k=3, seed=2)
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = input_fisher(model, x)
    power = input_fisher(model, x, method="power", iters=5000, tol=1e-13)
    torch.testing.assert_close(power.spectral, exact.spectral, rtol=1e-6, atol=1e-14)
    assert power.frobenius is None and power.iterations > 0
    assert set(power.scalars()) >= {"spectral_mean", "spectral_median"}
    assert "frobenius_mean" not in power.scalars()


def test_input_fisher_probe_through_registry_and_json() -> None:
    model = models.create("cnn", 10, (1, 8, 8), width=0.5)
    x = torch.rand(6, 1, 8, 8)
    result = run_probe("input_fisher", model, ProbeData(test=(x, torch.zeros(6, dtype=torch.long))))
    ref = input_fisher_gram(model, x)
    torch.testing.assert_close(result.frobenius, ref.frobenius.cpu())
    s = result.scalars()
    assert s["frobenius_mean"] == pytest.approx(float(ref.frobenius.mean()))
    assert result.arrays()["eigenvalues"].shape == (6, 10)
    json.dumps(result.to_json())
    with pytest.raises(ProbeError, match="method must be"):
        input_fisher(model, x, method="nope")  # type: ignore[arg-type]


def test_input_fisher_leaves_the_model_as_it_was() -> None:
    model = _tiny()
    model.train()
    model.head.weight.requires_grad_(False)
    input_fisher(model, torch.rand(3, 1, 4, 4, dtype=torch.float64))
    assert model.training
    assert not model.head.weight.requires_grad and model.head.bias.requires_grad


# ----------------------------------------------------------------------------- tracking


#: a training run of seconds on the digits, for the tracking tests
TINY_DIGITS: dict[str, Any] = {
    "dataset": "digits",
    "model": "mlp",
    "model_kwargs": {"widths": [32]},
    "epochs": 2,
    "batch_size": 32,
    "seed": 0,
    "device": "cpu",
    "train_subset": 128,
    "test_subset": 64,
}


def test_probe_tracked_during_training_without_changing_weights() -> None:
    base = TINY_DIGITS
    cfg = TrainConfig(
        **base,
        track=["input_fisher"],
        track_n=20,
        track_params={"input_fisher": {"batch_size": 7}},
    )
    tracked = train(cfg, None, **QUIET)
    for row in tracked.history:
        for split in ("train", "test"):
            assert row[f"track/{split}/input_fisher_frobenius_mean"] > 0
            assert (
                row[f"track/{split}/input_fisher_spectral_mean"]
                <= row[f"track/{split}/input_fisher_frobenius_mean"] + 1e-12
            )
    plain = train(TrainConfig(**base), None, **QUIET)
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, tracked.model.state_dict()[k]), k
    bad = TrainConfig(**base, track=["input_fisher"], track_params={"input_fisher": {"nope": 1}})
    with pytest.raises(TrainingError, match=r"unknown option.*'nope'"):
        train(bad, None, **QUIET)


def test_tracked_per_split_probe_is_named_by_its_split() -> None:
    """margins reports per split ("test/…" scalars); tracked, each subset's row is keyed by
    the subset it ran on, with no stray "test" in the train row's keys."""
    cfg = TrainConfig(**{**TINY_DIGITS, "epochs": 1}, track=["margins"], track_n=24)
    row = train(cfg, None, **QUIET).history[0]
    keys = [k for k in row if k.startswith("track/")]
    assert "track/train/margins_margin_mean" in keys and "track/test/margins_margin_mean" in keys
    assert not [k for k in keys if "margins_test/" in k or "margins_train/" in k]
    assert row["track/train/margins_n"] == 24.0


def test_tracked_weight_probe_runs_once_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """layer_spectra reads no data: tracked, it runs once per tracked epoch and both splits'
    keys get the same values."""
    from robustscope.probes import registry

    info = registry.get_probe("layer_spectra")
    assert info.splits == ()
    # read from the signatures: probes of the weights alone read no data
    assert registry.get_probe("weight_norms").splits == ()
    assert registry.get_probe("cckl").splits == ("test",)
    calls: list[int] = []
    adapter = info.adapter

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return adapter(*args, **kw)

    monkeypatch.setitem(
        registry.PROBES._entries, "layer_spectra", dataclasses.replace(info, adapter=counting)
    )
    cfg = TrainConfig(**TINY_DIGITS, track=["layer_spectra"], track_n=16)
    history = train(cfg, None, **QUIET).history
    assert len(calls) == 2  # one per epoch, not one per split
    for row in history:
        train_keys = {k.split("/", 2)[2]: v for k, v in row.items() if k.startswith("track/train/")}
        test_keys = {k.split("/", 2)[2]: v for k, v in row.items() if k.startswith("track/test/")}
        assert train_keys and train_keys == test_keys


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "robustscope", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_cli_probe_json_matches_python(tmp_path: Path) -> None:
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        model_kwargs={"widths": [16]},
        epochs=1,
        seed=0,
        device="cpu",
        train_subset=64,
    )
    result = train(cfg, tmp_path / "run", **QUIET)
    out = json.loads(
        _cli(
            "probe",
            str(tmp_path / "run"),
            "--probe",
            "input_fisher",
            "--n",
            "20",
            "--train-n",
            "0",
            "--opt",
            "input_fisher.batch_size=6",
            "--device",
            "cpu",
            "--json",
        ).stdout
    )
    from robustscope import data

    test = data.load("digits", "test").head(20)
    ref = input_fisher(result.model, test.x)
    scalars = out["probes"]["input_fisher"]["scalars"]
    assert out["n_test"] == 20 and "arrays" not in out["probes"]["input_fisher"]
    assert scalars["frobenius_mean"] == pytest.approx(float(ref.frobenius.mean()), rel=1e-6)
    listed = json.loads(_cli("probes", "--json").stdout)
    assert "method" in listed["input_fisher"]["options"]
    bad = _cli("probe", str(tmp_path / "run"), "--probe", "nope", check=False)
    assert bad.returncode == 2 and "unknown probe 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_probes_become_measurements_only_at_the_composition_point() -> None:
    """Importing training and probes registers nothing in training; robustscope.plugins.load()
    (called by the CLI and studies) makes every tracked probe a measurement."""
    code = (
        "import sys\n"
        "import robustscope.training, robustscope.probes\n"
        "from robustscope.training import TrainConfig\n"
        "from robustscope.training.tracking import make_measure\n"
        "from robustscope.errors import TrainingError\n"
        "cfg = TrainConfig(dataset='digits', model='mlp')\n"
        "try:\n"
        "    make_measure('input_fisher', cfg)\n"
        "except TrainingError as exc:\n"
        "    print('refused:', exc)\n"
        "from robustscope import plugins\n"
        "plugins.load()\n"
        "print(callable(make_measure('input_fisher', cfg)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.strip().splitlines()[0], proc.stdout.strip().splitlines()[-1]
    assert first.startswith("refused: unknown tracking measurement 'input_fisher'")
    assert "robustscope.plugins.load()" in first
    assert last == "True"
