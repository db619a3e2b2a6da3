"""``confidence``: how confident a model's predictions are, and how well calibrated.

wen2020 (§1.1, §4.2.1) finds that adversarial training biases networks towards "less
confident solutions": predictions concentrate near the decision boundaries. This probe
measures confidence directly from the softmax ``p = softmax(f(x))``: the maximum
probability ``max_k p_k``, the predictive entropy ``H(p) = −Σ_k p_k log p_k`` (nats), and,
with labels, the expected calibration error (ECE) over equal-width confidence bins with
its reliability diagram (Guo et al. 2017, "On calibration of modern neural networks",
§2: ``ECE = Σ_b (n_b / n) |acc_b − conf_b|``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeResult, check_inputs, logits_of
from robustscope.probes.margins import fixed_histogram
from robustscope.probes.registry import register_probe

__all__ = ["ConfidenceResult", "confidence"]


@dataclass(frozen=True)
class ConfidenceResult(ProbeResult):
    """Confidence, predictive entropy and calibration of a classifier's softmax.

    Conventions: ``p = softmax(f(x))`` of the eval-mode logits in float64 (a binary score
    ``s`` is read as the two logits ``(0, s)``, so K = 2); natural log (entropy in nats,
    ``0 · log 0 = 0``, so ``0 ≤ H ≤ log K``); predictions are ``argmax p`` (ties to the
    lowest index); means are over the examples.

    Binning (reliability diagram, ECE and the confidence histogram): B equal-width bins
    with edges ``e = linspace(0, 1, B + 1)``; bin b holds the examples with
    ``e_b < max_k p_k ≤ e_{b+1}`` (the first bin also holds 0), as in Guo et al. (2017).
    Since ``max_k p_k ≥ 1/K`` the bins below ``1/K`` are empty. ``ECE = Σ_b (n_b/n)
    |acc_b − conf_b|`` over the non-empty bins, with ``acc_b`` the accuracy and ``conf_b``
    the mean confidence of bin b; ``MCE = max_b |acc_b − conf_b|`` over the non-empty bins.

    Attributes:
        n, num_classes: numbers of examples and classes K.
        max_prob: ``[N]`` confidence ``max_k p_k``.
        entropy: ``[N]`` predictive entropy in nats.
        predicted: ``[N]`` predicted labels.
        correct: ``[N]`` bool, ``predicted == y`` (None without labels).
        confidence_edges, confidence_hist: ``[B + 1]`` edges and ``[B]`` counts of
            ``max_prob`` in the bins above (the reliability diagram's ``n_b``).
        bin_confidence: ``[B]`` mean confidence per bin (NaN for empty bins).
        bin_accuracy: ``[B]`` accuracy per bin (NaN for empty bins; None without labels).
        entropy_edges, entropy_hist: edges ``linspace(0, log K, B + 1)`` and counts of the
            entropy (half-open bins, the last closed).
        ece, mce: calibration errors (None without labels).

    ``scalars()``: ``n``, ``num_classes``, ``mean_max_prob``, ``mean_entropy``,
    ``mean_entropy_normalized`` (mean ``H / log K``) and, with labels, ``accuracy``,
    ``ece``, ``mce``, ``mean_max_prob_correct`` and ``mean_max_prob_wrong`` (NaN when no
    example is in the group).
    """

    n: int
    num_classes: int
    max_prob: torch.Tensor
    entropy: torch.Tensor
    predicted: torch.Tensor
    correct: torch.Tensor | None
    confidence_edges: torch.Tensor
    confidence_hist: torch.Tensor
    bin_confidence: torch.Tensor
    bin_accuracy: torch.Tensor | None
    entropy_edges: torch.Tensor
    entropy_hist: torch.Tensor
    ece: float | None
    mce: float | None

    def scalars(self) -> dict[str, float]:
        log_k = math.log(self.num_classes)
        out = {
            "n": float(self.n),
            "num_classes": float(self.num_classes),
            "mean_max_prob": float(self.max_prob.mean()),
            "mean_entropy": float(self.entropy.mean()),
            "mean_entropy_normalized": float(self.entropy.mean()) / log_k,
        }
        if self.correct is not None and self.ece is not None and self.mce is not None:
            c = self.correct

            def mean_of(mask: torch.Tensor) -> float:
                return float(self.max_prob[mask].mean()) if bool(mask.any()) else math.nan

            out |= {
                "accuracy": float(c.double().mean()),
                "ece": self.ece,
                "mce": self.mce,
                "mean_max_prob_correct": mean_of(c),
                "mean_max_prob_wrong": mean_of(~c),
            }
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "max_prob": self.max_prob.numpy(),
            "entropy": self.entropy.numpy(),
            "confidence_edges": self.confidence_edges.numpy(),
            "confidence_hist": self.confidence_hist.numpy(),
            "bin_confidence": self.bin_confidence.numpy(),
            "entropy_edges": self.entropy_edges.numpy(),
            "entropy_hist": self.entropy_hist.numpy(),
        }
        if self.bin_accuracy is not None:
            out["bin_accuracy"] = self.bin_accuracy.numpy()
        return out


@register_probe(
    "confidence",
    "mean max-probability, predictive entropy (nats), expected calibration error and "
    "reliability diagram over equal-width bins (wen2020's 'less confident solutions')",
)
def confidence(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    bins: int = 15,
    batch_size: int = 1000,
) -> ConfidenceResult:
    """Mean confidence, predictive entropy and (with ``y``) the expected calibration error.

    Args:
        model: maps pixel-space inputs to logits ``[N, K]`` (or a binary score ``[N, 1]``).
        x: inputs ``[N, ...]``.
        y: integer labels ``[N]`` (needed for the accuracy, ECE and reliability diagram).
        bins: number B of equal-width confidence bins (15, Guo et al.'s choice), also the
            number of entropy bins.
        batch_size: examples per forward pass.

    Returns:
        a :class:`ConfidenceResult` (conventions in its docstring).

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
        >>> res = confidence(model, x, y)
        >>> 0.0 <= res.ece <= 1.0, bool((res.entropy <= math.log(10) + 1e-12).all())
        (True, True)
    """
    check_inputs("confidence", x, y)
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ProbeError(f"probe 'confidence': bins must be an integer ≥ 1, got {bins!r}")
    with attack_mode(model):
        z = logits_of(model, x, batch_size)
    k = z.shape[1]
    log_p = torch.log_softmax(z, dim=1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=1)
    max_prob, predicted = p.max(dim=1)

    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    which = torch.bucketize(max_prob, edges[1:-1], right=False)
    counts = torch.bincount(which, minlength=bins)
    nonempty = counts > 0
    safe = counts.clamp_min(1).double()
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, max_prob)
    bin_conf = torch.where(nonempty, conf_sum / safe, math.nan)

    correct: torch.Tensor | None = None
    bin_acc: torch.Tensor | None = None
    ece: float | None = None
    mce: float | None = None
    if y is not None:
        correct = predicted == y.long().cpu()
        acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct.double())
        bin_acc = torch.where(nonempty, acc_sum / safe, math.nan)
        gaps = (bin_acc - bin_conf).abs()[nonempty]
        ece = float((counts[nonempty].double() / len(x) * gaps).sum())
        mce = float(gaps.max())

    e_edges, e_hist, _, _ = fixed_histogram(
        entropy, 0.0, math.log(k), bins, probe="confidence", field="entropy"
    )
    return ConfidenceResult(
        n=len(x),
        num_classes=k,
        max_prob=max_prob,
        entropy=entropy,
        predicted=predicted,
        correct=correct,
        confidence_edges=edges,
        confidence_hist=counts,
        bin_confidence=bin_conf,
        bin_accuracy=bin_acc,
        entropy_edges=e_edges,
        entropy_hist=e_hist,
        ece=ece,
        mce=mce,
    )
