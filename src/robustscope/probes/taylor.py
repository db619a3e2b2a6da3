"""``taylor_split``: KL between cross-class pairs split into its second-order Fisher term and
the rest (shi2020 §3.3, eqs. 9–11).

For a pair (x_i, x_j) with y_i ≠ y_j and δ = x_j − x_i, the Taylor expansion of
``η ↦ KL(f(x_i) ‖ f(x_i + η))`` at η = 0 has no constant or linear term, and its
second-order term is ``G1 = ½ δᵀ F_{x_i} δ`` with F_x the input-space Fisher information
(shi2020 eq. 6); ``G2 = KL − G1`` collects the higher orders. shi2020 writes G1 without the
½ (eq. 10); the true second-order term has it, and that is what ``g1`` is here;
``g1_paper = δᵀ F δ = 2·G1`` is reported too for comparison with the paper's figures.

``δᵀ F_x δ = Σ_k p_k (∇ₓ log p_k · δ)²`` is exact and needs no d×d matrix: one forward-mode
Jacobian-vector product of the log-probabilities along δ gives all K directional
derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.attacks.fisher import input_fisher_quadratic_form
from robustscope.attacks.losses import _binary_as_two
from robustscope.device import model_device
from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeResult, batches, check_inputs
from robustscope.probes.registry import register_probe

__all__ = ["TaylorSplitResult", "taylor_split"]


@dataclass(frozen=True)
class TaylorSplitResult(ProbeResult):
    """The split KL = G1 + G2 over sampled ordered cross-class pairs (shi2020 §3.3).

    Per-pair tensors are float64 ``[P]``; KL in nats.

    Attributes:
        pairs: ``[P, 2]`` indices (i, j) into the probed points, y_i ≠ y_j.
        kl: KL(f(x_i) ‖ f(x_j)).
        g1: ½ δᵀ F_{x_i} δ, δ = x_j − x_i (the true second-order term).
        g1_paper: δᵀ F_{x_i} δ (shi2020 eq. 10's convention, = 2·g1).
        g2: kl − g1 (all higher orders).
        g1_share: the headline — mean(g1) / mean(kl), the share of the cross-class KL carried
            by the second-order ("non-robust", shi2020) component.
        g1_share_median: the median over pairs of g1 / kl.
    """

    pairs: torch.Tensor
    kl: torch.Tensor
    g1: torch.Tensor
    g1_paper: torch.Tensor
    g2: torch.Tensor
    g1_share: float
    g1_share_median: float

    def scalars(self) -> dict[str, float]:
        return {
            "kl_mean": float(self.kl.mean()),
            "g1_mean": float(self.g1.mean()),
            "g1_paper_mean": float(self.g1_paper.mean()),
            "g2_mean": float(self.g2.mean()),
            "g1_share": self.g1_share,
            "g1_share_median": self.g1_share_median,
            "n_pairs": float(len(self.kl)),
        }


def _sample_pairs(y: torch.Tensor, n_pairs: int, seed: int) -> torch.Tensor:
    """``n_pairs`` ordered pairs drawn uniformly (with replacement) among those with y_i ≠ y_j."""
    gen = torch.Generator().manual_seed(seed)
    n = len(y)
    out: list[torch.Tensor] = []
    have = 0
    while have < n_pairs:
        cand = torch.randint(0, n, (2 * (n_pairs - have) + 16, 2), generator=gen)
        cand = cand[y[cand[:, 0]] != y[cand[:, 1]]][: n_pairs - have]
        out.append(cand)
        have += len(cand)
    return torch.cat(out)


@register_probe(
    "taylor_split", "cross-class KL split into ½δᵀFδ (G1) and the rest (G2) (shi2020 §3.3)"
)
def taylor_split(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_pairs: int = 256,
    seed: int = 0,
    batch_size: int = 256,
    scale: float = 1.0,
) -> TaylorSplitResult:
    """G1/G2 split of the KL between ``n_pairs`` random cross-class pairs (shi2020 eqs. 9–11).

    Args:
        model: maps pixel-space inputs to logits (eval mode; mode and flags restored).
        x, y: the points and labels the pairs are drawn from.
        n_pairs: ordered pairs (i, j), y_i ≠ y_j, drawn uniformly with replacement.
        seed: seed of the pair sampling.
        batch_size: pairs per JVP pass.
        scale: use δ = scale · (x_j − x_i) and compare f(x_i) with f(x_i + δ) (1: the pair
            itself; small values check that KL → G1 as δ → 0).

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 3, (4,))
        >>> r = taylor_split(model, torch.rand(12, 4), torch.arange(12) % 3, n_pairs=8)
        >>> bool(torch.allclose(r.kl, r.g1 + r.g2))
        True
    """
    check_inputs("taylor_split", x, y)
    if n_pairs < 1:
        raise ProbeError(f"probe 'taylor_split': n_pairs must be ≥ 1, got {n_pairs}")
    yc = y.long().cpu()
    if len(torch.unique(yc)) < 2:
        raise ProbeError("probe 'taylor_split': needs points of at least two classes")
    pairs = _sample_pairs(yc, n_pairs, seed)
    device = model_device(model)
    kl, quad = [], []
    for s in batches(len(pairs), batch_size):
        i, j = pairs[s, 0], pairs[s, 1]
        xi = x[i].to(device)
        delta = scale * (x[j].to(device) - xi)
        q, lp_i = input_fisher_quadratic_form(model, xi, delta)
        with torch.no_grad(), attack_mode(model):
            lp_j = F.log_softmax(_binary_as_two(model(xi + delta)).double(), dim=1).cpu()
        kl.append((lp_i.exp() * (lp_i - lp_j)).sum(1))
        quad.append(q)
    kl_t, g1_paper = torch.cat(kl), torch.cat(quad)
    g1 = 0.5 * g1_paper
    ratio = g1 / kl_t.clamp_min(1e-300)
    return TaylorSplitResult(
        pairs=pairs,
        kl=kl_t,
        g1=g1,
        g1_paper=g1_paper,
        g2=kl_t - g1,
        g1_share=float(g1.mean() / kl_t.mean()) if float(kl_t.mean()) > 0 else float("nan"),
        g1_share_median=float(ratio.median()),
    )
