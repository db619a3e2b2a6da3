"""Weather corruptions (Hendrycks & Dietterich 2019, "weather" group: snow, frost, fog
and brightness — brightness is in this group in their Figure 1).

Two ingredients of the original are replaced by documented stand-ins:

* **frost** blends the image with crops of six frost *photographs*; here the photographs
  are replaced by five seeded procedural ice textures (:func:`frost_textures`), so frost
  numbers are not comparable with CIFAR-10-C's;
* **snow**'s flakes are smeared by ImageMagick's motion blur; here by the same streak
  kernel as :func:`~robustscope.corruptions.blur.motion_blur`
  (:func:`~robustscope.corruptions._ops.streak_blur`).

Fog's plasma fractal is a batched diamond-square written here (:func:`plasma_fractal`).
Steps on colour (the grey level of snow, the HSV value of brightness) use the image
itself when it has one channel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from robustscope.corruptions._ops import (
    centre_zoom,
    grey,
    streak_blur,
    to_uint8_floor,
    to_uint8_round,
)
from robustscope.corruptions.constants import scaled

__all__ = ["brightness", "fog", "frost", "frost_textures", "plasma_fractal", "snow"]


def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Falling snow: a flake layer ``𝒩(μ, σ²)`` per pixel, zoomed about the centre,
    zeroed below a threshold, smeared into streaks (angle uniform in [−135°, −45°), i.e.
    roughly vertical), added to the image and to itself rotated by 180°; the image is first
    brightened towards ``max(x, 1.5·grey + 0.5)`` with weight ``1 − w``."""
    mu, sd, zoom, thresh, radius, sigma, w = scaled("snow", severity, *x.shape[2:])
    n, _, h, wd = x.shape
    layer = rng.normal(mu, sd, size=(n, 1, h, wd)).astype(np.float32)
    layer = centre_zoom(layer, float(zoom))
    layer[layer < thresh] = 0
    layer = to_uint8_floor(layer)  # the original passes the layer through an 8-bit image
    angles = np.asarray(rng.uniform(-135, -45, size=n))
    layer = to_uint8_round(streak_blur(layer, radius, sigma, angles))
    bright = np.maximum(x, grey(x) * 1.5 + 0.5)
    out = w * x + (1 - w) * bright
    return np.clip(out + layer + layer[:, :, ::-1, ::-1], 0, 1).astype(np.float32)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def frost_textures(rng: np.random.Generator, count: int, side: int, channels: int) -> np.ndarray:
    """``[count, channels, side, side]`` procedural ice textures in [0, 1] (the stand-in for
    the original's frost photographs).

    Each is a pale, slightly blue haze (Gaussian noise smoothed at σ = side/12) under a
    network of thin bright crystals: the ridges ``(1 − |g|/2)⁶`` of two smoothed Gaussian
    fields g (unit variance; σ = side/64 and side/24), which are bright where g crosses
    zero. Mixed 0.35 haze + 0.65 crystals, rescaled to [0, 1]. The colour version tints
    it (0.85, 0.93, 1.0) per RGB channel; greyscale uses the luma of that tint.

    Example:
        >>> t = frost_textures(np.random.default_rng(0), 2, 96, 3)
        >>> t.shape, bool(0 <= t.min() and t.max() <= 1)
        ((2, 3, 96, 96), True)
    """
    out = np.empty((count, 1, side, side), dtype=np.float32)
    for i in range(count):
        haze = _unit(
            ndimage.gaussian_filter(rng.standard_normal((side, side)), side / 12, mode="wrap")
        )
        ridges = []
        for s in (side / 64, side / 24):
            g = ndimage.gaussian_filter(rng.standard_normal((side, side)), max(s, 0.6), mode="wrap")
            g /= g.std()
            ridges.append(np.clip(1 - np.abs(g) / 2, 0, 1) ** 6)
        crystals = np.maximum(ridges[0], 0.7 * ridges[1])
        out[i, 0] = _unit(0.35 * haze + 0.65 * crystals)
    tint = np.asarray([0.85, 0.93, 1.0], dtype=np.float32).reshape(1, 3, 1, 1)
    if channels == 1:
        tint = grey(tint)
    return (out * tint).astype(np.float32)


