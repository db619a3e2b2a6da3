"""t-SNE of representations (terzi2021 Fig. 6) and the figures of robustscope.visual."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustscope import models
from robustscope.visual import (
    VisualError,
    interpolate,
    tsne_embedding,
)
from robustscope.visual.figures import (
    ImageRow,
    image_grid,
    interpolation_strips,
    loss_curves,
    save,
    tsne_scatter,
)
from robustscope.visual.large_eps import InterpolationResult

torch.manual_seed(0)
FAMILY = {
    "a": models.create("mlp", 3, (1, 4, 4), widths=(8,)),
    "b": models.create("mlp", 3, (1, 4, 4), widths=(6,)),
}
X = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.arange(30) % 3


def test_tsne_shape_and_determinism() -> None:
    first = tsne_embedding(FAMILY, X, Y, seed=3)
    again = tsne_embedding(FAMILY, X, Y, seed=3)
    assert list(first.coords) == ["a", "b"]
    assert all(c.shape == (30, 2) for c in first.coords.values())
    assert first.labels.tolist() == Y.tolist()
    assert first.perplexity == pytest.approx(29 / 3)  # lowered for 30 points
    for name in FAMILY:
        assert np.array_equal(first.coords[name], again.coords[name])
    assert first.seed == 3
    assert not np.array_equal(first.coords["a"], first.coords["b"])
    with pytest.raises(VisualError, match="at least 4"):
        tsne_embedding(FAMILY, X[:3], Y[:3])


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_every_figure_is_written_as_png(tmp_path: Path) -> None:
    x = torch.rand(3, 1, 6, 6)
    rows = [
        ImageRow("original", x, ["0", "1", "2"]),
        ImageRow("saliency", torch.rand(3, 1, 6, 6), kind="signed"),
        ImageRow("colour", torch.rand(2, 3, 6, 6)),
    ]
    w, h = _png(save(image_grid(rows, title="grid"), tmp_path / "grid.png"))
    assert w > 200 and h > 200
    alphas, path = interpolate(x, 1 - x, 4)
    probs = torch.softmax(torch.randn(3, 4, 5, dtype=torch.float64), dim=2)
    strip = InterpolationResult(
        alphas, path, probs, probs.argmax(2), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    )
    _png(save(interpolation_strips({"std": strip, "rob": strip}), tmp_path / "strips.png"))
    curves = {"std": torch.linspace(5, 1, 20), "rob": np.linspace(4, 0.5, 20)}
    _png(save(loss_curves(curves), tmp_path / "curves.png"))
    res = tsne_embedding(FAMILY, X, Y, seed=0)
    w2, h2 = _png(save(tsne_scatter(res, class_names=["x", "y", "z"]), tmp_path / "tsne.png"))
    assert w2 > h2  # two panels side by side
    with pytest.raises(VisualError, match="C = 1 or 3"):
        image_grid([ImageRow("bad", torch.rand(2, 2, 4, 4))])
    with pytest.raises(VisualError, match="no rows"):
        image_grid([])
