"""The 15 common corruptions (issue 13 §3): shapes, ranges, determinism, severity, the
pieces checked against the libraries they stand for, and a trained model's degradation."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

from robustscope import data, models
from robustscope.corruptions import (
    CATEGORIES,
    CORRUPTIONS,
    SEVERITIES,
    CorruptionError,
    corrupt,
    corrupted_copies,
    evaluate,
)
from robustscope.corruptions._ops import centre_zoom_matrix, streak_blur
from robustscope.corruptions.blur import defocus_kernel, glass_sources
from robustscope.corruptions.constants import scaled
from robustscope.corruptions.digital import _jpeg_grey_mosaic, box_resize_matrix, jpeg_roundtrip
from robustscope.corruptions.weather import plasma_fractal

#: the corruptions that draw random numbers (a different seed gives a different copy)
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
}

#: not monotone in severity, as in CIFAR-10-C: glass blur swaps as many pixels at severities
#: 1-3 (only its σ grows), and elastic's affine jitter shrinks while its displacement grows
NOT_MONOTONE = {"glass_blur", "elastic_transform"}


@pytest.fixture(scope="module")
def grey() -> torch.Tensor:
    """Eight real 28×28 MNIST test digits."""
    return data.load("mnist-5k", "test").x[:8].clone()


@pytest.fixture(scope="module")
def colour() -> torch.Tensor:
    """Eight 32×32 colour images: three different real digits in R, G and B, upsampled."""
    x = data.load("mnist-5k", "test").x[8:32]
    rgb = x.reshape(8, 3, 28, 28)
    return F.interpolate(rgb, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)


def test_the_15_types_in_order_and_their_categories() -> None:
    assert CORRUPTIONS[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert CORRUPTIONS[-1] == "jpeg_compression" and len(CORRUPTIONS) == 15
    assert [t for members in CATEGORIES.values() for t in members] == list(CORRUPTIONS)
    assert "brightness" in CATEGORIES["weather"] and "contrast" in CATEGORIES["digital"]
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_severity_keeps_shape_dtype_range_and_is_deterministic(
    name: str, grey: torch.Tensor, colour: torch.Tensor
) -> None:
    for x in (grey, colour):
        for s in SEVERITIES:
            y = corrupt(x, name, s, seed=3)
            assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
            assert float(y.min()) >= 0 and float(y.max()) <= 1
            assert torch.equal(y, corrupt(x, name, s, seed=3)), (name, s)
            assert not torch.equal(y, x)
        # severity 1 is not the identity: some value moves by more than 2/255
        y1 = corrupt(x, name, 1, seed=3)
        assert float((y1 - x).abs().max()) > 2 / 255, name
        other = corrupt(x, name, 1, seed=4)
        assert torch.equal(y1, other) != (name in RANDOM), name


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_higher_severity_changes_the_image_more(
    name: str, grey: torch.Tensor, colour: torch.Tensor
) -> None:
    for x in (grey, colour):
        change = [float((corrupt(x, name, s) - x).abs().mean()) for s in SEVERITIES]
        if name in NOT_MONOTONE:
            assert change[0] > 0.01, (name, change)
            continue
        assert change[4] > change[0], (name, change)
        if name not in RANDOM or name in {"gaussian_noise", "impulse_noise", "fog"}:
            assert all(a <= b + 1e-6 for a, b in itertools.pairwise(change)), (name, change)


def test_float64_input_keeps_its_dtype(grey: torch.Tensor) -> None:
    y = corrupt(grey.double(), "fog", 2)
    assert y.dtype == torch.float64
    assert torch.allclose(y.float(), corrupt(grey, "fog", 2), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_inputs_come_back_on_cuda(grey: torch.Tensor) -> None:
    y = corrupt(grey.cuda(), "glass_blur", 2)
    assert y.is_cuda and torch.equal(y.cpu(), corrupt(grey, "glass_blur", 2))


def test_bad_inputs_are_clear_errors(grey: torch.Tensor) -> None:
    with pytest.raises(CorruptionError, match="valid corruptions: gaussian_noise, shot_noise"):
        corrupt(grey, "gaussian_blur", 1)
    for bad in (0, 6, 2.0, True):
        with pytest.raises(CorruptionError, match=r"severity must be an integer in 1\.\.5"):
            corrupt(grey, "fog", bad)  # type: ignore[arg-type]
    with pytest.raises(CorruptionError, match=r"\[N, C, H, W\]"):
        corrupt(grey[0], "fog", 1)
    with pytest.raises(CorruptionError, match=r"values in \[0, 1\]"):
        corrupt(grey * 2, "fog", 1)
    with pytest.raises(CorruptionError, match=r"values in \[0, 1\]"):
        corrupt(torch.full_like(grey, float("nan")), "fog", 1)
    with pytest.raises(CorruptionError, match="1 or 3 channels"):
        corrupt(torch.rand(1, 2, 16, 16), "fog", 1)
    with pytest.raises(CorruptionError, match="floating-point"):
        corrupt((grey * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(CorruptionError, match="unknown corruption"):
        corrupted_copies(grey, names=["fog", "smog"])


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(CORRUPTIONS),
    severity=st.sampled_from(SEVERITIES),
    n=st.integers(1, 3),
    c=st.sampled_from([1, 3]),
    h=st.integers(8, 20),
    w=st.integers(8, 20),
    seed=st.integers(0, 2**31),
)
def test_any_small_batch_stays_in_the_unit_box(
    name: str, severity: int, n: int, c: int, h: int, w: int, seed: int
) -> None:
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    y = corrupt(x, name, severity, seed=seed)
    assert y.shape == x.shape
    assert bool(torch.isfinite(y).all()) and float(y.min()) >= 0 and float(y.max()) <= 1


# --- the pieces against the libraries and definitions they stand for ----------------------


@pytest.mark.parametrize("n", [28, 32, 17])
@pytest.mark.parametrize("factor", [1.01, 1.07, 1.25, 2.25])
def test_centre_zoom_matrix_is_scipy_zoom_clipped(n: int, factor: float) -> None:
    img = np.random.default_rng(0).random((n, n))
    crop = int(np.ceil(n / factor))
    top = (n - crop) // 2
    big = ndimage.zoom(img[top : top + crop, top : top + crop], factor, order=1)
    trim = (big.shape[0] - n) // 2
    ref = big[trim : trim + n, trim : trim + n]
    m = centre_zoom_matrix(n, factor)
    np.testing.assert_allclose(m @ img @ m.T, ref, atol=1e-12)


@pytest.mark.parametrize(("n_in", "n_out"), [(28, 26), (28, 18), (32, 20), (20, 32)])
def test_box_matrices_are_pillow_box_resizing(n_in: int, n_out: int) -> None:
    img = np.random.default_rng(1).random((n_in, n_in)).astype(np.float32)
    ref = np.asarray(Image.fromarray(img, mode="F").resize((n_out, n_out), Image.Resampling.BOX))
    m = box_resize_matrix(n_in, n_out)
    np.testing.assert_allclose(m @ img @ m.T, ref, atol=1e-6)


@pytest.mark.parametrize("side", [28, 30, 32])
def test_greyscale_jpeg_mosaic_is_bit_identical_to_one_image_at_a_time(side: int) -> None:
    x = data.load("mnist-5k", "test").x[:40, 0]
    x = F.interpolate(x[:, None], size=(side, side), mode="bilinear")[:, 0].clamp(0, 1)
    q = np.rint(x.numpy() * 255).astype(np.uint8)
    for quality in (80, 40):
        np.testing.assert_array_equal(
            _jpeg_grey_mosaic(q, quality, chunk=16), jpeg_roundtrip(q, quality)
        )


def test_jpeg_matches_pillow_on_one_colour_image(colour: torch.Tensor) -> None:
    y = corrupt(colour, "jpeg_compression", 4)
    im = np.rint(colour[2].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="JPEG", quality=50)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue()))).astype(np.float32) / 255
    np.testing.assert_array_equal(y[2].permute(1, 2, 0).numpy(), ref)


def test_brightness_is_an_hsv_value_shift(colour: torch.Tensor) -> None:
    x = colour[:4].permute(0, 2, 3, 1).numpy().astype(np.float64)
    hsv = rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.2, 0, 1)
    ref = hsv_to_rgb(hsv)
    y = corrupt(colour[:4], "brightness", 4).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_defocus_kernels_are_normalised_disks() -> None:
    for s in SEVERITIES:
        k = defocus_kernel(*scaled("defocus_blur", s, 32, 32))
        assert abs(k.sum() - 1) < 1e-9 and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    # radius 1: centre and its 4 neighbours equal before the light anti-aliasing
    k = defocus_kernel(1.0, 0.01)
    np.testing.assert_allclose(k, [[0, 0.2, 0], [0.2, 0.2, 0.2], [0, 0.2, 0]], atol=1e-9)


def test_glass_moves_are_local_and_the_fast_path_is_the_loop() -> None:
    fast = glass_sources(np.random.default_rng(0), 5, 12, 10, 1, 2)
    slow = glass_sources(np.random.default_rng(0), 5, 12, 10, 1, 2, sequential=True)
    assert fast.shape == (120, 5) and np.array_equal(fast, slow)
    here = np.arange(120)[:, None]
    assert not np.array_equal(fast, here.repeat(5, 1))
    # every pixel reads a pixel at most one step up/left per pass (two passes here)
    drow, dcol = here // 10 - fast // 10, here % 10 - fast % 10
    assert drow.min() >= 0 and dcol.min() >= 0 and drow.max() == 2 and dcol.max() == 2
    # the first row and column are never written
    assert np.array_equal(fast[:10], here[:10].repeat(5, 1))
    # dist = 2 takes the one-by-one path (a value may then travel along a chain of visits)
    two = glass_sources(np.random.default_rng(1), 3, 12, 12, 2, 1)
    assert two.shape == (144, 3) and two.min() >= 0 and two.max() < 144
    assert not np.array_equal(two, np.arange(144)[:, None].repeat(3, 1))


def test_streak_blur_follows_its_angle() -> None:
    x = np.zeros((2, 1, 21, 21), dtype=np.float32)
    x[:, 0, 10, 10] = 1
    y = streak_blur(x, 4, 2.0, np.array([0.0, 90.0]))
    # out(p) reads x(p + k·direction): the dot spreads against the direction
    assert y[0, 0, 10, 6:11].min() > 0 and y[0, 0, 10, 11:].max() == 0
    assert y[1, 0, 6:11, 10].min() > 0 and y[1, 0, 11:, 10].max() == 0
    assert abs(y.sum(axis=(1, 2, 3)) - 1).max() < 1e-6


def test_plasma_fractal_is_seeded_and_scaled() -> None:
    a = plasma_fractal(np.random.default_rng(5), 3, 32, 2.0)
    b = plasma_fractal(np.random.default_rng(5), 3, 32, 2.0)
    assert np.array_equal(a, b) and a.min() == 0 and a.max() == 1
    assert not np.array_equal(a[0], a[1])


# --- copies and evaluation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP trained for three epochs on mnist-5k (about a second)."""
    torch.manual_seed(0)
    train = data.load("mnist-5k", "train")
    test = data.load("mnist-5k", "test").head(300)
    model = models.create("mlp", 10, (1, 28, 28), widths=[64])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for idx in torch.randperm(len(train.x), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
            opt.step()
    return model, test.x, test.y


def test_a_trained_model_degrades_more_at_severity_5(
    trained: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = trained
    model.train()
    result = evaluate(model, x, y, severities=(1, 5), batch_size=128)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert result.clean_accuracy > 0.85 and result.n == 300 and result.severities == (1, 5)
    at1 = np.mean([a[0] for a in result.accuracy.values()])
    at5 = np.mean([a[1] for a in result.accuracy.values()])
    assert at5 < at1 - 0.05 < result.clean_accuracy, (at1, at5)
    assert set(result.category_accuracy()) == set(CATEGORIES)
    assert result.error("fog", 5) == pytest.approx(1 - result.accuracy["fog"][1])


def test_evaluate_on_copies_equals_evaluate_from_scratch(
    trained: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = trained
    names = ["shot_noise", "motion_blur"]
    copies = corrupted_copies(x[:100], names=names, severities=(2, 4), seed=7)
    assert set(copies) == {(t, s) for t in names for s in (2, 4)}
    kw = {"names": names, "severities": (2, 4), "seed": 7}
    a = evaluate(model, x[:100], y[:100], copies=copies, **kw)
    b = evaluate(model, x[:100], y[:100], batch_size=33, **kw)
    assert a == b
    assert a.to_dict()["accuracy"]["motion_blur"] == a.accuracy["motion_blur"]
    with pytest.raises(CorruptionError, match="copies lacks"):
        evaluate(model, x[:100], y[:100], copies=copies, names=["fog"])
