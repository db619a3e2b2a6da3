"""Probes of the weights: ``weight_information`` (terzi2021 Def. 0.5, Fig. 4) and
``weight_norms`` (terzi2021 Fig. 5; tsipras2019 Table 5's ‖w‖₁).

**Information in the weights.** terzi2021 Def. 0.5 (after Achille & Soatto 2019) puts a
Gaussian posterior ``Q(w|D) = N(w*, Σ)`` on the weights and a prior ``P(w) = N(0, λ²I)``;
minimising ``E_Q[L_D] + β KL(Q ‖ P)`` to second order gives
``Σ* = (β/2) (F_w + β/(2λ²) I)⁻¹``. With the diagonal of the weights' Fisher information
``F_w`` (the usual approximation) every weight i gets the variance
``Σ*_ii = (β/2) / (F_ii + β/(2λ²))`` — at most λ² (an uninformative weight keeps the prior's
variance), and ≈ β/(2F_ii) for a weight the task pins down. terzi2021 Fig. 4 plots the
log-variance of the weights; its growth with the training ε is their evidence that
adversarial training reduces the information in the weights.

Which Fisher: terzi2021 ("Preliminaries") defines the FIM as
``F = E_{x∼p(x), y∼p_w(y|x)} [∇_w log p_w(y|x) ∇_w log p_w(y|x)ᵀ]`` — the *model* Fisher,
the expectation over labels drawn from the model (they add that it equals the expected
Hessian of ``−log p_w``, matching ``F_w ≈ ∇²_w L_D(w)`` in Def. 0.5), and ``L_D`` is the
empirical *mean* over the N examples. So the default ``fisher="model"`` is, exactly (no
label sampling), ``diag F_w = (1/N) Σ_n Σ_k p_k(x_n) (∂_w log p_k(x_n))²``;
``fisher="empirical"`` uses the gradient at the true label instead,
``(1/N) Σ_n (∂_w log p_{y_n}(x_n))²``.

β and λ: the paper gives no values. Because ``L_D`` is a mean, ``β`` weighs the KL against
the *average* loss: β = 1/N is the Bayesian posterior of N examples under the summed loss
(Achille & Soatto's β = 1). The defaults ``beta = 1e-3`` (the posterior of about a thousand
examples) and ``lam = 1`` (a prior wider than any trained layer's weights) are ours; the
log-variance moves by about log β when β changes, so compare models at the same (β, λ).

**Weight norms.** terzi2021 Fig. 5 tracks ‖w‖₂ of networks trained with different ε;
tsipras2019 Table 5 reports ‖w‖₁ of a binary linear classifier on MNIST. By default
(``include="weights"``) only the ``weight`` of linear and convolution layers (``nn.Linear``,
``nn.Conv1d/2d/3d`` and transposed convolutions) counts — the matrices that multiply the
input; biases and normalisation-layer affine parameters (BatchNorm, LayerNorm, GroupNorm,
...) are excluded, since they do not scale the map and tsipras2019's ‖w‖₁ is that of the
weight vector alone. ``include="all"`` counts every parameter. The input normalisation
(``Normalize``) holds buffers, not parameters, and never counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from robustscope.attacks.base import attack_mode
from robustscope.device import model_device
from robustscope.errors import ProbeError
from robustscope.numerics import per_example
from robustscope.probes.base import ProbeResult, batches, check_inputs
from robustscope.probes.registry import register_probe

__all__ = [
    "WeightInformationResult",
    "WeightNormsResult",
    "check_posterior",
    "fisher_diagonal",
    "posterior_variance",
    "weight_information",
    "weight_norms",
]

_INFO = "weight_information"
_NORMS = "weight_norms"
_WEIGHT_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


# ----------------------------------------------------------------------------- information


@dataclass(frozen=True)
class WeightInformationResult(ProbeResult):
    """Diagonal weight Fisher and the optimal Gaussian posterior's log-variance
    (terzi2021 Def. 0.5, Fig. 4), per named parameter and overall.

    ``Σ*_ii = (β/2) / (F_ii + β/(2λ²))``, natural logarithms, KL in nats. Means over
    weights are plain means over the entries (the overall mean weighs each layer by its
    size, it is not the mean of the layer means).

    Attributes:
        fisher: ``"model"`` (labels drawn from the model, exact expectation; the paper's)
            or ``"empirical"`` (the true labels).
        beta, lam: β and the prior's standard deviation λ.
        n: number of examples averaged.
        split: which examples F_w was averaged over: ``"train"`` (the paper's training set;
            what a study's ``probes.train_n`` examples give) or ``"test"`` (only when no
            training examples were given).
        fisher_diag: ``{name: tensor}`` diag F_w shaped like each parameter (float64,
            CPU); left out of ``arrays()`` (as large as the model).
        log_variance: ``{name: mean_i log Σ*_ii}`` per parameter tensor.
        log_variance_mean: mean of ``log Σ*_ii`` over all weights (Fig. 4's quantity).
        fisher_trace: ``{name: Σ_i F_ii}``; ``fisher_trace_total`` their sum = tr F_w.
        information: ``{name: KL}`` and ``information_total``: the information in the
            weights ``KL(N(w, Σ*) ‖ N(0, λ²I)) = ½ Σ_i [Σ*_ii/λ² + w_i²/λ² − 1 −
            log(Σ*_ii/λ²)]`` at the current weights w (Def. 0.5's KL term, without β).
        num_params: ``{name: count}``.
    """

    fisher: str
    beta: float
    lam: float
    n: int
    log_variance_mean: float
    fisher_trace_total: float
    information_total: float
    log_variance: dict[str, float]
    fisher_trace: dict[str, float]
    information: dict[str, float]
    num_params: dict[str, int]
    fisher_diag: dict[str, torch.Tensor] = field(repr=False)
    split: str = "train"

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


def _two_logits(out: torch.Tensor) -> torch.Tensor:
    """A single binary score ``s`` becomes the logits ``(0, s)`` (as ``logits_of``)."""
    if out.shape[-1] == 1:
        return torch.cat([torch.zeros_like(out), out], dim=-1)
    return out


def fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    fisher: Literal["model", "empirical"] = "model",
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """The diagonal of the weights' Fisher information, averaged over the examples.

    Per-example gradients come from ``torch.func`` (``vmap`` of ``grad`` of a
    ``functional_call``), so a batch costs one vectorised backward per class (``model``)
    or one (``empirical``), with ``batch_size × #params`` memory.

    The last result is remembered: a call with the same model object and the same ``x`` and
    ``y`` tensor objects, none of whose tensors changed since (parameters, buffers and data
    are compared by identity and by PyTorch's in-place version counters), the same
    ``fisher`` and ``batch_size``, returns a copy of it. The probes of one run that need
    F_w on its training subset (``weight_information``, ``effective_information``, the
    effective images of ``visual``) so compute it once: 35 s per 1,000 images for the
    default CNN on one core.

    Args:
        model: maps ``[N, ...]`` inputs to logits ``[N, K]`` (or a binary score ``[N, 1]``,
            read as the logits ``(0, s)``); evaluated in eval mode, mode and flags restored.
        x: ``[N, ...]`` inputs; moved to the model's device and dtype.
        y: ``[N]`` labels (needed for ``empirical`` only).
        fisher: ``"model"`` — ``(1/N) Σ_n Σ_k p_k (∂ log p_k)²``; ``"empirical"`` —
            ``(1/N) Σ_n (∂ log p_{y_n})²``.
        batch_size: examples per vectorised pass.

    Returns:
        ``{parameter name: diag F}`` (float64, CPU, shaped like the parameter) for every
        parameter of ``model.named_parameters()``, frozen ones included.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 3, (1, 4, 4), widths=(5,))
        >>> diag = fisher_diagonal(model, torch.rand(6, 1, 4, 4))
        >>> sorted(diag) == sorted(n for n, _ in model.named_parameters())
        True
    """
    global _LAST
    if fisher not in ("model", "empirical"):
        raise ProbeError(f"probe {_INFO!r}: fisher must be 'model' or 'empirical', got {fisher!r}")
    if fisher == "empirical" and y is None:
        raise ProbeError(f"probe {_INFO!r}: fisher='empirical' needs the labels y")
    check_inputs(_INFO, x, y)
    last = _LAST
    stamp = _stamp(model, x, y, fisher, batch_size)
    if last is not None and last.model is model and last.x is x and last.stamp == stamp:
        return {name: d.clone() for name, d in last.value.items()}
    _LAST = None
    value = _fisher_diagonal(model, x, y, fisher, batch_size)
    held = (*model.parameters(), *model.buffers())
    _LAST = _Remembered(model, x, y, held, stamp, value)
    return {name: d.clone() for name, d in value.items()}


@dataclass(frozen=True)
class _Remembered:
    """:func:`fisher_diagonal`'s last result and what it was computed from. The model, the
    data and every parameter and buffer are held, so no object the stamp names by ``id`` can
    be freed and its id reused (a replaced parameter) while remembered."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor | None
    held: tuple[torch.Tensor, ...]
    stamp: tuple[Any, ...]
    value: dict[str, torch.Tensor]


_LAST: _Remembered | None = None


def _stamp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, fisher: str, batch_size: int
) -> tuple[Any, ...]:
    """What changes when a tensor the Fisher reads is replaced or modified in place."""

    def of(t: torch.Tensor | None) -> tuple[Any, ...] | None:
        if t is None:
            return None
        return (id(t), t._version, t.data_ptr(), tuple(t.shape), t.dtype, str(t.device))

    return (
        tuple((name, of(p)) for name, p in model.named_parameters()),
        tuple((name, of(b)) for name, b in model.named_buffers()),
        of(x),
        of(y),
        fisher,
        batch_size,
    )


def _fisher_diagonal(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, fisher: str, batch_size: int
) -> dict[str, torch.Tensor]:
    device = model_device(model)
    names = [name for name, _ in model.named_parameters()]
    if not names:
        raise ProbeError(f"probe {_INFO!r}: the model has no parameters to measure")
    params = {name: p.detach() for name, p in model.named_parameters()}
    dtype = next(iter(params.values())).dtype
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def log_prob(p: dict[str, torch.Tensor], xi: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = _two_logits(functional_call(model, (p, buffers), (xi[None],)))
        return torch.log_softmax(out, dim=-1)[0].gather(0, k[None])[0]

    example_grads = vmap(grad(log_prob), in_dims=(None, 0, 0))
    acc = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in params.items()}
    with attack_mode(model), torch.enable_grad():
        for s in batches(len(x), batch_size):
            xb = x[s].detach().to(device=device, dtype=dtype)
            if fisher == "empirical":
                assert y is not None
                pairs: list[tuple[torch.Tensor, torch.Tensor | None]] = [
                    (y[s].to(device=device, dtype=torch.long), None)
                ]
            else:
                with torch.no_grad():
                    probs = torch.softmax(_two_logits(model(xb)).double(), dim=-1)
                pairs = [
                    (torch.full((len(xb),), k, dtype=torch.long, device=device), probs[:, k])
                    for k in range(probs.shape[1])
                ]
            for labels, weight in pairs:
                grads = example_grads(params, xb, labels)
                for name, g in grads.items():
                    sq = g.detach().double().pow(2)
                    if weight is not None:
                        sq = sq * per_example(weight, sq)
                    acc[name] += sq.sum(0)
    return {name: (a / len(x)).cpu() for name, a in acc.items()}


def check_posterior(probe: str, beta: float, lam: float) -> None:
    """Refuse a β or λ of Def. 0.5 that is not a finite number > 0, naming the probe."""
    for label, value in (("beta", beta), ("lam", lam)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ProbeError(f"probe {probe!r}: {label} must be a number > 0, got {value!r}")
        if not math.isfinite(value):
            raise ProbeError(f"probe {probe!r}: {label} must be finite, got {value!r}")


def posterior_variance(
    fisher_diag: dict[str, torch.Tensor], beta: float, lam: float
) -> dict[str, torch.Tensor]:
    """Def. 0.5's optimal Gaussian posterior variances ``Σ*_ii = (β/2)/(F_ii + β/(2λ²))``
    (float64), per parameter, from the diagonal weight Fisher (:func:`fisher_diagonal`)."""
    floor = beta / (2 * lam**2)
    return {name: (beta / 2) / (f + floor) for name, f in fisher_diag.items()}


@register_probe(
    _INFO,
    "diagonal weight Fisher and log-variance of the optimal Gaussian weight posterior "
    "Σ* = (β/2)(F_w + β/(2λ²))⁻¹ (terzi2021 Def. 0.5, Fig. 4)",
)
def weight_information(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
    beta: float = 1e-3,
    lam: float = 1.0,
    fisher: Literal["model", "empirical"] = "model",
    batch_size: int = 64,
) -> WeightInformationResult:
    """Log-variance of the optimal Gaussian weight posterior (terzi2021 Def. 0.5, Fig. 4).

    F_w is averaged over the training examples ``train`` when given (Def. 0.5's F_w is the
    training loss's curvature), else over ``x`` (recorded in ``split``).

    ``Σ*_ii = (β/2) / (F_ii + β/(2λ²))`` with ``F = fisher_diagonal(model, x, y)``, its mean
    log per parameter tensor and overall, and the information in the weights (KL to the
    prior). See the module doc for the Fisher chosen and the defaults of β and λ.

    Args:
        model: maps inputs to logits (or a binary score); mode and flags restored.
        x: ``[N, ...]`` test inputs, used when ``train`` is None.
        y: ``[N]`` their labels (used by ``fisher="empirical"`` only).
        train: ``(x, y)`` training examples (a study passes its ``probes.train_n``).
        beta: β > 0, the weight of the KL term in eq. 6.
        lam: λ > 0, the standard deviation of the prior N(0, λ²I).
        fisher: ``"model"`` (the paper's) or ``"empirical"``.
        batch_size: examples per vectorised pass.

    Returns:
        a :class:`WeightInformationResult`.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 3, (1, 4, 4), widths=(5,))
        >>> res = weight_information(model, torch.rand(6, 1, 4, 4))
        >>> res.log_variance_mean <= 2 * math.log(1.0)  # Σ*_ii ≤ λ²
        True
    """
    check_posterior(_INFO, beta, lam)
    split = "test"
    if train is not None:
        x, y = train
        split = "train"
    diag = fisher_diagonal(model, x, y, fisher=fisher, batch_size=batch_size)
    weights = {name: p.detach().double().cpu() for name, p in model.named_parameters()}
    variance = posterior_variance(diag, beta, lam)
    log_var, trace, info, count = {}, {}, {}, {}
    total_log, total_n = 0.0, 0
    for name, f in diag.items():
        lv = torch.log(variance[name])
        ratio = torch.exp(lv) / lam**2
        kl = 0.5 * (ratio + weights[name].pow(2) / lam**2 - 1 - torch.log(ratio)).sum()
        log_var[name] = float(lv.mean())
        trace[name] = float(f.sum())
        info[name] = float(kl)
        count[name] = f.numel()
        total_log += float(lv.sum())
        total_n += f.numel()
    return WeightInformationResult(
        fisher=fisher,
        beta=float(beta),
        lam=float(lam),
        n=len(x),
        log_variance_mean=total_log / total_n,
        fisher_trace_total=sum(trace.values()),
        information_total=sum(info.values()),
        log_variance=log_var,
        fisher_trace=trace,
        information=info,
        num_params=count,
        fisher_diag=diag,
        split=split,
    )


# ----------------------------------------------------------------------------- norms


@dataclass(frozen=True)
class WeightNormsResult(ProbeResult):
    """ℓ1 and ℓ2 norms of the weights per parameter tensor and in total
    (terzi2021 Fig. 5's ‖w‖₂; tsipras2019 Table 5's ‖w‖₁).

    Attributes:
        include: ``"weights"`` (the ``weight`` of linear and convolution layers only) or
            ``"all"`` (every parameter); see the module doc.
        l1: ``{name: Σ|w_i|}`` per counted parameter tensor.
        l2: ``{name: (Σ w_i²)^½}`` (the Frobenius norm of a matrix or kernel).
        num_params: ``{name: count}``.
        l1_total: Σ of the per-tensor ℓ1 norms = ‖w‖₁ of all counted weights together.
        l2_total: ℓ2 norm of all counted weights together, (Σ_layers l2²)^½.
        count_total: number of counted weights.
    """

    include: str
    l1_total: float
    l2_total: float
    count_total: int
    l1: dict[str, float]
    l2: dict[str, float]
    num_params: dict[str, int]


def _counted(model: nn.Module, include: str) -> list[tuple[str, torch.Tensor]]:
    if include == "all":
        return [(name, p) for name, p in model.named_parameters()]
    out: list[tuple[str, torch.Tensor]] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not (isinstance(module, _WEIGHT_LAYERS) and isinstance(weight, nn.Parameter)):
            continue
        if id(weight) not in seen:
            seen.add(id(weight))
            out.append((f"{mod_name}.weight" if mod_name else "weight", weight))
    return out


@register_probe(
    _NORMS,
    "ℓ1/ℓ2 norms of the linear and convolution weights per layer and in total "
    "(terzi2021 Fig. 5, tsipras2019 Table 5); ignores the data",
)
def weight_norms(
    model: nn.Module, *, include: Literal["weights", "all"] = "weights"
) -> WeightNormsResult:
    """ℓ1 and ℓ2 norms of a model's weights, per tensor and in total (computed in float64).

    Args:
        model: any module.
        include: ``"weights"`` — the ``weight`` of ``nn.Linear``/``nn.Bilinear`` and
            convolution layers only (no biases, no normalisation-layer parameters);
            ``"all"`` — every parameter of ``model.named_parameters()``.

    Returns:
        a :class:`WeightNormsResult`.

    Raises:
        ProbeError: on an unknown ``include`` or when no parameter is counted.

    Example:
        >>> from robustscope import models
        >>> model = models.create("linear", 1, (4,), bias=True)
        >>> res = weight_norms(model)
        >>> list(res.l1) == ["head.weight"]
        True
    """
    if include not in ("weights", "all"):
        raise ProbeError(f"probe {_NORMS!r}: include must be 'weights' or 'all', got {include!r}")
    counted = _counted(model, include)
    if not counted:
        raise ProbeError(
            f"probe {_NORMS!r}: {type(model).__name__} has no "
            + (
                "linear or convolution weights; use include='all' to count every parameter"
                if include == "weights"
                else "parameters"
            )
        )
    l1, l2, count = {}, {}, {}
    with torch.no_grad():
        for name, p in counted:
            w = p.detach().double()
            l1[name] = float(w.abs().sum())
            l2[name] = float(w.pow(2).sum().sqrt())
            count[name] = w.numel()
    return WeightNormsResult(
        include=include,
        l1_total=sum(l1.values()),
        l2_total=math.sqrt(sum(v**2 for v in l2.values())),
        count_total=sum(count.values()),
        l1=l1,
        l2=l2,
        num_params=count,
    )
