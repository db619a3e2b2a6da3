"""Figures of the visual evidence (matplotlib's Agg canvas; the pyplot state is not touched).

* :func:`image_grid` — rows of images with a label per row and a caption per image: the
  originals beside each model's saliency maps (tsipras2019 Fig. 2), large-ε examples
  (Fig. 3), reconstructions and effective images (terzi2021 Fig. 1);
* :func:`interpolation_strips` — the straight path from an image to its large-ε example,
  one strip per model and example, with the target's probability (tsipras2019 Fig. 4);
* :func:`loss_curves` — the batch mean of ``L_inv`` against the iteration per model
  (terzi2021 Fig. 2);
* :func:`tsne_scatter` — one panel of t-SNE coordinates per model, coloured by class
  (terzi2021 Fig. 6).

Images are ``[N, C, H, W]`` in [0, 1] (C = 1: grey; C = 3: colour). Rows of kind
``"signed"`` hold maps in [0, 1] whose 0.5 means zero (saliency displays): single-channel
ones are drawn with a diverging colour map (blue below, red above, as tsipras2019's MNIST
panels). :func:`save` writes a figure atomically as PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robustscope.io import write_bytes
from robustscope.visual.base import VisualError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from robustscope.visual.large_eps import InterpolationResult
    from robustscope.visual.tsne import TSNEResult

__all__ = ["ImageRow", "image_grid", "interpolation_strips", "loss_curves", "save", "tsne_scatter"]


@dataclass(frozen=True)
class ImageRow:
    """One row of :func:`image_grid`.

    Attributes:
        label: shown left of the row.
        images: ``[N, C, H, W]`` in [0, 1].
        captions: one short text above each image (or None).
        kind: ``"image"`` or ``"signed"`` (a map in [0, 1] with 0.5 = zero).
    """

    label: str
    images: torch.Tensor
    captions: Sequence[str] | None = None
    kind: str = "image"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _show(ax: Any, img: torch.Tensor, kind: str) -> None:
    arr = img.detach().cpu().double().permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        cmap = "bwr" if kind == "signed" else "gray"
        ax.imshow(arr[:, :, 0], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(arr.clip(0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _check_rows(rows: Sequence[ImageRow]) -> int:
    if not rows:
        raise VisualError("image_grid: no rows to draw")
    n = max(len(r.images) for r in rows)
    for r in rows:
        if r.images.dim() != 4 or r.images.shape[1] not in (1, 3):
            raise VisualError(
                f"image_grid: row {r.label!r} must hold images [N, C, H, W] with C = 1 or 3, "
                f"got {tuple(r.images.shape)}"
            )
    return n


def image_grid(rows: Sequence[ImageRow], *, title: str | None = None) -> Figure:
    """A grid: one row per :class:`ImageRow`, one column per example."""
    n = _check_rows(rows)
    fig = _figure(1.1 * n + 1.6, 1.25 * len(rows) + (0.5 if title else 0.2))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            if c >= len(row.images):
                ax.axis("off")
                continue
            _show(ax, row.images[c], row.kind)
            if row.captions is not None and c < len(row.captions):
                ax.set_title(row.captions[c], fontsize=7, pad=2)
        axes[r, 0].set_ylabel(row.label, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def interpolation_strips(
    strips: Mapping[str, InterpolationResult],
    *,
    examples: int = 4,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Rows ``model × example`` of the path from ``x`` (left) to its large-ε example (right),
    each image captioned with α and the target's probability (tsipras2019 Fig. 4)."""
    if not strips:
        raise VisualError("interpolation_strips: no model to draw")
    first = next(iter(strips.values()))
    k = min(examples, len(first.labels))
    s = len(first.alphas)

    def name(c: int) -> str:
        return class_names[c] if class_names and c < len(class_names) else str(c)

    rows = len(strips) * k
    fig = _figure(1.0 * s + 2.2, 1.15 * rows + (0.5 if title else 0.2))
    axes = fig.subplots(rows, s, squeeze=False)
    for m, (model_name, res) in enumerate(strips.items()):
        for i in range(k):
            r = m * k + i
            t = int(res.targets[i])
            for j in range(s):
                ax = axes[r, j]
                _show(ax, res.path[i, j], "image")
                p = float(res.probs[i, j, t])
                ax.set_title(f"α={float(res.alphas[j]):.2f} p={p:.2f}", fontsize=6, pad=2)
            label = f"{model_name}\n{name(int(res.labels[i]))}→{name(t)}"
            axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_curves(
    curves: Mapping[str, np.ndarray | torch.Tensor | Sequence[float]],
    *,
    title: str | None = None,
    ylabel: str = "mean L_inv = ‖z̄ − f(x′)‖₂",
) -> Figure:
    """Mean ``L_inv`` against the iteration, one line per model (terzi2021 Fig. 2; log y
    when every value is positive)."""
    if not curves:
        raise VisualError("loss_curves: no curve to draw")
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    positive = True
    for name, curve in curves.items():
        arr = np.asarray(curve.tolist() if isinstance(curve, torch.Tensor) else curve, float)
        positive &= bool((arr > 0).all())
        ax.plot(np.arange(len(arr)), arr, label=name, linewidth=1.4)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def tsne_scatter(
    result: TSNEResult,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One scatter panel per model of its t-SNE coordinates, coloured by class."""
    names = list(result.coords)
    if not names:
        raise VisualError("tsne_scatter: no model to draw")
    fig = _figure(3.4 * len(names) + 1.2, 3.6)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    classes = sorted({int(c) for c in result.labels})
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for ax, name in zip(axes, names, strict=True):
        xy = result.coords[name]
        for i, c in enumerate(classes):
            mask = result.labels == c
            label = class_names[c] if class_names and c < len(class_names) else str(c)
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=cmap(i % cmap.N), label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically and return the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue())
