"""A picture of every corruption: rows = corruptions, columns = the clean image and its
corrupted copies at each severity, repeated for each example shown."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from robustscope.corruptions.registry import (
    CORRUPTIONS,
    SEVERITIES,
    check_names,
    check_severities,
    corrupt,
)

__all__ = ["corruption_grid"]


def corruption_grid(
    x: torch.Tensor,
    path: str | Path,
    *,
    names: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write a PNG grid of ``x``'s examples under each corruption and severity to ``path``
    (matplotlib's Agg canvas; the pyplot state is not touched) and return the path.

    Each example takes ``1 + len(severities)`` columns (clean, then the severities); each
    corruption one row. The copies are those of :func:`~robustscope.corruptions.corrupt`
    on the whole of ``x`` with ``seed``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = check_names(names)
    severities = check_severities(severities)
    x = x.detach().cpu().float()
    n = x.shape[0]
    cols = n * (1 + len(severities))
    fig = Figure(figsize=(0.9 * cols + 1.6, 0.9 * len(names) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), cols, squeeze=False)

    def show(ax: object, img: torch.Tensor) -> None:
        arr = img.permute(1, 2, 0).numpy()
        if arr.shape[2] == 1:
            ax.imshow(arr[:, :, 0], cmap="gray", vmin=0, vmax=1)  # type: ignore[attr-defined]
        else:
            ax.imshow(arr.clip(0, 1))  # type: ignore[attr-defined]
        ax.set_xticks([])  # type: ignore[attr-defined]
        ax.set_yticks([])  # type: ignore[attr-defined]

    for r, name in enumerate(names):
        copies = [corrupt(x, name, s, seed=seed) for s in severities]
        for i in range(n):
            base = i * (1 + len(severities))
            show(axes[r, base], x[i])
            for j, c in enumerate(copies):
                show(axes[r, base + 1 + j], c[i])
            if r == 0:
                axes[r, base].set_title("clean", fontsize=8)
                for j, s in enumerate(severities):
                    axes[r, base + 1 + j].set_title(f"s={s}", fontsize=8)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
