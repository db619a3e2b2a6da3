"""The dataset registry: ``load(name, split, root, **params)``, ``available()``, ``info(name)``.

Each format module (``idx``, ``cifar``, ``svhn``, ``bundled``, ``synthetic``)
registers its datasets here with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustscope.data.box import UNIT, Box
from robustscope.data.dataset import ArrayDataset
from robustscope.errors import DataError
from robustscope.registry import Registry

AUGMENT_KINDS = ("none", "crop_flip")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset (no file is read to produce them).

    Attributes:
        name: registry name.
        num_classes: number of classes K.
        classes: the K class names, index-aligned with labels.
        input_shape: shape of one input, ``(C, H, W)`` or ``(D,)``.
        mean, std: per-channel statistics of the train split, in [0, 1] pixel
            units, for the model's normalization layer (one value per channel;
            a single value applies to every channel/feature).
        augment: the standard training augmentation, ``"none"`` or ``"crop_flip"``.
        description: one line for listings.
        box: the input domain (:mod:`robustscope.data.box`): ``UNIT`` ([0, 1]) for images,
            ``UNBOUNDED`` for vectors; the box of every loaded split, of models trained on
            the dataset, and of every attack on them.
        splits: the valid ``split`` values.
    """

    name: str
    num_classes: int
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    description: str
    box: Box
    splits: tuple[str, ...] = ("train", "test")

    def dataset(
        self,
        split: str,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        source: str,
        meta: dict[str, object],
    ) -> ArrayDataset:
        """Split ``split`` of this dataset, holding ``x`` and ``y``: the loaded examples carry
        the dataset's declared name, classes and box (what every loader returns)."""
        facts = (self.num_classes, self.classes, self.name)
        return ArrayDataset(x, y, *facts, split, source, meta, box=self.box)


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """What an image dataset declares; :meth:`info` adds what follows for every image set.

    Format modules subclass it with their files (and defaults for the shape and augmentation
    all their datasets share).

    Attributes:
        name, classes, input_shape, mean, std, augment, description, splits: as in
            :class:`DatasetInfo`.
    """

    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    description: str
    splits: tuple[str, ...] = ("train", "test")

    def info(self) -> DatasetInfo:
        """The dataset's :class:`DatasetInfo`: K is the number of class names and the box is
        the unit box (images are [0, 1])."""
        return DatasetInfo(
            name=self.name,
            num_classes=len(self.classes),
            classes=self.classes,
            input_shape=self.input_shape,
            mean=self.mean,
            std=self.std,
            augment=self.augment,
            description=self.description,
            box=UNIT,
            splits=self.splits,
        )


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a registered dataset can be loaded here.

    Attributes:
        name: registry name.
        present: True when :func:`load` would find the data without downloading.
        location: the folder/package it would be read from, or why it was not found.
        description: one line for listings.
    """

    name: str
    present: bool
    location: str
    description: str


Loader = Callable[..., ArrayDataset]
"""``loader(split, root, **params) -> ArrayDataset``."""
InfoFn = Callable[..., DatasetInfo]
"""``info_fn(**params) -> DatasetInfo``."""
LocateFn = Callable[[str | Path | None], tuple[bool, str]]
"""``locate_fn(root) -> (present, location)``."""


@dataclass(frozen=True)
class _Entry:
    name: str
    loader: Loader
    info: InfoFn
    locate: LocateFn
    params: tuple[str, ...]
    info_params: tuple[str, ...]


#: every dataset by name
DATASETS: Registry[_Entry] = Registry(
    "dataset", error=DataError, describe=lambda entry: entry.info().description
)


def register(
    name: str,
    *,
    loader: Loader,
    info: InfoFn,
    locate: LocateFn,
    params: tuple[str, ...] = (),
    info_params: tuple[str, ...] = (),
) -> None:
    """Register dataset ``name``.

    Args:
        loader: ``loader(split, root, **params)``; ``split`` is already validated.
        info: ``info(**params)`` returning the static facts.
        locate: ``locate(root)`` returning ``(present, location)``.
        params: keyword parameters ``load`` accepts for this dataset.
        info_params: the subset of ``params`` that change :func:`info` (and are passed to it).
    """
    DATASETS.register(name, _Entry(name, loader, info, locate, tuple(params), tuple(info_params)))


def names() -> list[str]:
    """All registered dataset names, sorted."""
    return DATASETS.names()


def _entry(name: str) -> _Entry:
    return DATASETS.get(name)


def _check_params(entry: _Entry, params: dict[str, Any], allowed: tuple[str, ...]) -> None:
    bad = sorted(set(params) - set(allowed))
    if bad:
        valid = ", ".join(allowed) if allowed else "none"
        raise DataError(
            f"dataset {entry.name!r} takes no parameter {', '.join(map(repr, bad))}; "
            f"valid parameters: {valid}"
        )


def info(name: str, **params: Any) -> DatasetInfo:
    """Static facts about dataset ``name`` (classes, input shape, mean/std, augmentation).

    Parameters that change them (``label_mode`` of ``cifar100``; ``d`` of
    ``tsipras``) may be passed; any other load parameter is ignored.
    """
    entry = _entry(name)
    _check_params(entry, params, entry.params)
    return entry.info(**{k: v for k, v in params.items() if k in entry.info_params})


def load(
    name: str, split: str = "train", root: str | Path | None = None, **params: Any
) -> ArrayDataset:
    """Load split ``split`` of dataset ``name`` into memory.

    Args:
        name: a registered name (see :func:`available`).
        split: one of ``info(name).splits`` (``"train"`` or ``"test"``; SVHN also ``"extra"``).
        root: a folder to read from instead of the default places (see
            :mod:`robustscope.data.paths`).
        **params: dataset-specific options (``download=True`` for the idx sets,
            ``label_mode`` for ``cifar100``, ``d``/``p``/``eta``/``n``/``seed`` for ``tsipras``).

    Returns:
        an :class:`ArrayDataset` carrying the dataset's declared box; images are float32
        ``[N, C, H, W]`` in [0, 1], labels int64.

    Raises:
        DataError: unknown name, bad split or parameter, missing or malformed files.
    """
    entry = _entry(name)
    _check_params(entry, params, entry.params)
    facts = entry.info(**{k: v for k, v in params.items() if k in entry.info_params})
    if split not in facts.splits:
        raise DataError(
            f"dataset {name!r} has no split {split!r}; valid splits: {', '.join(facts.splits)}"
        )
    return entry.loader(split, root, **params)  # built by DatasetInfo.dataset: its box


def available(root: str | Path | None = None) -> list[DatasetStatus]:
    """Every registered dataset, whether it is present here, and where (or why not)."""
    out = []
    for n in names():
        entry = DATASETS.get(n)
        present, location = entry.locate(root)
        out.append(DatasetStatus(n, present, location, entry.info().description))
    return out
