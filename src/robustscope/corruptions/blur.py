"""Blur corruptions (Hendrycks & Dietterich 2019, "blur" group): defocus, glass, motion
and zoom blur, each computed for the whole batch at once.

Each function maps a float32 ``[N, C, H, W]`` array in [0, 1] to a new one in [0, 1];
the constants and how they follow the image size are in
:mod:`robustscope.corruptions.constants`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from robustscope.corruptions._ops import centre_zoom, streak_blur, to_uint8_floor
from robustscope.corruptions.constants import scaled

__all__ = ["defocus_blur", "defocus_kernel", "glass_blur", "motion_blur", "zoom_blur"]


def defocus_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """The defocus kernel: the pixels whose centre lies within ``radius`` of the centre
    (equal weights summing to 1) on a grid of half-width max(8, ⌈radius⌉), smoothed by a
    3-tap Gaussian of σ ``alias_sigma`` (5 taps beyond radius 8) against aliasing, then
    cropped to the entries above 1e-12 of the largest (the rest change no float32 value).

    Example:
        >>> k = defocus_kernel(1.0, 0.2)
        >>> k.shape, round(float(k.sum()), 6)
        ((5, 5), 1.0)
    """
    half = max(8, math.ceil(radius))
    grid = np.arange(-half, half + 1)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = 3 if radius <= 8 else 5
    t = np.arange(taps) - taps // 2
    g = np.exp(-(t**2) / (2 * alias_sigma**2))
    g /= g.sum()
    k = ndimage.convolve1d(disk, g, axis=0, mode="mirror")
    k = ndimage.convolve1d(k, g, axis=1, mode="mirror")
    keep = np.argwhere(k > 1e-12 * k.max())
    r = int(np.abs(keep - half).max())
    return k[half - r : half + r + 1, half - r : half + r + 1]


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Convolution with :func:`defocus_kernel` (radius 0.3 … 1.5 px), borders mirrored
    about the edge pixels."""
    radius, alias = scaled("defocus_blur", severity, *x.shape[2:])
    k = torch.from_numpy(defocus_kernel(radius, alias).astype(np.float32))
    n, c, h, w = x.shape
    r = k.shape[0] // 2
    t = torch.from_numpy(np.ascontiguousarray(x)).reshape(n * c, 1, h, w)
    t = F.pad(t, (r, r, r, r), mode="reflect")
    out = F.conv2d(t, k.view(1, 1, *k.shape))
    return np.clip(out.reshape(n, c, h, w).numpy(), 0, 1)


def glass_sources(
    rng: np.random.Generator,
    n: int,
    h: int,
    w: int,
    dist: int,
    passes: int,
    *,
    sequential: bool = False,
) -> np.ndarray:
    """``[H·W, N]``: the pixel each output pixel of each image reads after the local moves.

    For every pass and every pixel (h, w) with ``dist < h ≤ H − dist`` (likewise w), from
    the bottom right to the top left, the pixel takes the current value of the pixel at
    offset (dy, dx), each drawn uniformly from {−dist, …, dist − 1} (the range of the
    original's ``randint``), independently per image. That is what Hendrycks' loop does to
    a colour image: its tuple "swap" of two pixel *views* copies the neighbour into the
    pixel and leaves the neighbour as it was, so values are duplicated, not exchanged, and
    each moves at most ``dist`` pixels per pass.

    With ``dist = 1`` (every severity) the neighbour is above or left, i.e. not yet visited
    in the pass, so a pass is one batched gather; ``sequential=True`` (and any ``dist > 1``)
    runs the visits one by one instead (same result for ``dist = 1``; tests check it).
    """
    src = np.repeat(np.arange(h * w, dtype=np.int64)[:, None], n, axis=1)
    cols = np.arange(n)
    hs = np.arange(h - dist, dist, -1)
    ws = np.arange(w - dist, dist, -1)
    for _ in range(passes):
        offsets = rng.integers(-dist, dist, size=(len(hs), len(ws), 2, n))
        if dist == 1 and not sequential:
            p = (hs[:, None] * w + ws[None, :]).reshape(-1)
            q = (hs[:, None, None] + offsets[:, :, 0]) * w + (ws[None, :, None] + offsets[:, :, 1])
            src[p] = src[q.reshape(len(p), n), cols]
            continue
        for i, hh in enumerate(hs):
            for j, ww in enumerate(ws):
                q = (hh + offsets[i, j, 0]) * w + (ww + offsets[i, j, 1])
                src[hh * w + ww] = src[q, cols]
    return src


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (σ 0.05 … 0.4 px), 8-bit truncation, local pixel moves
    (:func:`glass_sources`), Gaussian blur again (nearest-edge borders, 4σ)."""
    sigma, dist, passes = scaled("glass_blur", severity, *x.shape[2:])
    n, c, h, w = x.shape

    def blur(a: np.ndarray) -> np.ndarray:
        out: np.ndarray = ndimage.gaussian_filter(
            a, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0
        )
        return out

    y = to_uint8_floor(blur(x))
    src = glass_sources(rng, n, h, w, int(dist), int(passes))
    flat = y.reshape(n, c, h * w)
    y = np.take_along_axis(flat, src.T[:, None, :], axis=2).reshape(n, c, h, w)
    return np.clip(blur(y), 0, 1)


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A streak (:func:`~robustscope.corruptions._ops.streak_blur`, radius 6 … 9 px,
    σ 1 … 2.5 px at 32×32) at an angle drawn per image uniformly in [−45°, 45°)."""
    radius, sigma = scaled("motion_blur", severity, *x.shape[2:])
    angles = np.asarray(rng.uniform(-45, 45, size=x.shape[0]))
    return np.clip(streak_blur(x, radius, sigma, angles), 0, 1)


def zoom_factors(severity: int) -> np.ndarray:
    """1.00, 1.01, …, up to the severity's largest factor (6 … 26 factors).

    Example:
        >>> zoom_factors(1)
        array([1.  , 1.01, 1.02, 1.03, 1.04, 1.05])
    """
    top = scaled("zoom_blur", severity, 32, 32)
    return 1 + 0.01 * np.arange(round((top - 1) / 0.01) + 1)


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of the image and its centre zooms by every factor of :func:`zoom_factors`
    (the image itself at factor 1 counts twice, as in the original)."""
    acc = x.astype(np.float32, copy=True)
    factors = zoom_factors(severity)
    for z in factors:
        acc += x if z == 1 else centre_zoom(x, float(z))
    return np.clip(acc / (len(factors) + 1), 0, 1)
