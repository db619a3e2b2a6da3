"""Severity constants of the 15 common corruptions, one tuple of five per type.

The values are those of CIFAR-10-C (Hendrycks & Dietterich 2019, *Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations*, ICLR; their CIFAR-10-C
generation script), i.e. they are tuned for 32×32 images. Index ``severity - 1``.

Other image sizes: let ``s = min(H, W) / 32`` (``s = 0.875`` at 28×28). The rule is

* constants that are **blur extents in pixels and vary continuously** are multiplied by
  ``s``: the glass-blur Gaussian σ, the motion-blur radius and σ, and the radius and σ of
  snow's streaks;
* the **defocus disk radius** is multiplied by ``max(s, 1)``: at 28×28 it keeps the 32×32
  value, because the disk is a set of whole pixels and a radius 1 → 0.875 would drop it to
  the centre pixel alone (severity 4 would then blur less than severity 3);
* the **glass-blur swap distance** (1 pixel) is an integer and kept;
* constants that are **fractions of the image or ratios** apply unchanged: elastic
  transform (its three constants are fractions of the side, as in the original), pixelate
  (fraction of the side), zoom factors, snow's zoom factor, the fog map (made at the next
  power of two ≥ the side and cropped);
* **intensity constants** (noise σ/λ/fraction, brightness, contrast, fog and frost
  blending, JPEG quality) apply unchanged.

:func:`scaled` gives every constant at a given size; docs/corruptions.md tabulates them at
32×32 and 28×28.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["BLUR_SCALED", "CIFAR10C", "scaled", "size_scale"]

#: the CIFAR-10-C constants at 32×32, per type, per severity 1..5
CIFAR10C: dict[str, tuple[Any, ...]] = {
    # σ of the additive Gaussian noise
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    # photon count λ: output = Poisson(λ·x)/λ
    "shot_noise": (500, 250, 100, 75, 50),
    # fraction of values replaced by 0 or 1 (salt and pepper, half each)
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    # (disk radius, σ of the Gaussian smoothing the disk), pixels
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    # (Gaussian σ in pixels, maximum swap distance in pixels, swap passes)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (streak radius, streak σ), pixels; angle uniform in [-45°, 45°)
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    # the largest zoom factor; the factors are 1.00, 1.01, ..., this one
    "zoom_blur": (1.05, 1.10, 1.15, 1.20, 1.25),
    # (flake mean, flake σ, zoom, threshold, streak radius px, streak σ px, image weight)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    # (image weight, frost weight)
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    # (fog strength, plasma decay per level)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    # added to the HSV value (V)
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    # factor on the deviation from each channel's mean
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # (displacement α, displacement-field σ, affine jitter), fractions of the side
    "elastic_transform": (
        (0.0, 0.0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ),
    # side of the down-sampled image, fraction of the side
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # JPEG quality (Pillow)
    "jpeg_compression": (80, 65, 58, 50, 40),
}

#: which entries of each type's tuple are blur extents in pixels scaled by s = side/32
BLUR_SCALED: dict[str, tuple[int, ...]] = {
    "glass_blur": (0,),
    "motion_blur": (0, 1),
    "snow": (4, 5),
}


def size_scale(height: int, width: int) -> float:
    """``s = min(H, W) / 32``, the factor of the pixel blur extents.

    Example:
        >>> size_scale(28, 28), size_scale(32, 32)
        (0.875, 1.0)
    """
    return min(height, width) / 32


def scaled(name: str, severity: int, height: int, width: int) -> Any:
    """The constants of ``name`` at ``severity`` for ``H × W`` images (the rule above).

    Example:
        >>> scaled("motion_blur", 5, 28, 28)
        (7.875, 2.1875)
        >>> scaled("defocus_blur", 4, 28, 28), scaled("defocus_blur", 4, 64, 64)
        ((1.0, 0.2), (2.0, 0.2))
    """
    value = CIFAR10C[name][severity - 1]
    s = size_scale(height, width)
    if name in BLUR_SCALED:
        return tuple(v * s if i in BLUR_SCALED[name] else v for i, v in enumerate(value))
    if name == "defocus_blur":
        return (value[0] * max(s, 1.0), value[1])
    return value


def motion_width(radius: float) -> int:
    """Taps of a motion-blur streak of ``radius`` pixels: ``2·⌈radius⌉ + 1`` (ImageMagick's
    kernel width for a given radius)."""
    return 2 * math.ceil(radius) + 1
