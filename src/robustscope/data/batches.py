"""Mini-batches from an in-memory :class:`ArrayDataset`, with batched augmentation.

Everything is tensor operations: one permutation per epoch, slicing (or one
``index_select`` per batch) and augmentation applied to whole batches. All
randomness comes from the ``generator`` passed in — first the permutation, then,
per batch, the crop offsets and the flip coins — so the same generator state
yields exactly the same batches (the training loop seeds one generator per
epoch to resume exactly).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from robustscope.data.dataset import ArrayDataset
from robustscope.data.registry import AUGMENT_KINDS
from robustscope.errors import DataError

CROP_PADDING = 4
"""Zero padding (pixels per side) of the ``crop_flip`` augmentation."""


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise DataError(f"{what} needs images [B, C, H, W], got shape {tuple(x.shape)}")


def random_crop(
    x: torch.Tensor, padding: int = CROP_PADDING, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crops of the zero-padded batch, one offset per image, same size as ``x``.

    Each image is padded with ``padding`` zeros on every side and an ``H x W``
    window is cut at offsets drawn uniformly from ``0..2*padding`` (rows, then
    columns; drawn on the CPU with ``generator``). Returns a new tensor.
    """
    _check_images(x, "random_crop")
    if padding < 0:
        raise DataError(f"random_crop: padding must be >= 0, got {padding}")
    if padding == 0 or len(x) == 0:
        return x.clone()
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    offsets = offsets.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # [B, W]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(
    x: torch.Tensor, generator: torch.Generator | None = None, prob: float = 0.5
) -> torch.Tensor:
    """Flip each image left-right with probability ``prob`` (coins drawn with ``generator``)."""
    _check_images(x, "random_flip")
    coins = torch.rand(len(x), generator=generator).to(x.device) < prob
    return torch.where(coins[:, None, None, None], x.flip(-1), x)


def augment_batch(
    x: torch.Tensor, augment: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply augmentation ``augment`` (``"none"`` or ``"crop_flip"``) to a batch."""
    if augment == "none":
        return x
    if augment == "crop_flip":
        return random_flip(random_crop(x, CROP_PADDING, generator), generator)
    raise DataError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENT_KINDS)}")


def iterate_batches(
    ds: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    augment: str = "none",
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` mini-batches covering ``ds`` once.

    Args:
        ds: the dataset (on any device; batches stay on its device).
        batch_size: examples per batch (the last one may be smaller).
        shuffle: visit the examples in the order of ``torch.randperm(len(ds), generator)``;
            otherwise in dataset order (then the un-augmented batches are views of ``ds``).
        generator: source of all randomness (permutation, then per batch crop
            offsets and flips); None uses torch's global generator.
        augment: ``"none"`` or ``"crop_flip"`` (4-pixel zero-padded random crop,
            then a left-right flip with probability 0.5; images only).
        drop_last: skip the final batch when it is smaller than ``batch_size``.

    Every example appears exactly once per pass (at most once with ``drop_last``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    if augment not in AUGMENT_KINDS:
        raise DataError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENT_KINDS)}")
    if augment != "none" and not ds.is_image:
        raise DataError(f"augment {augment!r} needs an image dataset; {ds.name} is [N, D]")
    n = len(ds)
    order = torch.randperm(n, generator=generator).to(ds.x.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            xb, yb = ds.x[start:end], ds.y[start:end]
        else:
            idx = order[start:end]
            xb, yb = ds.x.index_select(0, idx), ds.y.index_select(0, idx)
        yield augment_batch(xb, augment, generator), yb
