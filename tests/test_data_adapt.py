"""Input adapters between datasets (``robustscope.data.adapt``): shapes, the unit box, the
identity, exact channel replication, the BT.601 greyscale weights, centred pad/crop (a round
trip is the identity), the rule ``adapter_for`` chooses and its refusals."""

from __future__ import annotations

import json

import pytest
import torch

from robustscope.data import Adapter, adapter_for
from robustscope.data.adapt import GREY_WEIGHTS, Greyscale, PadCrop, Replicate, Resize
from robustscope.errors import DataError

PAIRS = [
    ((1, 8, 8), (1, 28, 28), "resize"),
    ((1, 28, 28), (1, 8, 8), "resize"),
    ((3, 32, 32), (1, 28, 28), "resize"),
    ((1, 28, 28), (3, 32, 32), "resize"),
    ((1, 8, 8), (1, 28, 28), "pad"),
    ((3, 32, 32), (1, 28, 28), "pad"),
    ((1, 28, 20), (3, 16, 33), "pad"),
    ((1, 28, 20), (3, 16, 33), "resize"),
]


def images(shape: tuple[int, ...], n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    x[0] = 1.0  # the box's corners
    x[1] = 0.0
    x[2] = (x[2] > 0.5).float()  # hard edges: where a cubic filter would overshoot
    return x


@pytest.mark.parametrize(("src", "dst", "mode"), PAIRS)
def test_shape_and_unit_box(src: tuple[int, ...], dst: tuple[int, ...], mode: str) -> None:
    adapter = adapter_for(src, dst, mode=mode)
    out = adapter(images(src))
    assert tuple(out.shape) == (6, *dst)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert out.dtype == torch.float32
    json.dumps(adapter.to_dict())  # recorded with every result


def test_equal_shapes_are_the_identity() -> None:
    x = images((1, 28, 28))
    adapter = adapter_for((1, 28, 28), (1, 28, 28), mode="pad")
    assert adapter.identity and adapter.steps == ()
    assert adapter(x) is x
    assert adapter_for((101,), (101,)).identity
    assert "identity" in adapter.describe()


def test_replication_is_exact_and_greyscale_uses_bt601() -> None:
    x = images((1, 5, 7))
    out = adapter_for((1, 5, 7), (3, 5, 7))(x)
    for c in range(3):
        assert torch.equal(out[:, c], x[:, 0])

    rgb = torch.zeros(3, 3, 4, 4)
    for c in range(3):
        rgb[c, c] = 1.0  # pure red, green, blue
    grey = adapter_for((3, 4, 4), (1, 4, 4))(rgb)
    assert grey[:, 0, 0, 0].tolist() == pytest.approx(list(GREY_WEIGHTS), abs=1e-7)
    assert list(GREY_WEIGHTS) == [0.299, 0.587, 0.114]
    mixed = torch.rand(2, 3, 4, 4)
    expected = 0.299 * mixed[:, 0] + 0.587 * mixed[:, 1] + 0.114 * mixed[:, 2]
    assert torch.allclose(Greyscale()(mixed)[:, 0], expected, atol=1e-7)
    # grey → colour → grey gives the grey image back (the weights sum to 1)
    back = adapter_for((3, 5, 7), (1, 5, 7))(out)
    assert torch.allclose(back, x, atol=1e-6)


@pytest.mark.parametrize("src", [(1, 8, 8), (1, 7, 9), (3, 1, 28)])
def test_pad_then_crop_is_the_identity(src: tuple[int, int, int]) -> None:
    big = (src[0], 28, 28)
    x = images(src)
    padded = adapter_for(src, big, mode="pad")(x)
    assert torch.equal(adapter_for(big, src, mode="pad")(padded), x)
    # the image sits in the centre: d // 2 rows of zeros before it, the rest after
    top, left = (28 - src[1]) // 2, (28 - src[2]) // 2
    assert torch.equal(padded[:, :, top : top + src[1], left : left + src[2]], x)
    assert float(padded.sum()) == pytest.approx(float(x.sum()), rel=1e-6)


def test_resize_rule_and_antialias_only_when_shrinking() -> None:
    up = adapter_for((1, 8, 8), (1, 28, 28))
    down = adapter_for((1, 28, 28), (1, 8, 8))
    assert up.steps == (Resize((28, 28), antialias=False),)
    assert down.steps == (Resize((8, 8), antialias=True),)
    assert up.describe() == "1×8×8 → resize to 28×28 (bilinear) → 1×28×28"
    # bilinear weights are a convex combination: a constant image stays that constant
    const = torch.full((2, 1, 8, 8), 0.37)
    assert torch.allclose(up(const), torch.full((2, 1, 28, 28), 0.37), atol=1e-6)
    # antialiasing averages: a 1-pixel checkerboard shrinks to mid-grey, not to aliasing
    board = (torch.arange(28)[:, None] + torch.arange(28)[None, :]) % 2
    small = down(board.float().expand(1, 1, 28, 28))
    assert float((small - 0.5).abs().max()) < 0.1
    # colour to grey reduces channels first and replicates last (fewer channels resized)
    steps = adapter_for((3, 32, 32), (1, 28, 28)).steps
    assert isinstance(steps[0], Greyscale) and isinstance(steps[1], Resize)
    steps = adapter_for((1, 28, 28), (3, 32, 32), mode="pad").steps
    assert isinstance(steps[0], PadCrop) and isinstance(steps[1], Replicate)


def test_adapters_are_differentiable() -> None:
    x = images((1, 8, 8)).requires_grad_(True)
    adapter_for((1, 8, 8), (3, 28, 28))(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("src", "dst", "mode", "match"),
    [
        ((101,), (50,), "resize", "vector data must match"),
        ((1, 8, 8), (64,), "resize", "only images"),
        ((2, 8, 8), (3, 8, 8), "resize", "2 to 3 channels"),
        ((1, 8, 8), (1, 28, 28), "stretch", "valid modes: resize, pad"),
        ((0, 8, 8), (1, 8, 8), "resize", "positive sizes"),
    ],
)
def test_refusals_name_the_problem(
    src: tuple[int, ...], dst: tuple[int, ...], mode: str, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        adapter_for(src, dst, mode=mode)


def test_an_adapter_checks_its_input_and_its_steps() -> None:
    adapter = adapter_for((1, 8, 8), (1, 28, 28))
    with pytest.raises(DataError, match=r"expected \(1, 8, 8\)"):
        adapter(torch.rand(2, 1, 9, 9))
    with pytest.raises(DataError, match="not to target_shape"):
        Adapter((1, 8, 8), (1, 28, 28), (Resize((20, 20), antialias=False),))
