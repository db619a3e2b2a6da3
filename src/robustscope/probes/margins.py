"""``margins``: per-example logit margins, true-class probabilities and losses (wen2020 §4.2.1).

Wen et al. (2020), "Towards understanding the regularization of adversarial robustness on
neural networks", §4.2.1 and Figs. 4–5: adversarial training concentrates the margin
distribution ``f_y(x) − max_{j≠y} f_j(x)`` around zero and moves the estimated probability
of the true class ``p_y`` towards middle values, which lowers the test loss of wrong
predictions while raising the training loss. This probe measures those three per-example
quantities and their histograms on **fixed** bin edges (given by the options, never by the
data), so the histograms of different models — or of one model at different epochs — can
be compared bin by bin. Optionally it also measures the input-space margin: the minimal
ℓ2 (or ℓ∞) distance to a wrong decision, estimated by DeepFool.

Registered as ``margins``: on the test split, and also on the train split when the data
carries one (wen2020 Fig. 4 compares the two distributions); its options are the keyword
arguments of :func:`margins` (``--opt range=[-5,5]``, ``--opt "deepfool_params={steps: 20}"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.attacks.losses import margin as logit_margin
from robustscope.attacks.minimal import DeepFool
from robustscope.attacks.registry import create as create_attack
from robustscope.errors import ProbeError, RobustscopeError
from robustscope.evaluation import cross_entropy, predict
from robustscope.probes.base import ProbeResult, batches, check_inputs, logits_of
from robustscope.probes.registry import register_probe

__all__ = ["MarginStats", "MarginsResult", "fixed_histogram", "margins"]

#: quantile levels reported as ``<quantity>_q05`` ... ``<quantity>_q95``
QUANTILES = (0.05, 0.25, 0.75, 0.95)


def fixed_histogram(
    values: torch.Tensor, lo: float, hi: float, bins: int, *, probe: str, field: str
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Counts of ``values`` in ``bins`` equal-width bins of ``[lo, hi]``, with fixed edges.

    The edges are ``linspace(lo, hi, bins + 1)`` (float64) whatever the data. Bins are
    half-open ``[e_i, e_{i+1})`` except the last, closed ``[e_{B−1}, e_B]``. Values below
    ``lo`` are counted in the first bin and values above ``hi`` in the last (so the counts
    sum to the number of non-NaN values); how many were moved is returned as well. NaN
    values are not counted.

    Returns:
        ``(edges [bins + 1] float64, counts [bins] int64, n_below, n_above)``.
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ProbeError(f"probe {probe!r}: {field} bins must be an integer ≥ 1, got {bins!r}")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ProbeError(
            f"probe {probe!r}: {field} range must be finite with min < max, got ({lo}, {hi})"
        )
    edges = np.linspace(lo, hi, bins + 1, dtype=np.float64)
    v = values.detach().double().cpu().numpy()
    v = v[~np.isnan(v)]
    below, above = int((v < lo).sum()), int((v > hi).sum())
    counts, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
    return torch.from_numpy(edges), torch.from_numpy(counts.astype(np.int64)), below, above


def _quantiles(prefix: str, v: torch.Tensor) -> dict[str, float]:
    a = v.detach().double().cpu().numpy()
    a = a[~np.isnan(a)]
    if len(a) == 0:
        nan = float("nan")
        return {f"{prefix}_mean": nan, f"{prefix}_median": nan, f"{prefix}_std": nan} | {
            f"{prefix}_q{round(q * 100):02d}": nan for q in QUANTILES
        }
    out = {
        f"{prefix}_mean": float(a.mean()),
        f"{prefix}_median": float(np.median(a)),
        f"{prefix}_std": float(a.std()),
    }
    for q in QUANTILES:
        out[f"{prefix}_q{round(q * 100):02d}"] = float(np.quantile(a, q))
    return out


@dataclass(frozen=True)
class MarginStats(ProbeResult):
    """Margins, true-class probabilities and losses of one split (wen2020 §4.2.1, Figs. 4–5).

    Conventions: logits are the model's outputs in eval mode, in float64; a single-score
    binary model ``s`` is read as the two logits ``(0, s)``. Natural log. Quantiles use
    numpy's linear interpolation; ``std`` is the population standard deviation (ddof 0).

    Attributes:
        n: number of examples.
        margin: ``[N]`` logit margin ``f_y − max_{j≠y} f_j`` (wen2020 §1.1; positive iff
            correctly classified, negative iff another class scores strictly higher).
        p_true: ``[N]`` estimated probability of the true class ``softmax(f)_y`` (§4.2.1).
        loss: ``[N]`` cross-entropy ``−log p_y``.
        correct: ``[N]`` bool, ``argmax f == y`` (``robustscope.evaluation.predict``; ties,
            which have margin exactly 0, go to the lowest class index).
        margin_edges, margin_hist: fixed edges ``[B + 1]`` and counts ``[B]`` of ``margin``;
            values outside the range are counted in the end bins (``margin_below`` /
            ``margin_above`` say how many).
        p_true_edges, p_true_hist: edges ``linspace(0, 1, B + 1)`` and counts of ``p_true``.
        loss_edges, loss_hist: fixed edges from 0 and counts of ``loss``; losses above the
            range are counted in the last bin (``loss_above`` of them).
        input_margin: ``[N]`` minimal input-space distance to a misclassified point found by
            DeepFool, in ``input_margin_norm`` and pixel units (an upper estimate; by default
            DeepFool's bisection removes its 2 % overshoot, see ``DeepFool``'s
            ``refine_steps``); 0 for examples misclassified
            clean, NaN where DeepFool failed. None unless asked for.
        input_margin_edges, input_margin_hist: its fixed-edge histogram (NaN not counted).
        input_margin_norm: ``"l2"`` or ``"linf"`` (None without input margins).

    ``scalars()``: ``n``, ``error_rate`` (1 − accuracy), ``frac_negative_margin``
    (``margin < 0``; equals ``error_rate`` except for exact ties), ``margin_*``,
    ``p_true_*``, ``loss_*`` summaries (``mean``, ``median``, ``std``, ``q05/q25/q75/q95``),
    the out-of-range counts, and with input margins ``input_margin_success_rate`` (over the
    correctly classified examples) and the ``input_margin_*`` summaries over the correctly
    classified examples where DeepFool succeeded.
    """

    n: int
    margin: torch.Tensor
    p_true: torch.Tensor
    loss: torch.Tensor
    correct: torch.Tensor
    margin_edges: torch.Tensor
    margin_hist: torch.Tensor
    margin_below: int
    margin_above: int
    p_true_edges: torch.Tensor
    p_true_hist: torch.Tensor
    loss_edges: torch.Tensor
    loss_hist: torch.Tensor
    loss_above: int
    input_margin: torch.Tensor | None = None
    input_margin_edges: torch.Tensor | None = None
    input_margin_hist: torch.Tensor | None = None
    input_margin_norm: str | None = None

    @property
    def error_rate(self) -> float:
        return float((~self.correct).double().mean()) if self.n else float("nan")

    @property
    def frac_negative_margin(self) -> float:
        return float((self.margin < 0).double().mean()) if self.n else float("nan")

    @property
    def input_margin_success_rate(self) -> float:
        """Fraction of the correctly classified examples for which DeepFool found a
        misclassified point (NaN without input margins or correct examples)."""
        if self.input_margin is None or not bool(self.correct.any()):
            return float("nan")
        return float(torch.isfinite(self.input_margin[self.correct]).double().mean())

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {
            "n": float(self.n),
            "error_rate": self.error_rate,
            "frac_negative_margin": self.frac_negative_margin,
            "margin_below": float(self.margin_below),
            "margin_above": float(self.margin_above),
            "loss_above": float(self.loss_above),
        }
        out |= _quantiles("margin", self.margin)
        out |= _quantiles("p_true", self.p_true)
        out |= _quantiles("loss", self.loss)
        if self.input_margin is not None:
            out["input_margin_success_rate"] = self.input_margin_success_rate
            out |= _quantiles("input_margin", self.input_margin[self.correct])
        return out


@dataclass(frozen=True)
class MarginsResult(ProbeResult):
    """The :class:`MarginStats` of the test split and, when given, of the train split.

    Flattened as ``test/<name>`` and ``train/<name>`` (see :class:`MarginStats`).
    """

    test: MarginStats
    train: MarginStats | None = None


def _input_margins(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: dict[str, Any],
    batch_size: int,
) -> tuple[torch.Tensor, str]:
    try:
        atk = create_attack("deepfool", model, **params)
    except (RobustscopeError, TypeError) as exc:
        raise ProbeError(f"probe 'margins': bad deepfool_params: {exc}") from None
    assert isinstance(atk, DeepFool)
    out = []
    for s in batches(len(x), batch_size):
        res = atk.find(x[s], y[s].long())
        out.append(res.distance.detach().double().cpu())
    dist = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    return torch.where(torch.isinf(dist), torch.full_like(dist, math.nan), dist), atk.norm


def _split_stats(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bins: int,
    margin_range: tuple[float, float],
    prob_bins: int,
    loss_bins: int,
    loss_max: float,
    input_margin: bool,
    input_bins: int,
    input_max: float,
    deepfool_params: dict[str, Any] | None,
    batch_size: int,
) -> MarginStats:
    check_inputs("margins", x, y)
    y = y.long().cpu()
    z = logits_of(model, x, batch_size)
    m = logit_margin(z, y)
    loss = cross_entropy(z, y, reduction="none")
    p_true = torch.softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    correct = predict(z) == y
    lo, hi = margin_range
    m_edges, m_hist, m_below, m_above = fixed_histogram(
        m, lo, hi, bins, probe="margins", field="margin"
    )
    p_edges, p_hist, _, _ = fixed_histogram(
        p_true, 0.0, 1.0, prob_bins, probe="margins", field="p_true"
    )
    l_edges, l_hist, _, l_above = fixed_histogram(
        loss, 0.0, loss_max, loss_bins, probe="margins", field="loss"
    )
    extra: dict[str, Any] = {}
    if input_margin:
        dist, norm = _input_margins(model, x, y, deepfool_params or {}, batch_size)
        i_edges, i_hist, _, _ = fixed_histogram(
            dist, 0.0, input_max, input_bins, probe="margins", field="input_margin"
        )
        extra = {
            "input_margin": dist,
            "input_margin_edges": i_edges,
            "input_margin_hist": i_hist,
            "input_margin_norm": norm,
        }
    return MarginStats(
        n=len(x),
        margin=m,
        p_true=p_true,
        loss=loss,
        correct=correct,
        margin_edges=m_edges,
        margin_hist=m_hist,
        margin_below=m_below,
        margin_above=m_above,
        p_true_edges=p_edges,
        p_true_hist=p_hist,
        loss_edges=l_edges,
        loss_hist=l_hist,
        loss_above=l_above,
        **extra,
    )


@register_probe(
    "margins",
    "logit margins, true-class probabilities and losses on fixed-edge histograms, test and "
    "(when given) train; optional DeepFool input margins (wen2020 §4.2.1, Figs. 4–5)",
)
def margins(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bins: int = 80,
    range: tuple[float, float] = (-20.0, 20.0),
    prob_bins: int = 20,
    loss_bins: int = 50,
    loss_max: float = 10.0,
    input_margin: bool = False,
    input_bins: int = 40,
    input_max: float = 4.0,
    deepfool_params: dict[str, Any] | None = None,
    batch_size: int = 1000,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> MarginsResult:
    """Margin, true-class probability and loss distributions (wen2020 §4.2.1, Figs. 4–5).

    Per example: the logit margin ``f_y − max_{j≠y} f_j``, ``p_y = softmax(f)_y`` and the
    cross-entropy ``−log p_y``; their histograms on fixed edges (margins: ``bins`` bins of
    ``range``, out-of-range values counted in the end bins; ``p_y``: ``prob_bins`` bins of
    [0, 1]; loss: ``loss_bins`` bins of ``[0, loss_max]``, larger losses in the last bin);
    summary statistics (see :class:`MarginStats`). The fixed defaults make histograms of
    different models share their edges.

    Args:
        model: maps pixel-space inputs to logits ``[N, K]`` (or a binary score ``[N, 1]``).
        x, y: the (test) inputs ``[N, ...]`` and integer labels ``[N]``.
        bins, range: the margin histogram's bin count and ``(min, max)``.
        prob_bins: bins of the ``p_y`` histogram over [0, 1].
        loss_bins, loss_max: bins and upper end of the loss histogram (from 0).
        input_margin: also estimate the input-space margin per example with DeepFool
            (``robustscope.attacks.DeepFool``; ℓ2 by default) — its cost is up to
            ``steps × (K − 1)`` gradient passes per example.
        input_bins, input_max: bins and upper end of the input-margin histogram (from 0).
        deepfool_params: DeepFool's parameters (e.g. ``{"steps": 50, "overshoot": 0.02,
            "norm": "l2"}``); the input ``box`` defaults to the one the model declares.
        batch_size: examples per forward pass (and per DeepFool call).
        train: optional ``(x, y)`` of a training subset, measured the same way (``.train``).

    Returns:
        a :class:`MarginsResult` with ``.test`` (and ``.train``) :class:`MarginStats`.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
        >>> res = margins(model, x, y)
        >>> int(res.test.margin_hist.sum()), res.test.margin_edges.shape
        (16, torch.Size([81]))
    """
    opts: dict[str, Any] = {
        "bins": bins,
        "margin_range": (float(range[0]), float(range[1])),
        "prob_bins": prob_bins,
        "loss_bins": loss_bins,
        "loss_max": float(loss_max),
        "input_margin": input_margin,
        "input_bins": input_bins,
        "input_max": float(input_max),
        "deepfool_params": deepfool_params,
        "batch_size": batch_size,
    }
    with attack_mode(model):
        test_stats = _split_stats(model, x, y, **opts)
        train_stats = _split_stats(model, *train, **opts) if train is not None else None
    return MarginsResult(test=test_stats, train=train_stats)
