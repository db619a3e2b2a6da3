"""``robustscope.transfer.transfer`` and ``robustscope transfer`` (issue 14 §1): each cell is
the independently recomputed head accuracy, the distances live in the reference's feature
space, the gap correlation is scipy's, the transferred classifier is attacked in the target's
pixel space, features are computed once per model and dataset and cached safely, and bad
input is one line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from scipy import stats

from clirun import run_main
from robustscope import checkpoint, data, models
from robustscope.data import adapter_for
from robustscope.errors import DataError
from robustscope.training import TrainConfig, train
from robustscope.transfer import (
    TransferError,
    TransferredClassifier,
    extract_features,
    fit_head,
    gap_correlation,
    task_distance,
    transfer,
)
from robustscope.transfer import features as features_mod
from robustscope.transfer import run as run_mod

TARGETS = ["digits", "mnist-5k", "fashion-mnist"]
N_TRAIN, N_TEST = 300, 60


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A standard and a PGD-trained MLP on digits (8×8), as run directories."""
    root = tmp_path_factory.mktemp("transfer")
    out = {}
    for name, method, params in [("std", "standard", {}), ("rob", "pgd", {"eps": 0.1, "steps": 3})]:
        cfg = TrainConfig(
            dataset="digits",
            model="mlp",
            model_kwargs={"widths": [32]},
            epochs=2,
            lr=0.1,
            device="cpu",
            method=method,
            method_params=params,
        )
        train(cfg, root / name, progress=False, log=None)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def nets(runs: dict[str, Path]) -> dict[str, Any]:
    return {name: checkpoint.load(path)[0] for name, path in runs.items()}


@pytest.fixture(scope="module")
def result(nets: dict[str, Any]) -> run_mod.TransferResult:
    return transfer(
        nets, "digits", TARGETS, n_train=N_TRAIN, n_test=N_TEST, l2=1e-3,
        pgd_eps=[0, 0.05, 0.2], pgd_steps=5,
    )  # fmt: skip


def test_each_cell_is_the_head_fitted_on_the_frozen_features(
    result: run_mod.TransferResult, nets: dict[str, Any]
) -> None:
    assert [(c.model, c.target) for c in result.cells] == [
        (m, t) for m in ("std", "rob") for t in TARGETS
    ]
    net = nets["rob"]
    train_ds = data.load("mnist-5k", "train").head(N_TRAIN)
    test_ds = data.load("mnist-5k", "test").head(N_TEST)
    adapter = adapter_for((1, 28, 28), (1, 8, 8))
    head = fit_head(extract_features(net, train_ds, adapter=adapter), train_ds.y, l2=1e-3)
    cell = result.cell("rob", "mnist-5k")
    assert cell.accuracy == head.accuracy(
        extract_features(net, test_ds, adapter=adapter), test_ds.y
    )
    assert cell.adapter["steps"] == [{"op": "resize", "size": [8, 8], "antialias": True}]
    assert (cell.n_train, cell.n_test, cell.feature_dim) == (N_TRAIN, N_TEST, 32)
    for c in result.cells:  # far above chance (0.1) on every target
        assert c.accuracy > 0.4 and c.head["converged"]
    assert set(result.source_accuracy) == {"std", "rob"}
    assert all(a > 0.5 for a in result.source_accuracy.values())


def test_distances_in_the_reference_feature_space(
    result: run_mod.TransferResult, nets: dict[str, Any]
) -> None:
    assert result.reference == result.feature_model == "std"
    assert result.distance("digits") == pytest.approx(0.0, abs=1e-9)  # the source itself
    net, ds = nets["std"], data.load("fashion-mnist", "train").head(N_TRAIN)
    src = data.load("digits", "train").head(N_TRAIN)
    z_t = extract_features(net, ds, adapter=adapter_for((1, 28, 28), (1, 8, 8)))
    expected = task_distance(extract_features(net, src), src.y, z_t, ds.y).distance
    assert result.distance("fashion-mnist") == pytest.approx(expected, rel=1e-9)
    assert result.distance("fashion-mnist") > 0 and result.distance("mnist-5k") > 0


def test_the_gap_correlation_is_scipys(result: run_mod.TransferResult) -> None:
    (corr,) = result.correlations
    assert (corr.model, corr.reference, corr.targets) == ("rob", "std", tuple(TARGETS))
    gaps = [result.cell("rob", t).accuracy - result.cell("std", t).accuracy for t in TARGETS]
    dists = [result.distance(t) for t in TARGETS]
    assert list(corr.gaps) == pytest.approx(gaps) and list(corr.distances) == pytest.approx(dists)
    if corr.note:  # a constant gap series is possible on 60 points: then NaN with a reason
        assert math.isnan(corr.spearman) and "constant" in corr.note
    else:
        assert corr.spearman == pytest.approx(stats.spearmanr(dists, gaps).statistic)
        assert corr.pearson == pytest.approx(stats.pearsonr(dists, gaps).statistic)


def test_gap_correlation_needs_three_targets_and_variation() -> None:
    two = gap_correlation("r", "s", ["a", "b"], [1.0, 2.0], [0.1, 0.3])
    assert math.isnan(two.spearman) and math.isnan(two.pearson) and "at least 3" in two.note
    flat = gap_correlation("r", "s", ["a", "b", "c"], [1.0, 2.0, 3.0], [0.1, 0.3 - 0.2, 0.1])
    assert math.isnan(flat.pearson) and "constant" in flat.note
    up = gap_correlation("r", "s", ["a", "b", "c", "d"], [1.0, 2.0, 3.0, 4.0], [0, 0.1, 0.3, 0.2])
    assert up.spearman == pytest.approx(0.8) and up.note == ""


