"""SVHN (Street View House Numbers), cropped-digits format ``*_32x32.mat``.

Files: ``train_32x32.mat`` (73,257), ``test_32x32.mat`` (26,032) and optionally
``extra_32x32.mat`` (531,131; split ``"extra"``), MATLAB files read with
``scipy.io.loadmat``. ``X`` is ``uint8 [32, 32, 3, N]`` (height, width, channel,
example) and ``y`` is ``[N, 1]`` with labels 1..10, where 10 stands for the digit
0; here labels are mapped ``10 → 0`` so that label ``k`` is digit ``k``. The
folder is searched as described in :mod:`robustscope.data.paths`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from robustscope.data.dataset import ArrayDataset
from robustscope.data.paths import ENV_DATA, Located, candidate_dirs, locate
from robustscope.data.registry import ImageSpec, register
from robustscope.errors import DataError

SPLIT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
REQUIRED = ("train_32x32.mat", "test_32x32.mat")
URL_BASE = "http://ufldl.stanford.edu/housenumbers/"
CLASSES = tuple(str(i) for i in range(10))

SPEC = ImageSpec(
    name="svhn",
    classes=CLASSES,
    input_shape=(3, 32, 32),
    # The widely published per-channel statistics of the 73,257 train images
    # (x / 255, population std over all pixels); SVHN was not on the machine
    # these constants were written on, so they were not recomputed here.
    mean=(0.4376821, 0.4437697, 0.4728044),
    std=(0.1980301, 0.2010156, 0.1970361),
    augment="crop_flip",
    description="SVHN: 32x32 colour house-number digits, 10 classes, 73k/26k (+531k extra)",
    splits=("train", "test", "extra"),
)


@functools.lru_cache(maxsize=3)
def _read_mat_cached(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    del mtime_ns, size  # cache key only
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, OSError, MatReadError, ...
        raise DataError(f"{path}: cannot read as a MATLAB file ({type(e).__name__}: {e})") from e
    for key in ("X", "y"):
        if key not in mat:
            found = ", ".join(k for k in mat if not k.startswith("__"))
            raise DataError(f"{path}: missing key {key!r} (found keys: {found or 'none'})")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' must be uint8 [32, 32, 3, N], got {x.dtype} {x.shape}")
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] != 1) or y.dtype.kind not in "iuf":
        raise DataError(f"{path}: 'y' must be [N, 1] numbers, got {y.dtype} {y.shape}")
    labels = y.reshape(-1)
    if len(labels) != x.shape[3]:
        raise DataError(f"{path}: {len(labels)} labels in 'y' for {x.shape[3]} images in 'X'")
    if labels.size and (
        labels.min() < 1 or labels.max() > 10 or np.any(labels != np.round(labels))
    ):
        raise DataError(
            f"{path}: labels must be integers in 1..10 (10 = digit 0), "
            f"got range [{labels.min()}, {labels.max()}]"
        )
    labels = labels.astype(np.int64) % 10  # 10 -> 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # [H, W, C, N] -> [N, C, H, W]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def read_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one SVHN ``.mat`` file: ``(uint8 [N, 3, 32, 32], int64 labels 0..9)``, cached."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    return _read_mat_cached(str(p), st.st_mtime_ns, st.st_size)


def _locate(root: str | Path | None) -> Located:
    def missing(folder: Path) -> list[str]:
        return [f for f in REQUIRED if not (folder / f).is_file()]

    return locate(candidate_dirs("svhn", root), missing)


def _status(root: str | Path | None) -> tuple[bool, str]:
    return _locate(root).status()


def _load(split: str, root: str | Path | None) -> ArrayDataset:
    loc = _locate(root)
    if loc.path is None:
        raise DataError(
            loc.not_found(
                "svhn",
                f"To get it: download {', '.join(REQUIRED)} from {URL_BASE} into "
                f"${ENV_DATA}/svhn/ or ~/.cache/robustscope/svhn/, or pass root=<folder>.",
            )
        )
    path = loc.path / SPLIT_FILES[split]
    if not path.is_file():
        raise DataError(
            f"{path}: not found (split {split!r} needs it; download it from {URL_BASE})"
        )
    images, labels = read_mat(path)
    return SPEC.info().dataset(
        split,
        torch.from_numpy(np.divide(images, np.float32(255.0), dtype=np.float32)),
        torch.from_numpy(labels.copy()),
        source=str(loc.path),
        meta={"files": [str(path)], "label_map": "10 -> 0"},
    )


register("svhn", loader=_load, info=SPEC.info, locate=_status)
