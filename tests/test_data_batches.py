"""iterate_batches and the batched augmentations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustscope.data import (
    ArrayDataset,
    iterate_batches,
    random_crop,
    random_flip,
)
from robustscope.errors import DataError


def vector_ds(n: int) -> ArrayDataset:
    """Example i has feature i and label i % 3, so batches reveal which examples they hold."""
    return ArrayDataset(
        x=torch.arange(n, dtype=torch.float32)[:, None],
        y=torch.arange(n) % 3,
        num_classes=3,
        classes=("a", "b", "c"),
        name="toy",
    )


def image_ds(n: int, c: int = 3, hw: int = 8, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(
        x=torch.rand(n, c, hw, hw, generator=g),
        y=torch.randint(0, 10, (n,), generator=g),
        num_classes=10,
        classes=tuple("0123456789"),
        name="toy-images",
    )


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 70),
    batch_size=st.integers(1, 25),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_batches_partition_the_dataset(
    n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int
) -> None:
    ds = vector_ds(n)
    batches = list(
        iterate_batches(ds, batch_size, shuffle=shuffle, generator=gen(seed), drop_last=drop_last)
    )
    seen = torch.cat([xb[:, 0] for xb, _ in batches]).long() if batches else torch.zeros(0).long()
    for xb, yb in batches:
        assert len(xb) == len(yb) <= batch_size
        assert torch.equal(yb, xb[:, 0].long() % 3)  # x and y stay aligned
    if drop_last:
        assert all(len(xb) == batch_size for xb, _ in batches)
        assert len(batches) == n // batch_size
        assert len(set(seen.tolist())) == len(seen)  # no example twice
    else:
        assert sorted(seen.tolist()) == list(range(n))  # every example exactly once
        assert len(batches) == -(-n // batch_size)
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch_size=st.integers(1, 12),
    augment=st.sampled_from(["none", "crop_flip"]),
)
def test_same_seed_same_batches(seed: int, batch_size: int, augment: str) -> None:
    ds = image_ds(30)

    def run(s: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(
            iterate_batches(ds, batch_size, shuffle=True, generator=gen(s), augment=augment)
        )

    a, b = run(seed), run(seed)
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = run(seed + 1)
    assert any(not torch.equal(xa, xo) for (xa, _), (xo, _) in zip(a, other, strict=True))


def test_shuffle_is_a_permutation_from_the_generator() -> None:
    ds = vector_ds(50)
    got = torch.cat([xb[:, 0] for xb, _ in iterate_batches(ds, 7, shuffle=True, generator=gen(3))])
    assert torch.equal(got.long(), torch.randperm(50, generator=gen(3)))


def test_crop_flip_keeps_shape_range_and_labels() -> None:
    ds = image_ds(40, c=3, hw=32)
    for xb, yb in iterate_batches(ds, 16, shuffle=True, generator=gen(0), augment="crop_flip"):
        assert xb.shape[1:] == (3, 32, 32) and xb.dtype == torch.float32
        assert float(xb.min()) >= 0.0 and float(xb.max()) <= 1.0
        assert len(xb) == len(yb)


def _reference_crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Per-image python crop (slow; for checking the batched one)."""
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    return torch.stack(
        [padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets.T.tolist())]
    )


def test_random_crop_matches_reference() -> None:
    x = torch.rand(64, 2, 9, 7, generator=gen(1))
    out = random_crop(x, 3, gen(5))
    offsets = torch.randint(0, 7, (2, 64), generator=gen(5))  # documented draw order
    assert torch.equal(out, _reference_crop(x, 3, offsets))


def test_random_crop_of_constant_image() -> None:
    """A crop of an all-ones image is ones except zero bands of width |offset - padding|."""
    x = torch.ones(500, 1, 28, 28)
    out = random_crop(x, 4, gen(0))
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    rows = out[:, 0].amax(dim=2)  # [B, H]: which rows hold image pixels
    cols = out[:, 0].amax(dim=1)
    ones_h, ones_w = rows.sum(1), cols.sum(1)
    assert torch.equal(out[:, 0].sum((1, 2)), ones_h * ones_w)  # the ones form a rectangle
    assert int(ones_h.min()) >= 24 and int(ones_w.min()) >= 24
    # all 9 shifts per axis occur, shifts of 0 (no zero band) included
    assert len(set(zip(ones_h.tolist(), rows[:, 0].tolist(), strict=True))) == 9
    assert (ones_h == 28).any() and (ones_h == 24).any()


def test_random_crop_zero_padding_is_identity() -> None:
    x = torch.rand(4, 3, 5, 5)
    assert torch.equal(random_crop(x, 0, gen(0)), x)


def test_random_flip_flips_about_half() -> None:
    x = torch.arange(2000 * 4, dtype=torch.float32).reshape(2000, 1, 1, 4)
    out = random_flip(x, gen(0))
    flipped = (out == x.flip(-1)).all(dim=(1, 2, 3))
    kept = (out == x).all(dim=(1, 2, 3))
    assert bool((flipped ^ kept).all())  # each image is either untouched or mirrored
    assert abs(int(flipped.sum()) - 1000) < 5 * (2000 * 0.25) ** 0.5


def test_augmentation_errors() -> None:
    with pytest.raises(DataError, match="image dataset"):
        next(iterate_batches(vector_ds(4), 2, shuffle=False, augment="crop_flip"))
    with pytest.raises(DataError, match="crop_flip"):
        next(iterate_batches(image_ds(4), 2, shuffle=False, augment="cutout"))
    with pytest.raises(DataError, match="batch_size"):
        next(iterate_batches(image_ds(4), 0, shuffle=False))
    with pytest.raises(DataError, match="images"):
        random_flip(torch.zeros(3, 4))
