"""Visual evidence of the robustness–accuracy trade-off (issue 14 §3–§4).

* :mod:`~robustscope.visual.inversion` — inverting representations (terzi2021 eq. 3, Fig. 2)
  and effective images under the effective weight noise ``Σ* = β F_w⁻¹`` (terzi2021 Def.
  0.6–0.7, eq. 10, Fig. 1);
* :mod:`~robustscope.visual.metrics` — PSNR and SSIM (Wang et al. 2004) of reconstructions;
* :mod:`~robustscope.visual.saliency` — loss-gradient saliency (tsipras2019 Fig. 2);
* :mod:`~robustscope.visual.large_eps` — large-ε targeted adversarial examples and the
  interpolation towards them (tsipras2019 Figs. 3–4, Table 3);
* :mod:`~robustscope.visual.tsne` — t-SNE of representations (terzi2021 Fig. 6);
* :mod:`~robustscope.visual.figures` — the matplotlib grids, strips, curves and scatters.

The package sits at the probes layer (it uses attacks, the weights' Fisher of
:mod:`robustscope.probes.weights` and models; nothing later). ``robustscope visualize``
(:mod:`robustscope.cli.visualize`) draws its figures for one or more checkpoints.
"""

from __future__ import annotations

# The probes package registers this package's probes (``robustscope.visual.probe``), which
# import from both: loading it first lets ``import robustscope.visual`` (or any of its
# modules) come first in a program without meeting its own half-initialised modules.
import robustscope.probes  # noqa: F401  (isort: keep before the package's own modules)
from robustscope.visual.base import VisualError
from robustscope.visual.inversion import (
    EffectiveImagesResult,
    EffectiveNoise,
    InversionResult,
    effective_images,
    effective_noise,
    invert,
    perturbed_copy,
)
from robustscope.visual.large_eps import (
    InterpolationResult,
    LargeEpsResult,
    choose_targets,
    interpolate,
    interpolation,
    large_eps_examples,
    paper_eps,
)
from robustscope.visual.metrics import psnr, ssim
from robustscope.visual.saliency import SaliencyResult, display_map, loss_gradient, saliency
from robustscope.visual.tsne import TSNEResult, features_of, tsne_embedding

__all__ = [
    "EffectiveImagesResult",
    "EffectiveNoise",
    "InterpolationResult",
    "InversionResult",
    "LargeEpsResult",
    "SaliencyResult",
    "TSNEResult",
    "VisualError",
    "choose_targets",
    "display_map",
    "effective_images",
    "effective_noise",
    "features_of",
    "interpolate",
    "interpolation",
    "invert",
    "large_eps_examples",
    "loss_gradient",
    "paper_eps",
    "perturbed_copy",
    "psnr",
    "saliency",
    "ssim",
    "tsne_embedding",
]
