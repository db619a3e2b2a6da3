"""The 15 corruptions by name, their categories, and :func:`corrupt`, the one entry point.

Names, order and categories follow Hendrycks & Dietterich (2019), *Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations* (ICLR), Figure 1: noise
(Gaussian, shot, impulse), blur (defocus, glass, motion, zoom), weather (snow, frost, fog,
brightness) and digital (contrast, elastic, pixelate, JPEG).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from robustscope.corruptions import blur, digital, noise, weather
from robustscope.errors import RobustscopeError
from robustscope.progress import ProgressBar

__all__ = [
    "CATEGORIES",
    "CORRUPTIONS",
    "SEVERITIES",
    "CorruptedCopies",
    "CorruptionError",
    "category_of",
    "check_names",
    "check_severities",
    "corrupt",
    "corrupted_copies",
]


class CorruptionError(RobustscopeError, ValueError):
    """An unknown corruption or severity, or inputs a corruption cannot take."""


Fn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

_FUNCTIONS: dict[str, Fn] = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur,
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "brightness": weather.brightness,
    "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
}

#: the 15 corruption names in Hendrycks & Dietterich's order
CORRUPTIONS: tuple[str, ...] = tuple(_FUNCTIONS)

#: Hendrycks & Dietterich's four groups (their Figure 1), in order
CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}

#: the five severity levels
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: corrupted copies of one batch by (name, severity)
CorruptedCopies = dict[tuple[str, int], torch.Tensor]


def category_of(name: str) -> str:
    """The category of a corruption.

    Example:
        >>> category_of("brightness"), category_of("contrast")
        ('weather', 'digital')
    """
    check_names([name])
    return next(cat for cat, names in CATEGORIES.items() if name in names)


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, refusing unknown or repeated ones (the message lists the valid
    names)."""
    out = tuple(names)
    for name in out:
        if name not in _FUNCTIONS:
            raise CorruptionError(
                f"unknown corruption {name!r}; valid corruptions: {', '.join(CORRUPTIONS)}"
            )
    if len(set(out)) != len(out) or not out:
        raise CorruptionError(f"corruption names must be distinct and non-empty, got {out}")
    return out


def check_severities(severities: Iterable[int]) -> tuple[int, ...]:
    """``severities`` as a tuple of distinct integers in 1..5."""
    out = tuple(severities)
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s not in SEVERITIES:
            raise CorruptionError(f"severity must be an integer in 1..5, got {s!r}")
    if len(set(out)) != len(out) or not out:
        raise CorruptionError(f"severities must be distinct and non-empty, got {out}")
    return tuple(int(s) for s in out)


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise CorruptionError(f"corrupt expects an image batch [N, C, H, W], got {shape}")
    n, c, h, w = x.shape
    if c not in (1, 3) or h < 8 or w < 8:
        raise CorruptionError(
            f"corrupt expects 1 or 3 channels and H, W ≥ 8, got [N, C, H, W] = {list(x.shape)}"
        )
    if not x.is_floating_point():
        raise CorruptionError(f"corrupt expects floating-point images in [0, 1], got {x.dtype}")
    if n and not bool(((x >= 0) & (x <= 1)).all()):
        lo, hi = float(x.min()), float(x.max())
        raise CorruptionError(
            f"corrupt expects values in [0, 1] (pixel space), got min {lo}, max {hi}"
        )


def _rng(seed: int, name: str, severity: int) -> np.random.Generator:
    """One generator per (seed, corruption, severity), so each copy has its own stream."""
    return np.random.default_rng([seed & (2**64 - 1), CORRUPTIONS.index(name), severity])


def corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """``x`` corrupted by ``name`` at ``severity`` (Hendrycks & Dietterich 2019).

    Args:
        x: float images ``[N, C, H, W]`` in [0, 1], C = 1 or 3, H, W ≥ 8 (constants tuned
            for 32×32 colour, CIFAR-10-C, and stated for 28×28 greyscale in
            docs/corruptions.md), on any device.
        name: one of :data:`CORRUPTIONS`.
        severity: 1..5.
        seed: the random draws come from one NumPy generator seeded by (seed, name,
            severity): the same seed gives bit-identical output on the same machine.

    Returns:
        A new tensor, same shape, dtype and device as ``x``, values in [0, 1]. The work is
        done in float32 on the CPU (SciPy, Pillow and torch) and the result moved back.

    The random draws are made for the whole batch at once, so the corruption of example
    ``i`` depends on the batch it is in (its position and the batch size), not only on
    the seed: corrupt the same batch to reproduce a copy.

    Example:
        >>> x = torch.rand(2, 1, 28, 28)
        >>> y = corrupt(x, "gaussian_noise", 3, seed=1)
        >>> y.shape == x.shape and bool(torch.equal(y, corrupt(x, "gaussian_noise", 3, seed=1)))
        True
    """
    check_names([name])
    (severity,) = check_severities([severity])
    _check_images(x)
    if x.shape[0] == 0:
        return x.clone()
    arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
    out = _FUNCTIONS[name](arr, severity, _rng(seed, name, severity))
    result = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).clamp_(0, 1)
    return result.to(device=x.device, dtype=x.dtype)


def corrupted_copies(
    x: torch.Tensor,
    *,
    names: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    progress: bool = False,
) -> CorruptedCopies:
    """Every ``(name, severity)`` copy of ``x`` made once (:func:`corrupt` with ``seed``), to
    evaluate several models on the same corrupted data. All copies are held in memory:
    75 copies of 10,000 28×28 greyscale images take 2.4 GB in float32.

    Example:
        >>> copies = corrupted_copies(torch.rand(2, 1, 8, 8), names=["contrast"], severities=[1, 5])
        >>> sorted(copies)
        [('contrast', 1), ('contrast', 5)]
    """
    names = check_names(names)
    severities = check_severities(severities)
    _check_images(x)
    out: CorruptedCopies = {}
    with ProgressBar(progress, "corrupting", total=len(names) * len(severities)) as bar:
        for name in names:
            for s in severities:
                out[(name, s)] = corrupt(x, name, s, seed=seed)
                bar.advance()
    return out
