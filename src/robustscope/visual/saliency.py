"""Loss-gradient saliency (tsipras2019 §3, Fig. 2).

tsipras2019 Fig. 2 shows the gradient of the loss with respect to the input pixels,
``g = ∇ₓ CE(f(x), y)`` at the true label ``y``, for standard and adversarially trained
models: noisy for the former, aligned with edges and strokes for the latter. Each example's
gradient is its own (the per-example loss, not a batch mean, is differentiated; the model
runs in eval mode). For display (the paper's CIFAR-10/ImageNet rule) each example's gradient
is clipped to ``±3σ``, ``σ`` the standard deviation of that example's gradient entries, and
mapped linearly to [0, 1] by ``(g + 3σ) / (6σ)``: a zero gradient is mid-grey (0.5), so the
sign stays readable (the paper's MNIST panels use blue/red for the sign; the figures draw
single-channel maps with a diverging colour map). An example with a zero gradient is 0.5
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.attacks.losses import ce_loss
from robustscope.device import model_device
from robustscope.evaluation import predict
from robustscope.numerics import per_example
from robustscope.params import parse_real, positive_int
from robustscope.visual.base import VisualError, check_batch

__all__ = ["SaliencyResult", "display_map", "loss_gradient", "saliency"]

#: the display clip in standard deviations (tsipras2019 Fig. 2)
CLIP_SIGMAS = 3.0


def loss_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256
) -> torch.Tensor:
    """``∇ₓ CE(f(x_i), y_i)`` per example (tsipras2019 Fig. 2), like ``x``, detached.

    The model runs in eval mode with frozen parameters (restored afterwards). A model with a
    single output (a binary score ``s``) is read as the logits ``(0, s)``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> loss_gradient(net, torch.rand(2, 1, 2, 2), torch.tensor([0, 2])).shape
        torch.Size([2, 1, 2, 2])
    """
    check_batch("saliency", x)
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
        raise VisualError(f"saliency: y must be [N] = [{len(x)}] labels")
    batch_size = positive_int(batch_size, "saliency: batch_size", error=VisualError)
    device = model_device(model)
    out = []
    with attack_mode(model):
        for lo in range(0, len(x), batch_size):
            xb = x[lo : lo + batch_size].detach().to(device).requires_grad_(True)
            yb = y[lo : lo + batch_size].to(device=device, dtype=torch.long)
            with torch.enable_grad():
                loss = ce_loss(model(xb), yb).sum()
                (grad,) = torch.autograd.grad(loss, xb)
            out.append(grad.detach().to(x.device))
    return torch.cat(out)


def display_map(grad: torch.Tensor, clip_sigmas: float = CLIP_SIGMAS) -> torch.Tensor:
    """Each example's gradient clipped to ``±clip_sigmas·σ`` and mapped to [0, 1] by
    ``(g + cσ) / (2cσ)`` (σ: the example's standard deviation; 0.5 where σ = 0).

    Example:
        >>> g = torch.tensor([[-100.0] + [0.0] * 98 + [100.0]])  # σ ≈ 14: ±100 are clipped
        >>> m = display_map(g)
        >>> float(m.min()), float(m.max()), float(m[0, 1])
        (0.0, 1.0, 0.5)
    """
    check_batch("display_map", grad, "grad")
    c = parse_real(clip_sigmas, "display_map: clip_sigmas", minimum=0.0, strict=True)
    g = grad.detach().double()
    sigma = g.reshape(len(g), -1).std(1, unbiased=False)
    half = per_example(c * sigma, g)
    safe = torch.where(half > 0, half, torch.ones_like(half))
    scaled = (g.clamp(-half, half) + half) / (2 * safe)
    return torch.where(half > 0, scaled, torch.full_like(g, 0.5)).to(grad.dtype)


@dataclass(frozen=True)
class SaliencyResult:
    """Loss-gradient saliency of a batch (tsipras2019 Fig. 2).

    Attributes:
        gradient: ``[N, ...]`` raw ``∇ₓ CE(f(x_i), y_i)`` (CPU).
        display: ``[N, ...]`` in [0, 1]: the gradient clipped to ``±3σ`` per example and
            rescaled (0.5 = zero gradient; :func:`display_map`).
        sigma: ``[N]`` float64, the standard deviation σ of each example's gradient.
        labels: ``[N]`` the labels differentiated at; predicted: ``[N]`` the model's
            predictions on ``x``.
    """

    gradient: torch.Tensor
    display: torch.Tensor
    sigma: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON data (no maps)."""
        norms = self.gradient.reshape(len(self.gradient), -1).double().norm(dim=1)
        return {
            "labels": self.labels.tolist(),
            "predicted": self.predicted.tolist(),
            "sigma": self.sigma.tolist(),
            "gradient_l2": norms.tolist(),
        }


def saliency(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    clip_sigmas: float = CLIP_SIGMAS,
    batch_size: int = 256,
) -> SaliencyResult:
    """Loss-gradient saliency maps (tsipras2019 Fig. 2): the raw gradients and their display.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> res = saliency(net, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
        >>> float(res.display.min()) >= 0 and float(res.display.max()) <= 1
        True
    """
    grad = loss_gradient(model, x, y, batch_size=batch_size).cpu()
    device = model_device(model)
    with attack_mode(model), torch.no_grad():
        preds = [
            predict(model(x[lo : lo + batch_size].to(device)))
            for lo in range(0, len(x), batch_size)
        ]
    return SaliencyResult(
        gradient=grad,
        display=display_map(grad, clip_sigmas),
        sigma=grad.reshape(len(grad), -1).double().std(1, unbiased=False),
        labels=y.detach().cpu().long(),
        predicted=torch.cat(preds).cpu(),
    )