def test_the_transferred_classifier_is_attacked_in_the_target_pixel_space(
    result: run_mod.TransferResult, nets: dict[str, Any]
) -> None:
    for c in result.cells:
        assert c.robust is not None
        accs = list(c.robust.values())
        assert accs[0] == pytest.approx(c.accuracy, abs=2 / N_TEST)  # ε = 0: the head itself
        assert accs[0] >= accs[1] >= accs[2]
    assert result.cell("std", "mnist-5k").robust[0.2] < 0.5  # type: ignore[index]
    # the module: head ∘ features ∘ adapter on 28×28 inputs, box [0, 1]
    net = nets["std"]
    adapter = adapter_for((1, 28, 28), (1, 8, 8))
    linear = torch.nn.Linear(32, 10)
    clf = TransferredClassifier(net, linear, adapter, data.UNIT)
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(clf(x), linear(net.features(adapter(x))))
    assert models.declared_box(clf) == data.UNIT
    assert all(p.requires_grad for p in net.parameters())  # the caller's model is untouched


def test_features_once_per_model_and_dataset(
    nets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, str, str]] = []
    real = run_mod.extract_features

    def spy(model: Any, ds: Any, **kw: Any) -> torch.Tensor:
        calls.append((id(model), ds.name, ds.split))
        return real(model, ds, **kw)

    monkeypatch.setattr(run_mod, "extract_features", spy)
    transfer(nets, "digits", ["mnist-5k", "digits"], n_train=100, n_test=40)
    assert len(calls) == len(set(calls))
    # 2 models × 2 targets × 2 splits; the source's train split is the digits target's
    assert len(calls) == 8


def test_feature_cache_hits_and_keys(
    tmp_path: Path, nets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    net = nets["std"]
    ds = data.load("mnist-5k", "test").head(50)
    adapter = adapter_for((1, 28, 28), (1, 8, 8))
    net.train()
    z = extract_features(net, ds, adapter=adapter, cache_dir=tmp_path, batch_size=7)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        assert torch.allclose(z, net.features(adapter(ds.x)), atol=1e-6)
    (path,) = tmp_path.glob("features-*.safetensors")
    assert path.read_bytes()[:8] != b"\x80\x04\x95"[:8]  # not a pickle

    def boom(*args: Any, **kw: Any) -> torch.Tensor:
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(features_mod, "_forward", boom)
    assert torch.equal(extract_features(net, ds, adapter=adapter, cache_dir=tmp_path), z)
    # anything in the key changes the file: the data size, the data itself (another 50 images
    # of the same split), the adapter, the weights
    other = data.load("mnist-5k", "test").subset(slice(50, 100))
    assert (other.name, other.split, len(other)) == (ds.name, ds.split, len(ds))
    for kwargs in (
        {"data": ds.head(49), "adapter": adapter},
        {"data": other, "adapter": adapter},
        {"data": ds, "adapter": adapter_for((1, 28, 28), (1, 8, 8), mode="pad")},
        {"data": ds, "adapter": adapter, "model_key": "another-checkpoint"},
    ):
        with pytest.raises(AssertionError, match="recomputed"):
            extract_features(net, kwargs.pop("data"), cache_dir=tmp_path, **kwargs)
    monkeypatch.undo()
    path.write_bytes(b"garbage")  # an unreadable file is recomputed
    assert torch.allclose(extract_features(net, ds, adapter=adapter, cache_dir=tmp_path), z)
    assert path.read_bytes() != b"garbage"


def test_refusals(nets: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        transfer(nets, "digits", ["nope"], n_train=10, n_test=10)
    with pytest.raises(DataError, match="only images"):
        transfer(nets, "digits", ["tsipras"], n_train=10, n_test=10)
    with pytest.raises(TransferError, match="feature_model 'x' is not among"):
        transfer(nets, "digits", ["digits"], feature_model="x")
    with pytest.raises(TransferError, match="n_train must be"):
        transfer(nets, "digits", ["digits"], n_train=0)


# ----------------------------------------------------------------------------- command line


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``robustscope transfer ARGS`` as a user runs it."""
    return run_main(monkeypatch, capsys, "transfer", *args)


def test_cli_json_and_table(
    runs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(runs["std"]), str(runs["rob"]), "--targets", "digits,mnist-5k,fashion-mnist"]
    args += ["--n-train", "100", "--n-test", "40", "--l2", "1/1000", "--device", "cpu"]
    args += ["--cache", str(tmp_path / "cache")]
    code, out, err = cli(monkeypatch, capsys, *args, "--json")
    assert code == 0, err

    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    found = json.loads(out, parse_constant=refuse)
    assert found["models"] == ["std", "rob"] and found["source"] == "digits"
    assert found["settings"]["l2"] == pytest.approx(1e-3)
    assert len(found["cells"]) == 6 and len(found["distances"]) == 3
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 12  # 2 × 3 × 2 splits
    code, out, err = cli(monkeypatch, capsys, *args, "--pgd-eps", "0,0.1", "--pgd-steps", "3")
    assert code == 0, err
    assert "transfer accuracy from digits" in out and "task distance" in out
    assert "gap rob − std vs distance: Spearman" in out and "ε=0.1" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--targets", "mnist-5k,nope"], "unknown dataset 'nope'"),
        (["--targets", "tsipras"], "only images"),
        (["--targets", "digits", "--adapter", "stretch"], "valid modes: resize, pad"),
        (["--targets", "digits", "--l2", "abc"], "--l2 must be"),
        (["--targets", "digits", "--solver", "newton"], "valid solvers"),
        (["--targets", "digits", "--pgd-eps", "-1"], "--pgd-eps"),
    ],
)
def test_cli_errors_are_one_line(
    runs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    args = [str(runs["std"]), *extra, "--n-train", "20", "--n-test", "10", "--device", "cpu"]
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
