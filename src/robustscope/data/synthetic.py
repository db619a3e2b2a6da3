"""The synthetic distribution of Tsipras et al. (2019), "Robustness may be at odds with accuracy".

The distribution D of the paper's section 2.1 (eq. (3) of the ICLR 2019 version)::

    y ~ uniform{-1, +1},
    x_1 = +y with probability p, -y with probability 1 - p,
    x_2, ..., x_{d+1} ~ N(eta * y, 1) i.i.d.

``x_1`` is the *robust* feature (correct with probability p, 0.95 in the
paper's example); ``x_2 … x_{d+1}`` are *non-robust*: each is barely correlated
with ``y``, but their average is an almost perfect predictor, and an ℓ∞
adversary with ε ≥ 2η flips their correlation.

Parameters (``load("tsipras", split, d=…, p=…, eta=…, n=…, seed=…)``):

* ``d`` (default 100): number of weakly correlated features; ``x`` has d + 1 columns.
* ``p`` (default 0.95): P(x_1 = y), in [0, 1] (the paper assumes p ≥ 0.5).
* ``eta`` (default ``3 / sqrt(d)``, i.e. 0.3 for d = 100): the mean shift. The
  paper notes that η = Θ(1/√d) suffices and that the averaging classifier
  ``sign(mean(x_2..x_{d+1}))`` is > 99% accurate when η ≥ 3/√d (its accuracy is
  Φ(η√d) = Φ(3) ≈ 99.87%); we take that boundary as the default.
* ``n``: number of examples (default 10,000 for ``train``, 2,000 for ``test``).
* ``seed`` (default 0): the train split is drawn from
  ``np.random.default_rng([seed, 0])`` and the test split from
  ``np.random.default_rng([seed, 1])``, so they are independent and each is
  reproducible on every machine.

Shape convention: this is a *vector* dataset, ``x`` float32 ``[N, d + 1]``
(column 0 is x_1), not clamped to [0, 1]. Labels are stored as int64 0/1 with
``1 ↔ y = +1`` and ``0 ↔ y = -1``; ``classes == ("-1", "+1")``. ``meta``
records the parameters and this convention (``meta["label_map"]``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from robustscope.data.box import UNBOUNDED
from robustscope.data.dataset import ArrayDataset
from robustscope.data.registry import DatasetInfo, register
from robustscope.errors import DataError

DEFAULT_D = 100
DEFAULT_P = 0.95
DEFAULT_ETA_SCALE = 3.0
"""Default ``eta = DEFAULT_ETA_SCALE / sqrt(d)``."""
DEFAULT_N = {"train": 10_000, "test": 2_000}
DEFAULT_SEED = 0
SPLIT_STREAM = {"train": 0, "test": 1}
CLASSES = ("-1", "+1")
PARAMS = ("d", "p", "eta", "n", "seed")


def default_eta(d: int) -> float:
    """The default mean shift ``3 / sqrt(d)``."""
    return DEFAULT_ETA_SCALE / math.sqrt(d)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"tsipras: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def sample(
    n: int, d: int, p: float, eta: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` examples: ``(x float32 [n, d+1], y_pm int8 [n] in {-1, +1})``."""
    y = rng.integers(0, 2, size=n).astype(np.int8) * 2 - 1
    agree = rng.random(n) < p
    x = np.empty((n, d + 1), dtype=np.float32)
    x[:, 0] = np.where(agree, y, -y)
    x[:, 1:] = rng.standard_normal((n, d), dtype=np.float32) + np.float32(eta) * y[:, None]
    return x, y


def _load(
    split: str,
    root: str | Path | None,
    d: int = DEFAULT_D,
    p: float = DEFAULT_P,
    eta: float | None = None,
    n: int | None = None,
    seed: int = DEFAULT_SEED,
) -> ArrayDataset:
    del root  # synthetic
    d = _check_int("d", d, 1)
    seed = _check_int("seed", seed, 0)
    n = DEFAULT_N[split] if n is None else _check_int("n", n, 1)
    try:
        p = float(p)
        eta = default_eta(d) if eta is None else float(eta)
    except (TypeError, ValueError) as e:
        raise DataError(f"tsipras: p and eta must be numbers ({e})") from e
    if not 0.0 <= p <= 1.0:
        raise DataError(f"tsipras: p must lie in [0, 1], got {p}")
    if not math.isfinite(eta) or eta < 0:
        raise DataError(f"tsipras: eta must be a finite number >= 0, got {eta}")
    rng = np.random.default_rng([seed, SPLIT_STREAM[split]])
    x, y_pm = sample(n, d, p, eta, rng)
    return _info(d).dataset(
        split,
        torch.from_numpy(x),
        torch.from_numpy((y_pm > 0).astype(np.int64)),
        source="synthetic",
        meta={
            "d": d,
            "p": p,
            "eta": eta,
            "n": n,
            "seed": seed,
            "rng": f"numpy default_rng([{seed}, {SPLIT_STREAM[split]}])",
            "label_map": {"0": -1, "1": +1},
            "features": "x[:, 0] = x_1 (robust), x[:, 1:] = x_2..x_{d+1} (non-robust)",
        },
    )


def _info(d: int = DEFAULT_D) -> DatasetInfo:
    d = _check_int("d", d, 1)
    return DatasetInfo(
        name="tsipras",
        num_classes=2,
        classes=CLASSES,
        input_shape=(d + 1,),
        # Analytically every coordinate has mean 0 (y is symmetric); x_1 has std 1
        # and x_2.. have std sqrt(1 + eta^2) (1.044 at the defaults). We use the
        # identity (0, 1) so that the model sees the paper's units unchanged.
        mean=(0.0,),
        std=(1.0,),
        augment="none",
        description="Tsipras et al. 2019 synthetic: y=±1, x1=±y w.p. p, x2..x(d+1)~N(ηy,1)",
        box=UNBOUNDED,
    )


def _status(root: str | Path | None) -> tuple[bool, str]:
    del root
    return True, "synthetic (generated on demand)"


register("tsipras", loader=_load, info=_info, locate=_status, params=PARAMS, info_params=("d",))
