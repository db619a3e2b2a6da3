"""Image quality of reconstructions: PSNR and SSIM per example (terzi2021 Figs. 1–2 compare
inversions and effective images with their originals).

**PSNR** ``= 10 log₁₀(L² / MSE)`` with ``L`` the data range (the width of the input box,
1 for images in [0, 1]) and the MSE over all of an example's values; ``inf`` when the two
images are equal.

**SSIM** follows Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from
error visibility to structural similarity", eq. 13 with their local statistics (§III-B):
per channel, the local means ``μ``, variances ``σ²`` and covariance ``σ_xy`` are weighted
by a normalised circular Gaussian window of standard deviation 1.5 (population moments,
not sample-corrected), and

    SSIM(x, y) = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂))

with ``C₁ = (K₁ L)²``, ``C₂ = (K₂ L)²``, ``K₁ = 0.01``, ``K₂ = 0.03``. The map is computed
where the window fits entirely inside the image (no padding) and averaged over those
positions and the channels (the mean SSIM of Wang et al.'s eq. 17). The window is 11 × 11
as in the paper, or, for images smaller than 11 pixels on a side (e.g. the 8 × 8 ``digits``),
the largest odd size that fits (7 × 7 for 8 × 8), the Gaussian truncated there and
renormalised. Computed in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustscope.visual.base import VisualError, check_batch

__all__ = ["K1", "K2", "SSIM_SIGMA", "SSIM_WINDOW", "gaussian_window", "psnr", "ssim"]

#: Wang et al. (2004)'s constants and window
K1, K2 = 0.01, 0.03
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11


def _pair(what: str, x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_batch(what, x, "x")
    check_batch(what, ref, "ref")
    if x.shape != ref.shape:
        raise VisualError(
            f"{what}: x and ref must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(ref.shape)}"
        )
    return x.detach().double().cpu(), ref.detach().double().cpu()


def _data_range(what: str, data_range: float) -> float:
    if isinstance(data_range, bool) or not (
        isinstance(data_range, int | float) and math.isfinite(data_range) and data_range > 0
    ):
        raise VisualError(f"{what}: data_range must be a finite number > 0, got {data_range!r}")
    return float(data_range)


def psnr(x: torch.Tensor, ref: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each example of ``x`` against ``ref``, in dB.

    Args:
        x, ref: ``[N, ...]`` batches of the same shape.
        data_range: ``L``, the width of the values' range (1 for images in [0, 1]).

    Returns:
        ``[N]`` float64; ``inf`` where ``x[i]`` equals ``ref[i]``.

    Example:
        >>> ref = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
        >>> round(float(psnr(ref + 0.1, ref)), 9)  # MSE = 0.01 → 20 dB
        20.0
    """
    x, ref = _pair("psnr", x, ref)
    L = _data_range("psnr", data_range)
    mse = (x - ref).pow(2).reshape(len(x), -1).mean(1)
    with torch.no_grad():
        out = 10 * torch.log10(L**2 / mse)
    return torch.where(mse == 0, torch.full_like(mse, math.inf), out)


def gaussian_window(size: int, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The ``size × size`` normalised Gaussian window (float64, sums to 1).

    Example:
        >>> w = gaussian_window(11)
        >>> w.shape, round(float(w.sum()), 12), bool(w[5, 5] == w.max())
        (torch.Size([11, 11]), 1.0, True)
    """
    if size < 1 or size % 2 == 0:
        raise VisualError(f"ssim: the window size must be odd and ≥ 1, got {size}")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w = torch.outer(g, g)
    return w / w.sum()


def _window_size(h: int, w: int, win: int | None) -> int:
    if win is not None:
        if win > min(h, w):
            raise VisualError(f"ssim: window {win} is larger than the image ({h} × {w})")
        return win
    side = min(SSIM_WINDOW, h, w)
    return side if side % 2 == 1 else side - 1


def ssim(
    x: torch.Tensor,
    ref: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: int | None = None,
) -> torch.Tensor:
    """Mean structural similarity of each image of ``x`` against ``ref`` (Wang et al. 2004;
    see the module doc for the window and the constants).

    Args:
        x, ref: ``[N, C, H, W]`` images of the same shape.
        data_range: ``L`` (1 for images in [0, 1]).
        window: odd window side; default 11, or the largest odd size ≤ min(H, W).

    Returns:
        ``[N]`` float64 in [−1, 1]; 1 where ``x[i]`` equals ``ref[i]``.

    Example:
        >>> ref = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
        >>> ssim(ref, ref).tolist()
        [1.0, 1.0]
    """
    x, ref = _pair("ssim", x, ref)
    if x.dim() != 4:
        raise VisualError(f"ssim: x must be images [N, C, H, W], got shape {tuple(x.shape)}")
    L = _data_range("ssim", data_range)
    n, c, h, w = x.shape
    size = _window_size(h, w, window)
    kernel = gaussian_window(size).expand(c, 1, size, size)

    def local(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = local(x), local(ref)
    var_x = local(x * x) - mu_x**2
    var_y = local(ref * ref) - mu_y**2
    cov = local(x * ref) - mu_x * mu_y
    c1, c2 = (K1 * L) ** 2, (K2 * L) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).reshape(n, -1).mean(1)
