"""Noise corruptions (Hendrycks & Dietterich 2019, "noise" group): Gaussian, shot
(Poisson) and impulse (salt-and-pepper) noise, drawn independently for every value
(channels included) from one generator for the whole batch.

Each function maps a float32 ``[N, C, H, W]`` array in [0, 1] to a new one, clipped to
[0, 1]; the constants are in :mod:`robustscope.corruptions.constants`.
"""

from __future__ import annotations

import numpy as np

from robustscope.corruptions.constants import scaled

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise"]


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``x + 𝒩(0, σ²)`` per value, σ = 0.04 … 0.10."""
    sigma = scaled("gaussian_noise", severity, *x.shape[2:])
    noise = rng.standard_normal(size=x.shape, dtype=np.float32)
    return np.clip(x + np.float32(sigma) * noise, 0, 1)


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``Poisson(λ·x) / λ`` per value (photon noise), λ = 500 … 50."""
    lam = scaled("shot_noise", severity, *x.shape[2:])
    counts = rng.poisson(x.astype(np.float64) * lam)
    return np.clip(counts / lam, 0, 1).astype(np.float32)


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A fraction p = 0.01 … 0.07 of the values set to 0 or 1 (half each)."""
    p = scaled("impulse_noise", severity, *x.shape[2:])
    hit = rng.random(size=x.shape, dtype=np.float32) < p
    salt = rng.random(size=x.shape, dtype=np.float32) < 0.5
    out = x.copy()
    out[hit] = salt[hit].astype(np.float32)
    return out
