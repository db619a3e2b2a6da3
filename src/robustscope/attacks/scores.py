"""The two robustness scores of wu2020.

* :func:`accuracy_independent_robustness` — eq. (4): the expected accuracy under
  random perturbations of norm ≤ C minus the clean accuracy (in [−1, 0]; higher
  is more robust), estimated by Monte Carlo.
* :func:`challenge_score` — the mean squared ℓ2 distance of successful minimal
  adversarial examples on correctly classified points, 0 for the others
  (wu2020 §"Robustness against new adversarial attacks", after the NeurIPS 2018
  adversarial vision challenge); higher is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustscope.attacks.base import Attack, attack_mode, resolve_box
from robustscope.attacks.registry import create
from robustscope.attacks.threat import ThreatModel, check_norm, flat_norms
from robustscope.data.box import BoxLike
from robustscope.device import model_device
from robustscope.evaluation import EvalRecord, predict


@dataclass(frozen=True)
class NoiseRobustness(EvalRecord):
    """wu2020 eq. (4), estimated with ``draws`` random perturbations per example.

    Attributes:
        score: mean noisy accuracy − clean accuracy, in [−1, 0] up to Monte-Carlo error.
        clean_accuracy: accuracy without perturbation.
        noisy_accuracy: accuracy averaged over the draws.
        std_error: standard error of ``score`` over the draws.
        bound: C, the largest perturbation norm; ``norm`` its norm.
        draws: random perturbations per example.
        distribution: how perturbations were drawn.
    """

    score: float
    clean_accuracy: float
    noisy_accuracy: float
    std_error: float
    bound: float
    norm: str
    draws: int
    n: int
    distribution: str


@torch.no_grad()
def accuracy_independent_robustness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bound: float,
    *,
    norm: str = "linf",
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 500,
    box: BoxLike | None = None,
) -> NoiseRobustness:
    """wu2020 eq. (4): E_{‖x_ε‖ ≤ C}[accuracy(x + x_ε)] − accuracy(x).

    Perturbations are uniform in the ball of radius C (uniform in the ℓ∞ cube, or
    uniform in the ℓ2 ball), clipped to the input box (default: the model's declared box),
    ``draws`` per example.
    """
    check_norm(norm)
    in_box = resolve_box(model, box, "accuracy_independent_robustness")
    threat = ThreatModel(norm, bound, in_box)
    device = model_device(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    x, y = x.to(device), y.to(device)
    per_draw = []
    with attack_mode(model):
        clean = torch.cat(
            [
                predict(model(x[s : s + batch_size])) == y[s : s + batch_size]
                for s in range(0, len(x), batch_size)
            ]
        )
        for _ in range(draws):
            hits = 0
            for s in range(0, len(x), batch_size):
                xb = threat.random_start(x[s : s + batch_size], gen)
                hits += int((predict(model(xb)) == y[s : s + batch_size]).sum())
            per_draw.append(hits / len(x))
    clean_acc = float(clean.double().mean())
    accs = torch.tensor(per_draw, dtype=torch.float64)
    se = float(accs.std(unbiased=True) / math.sqrt(draws)) if draws > 1 else float("nan")
    return NoiseRobustness(
        score=float(accs.mean()) - clean_acc,
        clean_accuracy=clean_acc,
        noisy_accuracy=float(accs.mean()),
        std_error=se,
        bound=bound,
        norm=norm,
        draws=draws,
        n=len(x),
        distribution=f"uniform in the {norm} ball of radius C, clipped to the input box",
    )


@dataclass(frozen=True)
class ChallengeScore(EvalRecord):
    """wu2020's mean squared-ℓ2 score of a minimal-norm attack.

    Attributes:
        score: mean over all n points of d_i = ‖x_adv − x‖₂² if the point is correctly
            classified clean and misclassified at x_adv, else 0.
        n: number of points; ``successes`` how many contributed a nonzero d_i.
        clean_accuracy: fraction correctly classified clean.
        attack: the attack used.
        per_point: the n values d_i (float64, input order), for paired comparisons of two
            models on the same points (``to_dict`` lists them).
    """

    score: float
    n: int
    successes: int
    clean_accuracy: float
    attack: str
    per_point: tuple[float, ...] = ()

    @property
    def std_error(self) -> float:
        """Standard error of :attr:`score` (sample std of the d_i over √n; NaN for n < 2)."""
        if len(self.per_point) < 2:
            return float("nan")
        d = torch.tensor(self.per_point, dtype=torch.float64)
        return float(d.std() / math.sqrt(len(d)))


def challenge_score(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | Attack = "deepfool",
    *,
    batch_size: int = 256,
    **params: Any,
) -> ChallengeScore:
    """wu2020's score: mean of ‖x_adv − x‖₂² over successful attacks on correct points (0 otherwise)."""
    atk = create(attack, model, **params) if isinstance(attack, str) else attack
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    per_point = torch.zeros(len(x), dtype=torch.float64)
    successes = 0
    correct_n = 0
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        with torch.no_grad(), attack_mode(model):
            correct = predict(model(xb)) == yb
        correct_n += int(correct.sum())
        if not bool(correct.any()):
            continue
        x_adv = atk(xb[correct], yb[correct])
        with torch.no_grad(), attack_mode(model):
            fooled = predict(model(x_adv)) != yb[correct]
        d2 = flat_norms(x_adv - xb[correct], "l2").double().cpu() ** 2
        rows = torch.arange(s, s + len(xb))[correct.cpu()]
        per_point[rows[fooled.cpu()]] = d2[fooled.cpu()]
        successes += int(fooled.sum())
    n = len(x)
    return ChallengeScore(
        score=float(per_point.sum()) / n if n else float("nan"),
        n=n,
        successes=successes,
        clean_accuracy=correct_n / n if n else float("nan"),
        attack=attack if isinstance(attack, str) else atk.name,
        per_point=tuple(per_point.tolist()),
    )
