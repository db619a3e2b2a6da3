"""PSNR and SSIM (robustscope.visual.metrics): hand-computed cases and scikit-image's values.

The reference values were computed with scikit-image 0.26.0 in a separate environment
(``structural_similarity(a, b, channel_axis=0, data_range=1, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` and ``peak_signal_noise_ratio``) on the inputs
:func:`_cases` draws; robustscope does not depend on scikit-image.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustscope.visual import VisualError, psnr, ssim
from robustscope.visual.metrics import K1, K2, gaussian_window

#: scikit-image 0.26.0 on the cases below: name → (SSIM, PSNR of b against a)
SKIMAGE = {
    "grey28": (0.9451207088744067, 20.618625454040668),
    "rgb32": (-0.023442175898997622, 7.690375211919878),
    "shift16": (0.8164263204863041, 12.041199826559248),
}


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    a = rng.random((3, 28, 28))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    cases = {"grey28": (a[:1], b[:1]), "rgb32": (rng.random((3, 32, 32)), rng.random((3, 32, 32)))}
    rng.random((1, 8, 8))  # (a case of the reference run without a comparable window)
    d = rng.random((1, 16, 16))
    cases["shift16"] = (d * 0.5, d * 0.5 + 0.25)
    return cases


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)[None]


@pytest.mark.parametrize("name", sorted(SKIMAGE))
def test_matches_scikit_image(name: str) -> None:
    a, b = _cases()[name]
    want_ssim, want_psnr = SKIMAGE[name]
    assert float(ssim(_t(a), _t(b))) == pytest.approx(want_ssim, abs=1e-12)
    assert float(psnr(_t(b), _t(a))) == pytest.approx(want_psnr, abs=1e-10)


def test_identical_images_have_ssim_one_and_infinite_psnr() -> None:
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    assert ssim(x, x).tolist() == [1.0, 1.0, 1.0]
    assert psnr(x, x).tolist() == [math.inf] * 3


def test_a_constant_shift() -> None:
    # constant images: σ = σ_xy = 0, so SSIM = (2 c d + C1) / (c² + d² + C1) exactly
    c, d = 0.3, 0.5
    x = torch.full((1, 1, 9, 9), c, dtype=torch.float64)
    y = torch.full((1, 1, 9, 9), d, dtype=torch.float64)
    c1 = (K1 * 1.0) ** 2
    want = (2 * c * d + c1) / (c * c + d * d + c1)
    assert float(ssim(x, y)) == pytest.approx(want, rel=1e-12)
    # PSNR of a shift δ of every pixel is 10 log10(1 / δ²); with data range 2, 10 log10(4 / δ²)
    z = torch.rand(2, 1, 9, 9, dtype=torch.float64) * 0.5
    assert psnr(z + 0.1, z).tolist() == pytest.approx([20.0, 20.0], abs=1e-9)
    assert psnr(z + 0.1, z, data_range=2.0).tolist() == pytest.approx([10 * math.log10(400)] * 2)
    # a shifted image keeps its structure (σ_xy = σ_x σ_y): only the luminance term drops
    small, large = ssim(z + 0.1, z), ssim(z + 0.3, z)
    assert bool(((small > 0) & (small < 1) & (large < small)).all())


def test_the_structure_term_uses_c2() -> None:
    # two zero-mean-free patterns with equal means: SSIM = (2 σ_xy + C2) / (σx² + σy² + C2)
    # for a window that covers the whole 3 × 3 image with weights w
    w = gaussian_window(3)
    x = torch.tensor([[0.2, 0.8, 0.2], [0.8, 0.2, 0.8], [0.2, 0.8, 0.2]], dtype=torch.float64)
    y = 1.0 - x  # mean changes; compute the formula by hand
    mx, my = float((w * x).sum()), float((w * y).sum())
    vx = float((w * x * x).sum()) - mx**2
    vy = float((w * y * y).sum()) - my**2
    cov = float((w * x * y).sum()) - mx * my
    c1, c2 = K1**2, K2**2
    want = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert float(ssim(x[None, None], y[None, None])) == pytest.approx(want, rel=1e-12)


def test_small_images_use_the_largest_odd_window() -> None:
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = (x + 0.05).clamp(0, 1)
    assert torch.equal(ssim(x, y), ssim(x, y, window=7))
    assert not torch.equal(ssim(x, y), ssim(x, y, window=5))
    assert ssim(x, y, window=5).shape == (2,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ssim(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5)), "same shape"),
        (lambda: ssim(torch.rand(1, 16), torch.rand(1, 16)), "images"),
        (lambda: ssim(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), window=5), "larger"),
        (lambda: psnr(torch.rand(1, 4), torch.rand(1, 4), data_range=0), "data_range"),
    ],
)
def test_bad_input_names_the_problem(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VisualError, match=message):
        call()
