"""CIFAR-10 and CIFAR-100 in their official "python version" format.

Layout (from ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``):

* ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` (train, 10,000 each),
  ``test_batch`` (10,000), ``batches.meta``;
* ``cifar-100-python/train`` (50,000), ``test`` (10,000), ``meta``.

Each file is a python-2 pickle of a dict; read with ``encoding="bytes"`` its keys
are ``bytes`` (``b"data"``, ``b"labels"`` or ``b"fine_labels"``/``b"coarse_labels"``,
``b"batch_label"``, ``b"filenames"``); str keys are accepted too. ``data`` is a
``uint8 [N, 3072]`` array whose rows hold 1024 red, 1024 green then 1024 blue
values, each a row-major 32x32 plane, so ``data.reshape(N, 3, 32, 32)`` is NCHW.

The files are loaded with :func:`robustscope.data.safe_pickle.load_pickle`, which
refuses anything but data. Consistency is validated (3072 columns, as many labels
as rows, labels in range); the number of rows is not fixed, so tiny files in the
same format load too. The folder is searched as described in
:mod:`robustscope.data.paths`; the format's own folder (``cifar-10-batches-py``)
may sit inside each place searched or inside its ``cifar10`` sub-folder.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustscope.data.dataset import ArrayDataset
from robustscope.data.paths import ENV_DATA, Located, candidate_dirs, locate
from robustscope.data.registry import DatasetInfo, ImageSpec, register
from robustscope.data.safe_pickle import load_pickle
from robustscope.errors import DataError

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

CIFAR100_FINE_CLASSES = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)

CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)

LABEL_MODES = ("fine", "coarse")


@dataclass(frozen=True, kw_only=True)
class CifarSpec(ImageSpec):
    """Files and constants of one CIFAR variant (``classes``: CIFAR-100's fine ones)."""

    input_shape: tuple[int, ...] = (3, 32, 32)
    augment: str = "crop_flip"
    folder: str
    split_files: dict[str, tuple[str, ...]]
    url: str


SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        classes=CIFAR10_CLASSES,
        folder="cifar-10-batches-py",
        split_files={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        # The widely published per-channel statistics of the 50,000 train images
        # (x / 255, population std over all pixels); CIFAR was not on the machine
        # these constants were written on, so they were not recomputed here.
        mean=(0.4914009, 0.4821584, 0.4465309),
        std=(0.2470322, 0.2434851, 0.2615878),
        description="CIFAR-10: 32x32 colour images, 10 classes, 50k/10k (Krizhevsky)",
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        classes=CIFAR100_FINE_CLASSES,
        folder="cifar-100-python",
        split_files={"train": ("train",), "test": ("test",)},
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        # Widely published train statistics, as for CIFAR-10 (not recomputed here).
        mean=(0.5070752, 0.4865489, 0.4409178),
        std=(0.2673343, 0.2564385, 0.2761505),
        description="CIFAR-100: 32x32 colour images, 100 fine / 20 coarse classes, 50k/10k",
    ),
}


def _text_keys(d: dict[Any, Any]) -> dict[str, Any]:
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


@functools.lru_cache(maxsize=16)
def _read_batch_cached(
    path: str, mtime_ns: int, size: int, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    del mtime_ns, size  # cache key only
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    d = _text_keys(obj)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(
                f"{path}: missing key {key!r} (found keys: {', '.join(sorted(d)) or 'none'})"
            )
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 [N, 3072] array, got {what}")
    if data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' has {data.shape[1]} columns, expected 3072 (3x32x32)")
    try:
        labels = np.asarray(d[label_key])
    except Exception as e:
        raise DataError(f"{path}: {label_key!r} is not a list of integers ({e})") from e
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: {label_key!r} must be a list of integers")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} {label_key} for {len(data)} rows of 'data'")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{path}: {label_key} span [{int(labels.min())}, {int(labels.max())}], "
            f"expected [0, {num_classes})"
        )
    data = np.ascontiguousarray(data)
    labels = labels.astype(np.int64)
    data.flags.writeable = False
    labels.flags.writeable = False
    return data, labels


def read_batch(path: str | Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file: ``(data uint8 [N, 3072], labels int64 [N])``, validated.

    Cached in-process by path, modification time and size.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    return _read_batch_cached(str(p), st.st_mtime_ns, st.st_size, label_key, num_classes)


def _required(spec: CifarSpec) -> list[str]:
    return [f for files in spec.split_files.values() for f in files]


def _locate(spec: CifarSpec, root: str | Path | None) -> Located:
    def missing(folder: Path) -> list[str]:
        return [f for f in _required(spec) if not (folder / f).is_file()]

    return locate(candidate_dirs(spec.name, root, inner=(spec.folder,)), missing)


def _status(spec: CifarSpec, root: str | Path | None) -> tuple[bool, str]:
    return _locate(spec, root).status()


def _how_to_get(spec: CifarSpec) -> str:
    return (
        f"To get it: download {spec.url}, and unpack it (it holds the folder {spec.folder}/ "
        f"with {', '.join(_required(spec))}) into ${ENV_DATA}/{spec.name}/ "
        f"or ~/.cache/robustscope/{spec.name}/, or pass root=<folder>."
    )


def _classes(name: str, label_mode: str) -> tuple[str, ...]:
    if name == "cifar10":
        return CIFAR10_CLASSES
    if label_mode not in LABEL_MODES:
        raise DataError(
            f"cifar100: unknown label_mode {label_mode!r}; valid: {', '.join(LABEL_MODES)}"
        )
    return CIFAR100_FINE_CLASSES if label_mode == "fine" else CIFAR100_COARSE_CLASSES


def _load(name: str, split: str, root: str | Path | None, label_mode: str = "fine") -> ArrayDataset:
    spec = SPECS[name]
    info = _info(name, label_mode)
    label_key = "labels" if name == "cifar10" else f"{label_mode}_labels"
    loc = _locate(spec, root)
    if loc.path is None:
        raise DataError(loc.not_found(name, _how_to_get(spec)))
    files = [loc.path / f for f in spec.split_files[split]]
    parts = [read_batch(f, label_key, info.num_classes) for f in files]
    data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    x = np.divide(data, np.float32(255.0), dtype=np.float32).reshape(-1, 3, 32, 32)
    meta: dict[str, object] = {"files": [str(f) for f in files]}
    if name == "cifar100":
        meta["label_mode"] = label_mode
    return info.dataset(
        split,
        torch.from_numpy(x),
        torch.from_numpy(labels.copy()),
        source=str(loc.path),
        meta=meta,
    )


def _info(name: str, label_mode: str = "fine") -> DatasetInfo:
    return dataclasses.replace(SPECS[name], classes=_classes(name, label_mode)).info()


register(
    "cifar10",
    loader=functools.partial(_load, "cifar10"),
    info=functools.partial(_info, "cifar10"),
    locate=functools.partial(_status, SPECS["cifar10"]),
)
register(
    "cifar100",
    loader=functools.partial(_load, "cifar100"),
    info=functools.partial(_info, "cifar100"),
    locate=functools.partial(_status, SPECS["cifar100"]),
    params=("label_mode",),
    info_params=("label_mode",),
)
