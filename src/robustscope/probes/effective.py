"""``effective_information``: the representation's Fisher about the input under the weight
noise of SGD, and the effective information (terzi2021 Def. 0.6, eqs. 8–9; after Achille &
Soatto 2019).

**The noise model.** Def. 0.6 perturbs the trained weights w by n ~ N(0, Σ*), Σ* the optimal
Gaussian posterior of Def. 0.5 — here its diagonal, ``Σ*_ii = (β/2) / (F_ii + β/(2λ²))`` with
the diagonal weight Fisher F_w over the *training* examples (exactly as the
``weight_information`` probe). To first order the noisy representation of an input x is
``z_n = f_{w+n}(x) ≈ f_w(x) + J_w n`` with ``J_w = ∂z/∂w`` (m × P), so
``p(z_n | x) = N(f_w(x), Σ_z(x))`` with ``Σ_z = J_w Σ* J_wᵀ`` (m × m). Its Fisher information
about x (x-dependence of Σ_z neglected, as in the first-order picture) is

    F_eff(x) = J_xᵀ Σ_z⁻¹ J_x,        J_x = ∂z/∂x (m × d),

the d × d matrix of eq. 9 (the paper prints it as ``(1/β) ∇ₓf · J_f F_w J_fᵀ ∇ₓf``; with
Σ* = β F_w⁻¹ this is the same construction — the noise covariance enters inverted).

**Effective information.** Eq. 8: ``I_eff ≈ H(x) − E_x[½ log((2πe)^k / |F_{z|x}|)]``. F_eff
has rank r ≤ min(m, d), so its determinant is taken over its r nonzero eigenvalues (the
pseudo-determinant), which are those of the m × m matrix ``Σ_z^{-1/2} J_x J_xᵀ Σ_z^{-1/2}``;
H(x), the same for every model on the same data, is dropped. The probe reports, per
example, ``½ log|F_eff|₊ − (r/2) log(2πe)`` and its mean (in nats): **higher is more
effective information** (differences between models are what the paper compares).

Cost: per example, m backward passes for J_w (m × P) and m for J_x; the probe uses the first
``max_examples`` test points (default 32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev

from robustscope.attacks.base import attack_mode
from robustscope.device import model_device
from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeResult, check_inputs
from robustscope.probes.registry import register_probe
from robustscope.probes.weights import check_posterior, fisher_diagonal, posterior_variance

__all__ = ["EffectiveInformationResult", "effective_information"]

_NAME = "effective_information"
#: eigenvalues of F_eff below this fraction of the largest count as zero (rank)
RANK_TOL = 1e-10


@dataclass(frozen=True)
class EffectiveInformationResult(ProbeResult):
    """terzi2021 eqs. 8–9 under the weight-noise model of Def. 0.6 (module doc).

    Attributes:
        beta, lam: β and the prior's λ of Σ*; ``split``: where F_w was averaged
            (``"train"`` as the paper, ``"test"`` only when no training examples were given).
        n: examples measured; feature_dim m; input_dim d.
        log_det: ``[n]`` ½ log|F_eff(x)|₊ (nats).
        information: ``[n]`` ½ log|F_eff|₊ − (r/2) log(2πe): eq. 8 without H(x).
        trace: ``[n]`` tr F_eff(x) = tr(Σ_z⁻¹ J_x J_xᵀ).
        rank: ``[n]`` r, the nonzero eigenvalues of F_eff counted (relative tolerance
            :data:`RANK_TOL`).
        noise_trace: ``[n]`` tr Σ_z(x), the representation's variance under the weight noise.
            Features the noise does not move (inactive ReLUs: J_w and J_x rows both 0) are
            left out of Σ_z⁻¹ (its inverse is taken on its range).
        noise_model: the assumption, in words.

    ``scalars()``: n, dimensions, β, λ and the means of the per-example arrays
    (``information_mean`` is Fig.-4-style evidence: adversarial training lowers it).
    """

    beta: float
    lam: float
    split: str
    n: int
    feature_dim: int
    input_dim: int
    log_det: np.ndarray
    information: np.ndarray
    trace: np.ndarray
    rank: np.ndarray
    noise_trace: np.ndarray
    noise_model: str = (
        "weights w + n, n ~ N(0, Σ*) diagonal (Def. 0.5); z ≈ f_w(x) + J_w n, "
        "p(z|x) = N(f_w(x), J_w Σ* J_wᵀ); F_eff = J_xᵀ (J_w Σ* J_wᵀ)⁻¹ J_x"
    )

    def scalars(self) -> dict[str, float]:
        out = {
            "n": float(self.n),
            "feature_dim": float(self.feature_dim),
            "input_dim": float(self.input_dim),
            "beta": self.beta,
            "lam": self.lam,
        }
        for key in ("log_det", "information", "trace", "rank", "noise_trace"):
            values = np.asarray(getattr(self, key), dtype=np.float64)
            finite = values[np.isfinite(values)]
            out[f"{key}_mean"] = float(finite.mean()) if len(finite) else math.nan
        return out


def _features_of(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    features = getattr(model, "features", None)
    if not callable(features):
        raise ProbeError(
            f"probe {_NAME!r}: the model has no features(x) (the representation before the "
            "last linear layer); robustscope models all have one"
        )
    return features


@register_probe(
    _NAME,
    "terzi2021 eqs. 8–9: the representation's Fisher about x under SGD's weight noise Σ* "
    "and the effective information (H(x) dropped)",
)
def effective_information(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
    beta: float = 1e-3,
    lam: float = 1.0,
    max_examples: int = 32,
    batch_size: int = 64,
) -> EffectiveInformationResult:
    """terzi2021 eqs. 8–9 of ``model`` on the first ``max_examples`` points of ``x``
    (module doc), with F_w over ``train`` (else over ``x``, recorded in ``split``).

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 3, (1, 3, 3), widths=[4])
        >>> r = effective_information(net, torch.rand(5, 1, 3, 3), max_examples=2)
        >>> r.log_det.shape, int(r.rank[0]) <= 4
        ((2,), True)
    """
    check_inputs(_NAME, x, y)
    check_posterior(_NAME, beta, lam)
    if max_examples < 1:
        raise ProbeError(f"probe {_NAME!r}: max_examples must be ≥ 1, got {max_examples}")
    _features_of(model)
    split = "test"
    fx, fy = x, y
    if train is not None:
        fx, fy = train
        split = "train"
    variance = posterior_variance(
        fisher_diagonal(model, fx, fy, batch_size=batch_size), float(beta), float(lam)
    )
    device = model_device(model)
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    std = {
        name: v.sqrt().to(device=device, dtype=params[name].dtype) for name, v in variance.items()
    }
    xs = x[:max_examples].to(device)

    wrapper = _Features(model)
    wrapped_buffers = {f"model.{k}": v for k, v in buffers.items()}

    def representation(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        named = {f"model.{k}": v for k, v in p.items()}
        z = functional_call(wrapper, (named, wrapped_buffers), (xi[None],))
        return z[0].reshape(-1)

    out: dict[str, list[float]] = {k: [] for k in ("log_det", "info", "trace", "rank", "noise")}
    with attack_mode(model), torch.enable_grad():
        for xi in xs:
            jw = jacrev(representation, argnums=0)(params, xi)  # name -> [m, *shape]
            scaled = torch.cat(
                [(jw[name] * std[name]).reshape(jw[name].shape[0], -1) for name in params], dim=1
            ).double()
            cov = scaled @ scaled.T  # Σ_z = J_w Σ* J_wᵀ
            jx = jacrev(representation, argnums=1)(params, xi).reshape(cov.shape[0], -1).double()
            evals, evecs = torch.linalg.eigh(cov)
            live = evals > RANK_TOL * float(evals.max().clamp_min(0))
            basis = evecs[:, live]  # the features the weight noise moves (ReLU-dead ones: not)
            outside = jx - basis @ (basis.T @ jx)
            if float(outside.norm()) > 1e-6 * max(float(jx.norm()), 1e-300):
                raise ProbeError(
                    f"probe {_NAME!r}: a feature moves with the input but no weight moves it "
                    "(J_w Σ* J_wᵀ is singular along it): its Fisher is infinite"
                )
            whitened = evals[live].rsqrt()[:, None] * (basis.T @ jx)  # Σ_z^{-1/2} J_x on its range
            gram = whitened @ whitened.T  # nonzero spectrum of F_eff
            ev = torch.linalg.eigvalsh(gram).clamp_min(0)
            keep = ev > RANK_TOL * float(ev.max()) if float(ev.max()) > 0 else ev > 0
            r = int(keep.sum())
            half_log = 0.5 * float(ev[keep].log().sum()) if r else -math.inf
            out["log_det"].append(half_log)
            out["info"].append(half_log - 0.5 * r * math.log(2 * math.pi * math.e))
            out["trace"].append(float(ev.sum()))
            out["rank"].append(float(r))
            out["noise"].append(float(evals.sum()))
    with torch.no_grad():
        m = int(_features_of(model)(xs[:1]).reshape(1, -1).shape[1])
    return EffectiveInformationResult(
        beta=float(beta),
        lam=float(lam),
        split=split,
        n=len(xs),
        feature_dim=m,
        input_dim=int(xs[0].numel()),
        log_det=np.asarray(out["log_det"]),
        information=np.asarray(out["info"]),
        trace=np.asarray(out["trace"]),
        rank=np.asarray(out["rank"]),
        noise_trace=np.asarray(out["noise"]),
    )


class _Features(nn.Module):
    """``model.features`` as a module's forward (so ``functional_call`` can swap weights)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _features_of(self.model)(x)
