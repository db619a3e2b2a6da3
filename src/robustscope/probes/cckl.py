"""``cckl``: the cross-class KL divergence of shi2020 (eq. 1), exact, and eq. 2's right-hand side.

    CCKL = mean over ordered pairs (i, j) with y_i ≠ y_j of KL(f(x_i) ‖ f(x_j))

with ``f = softmax`` of the logits and natural logarithms (eq. 1 writes
``1/(2 N_pair) Σ_{y_i≠y_j}`` with N_pair unordered pairs: the same mean over ordered pairs).
KL(p_i ‖ p_j) = h_i − p_i·log p_j
with h_i = Σ_k p_ik log p_ik, so the sum over all cross-class pairs needs no n × n matrix:

    Σ_{y_i≠y_j} KL = Σ_i h_i (n − n_{y_i}) − [S·L − Σ_c S_c·L_c]

with S = Σ_i p_i, L = Σ_j log p_j (vectors over the K classes) and S_c, L_c the same sums
over class c. The K × K matrix of class-pair means follows the same way, so the whole test
set is measured exactly in O(nK) time and memory — no sampling, no blocks needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeResult, check_inputs, logits_of
from robustscope.probes.registry import register_probe

__all__ = ["CCKLResult", "cckl"]


@dataclass(frozen=True)
class CCKLResult(ProbeResult):
    """CCKL (shi2020 eq. 1) over all ordered cross-class pairs of the given points.

    Attributes:
        value: the mean KL(f(x_i) ‖ f(x_j)) over ordered pairs with y_i ≠ y_j (nats).
        eq2_rhs: the mean over the same pairs of shi2020 eq. 2's right-hand side,
            ``2 JS(y_i ‖ y_j) − KL(y_i ‖ f(x_i)) − KL(y_j ‖ f(x_j))``; for one-hot labels
            JS = log 2 and KL(y ‖ f(x)) is the cross-entropy, so it is
            ``2 log 2 − CE_i − CE_j`` (it grows as the training loss falls, shi2020 Fig. 2).
            The paper derives it from Lin's inequality and calls it a lower bound of the KL,
            but it is **not** one: for f(x_i) = (0.6, 0.4), f(x_j) = (0.4, 0.6) with labels
            0 and 1 the KL is 0.081 nats and the right-hand side 0.365. It is reported as the
            paper's quantity, a function of the cross-entropy, never as a bound.
        n_pairs: number of ordered cross-class pairs.
        ce_loss: mean cross-entropy on these points.
        train_ce_loss: mean cross-entropy on the training subset, when given (else None).
        class_pair_kl: ``[K, K]`` mean KL from class a's points to class b's (NaN on the
            diagonal and for absent classes); ``value`` is its pair-count-weighted mean.
    """

    value: float
    eq2_rhs: float
    n_pairs: int
    ce_loss: float
    train_ce_loss: float | None
    class_pair_kl: torch.Tensor


def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    logp = torch.log_softmax(logits_of(model, x, batch_size), dim=1)
    return -logp.gather(1, y.long().cpu()[:, None])[:, 0]


@register_probe(
    "cckl", "cross-class KL divergence, exact over all pairs, and eq. 2's right-hand side (shi2020)"
)
def cckl(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1000,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> CCKLResult:
    """Exact CCKL of ``model`` on ``(x, y)`` (shi2020 eq. 1) and eq. 2's right-hand side
    (not a bound: see :class:`CCKLResult`).

    Args:
        model: any module mapping pixel-space inputs to logits (eval mode, restored).
        x: ``[N, ...]`` inputs; y: ``[N]`` labels (at least two classes present).
        batch_size: examples per forward pass.
        train: ``(x, y)`` of a training subset for the CE training loss (shi2020 Fig. 2).

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 3, (4,))
        >>> r = cckl(model, torch.rand(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> r.n_pairs, r.value >= 0
        (24, True)
    """
    check_inputs("cckl", x, y)
    logp = torch.log_softmax(logits_of(model, x, batch_size), dim=1)  # float64, CPU
    p = logp.exp()
    yc = y.long().cpu()
    n, k = p.shape
    if int(yc.max()) >= k or int(yc.min()) < 0:
        raise ProbeError(f"probe 'cckl': labels must lie in [0, {k}), the model's classes")
    onehot = torch.nn.functional.one_hot(yc, k).double()  # [n, K]
    counts = onehot.sum(0)  # n_c
    if int((counts > 0).sum()) < 2:
        raise ProbeError("probe 'cckl': needs points of at least two classes")
    h = (p * logp).sum(1)  # h_i = Σ p log p (0·log 0 = 0: p underflows with logp finite)
    s_c = onehot.T @ p  # [K(class), K] Σ_{i∈c} p_i
    l_c = onehot.T @ logp  # Σ_{j∈c} log p_j
    h_c = onehot.T @ h  # Σ_{i∈c} h_i
    # pair sums between class a (first) and class b (second)
    pair_sum = h_c[:, None] * counts[None, :] - s_c @ l_c.T  # [K, K]
    pair_n = counts[:, None] * counts[None, :]
    off = ~torch.eye(k, dtype=torch.bool)
    n_pairs = int(pair_n[off].sum())
    value = float(pair_sum[off].sum() / n_pairs)
    class_pair = torch.where(off & (pair_n > 0), pair_sum / pair_n.clamp_min(1), math.nan)
    ce = -(logp * onehot).sum(1)
    others = n - counts[yc]  # points of another class, per i
    lin = 2 * math.log(2) - 2 * float((ce * others).sum()) / n_pairs
    train_ce = None
    if train is not None:
        check_inputs("cckl", train[0], train[1])
        train_ce = float(_ce(model, train[0], train[1], batch_size).mean())
    return CCKLResult(
        value=value,
        eq2_rhs=lin,
        n_pairs=n_pairs,
        ce_loss=float(ce.mean()),
        train_ce_loss=train_ce,
        class_pair_kl=class_pair,
    )