def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``a·x + b·F``: F is a random crop of one of five :func:`frost_textures` (side 4× the
    image's), (a, b) from (1, 0.2) to (0.75, 0.45). As in the original, the texture index
    is drawn from the first five of its set."""
    a, b = scaled("frost", severity, *x.shape[2:])
    n, c, h, w = x.shape
    side = 4 * max(h, w)
    textures = frost_textures(rng, 5, side, c)
    which = np.asarray(rng.integers(0, 5, size=n))
    top = rng.integers(0, side - h, size=n)
    left = rng.integers(0, side - w, size=n)
    rows = (top[:, None] + np.arange(h))[:, None, :, None]
    cols = (left[:, None] + np.arange(w))[:, None, None, :]
    chans = np.arange(c)[None, :, None, None]
    crops = textures[which[:, None, None, None], chans, rows, cols]
    return np.clip(a * x + b * crops, 0, 1).astype(np.float32)


def plasma_fractal(rng: np.random.Generator, n: int, size: int, decay: float) -> np.ndarray:
    """``[n, size, size]`` plasma fractals in [0, 1] (diamond-square on a torus; ``size``
    a power of two).

    Starting from a zero corner, each level fills the centre of every square with the mean
    of its four corners, then the midpoint of every edge with the mean of its four
    neighbours (two corners, two centres), each plus uniform noise in ``±a²``, where
    ``a = 100`` at the first level and is divided by ``decay`` at each (the original's
    noise amplitude); each map is then rescaled to [0, 1].

    Example:
        >>> p = plasma_fractal(np.random.default_rng(0), 2, 32, 3.0)
        >>> p.shape, float(p.min()), float(p.max())
        ((2, 32, 32), 0.0, 1.0)
    """
    if size & (size - 1):
        raise ValueError(f"plasma_fractal: size must be a power of two, got {size}")
    m = np.zeros((n, size, size), dtype=np.float64)
    step, amp = size, 100.0

    def noisy(mean: np.ndarray) -> np.ndarray:
        return mean + amp * rng.uniform(-amp, amp, size=mean.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        # square step: centre of each square from its four corners
        four = corners + np.roll(corners, -1, axis=1)
        four = four + np.roll(four, -1, axis=2)
        m[:, half::step, half::step] = noisy(four / 4)
        centres = m[:, half::step, half::step]
        # diamond step: midpoints of the horizontal edges (corners left/right, centres above/below)
        horiz = corners + np.roll(corners, -1, axis=2) + centres + np.roll(centres, 1, axis=1)
        # midpoints of the vertical edges (corners above/below, centres left/right)
        vert = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=2)
        m[:, ::step, half::step] = noisy(horiz / 4)
        m[:, half::step, ::step] = noisy(vert / 4)
        step = half
        amp /= decay
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    return ((m - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``(x + t·P) · m / (m + t)``: P a :func:`plasma_fractal` (one per image, made at the
    next power of two ≥ the side and cropped), m the image's maximum, t = 0.2 … 1.5."""
    t, decay = scaled("fog", severity, *x.shape[2:])
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    plasma = plasma_fractal(rng, n, size, float(decay))[:, None, :h, :w]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return np.clip((x + t * plasma) * peak / (peak + t), 0, 1).astype(np.float32)


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The HSV value V = max over channels raised by c = 0.05 … 0.3 (clipped to 1), hue and
    saturation kept: ``x · min(V + c, 1) / V`` (a black pixel becomes grey c). For one
    channel that is ``min(x + c, 1)``."""
    c = scaled("brightness", severity, *x.shape[2:])
    v = x.max(axis=1, keepdims=True)
    new_v = np.minimum(v + c, 1)
    ratio = np.divide(new_v, v, out=np.zeros_like(v), where=v > 0)
    out = np.where(v > 0, x * ratio, np.float32(c))
    return np.clip(out, 0, 1).astype(np.float32)
