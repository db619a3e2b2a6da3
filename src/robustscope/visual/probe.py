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
from robustscope.visual.metrics import psnr, ssim

__all__ = ["InversionProbeResult", "inversion_probe"]


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
