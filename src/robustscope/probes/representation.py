"""``representation_fisher``: the Fisher information of the representation about the input
(terzi2021 Def. 0.2, Prop. 0.3).

For the representation ``z = f(x) = model.features(x)`` (dimension m) of an input of
dimension d, terzi2021 eq. 4 defines the sensitivity matrix ``S(z|x)``, the Fisher
information of ``p_w(z|x)`` about ``x``. A deterministic network has no ``p_w(z|x)``; we take
the isotropic Gaussian ``p_w(z|x) = N(f(x), I)``, for which ``S(z|x) = JᵀJ`` exactly, with
``J = ∂z/∂x`` the m × d Jacobian, and ``KL(p(z|x+δ) ‖ p(z|x)) = ½‖f(x+δ) − f(x)‖² ≈
½ δᵀJᵀJδ`` — eq. 5. (Another noise variance σ² scales S by 1/σ²; the ratio below does not
depend on it.)

Per example the probe gives:

* ``tr S = ‖J‖_F²`` — exactly (one Jacobian-vector product per input dimension or one
  vector-Jacobian product per feature, whichever are fewer) or by Hutchinson's estimator;
* ``λ₁ = λ_max(S) = σ_max(J)²`` by power iteration with JVP/VJP products, and its unit
  eigenvector ``v_λ₁`` (the direction of eq. 5's worst-case perturbation);
* the ratio ``tr S / (n λ₁)`` with n = d the *input dimension*: terzi2021 (after Prop. 0.3)
  compares adversarial training, whose worst-case δ of norm ε gives ``KL ≈ ε²λ₁/2``, with
  Gaussian noise regularisation, whose white noise δ ~ N(0, (ε²/n) I) (same expected norm ε)
  gives ``E KL ≈ ε² tr S / (2n)``. The ratio is therefore how much weaker Gaussian noise of
  the same size is than the adversary, ``1/n ≤ ratio ≤ rank(S)/n ≤ min(m, d)/n``: it is
  small when S is concentrated on a few directions and the input dimension is large (the
  paper's "inefficiency of GNR increases as the input dimension increases").

Products with J. ``Jᵀu`` is one vector-Jacobian product (``torch.func.vjp``, one forward
pass per batch). ``Jv`` is computed as the VJP of the linear map ``u ↦ Jᵀu`` (reverse over
reverse, built once per batch), not by forward-mode ``torch.func.jvp``, which was several
times slower here and adds a first-use warm-up (measurements: ``benchmarks/README.md``,
"Design measurements").

The exact trace sums ``‖J e_i‖²`` over the d input basis vectors (``mode="jvp"``,
vectorised 32 at a time with ``torch.func.vmap``) or ``‖Jᵀ e_k‖²`` over the m feature basis
vectors (``mode="vjp"``, one backward each through the retained graph). The d products win
when d < m and the m products when m ≤ d (measurements: ``benchmarks/README.md``,
"Design measurements"); ``mode="auto"`` picks ``jvp`` if d < m, else ``vjp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.device import model_device
from robustscope.errors import ProbeError
from robustscope.numerics import gaussian_start, power_iteration
from robustscope.probes.base import ProbeResult, batches, check_inputs
from robustscope.probes.registry import register_probe

__all__ = ["RepresentationFisherResult", "representation_fisher"]

_PROBE = "representation_fisher"
#: input directions pushed through one vmapped J·v call
_CHUNK = 32

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


#: the noise model under which S(z|x) = JᵀJ (module doc)
NOISE_MODEL = "p_w(z|x) = N(features(x), I), so S(z|x) = JᵀJ"


@dataclass(frozen=True)
class RepresentationFisherResult(ProbeResult):
    """The sensitivity matrix ``S(z|x) = JᵀJ`` of the representation, per example
    (terzi2021 Def. 0.2 with ``p_w(z|x) = N(features(x), I)``; Prop. 0.3).

    J is the Jacobian of ``model.features`` with respect to the pixel-space input
    (normalization is inside the model). Per-example tensors are float64 on the CPU.

    Attributes:
        method: ``"exact"`` or ``"hutchinson"`` (how the trace was computed).
        mode: ``"jvp"`` (products ``Jv`` with input directions) or ``"vjp"`` (products
            ``Jᵀu`` with feature directions).
        input_dim: n = d, the number of input entries (C·H·W).
        feature_dim: m, the dimension of the representation.
        probes: Rademacher probes per example (0 for ``exact``); they live in the input
            space for ``jvp`` and in the feature space for ``vjp``.
        trace: ``[N]`` tr S = ‖J‖_F² (exact, or the Hutchinson mean).
        trace_se: ``[N]`` standard error of the Hutchinson estimate (sample standard
            deviation over the probes / √probes); None for ``exact``.
        lambda_max: ``[N]`` λ₁ = λ_max(S) = σ_max(J)², the Rayleigh quotient of the last
            power-iteration vector (a lower bound that converges to λ₁).
        gnr_ratio: ``[N]`` tr S / (n λ₁): Gaussian-noise over adversarial second-order KL at
            equal expected perturbation norm (module doc); NaN where λ₁ = 0.
        effective_rank: ``[N]`` tr S / λ₁ (= n · gnr_ratio); NaN where λ₁ = 0.
        top_eigenvector: ``[N, ...]`` input-shaped unit eigenvector v_λ₁, sign fixed so its
            largest-magnitude entry is positive (zeros where λ₁ = 0).
        power_iterations: ``[N]`` power iterations each example used (it stops, its vector
            frozen, once its own λ changes by at most ``power_tol``).
        power_rel_change: ``[N]`` ``|λ_t − λ_{t−1}| / λ_t`` at the last iteration (0 where
            λ = 0; NaN after a single iteration).
        noise_model: the assumption that makes S(z|x) defined, ``p_w(z|x) = N(f(x), I)``
            (in ``to_json``; the weight-noise model of eq. 9 is the ``effective_information``
            probe's).

    ``scalars()``: ``n``, ``input_dim``, ``feature_dim``, ``probes``, ``power_iterations_max``,
    the mean and median over examples of ``trace``, ``lambda_max``, ``gnr_ratio`` and
    ``effective_rank`` (NaN examples left out), ``gnr_ratio_of_means`` =
    mean tr / (n · mean λ₁) (the ratio for the data-averaged KLs), ``power_rel_change_max``
    and, for Hutchinson, ``trace_mean_se`` (standard error of ``trace_mean``).
    ``arrays()``: the per-example tensors except the eigenvectors.
    """

    method: str
    mode: str
    input_dim: int
    feature_dim: int
    probes: int
    trace: torch.Tensor
    trace_se: torch.Tensor | None
    lambda_max: torch.Tensor
    gnr_ratio: torch.Tensor
    effective_rank: torch.Tensor
    top_eigenvector: torch.Tensor
    power_iterations: torch.Tensor
    power_rel_change: torch.Tensor
    noise_model: str = NOISE_MODEL

    def _per_example(self) -> dict[str, torch.Tensor]:
        named = {
            "trace": self.trace,
            "trace_se": self.trace_se,
            "lambda_max": self.lambda_max,
            "gnr_ratio": self.gnr_ratio,
            "effective_rank": self.effective_rank,
            "power_rel_change": self.power_rel_change,
            "power_iterations": self.power_iterations,
        }
        return {k: v for k, v in named.items() if v is not None}

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {
            "n": float(len(self.trace)),
            "input_dim": float(self.input_dim),
            "feature_dim": float(self.feature_dim),
            "probes": float(self.probes),
            "power_iterations_max": float(self.power_iterations.max()),
        }
        for name in ("trace", "lambda_max", "gnr_ratio", "effective_rank"):
            values = getattr(self, name)
            finite = values[torch.isfinite(values)]
            out[f"{name}_mean"] = float(finite.mean()) if len(finite) else math.nan
            out[f"{name}_median"] = float(finite.median()) if len(finite) else math.nan
        lam = float(self.lambda_max.mean())
        out["gnr_ratio_of_means"] = (
            float(self.trace.mean()) / (self.input_dim * lam) if lam > 0 else math.nan
        )
        change = self.power_rel_change
        out["power_rel_change_max"] = (
            float(change.max()) if bool(torch.isfinite(change).all()) else math.nan
        )
        if self.trace_se is not None:
            out["trace_mean_se"] = float(self.trace_se.pow(2).sum().sqrt()) / len(self.trace)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._per_example().items()}


def _param_dtype(model: nn.Module, fallback: torch.dtype) -> torch.dtype:
    for p in model.parameters():
        if torch.is_floating_point(p):
            return p.dtype
    return fallback


def _rademacher(
    gen: torch.Generator, n: int, probes: int, probe_dim: int, dtype: torch.dtype
) -> torch.Tensor:
    """``[n, probes, probe_dim]`` Rademacher vectors, drawn example by example from one CPU
    generator: the values do not depend on the batch size or the device."""
    r = [torch.randint(0, 2, (probes, probe_dim), generator=gen) for _ in range(n)]
    return torch.stack(r).to(dtype) * 2 - 1


@register_probe(
    _PROBE,
    "Fisher of the representation about the input S = JᵀJ per example: trace, λ₁, "
    "GNR/AT ratio tr/(n·λ₁) (terzi2021 Def. 0.2, Prop. 0.3)",
)
def representation_fisher(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: Literal["exact", "hutchinson"] = "exact",
    probes: int = 32,
    mode: Literal["auto", "jvp", "vjp"] = "auto",
    power_iters: int = 200,
    power_tol: float = 1e-8,
    seed: int = 0,
    batch_size: int = 64,
) -> RepresentationFisherResult:
    """Trace and top eigenvalue of ``S(z|x) = JᵀJ`` for every example (terzi2021 Def. 0.2).

    Args:
        model: a module with ``features(x) -> [N, m]`` (every robustscope model); run in
            eval mode with its parameters frozen, mode and flags restored afterwards.
        x: ``[N, ...]`` pixel-space inputs; moved to the model's device and dtype.
        method: ``"exact"`` — ``tr S = ‖J‖_F²`` from min(d, m) Jacobian products per example;
            ``"hutchinson"`` — the mean of ``‖Jv‖²`` (jvp) or ``‖Jᵀu‖²`` (vjp) over
            ``probes`` Rademacher vectors, with its standard error.
        probes: Rademacher probes per example (``hutchinson`` only; ≥ 2).
        mode: ``"jvp"`` (products with the input directions), ``"vjp"`` (with the feature
            directions) or ``"auto"`` (``jvp`` if d < m, the faster one — module doc).
        power_iters: maximum power iterations for λ₁ (one Jv and one Jᵀu each).
        power_tol: an example stops once its λ changes by at most this, relatively
            (:func:`robustscope.numerics.power_iteration`).
        seed: seed of the Hutchinson probes and of the power iteration's start (local
            generators). The start is one Gaussian vector shared by every example, so λ₁
            and its eigenvector do not depend on the batch or on the other examples; the
            probes are drawn example by example, so they do not depend on ``batch_size``.
        batch_size: examples per pass.

    Returns:
        a :class:`RepresentationFisherResult`.

    Raises:
        ProbeError: if the model has no ``features`` method, or on bad options.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8), widths=(16,))
        >>> res = representation_fisher(model, torch.rand(4, 1, 8, 8))
        >>> bool((res.lambda_max <= res.trace * (1 + 1e-5)).all())
        True
    """
    check_inputs(_PROBE, x)
    features = getattr(model, "features", None)
    if not callable(features):
        raise ProbeError(
            f"probe {_PROBE!r} measures the representation model.features(x), but "
            f"{type(model).__name__} has no features method; use a robustscope model "
            "(robustscope.models.create) or give the module a features(x) method returning "
            "the representation before its last linear layer"
        )
    if method not in ("exact", "hutchinson"):
        raise ProbeError(
            f"probe {_PROBE!r}: method must be 'exact' or 'hutchinson', got {method!r}"
        )
    if mode not in ("auto", "jvp", "vjp"):
        raise ProbeError(f"probe {_PROBE!r}: mode must be 'auto', 'jvp' or 'vjp', got {mode!r}")
    if method == "hutchinson" and (isinstance(probes, bool) or int(probes) != probes or probes < 2):
        raise ProbeError(f"probe {_PROBE!r}: probes must be an integer ≥ 2, got {probes!r}")
    if isinstance(power_iters, bool) or int(power_iters) != power_iters or power_iters < 1:
        raise ProbeError(
            f"probe {_PROBE!r}: power_iters must be an integer ≥ 1, got {power_iters!r}"
        )
    if not power_tol >= 0:
        raise ProbeError(f"probe {_PROBE!r}: power_tol must be ≥ 0, got {power_tol!r}")
    n_probes = int(probes) if method == "hutchinson" else 0

    device = model_device(model)
    dtype = _param_dtype(model, x.dtype)
    d = math.prod(x.shape[1:])
    gen = torch.Generator().manual_seed(int(seed))
    start = gaussian_start((d,), int(seed), dtype=dtype)

    def f(t: torch.Tensor) -> torch.Tensor:
        return features(t).flatten(1)

    traces, ses, lams, vecs, changes, steps = [], [], [], [], [], []
    m = 0
    chosen = mode
    with attack_mode(model), torch.enable_grad():
        for s in batches(len(x), batch_size):
            xb = x[s].detach().to(device=device, dtype=dtype)
            b = len(xb)
            prod = _Products(f, xb)
            m = prod.m
            if chosen == "auto":
                chosen = "jvp" if d < m else "vjp"
            if method == "exact":
                tr = _exact_trace(prod, chosen)
            else:
                rad = _rademacher(gen, b, n_probes, d if chosen == "jvp" else m, dtype)
                est = prod.squared_norms(rad.to(device).transpose(0, 1), chosen)
                tr = est.mean(0)
                ses.append((est.std(0) / math.sqrt(n_probes)).cpu())
            traces.append(tr.cpu())
            top = power_iteration(
                prod.gram, start.to(device).expand(b, d), iters=power_iters, tol=power_tol
            )
            lams.append(top.value.cpu())
            vecs.append(top.vector.detach().cpu())
            changes.append(top.rel_change.cpu())
            steps.append(top.iterations.cpu())

    trace = torch.cat(traces)
    lam_all = torch.cat(lams)
    safe = torch.where(lam_all > 0, lam_all, torch.full_like(lam_all, math.nan))
    effective = trace / safe
    vec_all = torch.cat(vecs)
    return RepresentationFisherResult(
        method=method,
        mode=chosen,
        input_dim=d,
        feature_dim=m,
        probes=n_probes,
        trace=trace,
        trace_se=torch.cat(ses) if ses else None,
        lambda_max=lam_all,
        gnr_ratio=effective / d,
        effective_rank=effective,
        top_eigenvector=vec_all.reshape(x.shape).to(x.dtype),
        power_iterations=torch.cat(steps),
        power_rel_change=torch.cat(changes),
    )


class _Products:
    """Products with the per-example Jacobians J of ``f`` at a batch ``xb`` (examples
    independent: the model is in eval mode).

    ``vjp(u) = Jᵀu`` for ``u [B, m]``; ``jvp(v) = Jv`` for ``v [B, ...]`` (input-shaped), the
    VJP of the linear map ``u ↦ Jᵀu`` (module doc); ``gram(v) = JᵀJv``.
    """

    def __init__(self, f: FeatureFn, xb: torch.Tensor) -> None:
        out = torch.func.vjp(f, xb)
        z, self._vjp = out[0], out[1]
        self.xb = xb
        self.b, self.m = z.shape[0], z.shape[1]
        self.d = xb[0].numel()
        self.z = z.detach()
        back = torch.func.vjp(self._transpose, torch.zeros_like(z))
        self._jvp = back[1]

    def _transpose(self, u: torch.Tensor) -> torch.Tensor:
        return self._vjp(u)[0]

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        return self._vjp(u)[0]

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        return self._jvp(v.reshape(self.xb.shape))[0]

    def gram(self, v: torch.Tensor) -> torch.Tensor:
        """``JᵀJ v`` for ``v [B, d]``, as ``[B, d]``: the matrix S of every example."""
        return self.vjp(self.jvp(v)).detach().reshape(self.b, self.d)

    def squared_norms(self, vectors: torch.Tensor, mode: str) -> torch.Tensor:
        """``[c, B]`` float64: ``‖J v_k‖²`` (``jvp``; ``vectors [c, B, d]``) or ``‖Jᵀ u_k‖²``
        (``vjp``; ``vectors [c, B, m]``) for every example of the batch."""
        out = []
        if mode == "jvp":
            for s in range(0, len(vectors), _CHUNK):
                chunk = vectors[s : s + _CHUNK]
                jv = torch.func.vmap(self.jvp)(chunk)
                out.append(jv.detach().double().pow(2).sum(2))
        else:
            for u in vectors:
                g = self.vjp(u)
                out.append(g.detach().double().flatten(1).pow(2).sum(1)[None])
        return torch.cat(out)


def _exact_trace(prod: _Products, mode: str) -> torch.Tensor:
    """``‖J‖_F²`` per example of the batch from the d input or m feature basis vectors."""
    b, d, m = prod.b, prod.d, prod.m
    dev, dtype = prod.xb.device, prod.xb.dtype
    total = torch.zeros(b, dtype=torch.float64, device=dev)
    if mode == "jvp":
        for s in range(0, d, _CHUNK):
            eye = torch.eye(d, dtype=dtype, device=dev)[s : s + _CHUNK]
            total += prod.squared_norms(eye[:, None, :].expand(-1, b, d), "jvp").sum(0)
    else:
        eye = torch.eye(m, dtype=prod.z.dtype, device=dev)
        for k in range(m):
            total += prod.squared_norms(eye[k].expand(1, b, m), "vjp")[0]
    return total
