"""t-SNE of representations (terzi2021 Fig. 6).

terzi2021 Fig. 6 embeds the final representations ``f_w(x)`` (before the linear classifier)
of a batch of test images in two dimensions with t-SNE (van der Maaten & Hinton 2008), one
panel per training ε: as ε grows, the classes overlap more ("features become less
discriminative"). :func:`tsne_embedding` computes ``model.features(x)`` for each model of a
family on the same inputs and embeds each model's features separately with scikit-learn's
``TSNE`` (2 components, PCA initialisation, ``random_state = seed``, learning rate "auto";
the perplexity is lowered to ``(N − 1) / 3`` for small batches, scikit-learn's requirement
being ``perplexity < N``). With the same seed and inputs the coordinates are the same (with
the PCA initialisation they may not depend on the seed at all; it is fixed all the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.device import model_device
from robustscope.params import parse_real, positive_int
from robustscope.visual.base import VisualError, check_batch

__all__ = ["TSNEResult", "features_of", "tsne_embedding"]


def features_of(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> np.ndarray:
    """``model.features(x)`` as a float64 ``[N, F]`` array (eval mode, no gradients)."""
    fn = getattr(model, "features", None)
    if not callable(fn):
        raise VisualError(
            "t-SNE: the model has no features(x); use a robustscope model "
            "(robustscope.models.create or a checkpoint)"
        )
    device = model_device(model)
    out = []
    with attack_mode(model), torch.no_grad():
        for lo in range(0, len(x), batch_size):
            out.append(torch.flatten(fn(x[lo : lo + batch_size].to(device)), 1).double().cpu())
    return torch.cat(out).numpy()


@dataclass(frozen=True)
class TSNEResult:
    """2-D t-SNE coordinates of each model's representations of the same inputs
    (terzi2021 Fig. 6).

    Attributes:
        coords: ``{model name: [N, 2] float64}``, in the order given.
        labels: ``[N]`` int64 classes of the inputs.
        perplexity: the perplexity used; seed: ``random_state``.
        kl: ``{model name: the final KL divergence of the embedding}``.
    """

    coords: dict[str, np.ndarray] = field(repr=False)
    labels: np.ndarray = field(repr=False)
    perplexity: float
    seed: int
    kl: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON data."""
        return {
            "perplexity": self.perplexity,
            "seed": self.seed,
            "labels": self.labels.tolist(),
            "kl": self.kl,
            "coords": {name: c.tolist() for name, c in self.coords.items()},
        }


def tsne_embedding(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    batch_size: int = 256,
) -> TSNEResult:
    """t-SNE of ``features(x)`` for each model (terzi2021 Fig. 6).

    Args:
        models: ``{name: model}`` (e.g. a family across training ε), all taking ``x``.
        x: ``[N, ...]`` inputs (N ≥ 4); y: ``[N]`` their labels (colours of the scatter).
        perplexity: t-SNE's perplexity (lowered to ``(N − 1) / 3`` when larger).
        seed: ``random_state`` of every embedding.
        batch_size: examples per forward pass.

    Returns:
        a :class:`TSNEResult`.
    """
    from sklearn.manifold import TSNE

    what = "t-SNE"
    check_batch(what, x)
    if len(x) < 4:
        raise VisualError(f"{what}: needs at least 4 examples, got {len(x)}")
    if not models:
        raise VisualError(f"{what}: pass at least one model")
    batch_size = positive_int(batch_size, f"{what}: batch_size", error=VisualError)
    perp = parse_real(
        perplexity, f"{what}: perplexity", minimum=0.0, strict=True, error=VisualError
    )
    perp = min(perp, (len(x) - 1) / 3)
    coords: dict[str, np.ndarray] = {}
    kl: dict[str, float] = {}
    for name, model in models.items():
        feats = features_of(model, x, batch_size=batch_size)
        tsne = TSNE(
            n_components=2,
            perplexity=perp,
            init="pca",
            learning_rate="auto",
            random_state=int(seed),
        )
        coords[name] = np.asarray(tsne.fit_transform(feats), dtype=np.float64)
        kl[name] = float(tsne.kl_divergence_)
    return TSNEResult(
        coords=coords,
        labels=y.detach().cpu().long().numpy(),
        perplexity=perp,
        seed=int(seed),
        kl=kl,
    )
