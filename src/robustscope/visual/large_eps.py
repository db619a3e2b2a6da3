"""Large-ε targeted adversarial examples and the interpolation towards them (tsipras2019
§3, Figs. 3–4, App. A.4 Table 3).

tsipras2019 follows the loss gradient with PGD inside an ℓp ball of radius ε much larger
than the training ε, from the test image itself; for robust models the examples take on
salient features of another class (Fig. 3), and the straight line from the image to its
adversarial example passes smoothly between the classes (Fig. 4). Here the examples are
*targeted* (the lab's :class:`~robustscope.attacks.gradient.PGD` with
:class:`~robustscope.attacks.criteria.TargetedMisclassification`, minimising the
cross-entropy of the target class), so that the class they move towards is chosen and the
same for every model compared: the next class ``(y + 1) mod K`` (default), the clean
runner-up (the most likely class other than ``y``), or given targets. Every example runs all
``steps`` steps from ``x`` itself (no random start; the last iterate is kept, not the first
one classified as the target), as the paper's "iteratively following the loss gradient".

**ε scaled to the dataset** (:func:`paper_eps`). tsipras2019 Table 3 uses

=================  ======  ========  ===================
norm               MNIST   CIFAR-10  Restricted ImageNet
=================  ======  ========  ===================
ℓ∞                 0.3     0.125     0.25
ℓ2                 4       4.7       40
=================  ======  ========  ===================

on 1 × 28 × 28, 3 × 32 × 32 and 3 × 224 × 224 images in [0, 1]. For an input of shape
``C × H × W`` the reference is the dataset with the same number of channels (MNIST for
1 channel, CIFAR-10 or Restricted ImageNet for 3) whose pixel count ``H·W`` is nearest on a
log scale (CIFAR-10 up to about 85 × 85, the geometric mean of 32 × 32 and 224 × 224); its ℓ∞ radius is
taken as it is (a per-pixel budget, independent of the size) and its ℓ2 radius scaled by
``√(D / D_ref)`` (D = C·H·W), which keeps the root-mean-square change per coordinate
``ε₂/√D`` of the paper. So 28 × 28 greyscale images (MNIST, Fashion-MNIST) get the MNIST
values exactly, 32 × 32 colour ones (CIFAR-10, SVHN) the CIFAR-10 values, and the 8 × 8
``digits`` ℓ∞ 0.3 and ℓ2 ``4·√(64/784) ≈ 1.14``. Inputs that are not images ``[C, H, W]``
with C = 1 or 3 have no rule: pass ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustscope import attacks
from robustscope.attacks.base import attack_mode
from robustscope.attacks.criteria import TargetedMisclassification
from robustscope.attacks.gradient import PGD
from robustscope.data.box import BoxLike
from robustscope.device import model_device
from robustscope.evaluation import predict
from robustscope.params import parse_eps, positive_int
from robustscope.visual.base import VisualError, check_batch, resolve_box

__all__ = [
    "TABLE3",
    "InterpolationResult",
    "LargeEpsResult",
    "choose_targets",
    "interpolate",
    "interpolation",
    "large_eps_examples",
    "paper_eps",
]

#: tsipras2019 Table 3: dataset → (input shape, {norm: ε})
TABLE3: dict[str, tuple[tuple[int, int, int], dict[str, float]]] = {
    "mnist": ((1, 28, 28), {"linf": 0.3, "l2": 4.0}),
    "cifar10": ((3, 32, 32), {"linf": 0.125, "l2": 4.7}),
    "restricted-imagenet": ((3, 224, 224), {"linf": 0.25, "l2": 40.0}),
}

NORMS = ("l2", "linf")


def _norm(norm: str, what: str) -> str:
    if norm not in NORMS:
        raise VisualError(f"{what}: norm must be 'l2' or 'linf', got {norm!r}")
    return norm


def paper_eps(norm: str, input_shape: tuple[int, ...]) -> float:
    """tsipras2019 Table 3's large ε for ``norm``, scaled to ``input_shape`` by the rule of
    the module doc.

    Example:
        >>> paper_eps("l2", (1, 28, 28)), paper_eps("linf", (3, 32, 32))
        (4.0, 0.125)
        >>> round(paper_eps("l2", (1, 8, 8)), 4)
        1.1429
    """
    norm = _norm(norm, "paper_eps")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise VisualError(
            f"large-ε examples: no rule scales tsipras2019 Table 3's ε to inputs of shape "
            f"{shape} (images [C, H, W] with C = 1 or 3 only); pass eps explicitly"
        )
    pixels = shape[1] * shape[2]
    candidates = [ref for ref in TABLE3.values() if ref[0][0] == shape[0]]
    ref_shape, values = min(
        candidates, key=lambda ref: abs(math.log(pixels / (ref[0][1] * ref[0][2])))
    )
    if norm == "linf":
        return values["linf"]
    d, d_ref = math.prod(shape), math.prod(ref_shape)
    return values["l2"] * math.sqrt(d / d_ref)


def choose_targets(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: str | int | torch.Tensor = "next",
    *,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Target classes ``[N]``: ``"next"`` = ``(y + 1) mod K``; ``"runner-up"`` = the class
    other than ``y`` with the largest clean logit; an int = that class for every example; a
    tensor ``[N]`` = given. An example whose target equals its label is refused."""
    device = model_device(model)
    with attack_mode(model), torch.no_grad():
        logits = model(x[:1].to(device)) if target != "runner-up" else model(x.to(device))
    k = num_classes or max(int(logits.shape[1]), 2)
    y = y.detach().cpu().long()
    if isinstance(target, torch.Tensor):
        out = target.detach().cpu().long()
        if out.shape != y.shape:
            raise VisualError(f"large-ε examples: targets must be [N] = [{len(y)}]")
    elif target == "next":
        out = (y + 1) % k
    elif target in ("runner-up", "runner_up"):
        masked = logits.detach().cpu().double().clone()
        masked[torch.arange(len(y)), y] = -math.inf
        out = masked.argmax(1)
    elif isinstance(target, int) and not isinstance(target, bool):
        out = torch.full_like(y, target)
    else:
        raise VisualError(
            f"large-ε examples: target must be 'next', 'runner-up', a class or [N] classes, "
            f"got {target!r}"
        )
    if bool(((out < 0) | (out >= k)).any()):
        raise VisualError(f"large-ε examples: targets must be classes 0 … {k - 1}")
    if bool((out == y).any()):
        raise VisualError(
            "large-ε examples: a target equals its example's label; choose another class"
        )
    return out


