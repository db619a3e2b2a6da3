"""Batched building blocks shared by the corruptions: the centre zoom as two small
matrices, the streak (motion) blur with a per-image angle, 8-bit rounding, grey levels.

Arrays are float32 NumPy ``[N, C, H, W]``; torch does the matrix products and gathers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from robustscope.corruptions.constants import motion_width

#: ITU-R 601 luma weights (the grey level OpenCV's RGB→GRAY uses)
LUMA = (0.299, 0.587, 0.114)


def grey(x: np.ndarray) -> np.ndarray:
    """The grey level ``[N, 1, H, W]`` of a batch: luma for 3 channels, the image for 1."""
    if x.shape[1] == 1:
        return x
    w = np.asarray(LUMA, dtype=np.float32).reshape(1, 3, 1, 1)
    return (x * w).sum(axis=1, keepdims=True, dtype=np.float32)


def to_uint8_floor(x: np.ndarray) -> np.ndarray:
    """``⌊255·x⌋ / 255``: the truncation of a float image cast to 8 bits."""
    return np.floor(np.clip(x, 0, 1) * 255).astype(np.float32) / 255


def to_uint8_round(x: np.ndarray) -> np.ndarray:
    """``round(255·x) / 255``: an 8-bit image written by a library that rounds."""
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.float32) / 255


def linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: order-1 resampling with corners aligned (output ``o`` reads input
    coordinate ``o·(n_in − 1)/(n_out − 1)``), the mapping of ``scipy.ndimage.zoom``'s
    default mode."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    if n_out == 1 or n_in == 1:
        m[:, 0] = 1.0
        return m
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def centre_zoom_matrix(n: int, factor: float) -> np.ndarray:
    """``[n, n]``: magnify the centre of a side of ``n`` pixels by ``factor`` ≥ 1 and keep
    the middle ``n`` pixels.

    The centre ``⌈n / factor⌉`` pixels are resampled (order 1) to ``round(that·factor)``
    pixels and the middle ``n`` of those kept, as Hendrycks & Dietterich's zoom does; along
    one axis that is a fixed linear map, so a zoom of a whole batch is ``M X Mᵀ``.
    """
    crop = math.ceil(n / factor)
    top = (n - crop) // 2
    out = round(crop * factor)
    trim = (out - n) // 2
    m = np.zeros((n, n), dtype=np.float64)
    m[:, top : top + crop] = linear_resize_matrix(crop, out)[trim : trim + n]
    return m


def centre_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Every image of ``x`` (``[N, C, H, W]``) zoomed about its centre by ``factor``."""
    rows = torch.from_numpy(centre_zoom_matrix(x.shape[2], factor).astype(np.float32))
    cols = torch.from_numpy(centre_zoom_matrix(x.shape[3], factor).astype(np.float32))
    t = torch.from_numpy(np.ascontiguousarray(x))
    return (rows @ t @ cols.T).numpy()


def streak_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """A one-sided Gaussian streak of ``radius``, ``sigma`` pixels at ``angles[i]`` degrees
    for image ``i``: ``out(p) = Σ_k w_k · x(p + round(k·(cos θ, sin θ)))`` with
    ``w_k ∝ exp(−k² / 2σ²)``, ``k = 0 … 2⌈radius⌉``, edge pixels repeated outside (the
    motion blur ImageMagick applies in the original; x along columns, y down the rows).
    """
    n, c, h, w = x.shape
    taps = motion_width(radius)
    k = np.arange(taps, dtype=np.float64)
    weights = np.exp(-(k**2) / (2 * sigma**2))
    weights /= weights.sum()
    theta = np.deg2rad(angles.astype(np.float64))
    pad = taps - 1
    t = torch.from_numpy(np.ascontiguousarray(x))
    padded = F.pad(t, (pad, pad, pad, pad), mode="replicate")
    wp = w + 2 * pad
    flat = padded.reshape(n, c, -1)
    rows = torch.arange(h).view(h, 1) + pad
    cols = torch.arange(w).view(1, w) + pad
    base = (rows * wp + cols).reshape(1, 1, h * w)
    out = torch.zeros(n, c, h * w, dtype=t.dtype)
    for i in range(taps):
        if weights[i] < 1e-9:  # below float32 resolution of the sum
            continue
        dx = np.ceil(i * np.cos(theta) - 0.5).astype(np.int64)
        dy = np.ceil(i * np.sin(theta) - 0.5).astype(np.int64)
        shift = torch.from_numpy(dy * wp + dx).view(n, 1, 1)
        idx = (base + shift).expand(n, c, h * w)
        out += float(weights[i]) * torch.gather(flat, 2, idx)
    return out.reshape(n, c, h, w).numpy()
