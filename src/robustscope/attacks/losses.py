"""Per-example attack objectives on logits (each returns ``[N]``; attacks maximise them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per example (binary logistic loss for a single logit)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], y.to(logits.dtype), reduction="none"
        )
    return F.cross_entropy(logits, y, reduction="none")


def neg_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``−CE(logits, target)`` per example: the objective a targeted attack maximises."""
    return -ce_loss(logits, target)


def _binary_as_two(logits: torch.Tensor) -> torch.Tensor:
    """A single score s as the two logits (0, s): same predictions, margins and gradients."""
    return torch.cat([torch.zeros_like(logits), logits], dim=1) if logits.shape[1] == 1 else logits


def best_other(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{j≠y} z_j`` per example."""
    logits = _binary_as_two(logits)
    true_mask = F.one_hot(y, logits.shape[1]).bool()
    return logits.masked_fill(true_mask, float("-inf")).amax(dim=1)


def classes_by_logit(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[N, K − 1]``: the classes other than ``y``, highest logit first (the targets of
    APGD-T and FAB-T, Croce & Hein 2020, in order)."""
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.argsort(dim=1, descending=True)[:, : logits.shape[1] - 1]


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit margin ``z_y − max_{j≠y} z_j`` (positive iff correctly classified)."""
    two = _binary_as_two(logits)
    return two.gather(1, y[:, None])[:, 0] - best_other(two, y)


def cw_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 0.0) -> torch.Tensor:
    """Carlini–Wagner margin objective ``min(max_{j≠y} z_j − z_y, κ)`` (to maximise).

    Clipped at κ: once the example is misclassified with margin κ the attack
    stops pushing it (Carlini & Wagner 2017, eq. for f_6; shi2020's CW-ℓ∞).
    """
    return torch.clamp(-margin(logits, y), max=kappa)


def cw_targeted_loss(
    logits: torch.Tensor, target: torch.Tensor, kappa: float = 0.0
) -> torch.Tensor:
    """Targeted Carlini–Wagner objective ``min(z_t − max_{j≠t} z_j, κ)`` (to maximise): the
    target's margin, clipped at κ once the target wins by κ (Carlini & Wagner 2017, f_6)."""
    return torch.clamp(margin(logits, target), max=kappa)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference-of-logits-ratio loss of Croce & Hein (2020), untargeted:

    ``−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)`` with π the descending order of z.
    Needs at least 3 classes.
    """
    z = _binary_as_two(logits)
    srt = z.sort(dim=1, descending=True).values
    return -margin(z, y) / (srt[:, 0] - srt[:, 2] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR of Croce & Hein (2020): ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)``.

    Needs at least 4 classes.
    """
    srt = logits.sort(dim=1, descending=True).values
    zy = logits.gather(1, y[:, None])[:, 0]
    zt = logits.gather(1, target[:, None])[:, 0]
    return -(zy - zt) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


def kl_to_clean(logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    """``KL(f(x) ‖ f(x′)) = Σ_k p_k (log p_k − log p′_k)`` per example, ``[N]``, with f(x) the
    clean prediction (TRADES' inner objective and robust term). Gradients flow through both
    arguments; a single score s is read as the two logits (0, s)."""
    log_p = F.log_softmax(_binary_as_two(clean_logits), dim=1)
    log_q = F.log_softmax(_binary_as_two(logits), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)