@dataclass(frozen=True)
class LargeEpsResult:
    """Large-ε targeted adversarial examples (tsipras2019 Fig. 3, Table 3).

    Attributes:
        x: ``[N, ...]`` the originals; x_adv: ``[N, ...]`` the examples, in
            ``ball(x, ε) ∩ box`` (CPU).
        labels, targets: ``[N]`` true and target classes.
        eps, norm, steps, step_size: the attack (PGD, targeted, all steps from ``x``).
        eps_rule: how ε was chosen (``"given"`` or the Table 3 rule's description).
        predicted: ``[N]`` the model's classes at ``x_adv``; target_prob: ``[N]`` float64,
            the softmax probability of the target there.
        distance: ``[N]`` float64, ``‖x_adv − x‖`` in ``norm``.
    """

    x: torch.Tensor
    x_adv: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    eps: float
    norm: str
    steps: int
    step_size: float
    eps_rule: str
    predicted: torch.Tensor
    target_prob: torch.Tensor
    distance: torch.Tensor

    @property
    def success(self) -> torch.Tensor:
        """``[N]`` bool: the model predicts the target at ``x_adv``."""
        return self.predicted == self.targets

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON data (no images)."""
        return {
            "eps": self.eps,
            "norm": self.norm,
            "steps": self.steps,
            "step_size": self.step_size,
            "eps_rule": self.eps_rule,
            "labels": self.labels.tolist(),
            "targets": self.targets.tolist(),
            "predicted": self.predicted.tolist(),
            "target_prob": self.target_prob.tolist(),
            "distance": self.distance.tolist(),
            "success_rate": float(self.success.double().mean()),
        }


def _probs(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    device = model_device(model)
    out = []
    with attack_mode(model), torch.no_grad():
        for lo in range(0, len(x), batch_size):
            logits = model(x[lo : lo + batch_size].to(device)).double()
            if logits.shape[1] == 1:
                logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
            out.append(torch.softmax(logits, dim=1).cpu())
    return torch.cat(out)


def large_eps_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | str | None = None,
    norm: str = "l2",
    steps: int = 100,
    step_size: float | None = None,
    target: str | int | torch.Tensor = "next",
    box: BoxLike | None = None,
) -> LargeEpsResult:
    """Targeted PGD with a large ε (tsipras2019 Fig. 3): every step for every example,
    starting at ``x``, last iterate kept.

    Args:
        model: maps inputs to logits (eval mode and frozen parameters during the attack).
        x: ``[N, ...]`` inputs in the box; y: ``[N]`` their labels.
        eps: the radius (a number or ``"8/255"``); default :func:`paper_eps` of ``x``'s shape.
        norm: ``"l2"`` or ``"linf"``.
        steps: PGD steps; step_size: default ``2.5 ε / steps`` (PGD's).
        target: ``"next"``, ``"runner-up"``, a class, or ``[N]`` classes (:func:`choose_targets`).
        box: the input box (default: the model's).

    Returns:
        a :class:`LargeEpsResult`.
    """
    what = "large-ε examples"
    check_batch(what, x)
    norm = _norm(norm, what)
    if eps is None:
        eps_value = paper_eps(norm, tuple(x.shape[1:]))
        rule = f"tsipras2019 Table 3 scaled to {tuple(x.shape[1:])}"
    else:
        eps_value = parse_eps(eps, f"{what}: eps", error=VisualError)
        rule = "given"
    steps = positive_int(steps, f"{what}: steps", error=VisualError)
    the_box = resolve_box(model, box, what)
    targets = choose_targets(model, x, y, target)
    atk = attacks.create(
        "pgd",
        model,
        eps=eps_value,
        norm=norm,
        steps=steps,
        step_size=step_size,
        random_start=False,
        early_exit=False,
        box=the_box,
        criterion=TargetedMisclassification(),
    )
    assert isinstance(atk, PGD)
    x_adv = atk(x, targets.to(x.device)).detach().cpu()
    xc = x.detach().cpu()
    probs = _probs(model, x_adv)
    delta = (x_adv - xc).reshape(len(xc), -1).double()
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    return LargeEpsResult(
        x=xc,
        x_adv=x_adv,
        labels=y.detach().cpu().long(),
        targets=targets,
        eps=eps_value,
        norm=norm,
        steps=steps,
        step_size=float(atk.step_size),
        eps_rule=rule,
        predicted=predict(probs),
        target_prob=probs[torch.arange(len(targets)), targets],
        distance=dist,
    )


def interpolate(
    x: torch.Tensor, x_adv: torch.Tensor, steps: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The straight path ``x + α (x_adv − x)`` (tsipras2019 Fig. 4) at ``steps`` evenly spaced
    α from 0 to 1, computed as ``(1 − α) x + α x_adv`` so that both ends are exact.

    Returns:
        ``(alphas [steps] float64, path [N, steps, ...])`` with ``path[:, 0] == x`` and
        ``path[:, -1] == x_adv``.

    Example:
        >>> x, a = torch.zeros(1, 2), torch.ones(1, 2)
        >>> alphas, path = interpolate(x, a, 3)
        >>> alphas.tolist(), path[0, :, 0].tolist()
        ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    """
    what = "interpolate"
    check_batch(what, x)
    if x_adv.shape != x.shape:
        raise VisualError(
            f"{what}: x_adv must have x's shape {tuple(x.shape)}, got {tuple(x_adv.shape)}"
        )
    steps = positive_int(steps, f"{what}: steps", minimum=2, error=VisualError)
    alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    alphas[0], alphas[-1] = 0.0, 1.0
    a = alphas.to(x.dtype).reshape((1, steps) + (1,) * (x.dim() - 1))
    path = (1 - a) * x.unsqueeze(1) + a * x_adv.unsqueeze(1)
    path[:, 0], path[:, -1] = x, x_adv
    return alphas, path


@dataclass(frozen=True)
class InterpolationResult:
    """The model along the straight path from ``x`` to ``x_adv`` (tsipras2019 Fig. 4).

    Attributes:
        alphas: ``[S]`` float64, the positions 0 … 1.
        path: ``[N, S, ...]`` the images (CPU).
        probs: ``[N, S, K]`` float64 softmax probabilities along the path.
        predicted: ``[N, S]`` predicted classes.
        labels, targets: ``[N]`` the classes at the two ends (true, target).
    """

    alphas: torch.Tensor
    path: torch.Tensor
    probs: torch.Tensor
    predicted: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON data (no images)."""
        idx = torch.arange(len(self.labels))
        return {
            "alphas": self.alphas.tolist(),
            "labels": self.labels.tolist(),
            "targets": self.targets.tolist(),
            "predicted": self.predicted.tolist(),
            "prob_label": self.probs[idx, :, self.labels].tolist(),
            "prob_target": self.probs[idx, :, self.targets].tolist(),
        }


def interpolation(
    model: nn.Module, result: LargeEpsResult, *, steps: int = 8
) -> InterpolationResult:
    """Interpolate from each original to its large-ε example and classify the path."""
    alphas, path = interpolate(result.x, result.x_adv, steps)
    n, s = path.shape[:2]
    probs = _probs(model, path.reshape(n * s, *path.shape[2:])).reshape(n, s, -1)
    return InterpolationResult(
        alphas=alphas,
        path=path,
        probs=probs,
        predicted=probs.argmax(2),
        labels=result.labels,
        targets=result.targets,
    )
