"""Inverting a representation (terzi2021 eq. 3) and effective images (terzi2021 eq. 10).

**Inversion.** For a target representation ``z̄`` (e.g. ``z̄ = f_w(x)``, ``f_w =
model.features``, the representation before the last linear layer) terzi2021 Def. 0.1
reconstructs the image ``x̂ = argmin_{x′} L_inv``, ``L_inv = ‖z̄ − f_w(x′)‖₂`` (eq. 3; the
norm, not its square), and Fig. 2 plots ``L_inv`` against the iteration. :func:`invert`
starts from ``x′⁽⁰⁾ ~ N(0.5, σ²)`` per coordinate (seeded; clipped to the input box) and
minimises ``Σ_i L_inv(x′_i)`` by gradient steps, projecting onto the box (clamping) after
each step. It records ``L_inv`` of every example at every iterate, ``t = 0 … steps``.

**The optimiser is Adam** (Kingma & Ba 2015; β₁ = 0.9, β₂ = 0.999) with a cosine decay of
the step size from ``lr`` towards 0 over the run, for three reasons:

* the input gradient of ``L_inv`` differs by orders of magnitude between a standard and a
  robust model (robust models have small input gradients — the point of comparing them) and
  along one run; Adam's per-coordinate normalisation makes a step move each pixel by about
  ``lr`` whatever the gradient's scale, so one ``lr`` serves every model and the curves of
  Fig. 2 compare models at the same budget in pixel units (plain gradient descent would need
  a learning rate per model);
* signed or ℓ2-normalised steps (as in PGD) are scale-free too but do not settle: near the
  minimum they oscillate at the step size. With the decay Adam's steps shrink to 0 and the
  iterate converges (the test on an identity representation recovers ``x`` to 10⁻³);
* Adam acts coordinate by coordinate and the summed loss separates over examples, so each
  example's trajectory does not depend on the others in its batch (up to floating-point
  summation order): batching is only for speed.

**Effective images** (terzi2021 Def. 0.7, eq. 10): ``x_eff = argmin_{x′} ‖f_{w+n̄}(x) −
f_w(x′)‖₂`` — the inversion of the representation that weights perturbed once by the
"effective" noise ``n̄ ~ N(0, Σ*)`` give to ``x``. terzi2021 Def. 0.6 takes ``Σ* = β F_w⁻¹``
with ``F_w`` the weights' Fisher information on the training set. :func:`effective_noise`
uses its diagonal (:func:`robustscope.probes.weights.fisher_diagonal`, the model Fisher,
averaged over the training examples) with a floor: ``Σ*_ii = β / (F_ii + φ F̄)``, ``F̄`` the
mean of ``F_ii`` over all weights and ``φ = floor`` (default 10⁻³). Where ``F_ii ≫ φ F̄``
this is ``β / F_ii``; a weight the data does not constrain (``F_ii = 0``, e.g. into a dead
ReLU) gets the finite variance ``β / (φ F̄)``, at most ``1/φ`` times that of a weight of
average Fisher, instead of an infinite one. The floor is relative so that β alone sets the
noise level (the standard deviations scale as √β, and so does the shift of the targets).
(The ``weight_information`` probe uses Def. 0.5's ``(β/2)(F_w + β/(2λ²))⁻¹`` with a prior
cap λ²: the paper states both forms; eq. 10's noise is Def. 0.6's. A cap independent of β,
such as λ², would let the weights of dead units dominate the noise at every β.)

**β.** terzi2021 gives no value. The variance ``β/F_ii`` is a Laplace posterior's
``1/(N F_ii)`` at β = 1/N, far too wide to leave an image recognisable: for the lab's small
networks (an MLP or CNN on 8 × 8 ``digits`` or 28 × 28 MNIST) β ≈ 10⁻⁸ moves the targets
``f_{w+n̄}(x)`` by a fraction of ``‖f_w(x)‖`` (e.g. 25 % for a standard digits MLP),
which is the default (:data:`DEFAULT_BETA`); compare models at the same β.
:func:`effective_images` perturbs a *copy* of the model
(the given model is never changed) and inverts with the unperturbed weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.data.box import Box, BoxLike
from robustscope.device import model_device
from robustscope.numerics import gaussian_start
from robustscope.params import parse_real, positive_int
from robustscope.probes.weights import fisher_diagonal
from robustscope.visual.base import VisualError, check_batch, resolve_box

__all__ = [
    "EffectiveImagesResult",
    "EffectiveNoise",
    "InversionResult",
    "effective_images",
    "effective_noise",
    "inversion_start",
    "invert",
    "perturbed_copy",
]

#: default step size of Adam, in input units (pixels in [0, 1])
DEFAULT_LR = 0.05
#: default standard deviation of the Gaussian start around 0.5
DEFAULT_SIGMA = 0.1
#: default noise level β of the effective images (see the module doc)
DEFAULT_BETA = 1e-8
#: default relative floor φ of the Fisher diagonal (see the module doc)
DEFAULT_FLOOR = 1e-3


@dataclass(frozen=True)
class InversionResult:
    """Reconstructions minimising ``L_inv = ‖z̄ − f_w(x′)‖₂`` (terzi2021 eq. 3) and the loss
    along the way (terzi2021 Fig. 2).

    Attributes:
        x: ``[N, ...]`` the reconstructions ``x′⁽ˢᵗᵉᵖˢ⁾`` (CPU, the input's dtype), in the box.
        loss: ``[steps + 1, N]`` float64, ``L_inv`` of every example at iterates 0 … steps
            (row 0: the start, the last row: the returned ``x``).
        steps, lr, sigma, seed: the run's settings (``lr`` is Adam's initial step size,
            decayed by a cosine to 0; ``sigma`` the start's standard deviation).
        optimizer: ``"adam-cosine"`` (see the module doc for the choice).
    """

    x: torch.Tensor
    loss: torch.Tensor
    steps: int
    lr: float
    sigma: float
    seed: int
    optimizer: str = "adam-cosine"

    @property
    def mean_loss(self) -> torch.Tensor:
        """``[steps + 1]``: the batch mean of ``L_inv`` per iterate (Fig. 2's curve)."""
        return self.loss.mean(1)

    @property
    def final_loss(self) -> torch.Tensor:
        """``[N]``: ``L_inv`` of each returned reconstruction."""
        return self.loss[-1]

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON data (no images)."""
        return {
            "steps": self.steps,
            "lr": self.lr,
            "sigma": self.sigma,
            "seed": self.seed,
            "optimizer": self.optimizer,
            "mean_loss": self.mean_loss.tolist(),
            "initial_loss": self.loss[0].tolist(),
            "final_loss": self.final_loss.tolist(),
        }


def representation(model: nn.Module, what: str) -> Callable[[torch.Tensor], torch.Tensor]:
    fn = getattr(model, "features", None)
    if not callable(fn):
        raise VisualError(
            f"{what}: the model has no features(x) (the representation before the last linear "
            "layer); use a robustscope model (robustscope.models.create or a checkpoint)"
        )
    return lambda t: torch.flatten(fn(t), 1)


def inversion_start(
    shape: tuple[int, ...], box: Box, *, sigma: float, seed: int, dtype: torch.dtype
) -> torch.Tensor:
    """The start ``x′⁽⁰⁾ ~ N(0.5, σ²)`` (seeded, CPU draws) clipped to ``box``."""
    return box.clamp(0.5 + sigma * gaussian_start(shape, seed, dtype=dtype))


def _settings(steps: Any, lr: Any, sigma: Any, what: str) -> tuple[int, float, float]:
    return (
        positive_int(steps, f"{what}: steps", error=VisualError),
        parse_real(lr, f"{what}: lr", minimum=0.0, strict=True, error=VisualError),
        parse_real(sigma, f"{what}: sigma", minimum=0.0, error=VisualError),
    )


def invert(
    model: nn.Module,
    z_target: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    input_shape: tuple[int, ...] | None = None,
    steps: int = 500,
    lr: float = DEFAULT_LR,
    sigma: float = DEFAULT_SIGMA,
    seed: int = 0,
    box: BoxLike | None = None,
    batch_size: int = 256,
) -> InversionResult:
    """Reconstruct inputs whose representation is ``z_target`` (terzi2021 eq. 3).

    Adam with a cosine-decayed step size on ``Σ_i ‖z̄_i − f(x′_i)‖₂``, the iterate clamped
    into the box after every step (see the module doc). The model runs in eval mode with its
    parameters frozen; both are restored afterwards.

    Args:
        model: a robustscope model (``features(x)`` is the representation inverted).
        z_target: ``[N, F]`` target representations ``z̄`` (e.g. ``model.features(x)``).
        x0: ``[N, ...]`` start; default ``N(0.5, σ²)`` noise of ``input_shape`` clipped to
            the box. Either way the start is clamped into the box.
        input_shape: the shape of one input (default: the model's ``spec.input_shape``);
            only needed without ``x0``.
        steps: gradient steps (≥ 1).
        lr: Adam's initial step size, in input units.
        sigma: standard deviation of the random start.
        seed: seed of the random start.
        box: the input box (default: the one the model declares).
        batch_size: examples optimised together (results do not depend on it).

    Returns:
        an :class:`InversionResult`.

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 3, (1, 4, 4), widths=(8,))
        >>> x = torch.rand(2, 1, 4, 4)
        >>> res = invert(net, net.features(x).detach(), steps=20, seed=0)
        >>> res.x.shape, res.loss.shape, bool(res.mean_loss[-1] < res.mean_loss[0])
        (torch.Size([2, 1, 4, 4]), torch.Size([21, 2]), True)
    """
    what = "invert"
    steps, lr, sigma = _settings(steps, lr, sigma, what)
    batch_size = positive_int(batch_size, f"{what}: batch_size", error=VisualError)
    feats = representation(model, what)
    check_batch(what, z_target, "z_target")
    the_box = resolve_box(model, box, what)
    n = len(z_target)
    device = model_device(model)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    if x0 is None:
        shape = input_shape or getattr(getattr(model, "spec", None), "input_shape", None)
        if shape is None:
            raise VisualError(f"{what}: pass x0 or input_shape (the model records no input shape)")
        start = inversion_start((n, *shape), the_box, sigma=sigma, seed=seed, dtype=dtype)
    else:
        check_batch(what, x0, "x0")
        if len(x0) != n:
            raise VisualError(f"{what}: x0 has {len(x0)} examples but z_target has {n}")
        start = the_box.clamp(x0.detach().to(dtype=dtype, device="cpu"))
    z_all = z_target.detach().flatten(1)
    outs, losses = [], []
    with attack_mode(model):
        for lo in range(0, n, batch_size):
            xb, lb = _descend(
                feats,
                z_all[lo : lo + batch_size].to(device=device, dtype=dtype),
                start[lo : lo + batch_size].to(device),
                the_box,
                steps,
                lr,
            )
            outs.append(xb.cpu())
            losses.append(lb)
    return InversionResult(
        x=torch.cat(outs),
        loss=torch.cat(losses, dim=1),
        steps=steps,
        lr=lr,
        sigma=sigma,
        seed=int(seed),
    )


def _descend(
    feats: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    start: torch.Tensor,
    box: Box,
    steps: int,
    lr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of :func:`invert`: the final iterate and ``[steps + 1, n]`` losses."""
    x = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    record = torch.empty(steps + 1, len(z), dtype=torch.float64)
    for t in range(steps):
        with torch.enable_grad():
            per = torch.linalg.vector_norm(feats(x) - z, dim=1)
            (grad,) = torch.autograd.grad(per.sum(), x)
        record[t] = per.detach().double().cpu()
        x.grad = grad
        opt.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        opt.step()
        with torch.no_grad():
            x.copy_(box.clamp(x))
    with torch.no_grad():
        record[steps] = torch.linalg.vector_norm(feats(x) - z, dim=1).double().cpu()
    return x.detach(), record


# ----------------------------------------------------------------------------- effective images


@dataclass(frozen=True)
class EffectiveNoise:
    """The per-weight standard deviation of terzi2021's effective noise ``n ~ N(0, Σ*)``,
    ``Σ*_ii = β / (F_ii + φ F̄)`` (Def. 0.6's ``β F_w⁻¹`` with the floor of the module doc),
    ``F`` the diagonal Fisher of the weights averaged over ``n`` training examples.

    Attributes:
        std: ``{parameter name: √Σ*_ii}`` shaped like each parameter (float64, CPU).
        beta: β > 0, the noise level.
        floor: φ > 0, the floor of ``F_ii`` relative to the mean ``F̄``.
        fisher_mean: ``F̄``, the mean of the Fisher diagonal over every weight.
        fisher: ``"model"`` (labels drawn from the model: terzi2021's Fisher) or
            ``"empirical"`` (the true labels).
        n: number of training examples F was averaged over.
    """

    std: dict[str, torch.Tensor] = field(repr=False)
    beta: float
    floor: float
    fisher_mean: float
    fisher: str
    n: int

    @property
    def log_std_mean(self) -> float:
        """The mean of ``log √Σ*_ii`` over every weight (natural log)."""
        total = sum(float(s.log().sum()) for s in self.std.values())
        return total / sum(s.numel() for s in self.std.values())


def effective_noise(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor | None = None,
    *,
    beta: float = DEFAULT_BETA,
    floor: float = DEFAULT_FLOOR,
    fisher: Literal["model", "empirical"] = "model",
    batch_size: int = 64,
) -> EffectiveNoise:
    """The standard deviation of terzi2021's effective weight noise (Def. 0.6, eq. 10).

    Args:
        model: the model whose weights are perturbed (mode and flags restored).
        x_train: ``[N, ...]`` training inputs (F_w is the Fisher on the training set).
        y_train: ``[N]`` their labels (needed only for ``fisher="empirical"``).
        beta: β > 0; the variance is ≈ β / F_ii.
        floor: φ > 0; ``F_ii`` is floored at ``φ F̄`` (the largest variance is ``β/(φ F̄)``).
        fisher: ``"model"`` or ``"empirical"`` (see :func:`~robustscope.probes.weights.fisher_diagonal`).
        batch_size: examples per vectorised Fisher pass.

    Returns:
        an :class:`EffectiveNoise`.

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 3, (1, 4, 4), widths=(5,))
        >>> noise = effective_noise(net, torch.rand(8, 1, 4, 4), beta=1e-8)
        >>> cap = (1e-8 / (noise.floor * noise.fisher_mean)) ** 0.5
        >>> all(bool((s > 0).all() and (s <= cap).all()) for s in noise.std.values())
        True
    """
    what = "effective_noise"
    beta = parse_real(beta, f"{what}: beta", minimum=0.0, strict=True, error=VisualError)
    floor = parse_real(floor, f"{what}: floor", minimum=0.0, strict=True, error=VisualError)
    check_batch(what, x_train, "x_train")
    diag = fisher_diagonal(model, x_train, y_train, fisher=fisher, batch_size=batch_size)
    mean_f = sum(float(f.sum()) for f in diag.values()) / sum(f.numel() for f in diag.values())
    if not (math.isfinite(mean_f) and mean_f > 0):
        raise VisualError(
            f"{what}: the weights' Fisher information is {mean_f} on these training examples "
            "(a saturated or constant model); effective noise needs a model whose outputs vary"
        )
    std = {name: (beta / (f + floor * mean_f)).sqrt() for name, f in diag.items()}
    return EffectiveNoise(
        std=std, beta=beta, floor=floor, fisher_mean=mean_f, fisher=fisher, n=len(x_train)
    )


def perturbed_copy(model: nn.Module, noise: EffectiveNoise, *, seed: int) -> nn.Module:
    """A deep copy of ``model`` with weights ``w + n̄``, ``n̄ = std ⊙ ε``, ``ε ~ N(0, I)`` drawn
    once from a generator seeded with ``seed`` (parameters in ``named_parameters`` order,
    float64 CPU draws). Buffers are copied unchanged; ``model`` is not touched."""
    missing = [name for name, _ in model.named_parameters() if name not in noise.std]
    if missing:
        raise VisualError(
            f"perturbed_copy: the noise has no standard deviation for {missing[:3]}; compute "
            "it with effective_noise on this model"
        )
    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in noisy.named_parameters():
            std = noise.std[name]
            if std.shape != p.shape:
                raise VisualError(
                    f"perturbed_copy: noise for {name} has shape {tuple(std.shape)}, the "
                    f"parameter {tuple(p.shape)}; compute it with effective_noise on this model"
                )
            eps = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.add_((std * eps).to(dtype=p.dtype, device=p.device))
    return noisy


@dataclass(frozen=True)
class EffectiveImagesResult:
    """Effective images (terzi2021 Def. 0.7, eq. 10): the inversion, by the unperturbed
    model, of the representations ``f_{w+n̄}(x)`` the once-perturbed weights give.

    Attributes:
        inversion: the :class:`InversionResult` (``x`` are the effective images; its
            ``loss`` is ``‖f_{w+n̄}(x) − f_w(x′)‖₂`` per iterate).
        shift: ``[N]`` float64, ``‖f_{w+n̄}(x) − f_w(x)‖₂``: how far the noise moved each
            target (``L_inv`` at ``x′ = x``).
        noise_seed: the seed of the noise draw ``n̄``.
        beta, floor: the noise level and the Fisher floor (:class:`EffectiveNoise`).
    """

    inversion: InversionResult
    shift: torch.Tensor
    noise_seed: int
    beta: float
    floor: float

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON data (no images)."""
        return {
            **self.inversion.to_dict(),
            "shift": self.shift.tolist(),
            "noise_seed": self.noise_seed,
            "beta": self.beta,
            "floor": self.floor,
        }


def effective_images(
    model: nn.Module,
    x: torch.Tensor,
    *,
    noise: EffectiveNoise | None = None,
    train: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    beta: float = DEFAULT_BETA,
    floor: float = DEFAULT_FLOOR,
    seed: int = 0,
    steps: int = 500,
    lr: float = DEFAULT_LR,
    sigma: float = DEFAULT_SIGMA,
    x0: torch.Tensor | None = None,
    box: BoxLike | None = None,
    batch_size: int = 256,
) -> EffectiveImagesResult:
    """Effective images of ``x`` (terzi2021 eq. 10): perturb a copy of the weights once by
    ``n̄ ~ N(0, Σ*)`` and invert ``f_{w+n̄}(x)`` with the original weights.

    Args:
        model: the model (never modified).
        x: ``[N, ...]`` inputs.
        noise: the effective noise (:func:`effective_noise`); or give ``train`` instead.
        train: ``(x_train, y_train)`` to compute the noise from (with ``beta`` and ``floor``).
        beta, floor: β and φ of :func:`effective_noise` (used with ``train`` only).
        seed: seed of the noise draw and of the inversion's random start.
        steps, lr, sigma, x0, box, batch_size: as in :func:`invert`.

    Returns:
        an :class:`EffectiveImagesResult`.
    """
    what = "effective_images"
    if (noise is None) == (train is None):
        raise VisualError(f"{what}: pass exactly one of noise= (effective_noise) or train=(x, y)")
    check_batch(what, x, "x")
    if noise is None:
        assert train is not None
        noise = effective_noise(model, train[0], train[1], beta=beta, floor=floor)
    feats = representation(model, what)
    noisy = perturbed_copy(model, noise, seed=seed)
    noisy_feats = representation(noisy, what)
    device = model_device(model)
    with attack_mode(model), attack_mode(noisy), torch.no_grad():
        xs = x.detach().to(device)
        target = torch.cat(
            [noisy_feats(xs[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        )
        clean = torch.cat([feats(xs[s : s + batch_size]) for s in range(0, len(x), batch_size)])
    shift = torch.linalg.vector_norm(target - clean, dim=1).double().cpu()
    inversion = invert(
        model,
        target,
        x0=x0,
        input_shape=tuple(x.shape[1:]),
        steps=steps,
        lr=lr,
        sigma=sigma,
        seed=seed,
        box=box,
        batch_size=batch_size,
    )
    return EffectiveImagesResult(
        inversion=inversion, shift=shift, noise_seed=int(seed), beta=noise.beta, floor=noise.floor
    )
