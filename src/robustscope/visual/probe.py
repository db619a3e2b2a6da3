"""The ``inversion`` probe: terzi2021's inversion (eq. 3, Fig. 2) and effective images
(eq. 10, Fig. 1) of one model on the first ``n`` test points, for studies.

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
from robustscope.visual.inversion import DEFAULT_BETA, effective_images, invert, representation
from robustscope.visual.metrics import psnr, ssim

__all__ = ["InversionProbeResult", "inversion_probe"]


@dataclass(frozen=True)
class InversionProbeResult(ProbeResult):
    """Inversion and effective images of ``n`` test points (module doc).

    Attributes:
        n, steps: points and iterations; beta: the effective noise's β.
        loss_curve: ``[steps + 1]`` mean L_inv per iterate of the inversion (Fig. 2);
            ``effective_curve`` the same for the effective images.
        final_loss: ``[n]`` L_inv of each reconstruction; psnr, ssim: ``[n]`` against the
            originals (dB; SSIM in [−1, 1]); ``effective_psnr``, ``effective_ssim`` of the
            effective images.
        originals, reconstructions, effective: ``[n, C, H, W]`` images (float32).
    """

    n: int
    steps: int
    beta: float
    loss_curve: np.ndarray
    effective_curve: np.ndarray
    final_loss: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    effective_psnr: np.ndarray
    effective_ssim: np.ndarray
    originals: np.ndarray
    reconstructions: np.ndarray
    effective: np.ndarray

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
    inv = invert(model, z, input_shape=tuple(xs.shape[1:]), steps=steps, seed=seed)
    noise_from = train if train is not None else (x, None)
    eff = effective_images(model, xs, train=noise_from, beta=beta, steps=steps, seed=seed)
    rec, eff_x = inv.x.to(xs.dtype), eff.inversion.x.to(xs.dtype)
    return InversionProbeResult(
        n=len(xs),
        steps=steps,
        beta=float(beta),
        loss_curve=inv.mean_loss.numpy(),
        effective_curve=eff.inversion.mean_loss.numpy(),
        final_loss=inv.final_loss.numpy(),
        psnr=psnr(rec, xs.cpu()).double().numpy(),
        ssim=ssim(rec, xs.cpu()).double().numpy(),
        effective_psnr=psnr(eff_x, xs.cpu()).double().numpy(),
        effective_ssim=ssim(eff_x, xs.cpu()).double().numpy(),
        originals=xs.detach().cpu().float().numpy(),
        reconstructions=rec.detach().cpu().float().numpy(),
        effective=eff_x.detach().cpu().float().numpy(),
    )


@torch.no_grad()
def _targets(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with attack_mode(model):
        return representation(model, "inversion")(x.to(model_device(model)))
