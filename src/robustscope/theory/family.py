"""A family of classifiers on the distribution of tsipras2019 eq. (3) for checking
Theorem 2.1 (:mod:`robustscope.theory.theorems`).

Three kinds of member, each measured as exactly as it can be:

* **closed-form linear classifiers** (:func:`linear_grid`): the reference classifiers, the
  frontier's witnesses and random ``w`` mixing the robust feature, sparse and dense
  non-robust weights and a bias — accuracies exact (:func:`~robustscope.theory.tsipras.accuracy`);
* **linear models fitted on samples** (logistic regression and soft-margin SVM, standard and
  ℓ∞-adversarial over an ε_train grid, on feature subsets) — exact on D too, being linear;
* **small MLPs** trained by the lab's training loop (standard and PGD-AT) on samples of D —
  estimated on fresh draws: standard accuracy, and robust accuracy against both the proof's
  fixed adversary (``xᵢ − 2ηy``, i ≥ 2) and ℓ∞ PGD (a point counts as robust only if
  neither breaks it), with binomial standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from robustscope.attacks import PGD
from robustscope.data.synthetic import sample
from robustscope.params import parse_eps
from robustscope.theory import linear
from robustscope.theory.frontier import frontier, witness
from robustscope.theory.theorems import BoundCheck, check_bound
from robustscope.theory.tsipras import (
    Distribution,
    accuracy,
    averaged,
    bayes,
    robust_feature,
)
from robustscope.training import TrainConfig, train

__all__ = [
    "Members",
    "fitted_members",
    "fixed_adversary",
    "linear_grid",
    "mlp_members",
    "theorem21",
]


@dataclass
class Members:
    """Named points (standard, robust accuracy) with standard errors (0 when exact)."""

    names: list[str] = field(default_factory=list)
    standard: list[float] = field(default_factory=list)
    robust: list[float] = field(default_factory=list)
    standard_se: list[float] = field(default_factory=list)
    robust_se: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(
        self, name: str, kind: str, standard: float, robust: float, se: tuple[float, float] = (0, 0)
    ) -> None:
        """One member."""
        self.names.append(name)
        self.kinds.append(kind)
        self.standard.append(float(standard))
        self.robust.append(float(robust))
        self.standard_se.append(float(se[0]))
        self.robust_se.append(float(se[1]))

    def extend(self, other: Members) -> None:
        """Append every member of ``other``."""
        for n, k, s, r, ss, rs in zip(
            other.names,
            other.kinds,
            other.standard,
            other.robust,
            other.standard_se,
            other.robust_se,
            strict=True,
        ):
            self.add(n, k, s, r, (ss, rs))

    def check(self, dist: Distribution, eps: float) -> BoundCheck:
        """Theorem 2.1 on these members."""
        return check_bound(
            dist,
            eps,
            self.names,
            np.array(self.standard),
            np.array(self.robust),
            np.array(self.standard_se),
            np.array(self.robust_se),
        )


def linear_grid(dist: Distribution, eps: float, n: int = 1000, seed: int = 0) -> Members:
    """``n`` closed-form linear classifiers: f_avg, sign(x_1), Bayes, 32 frontier witnesses
    and random members ``(a, v, β)`` (v dense, sparse or of mixed sign; a ≥ 0 or not)."""
    eps_f = parse_eps(eps, "eps")
    rng = np.random.default_rng([seed, 21])
    d = dist.d
    ws: list[np.ndarray] = [averaged(d), robust_feature(d), bayes(dist)]
    biases: list[float] = [0.0, 0.0, 0.0]
    names = ["f_avg", "sign(x_1)", "Bayes"]
    front = frontier(dist, eps_f)
    for i in np.linspace(0, len(front.standard) - 1, 32).astype(int):
        ws.append(witness(dist, front.a[i], front.S[i], front.q[i]))
        biases.append(float(front.bias[i]))
        names.append(f"frontier[{i}]")
    while len(ws) < n:
        k = int(rng.integers(1, d + 1))
        v = np.zeros(d)
        idx = rng.choice(d, size=k, replace=False)
        signs = np.ones(k) if rng.random() < 0.8 else rng.choice([-1.0, 1.0], size=k)
        v[idx] = rng.exponential(size=k) * signs
        v /= max(np.abs(v).sum(), 1e-12)
        a = rng.exponential() * (1.0 if rng.random() < 0.9 else -1.0)
        ws.append(np.concatenate([[a], v]))
        biases.append(float(rng.normal(scale=0.3)) if rng.random() < 0.5 else 0.0)
        names.append(f"random[{len(ws)}] k={k}")
    acc = accuracy(dist, np.stack(ws[:n]), np.array(biases[:n]), eps=[eps_f])
    out = Members()
    for j in range(n):
        out.add(names[j], "closed form", acc.standard[j], acc.robust[eps_f][j])
    return out


def fitted_members(
    dist: Distribution,
    eps: float,
    *,
    eps_train: tuple[float, ...] | None = None,
    n_train: int = 2000,
    l2: float = 1e-3,
    seed: int = 0,
) -> Members:
    """Logistic regression and soft-margin SVM (:func:`robustscope.theory.linear.fit`) on
    ``n_train`` draws of D: standard and ℓ∞-adversarial (exact inner maximum, unbounded box)
    at each ε_train (default 0, η/2, η, 2η), on all features, then standard fits on feature
    subsets (x_1 alone, x_1 and 10 non-robust features, the non-robust features alone).
    Their accuracies on D are exact (they are linear)."""
    eps_f = parse_eps(eps, "eps")
    grid = (0.0, dist.eta / 2, dist.eta, 2 * dist.eta) if eps_train is None else eps_train
    rng = np.random.default_rng([seed, 4])
    x_np, y_np = sample(n_train, dist.d, dist.p, dist.eta, rng)
    x = torch.from_numpy(x_np).double()
    y = torch.from_numpy(y_np.astype(np.float64))
    d = dist.d
    subsets: list[tuple[str, list[int] | None]] = [("all", None)]
    subsets += [("x_1", [0]), ("x_1 + 10", list(range(min(11, d + 1)))), ("x_2..", None)]
    fits: list[tuple[str, linear.LinearModel]] = []
    for loss in ("logistic", "hinge"):
        for et in grid:
            et_f = parse_eps(et, "eps_train")
            m = linear.fit(x, y, loss=loss, l2=l2, eps=et_f)
            kind = f"adversarial ε={et_f:g}" if et_f > 0 else "standard"
            fits.append((f"{loss} {kind}", m))
        for label, feats in subsets[1:]:
            chosen = list(range(1, d + 1)) if feats is None else feats
            fits.append((f"{loss} on {label}", linear.fit(x, y, loss=loss, l2=l2, features=chosen)))
    ws = np.stack([m.w.numpy() for _, m in fits])
    acc = accuracy(dist, ws, np.array([m.b for _, m in fits]), eps=[eps_f])
    out = Members()
    for j, (name, _) in enumerate(fits):
        out.add(name, "fitted linear", acc.standard[j], acc.robust[eps_f][j])
    return out


def fixed_adversary(x: torch.Tensor, y_pm: torch.Tensor, eta: float) -> torch.Tensor:
    """The adversary of the proof of Theorem 2.1: ``xᵢ − 2η·y`` for i ≥ 2 (x_1 untouched)."""
    shifted = x.clone()
    shifted[:, 1:] -= (2.0 * eta) * y_pm.to(x.dtype)[:, None]
    return shifted


def mlp_members(
    dist: Distribution,
    eps: float,
    *,
    widths: tuple[tuple[int, ...], ...] = ((16,), (64, 64)),
    eps_train: tuple[float, ...] = (0.0,),
    n_train: int = 2000,
    n_test: int = 20000,
    epochs: int = 10,
    lr: float = 3e-3,
    pgd_steps: int = 20,
    seed: int = 0,
) -> Members:
    """MLPs trained by :func:`robustscope.training.train` on ``n_train`` draws of D (standard
    at ε_train = 0, PGD-AT otherwise), estimated on ``n_test`` fresh draws (module doc)."""
    eps_f = parse_eps(eps, "eps")
    rng = np.random.default_rng([seed, 3])
    x_np, y_np = sample(n_test, dist.d, dist.p, dist.eta, rng)
    x = torch.from_numpy(x_np)
    y_pm = torch.from_numpy(y_np.astype(np.int64))
    labels = (y_pm > 0).long()
    out = Members()
    for hidden in widths:
        for et in eps_train:
            et_f = parse_eps(et, "eps_train")
            config = TrainConfig(
                dataset="tsipras",
                dataset_params={"d": dist.d, "p": dist.p, "eta": dist.eta, "seed": seed},
                train_subset=n_train,
                model="mlp",
                model_kwargs={"widths": list(hidden)},
                method="pgd" if et_f > 0 else "standard",
                method_params={"eps": et_f, "steps": 10} if et_f > 0 else {},
                epochs=epochs,
                batch_size=100,
                optimizer="adam",
                lr=lr,
                weight_decay=0.0,
                device="cpu",
                seed=seed,
            )
            model = train(config, None, progress=False, log=None).model.eval()
            with torch.no_grad():
                clean = model(x).argmax(1) == labels
                fixed = model(fixed_adversary(x, y_pm, dist.eta)).argmax(1) == labels
            adv = PGD(model, eps_f, steps=pgd_steps, seed=seed)(x, labels)
            with torch.no_grad():
                pgd_ok = model(adv).argmax(1) == labels
            robust = clean & fixed & pgd_ok
            s, r = float(clean.double().mean()), float(robust.double().mean())
            se = (np.sqrt(s * (1 - s) / n_test), np.sqrt(r * (1 - r) / n_test))
            name = f"MLP {list(hidden)} " + (f"PGD-AT ε={et_f:g}" if et_f > 0 else "standard")
            out.add(name, "MLP", s, r, se)
    return out


def theorem21(dist: Distribution, eps: float | None = None, *, mlps: bool = True) -> BoundCheck:
    """Theorem 2.1 checked at ``eps`` (default 2η, the theorem's threshold) on the
    closed-form grid, the fitted linear models and (``mlps``) trained MLPs."""
    eps_f = 2 * dist.eta if eps is None else parse_eps(eps, "eps")
    members = linear_grid(dist, eps_f)
    members.extend(fitted_members(dist, eps_f))
    if mlps:
        members.extend(mlp_members(dist, eps_f, eps_train=(0.0, eps_f)))
    return members.check(dist, eps_f)
