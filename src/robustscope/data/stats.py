"""Per-channel statistics, as used for the constants in :func:`robustscope.data.info`."""

from __future__ import annotations

import torch

from robustscope.data.dataset import ArrayDataset


def channel_stats(
    ds: ArrayDataset, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of ``ds.x`` over all pixels.

    Images give one value per channel; vector datasets one per feature.
    Accumulated in float64, ``chunk`` examples at a time.
    """
    x = ds.x
    dims = (0, 2, 3) if x.ndim == 4 else (0,)
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to("cpu", torch.float64)
        total += part.sum(dim=dims)
        total_sq += (part * part).sum(dim=dims)
        count += part.numel() // channels
    if count == 0:
        return tuple([0.0] * channels), tuple([0.0] * channels)
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())
