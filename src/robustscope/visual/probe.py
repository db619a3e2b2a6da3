"""The ``inversion`` probe: terzi2021's inversion (eq. 3, Fig. 2) and effective images
(eq. 10, Fig. 1) of one model on the first ``n`` test points, for studies.

Three inversions of the same targets ``z̄ = f_w(x)`` from the same random start (Fig. 1's
rows 2–4): plain (eq. 3); **noise added once** — "at the beginning of optimization, we
perturb weights with n̄ ~ N(0, Σ*) and solve the inversion with f_{w+n̄}" (terzi2021, "Adding
effective noise (once) improves inversion"), its result then scored with the original
weights, L_inv(x′) = ‖z̄ − f_w(x′)‖₂; and the effective images of eq. 10.

It stores the convergence curves (the batch mean of L_inv per iteration, Fig. 2), the final
L_inv, PSNR and SSIM of every reconstruction against its original, and the images themselves
(originals, reconstructions, effective images) so the report can draw Fig. 1's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.device import model_device
from robustscope.probes.base import ProbeResult
from robustscope.probes.registry import register_probe
from robustscope.visual.inversion import (
    DEFAULT_BETA,
    effective_images,
    effective_noise,
    invert,
    perturbed_copy,
    representation,
)
from robustscope.visual.large_eps import interpolation, large_eps_examples
from robustscope.visual.metrics import psnr, ssim
from robustscope.visual.saliency import saliency
from robustscope.visual.tsne import tsne_embedding

__all__ = [
    "InversionProbeResult",
    "VisualEvidenceResult",
    "inversion_probe",
    "visual_evidence_probe",
]


@dataclass(frozen=True)
class InversionProbeResult(ProbeResult):
    """Inversion and effective images of ``n`` test points (module doc).

    Attributes:
        n, steps: points and iterations; beta: the effective noise's β.
        loss_curve: ``[steps + 1]`` mean L_inv per iterate of the inversion (Fig. 2);
            ``effective_curve`` the same for the effective images; ``noise_once_curve`` the
            objective ‖z̄ − f_{w+n̄}(x′)‖₂ of the noise-once inversion.
        final_loss: ``[n]`` L_inv of each reconstruction; ``noise_once_loss`` ``[n]`` L_inv
            (original weights) of the noise-once reconstructions.
        psnr, ssim: ``[n]`` against the originals (dB; SSIM in [−1, 1]); ``effective_psnr``,
            ``effective_ssim`` of the effective images; ``noise_once_psnr`` of the noise-once
            reconstructions.
        originals, reconstructions, effective: ``[n, C, H, W]`` images (float32).
    """

    n: int
    steps: int
    beta: float
    loss_curve: np.ndarray
    effective_curve: np.ndarray
    noise_once_curve: np.ndarray
    final_loss: np.ndarray
    noise_once_loss: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    effective_psnr: np.ndarray
    effective_ssim: np.ndarray
    noise_once_psnr: np.ndarray
    originals: np.ndarray
    reconstructions: np.ndarray
    effective: np.ndarray
    noise_once: np.ndarray

    def scalars(self) -> dict[str, float]:
        def mean(a: np.ndarray) -> float:
            finite = a[np.isfinite(a)]
            return float(finite.mean()) if len(finite) else float("nan")

        return {
            "n": float(self.n),
            "steps": float(self.steps),
            "beta": self.beta,
            "final_loss_mean": mean(self.final_loss),
            "psnr_mean": mean(self.psnr),
            "ssim_mean": mean(self.ssim),
            "effective_psnr_mean": mean(self.effective_psnr),
            "effective_ssim_mean": mean(self.effective_ssim),
            "noise_once_loss_mean": mean(self.noise_once_loss),
            "noise_once_psnr_mean": mean(self.noise_once_psnr),
        }


@register_probe(
    "inversion",
    "terzi2021 eq. 3 / eq. 10: invert the representation of a few test images (L_inv per "
    "iteration, PSNR, SSIM) and their effective images",
    tracked=False,
)
def inversion_probe(
    model: nn.Module,
    x: torch.Tensor,
    *,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
    n: int = 8,
    steps: int = 300,
    beta: float = DEFAULT_BETA,
    seed: int = 0,
) -> InversionProbeResult:
    """Invert ``model``'s representation of the first ``n`` points of ``x`` and make their
    effective images (Σ* from ``train``, else from ``x``)."""
    xs = x[:n]
    z = _targets(model, xs)
    shape = tuple(xs.shape[1:])
    inv = invert(model, z, input_shape=shape, steps=steps, seed=seed)
    noise_from = train if train is not None else (x, None)
    noise = effective_noise(model, noise_from[0], noise_from[1], beta=beta)
    eff = effective_images(model, xs, noise=noise, steps=steps, seed=seed)
    once = invert(
        perturbed_copy(model, noise, seed=seed), z, input_shape=shape, steps=steps, seed=seed
    )
    rec, eff_x, once_x = (r.x.to(xs.dtype) for r in (inv, eff.inversion, once))
    with torch.no_grad():
        once_loss = torch.linalg.vector_norm(z.cpu() - _targets(model, once_x).cpu(), dim=1)
    return InversionProbeResult(
        n=len(xs),
        steps=steps,
        beta=float(beta),
        loss_curve=inv.mean_loss.numpy(),
        effective_curve=eff.inversion.mean_loss.numpy(),
        noise_once_curve=once.mean_loss.numpy(),
        final_loss=inv.final_loss.numpy(),
        noise_once_loss=once_loss.double().numpy(),
        psnr=psnr(rec, xs.cpu()).double().numpy(),
        ssim=ssim(rec, xs.cpu()).double().numpy(),
        effective_psnr=psnr(eff_x, xs.cpu()).double().numpy(),
        effective_ssim=ssim(eff_x, xs.cpu()).double().numpy(),
        noise_once_psnr=psnr(once_x, xs.cpu()).double().numpy(),
        originals=xs.detach().cpu().float().numpy(),
        reconstructions=rec.detach().cpu().float().numpy(),
        effective=eff_x.detach().cpu().float().numpy(),
        noise_once=once_x.detach().cpu().float().numpy(),
    )


@torch.no_grad()
def _targets(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with attack_mode(model):
        return representation(model, "inversion")(x.to(model_device(model)))


@dataclass(frozen=True)
class VisualEvidenceResult(ProbeResult):
    """tsipras2019 Figs. 2–4 and terzi2021 Fig. 6 for one model, on the first ``n`` test
    points (t-SNE on the first ``tsne_n``).

    Attributes:
        images: ``[n, C, H, W]`` the originals; saliency: the same shape, the loss-gradient
            saliency mapped to [0, 1] (±3σ, 0.5 = zero; :func:`robustscope.visual.saliency`).
        large_eps: ``[n, C, H, W]`` targeted PGD examples at tsipras2019 Table 3's ε scaled
            to the input (:func:`robustscope.visual.large_eps_examples`); ``eps`` that radius
            (``norm`` in ``to_json``); target_hit: ``[n]`` 1 where the model predicts the
            target; target_prob ``[n]`` its probability.
        interpolation_target_prob: ``[n, S]`` the target's probability along the straight
            path from the image to its large-ε example (Fig. 4).
        tsne: ``[tsne_n, 2]`` t-SNE coordinates of ``features(x)``; tsne_labels: classes.
    """

    n: int
    eps: float
    norm: str
    images: np.ndarray
    saliency: np.ndarray
    large_eps: np.ndarray
    target_hit: np.ndarray
    target_prob: np.ndarray
    interpolation_target_prob: np.ndarray
    tsne: np.ndarray
    tsne_labels: np.ndarray

    def scalars(self) -> dict[str, float]:
        return {
            "n": float(self.n),
            "eps": self.eps,
            "target_hit_rate": float(np.mean(self.target_hit)) if len(self.target_hit) else 0.0,
            "target_prob_mean": float(np.mean(self.target_prob)) if len(self.target_prob) else 0.0,
        }


@register_probe(
    "visual_evidence",
    "tsipras2019 Figs. 2–4 / terzi2021 Fig. 6: loss-gradient saliency, large-ε targeted "
    "examples and their interpolation, t-SNE of the features",
    tracked=False,
)
def visual_evidence_probe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n: int = 8,
    norm: str = "l2",
    steps: int = 100,
    interpolation_steps: int = 8,
    tsne_n: int = 300,
    seed: int = 0,
) -> VisualEvidenceResult:
    """Saliency, large-ε examples with their interpolation, and t-SNE coordinates of ``model``."""
    xs, ys = x[:n], y[:n]
    sal = saliency(model, xs, ys)
    big = large_eps_examples(model, xs, ys, norm=norm, steps=steps)
    path = interpolation(model, big, steps=interpolation_steps)
    k = min(tsne_n, len(x))
    emb = tsne_embedding(
        {"model": model}, x[:k], y[:k], perplexity=min(30.0, (k - 1) / 3), seed=seed
    )
    probs = path.probs.double()
    targets = path.targets.long()
    along = probs.gather(2, targets[:, None, None].expand(-1, probs.shape[1], 1))[..., 0]
    return VisualEvidenceResult(
        n=len(xs),
        eps=float(big.eps),
        norm=big.norm,
        images=xs.detach().cpu().float().numpy(),
        saliency=sal.display.detach().cpu().float().numpy(),
        large_eps=big.x_adv.detach().cpu().float().numpy(),
        target_hit=(big.predicted == big.targets).cpu().numpy().astype(np.float64),
        target_prob=big.target_prob.double().cpu().numpy(),
        interpolation_target_prob=along.cpu().numpy(),
        tsne=emb.coords["model"],
        tsne_labels=emb.labels.astype(np.float64),
    )
