"""A new linear head on frozen features: multinomial logistic regression (terzi2021's
"linear classification (fine-tune the last layer)", Tables 1–3).

**Standardization.** The head is fitted on standardized features ``s = (z − μ) / σ``, with μ
and σ the per-feature mean and population standard deviation (ddof 0, as scikit-learn's
``StandardScaler``) of the training features; a feature constant on the training set
(σ = 0, e.g. a dead ReLU) gets σ = 1, so it is 0 after centring. Standardizing makes one L2
strength mean the same for backbones whose features have very different scales (a robust
and a standard model) and conditions L-BFGS.

**The objective** (both solvers, over the K × F weights ``W`` and K biases ``b`` acting on
``s``)::

    L(W, b) = (1/n) Σᵢ −log softmax(W sᵢ + b)[yᵢ] + (l2 / 2) ‖W‖_F²      (bias not penalised)

The fitted head is returned in raw feature space too: ``W_raw = W / σ`` (column-wise) and
``b_raw = b − W (μ / σ)``, so ``logits = W_raw z + b_raw``.

**Solvers.** ``"lbfgs-torch"``: full-batch ``torch.optim.LBFGS`` (strong-Wolfe line search) in
float64 from zeros, stopping when the largest absolute gradient entry is ≤ ``tol``. It runs
with one intra-op thread (restored afterwards): each of its hundreds of function evaluations
is a small product (n·F·K multiply-adds), and on a shared 2-core machine the thread pool's
synchronisation made the same fit take 0.07 s or 6 s depending on the other load
(``benchmarks/README.md``, "Linear transfer").
``"sklearn"``: ``sklearn.linear_model.LogisticRegression(solver="lbfgs")`` on the same ``s``.
scikit-learn minimises ``C Σᵢ lossᵢ + ½‖w‖²``, i.e. ``(1/n) Σᵢ lossᵢ + ‖w‖² / (2 C n)``
(it passes ``l2_reg_strength = 1 / (C · n)`` to its loss), so:

* K ≥ 3 (multinomial, K weight vectors like ours): ``C = 1 / (l2 · n)``;
* K = 2: scikit-learn fits one vector ``v = w₁ − w₀``. Our penalty's minimiser has
  ``w₀ = −w₁`` (the loss depends on ``w₁ − w₀`` only), so ``(l2/2)(‖w₀‖² + ‖w₁‖²) =
  (l2/4)‖v‖²``, matched by ``C = 2 / (l2 · n)``; the head is then ``w₁ = v/2, w₀ = −v/2``
  (biases likewise).

Its stopping rule (``gtol``: largest absolute projected-gradient entry) is the same test on
scikit-learn's scaled objective. The softmax is unchanged by adding one vector to every row
of ``(W, b)``; both solvers start from zeros and every gradient sums to zero over classes,
so both return rows summing to zero — the biases are centred again after fitting.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from robustscope.transfer.errors import TransferError

__all__ = ["HEAD_SOLVERS", "HeadSolver", "LinearHead", "fit_head", "sklearn_C"]

HeadSolver = Literal["lbfgs-torch", "sklearn"]
HEAD_SOLVERS: tuple[str, ...] = ("lbfgs-torch", "sklearn")
#: calls of torch's L-BFGS ``step`` at most (each continues the previous one)
_RESUMES = 5


@dataclass(frozen=True)
class LinearHead:
    """A fitted multinomial logistic-regression head (module doc for the objective).

    Attributes:
        weight, bias: ``[K, F]``, ``[K]`` float64 in raw feature space (``logits = W z + b``).
        weight_std, bias_std: the same head on standardized features (the penalised
            parametrisation both solvers fit).
        mean, std: ``[F]`` the standardization (module doc).
        l2: the L2 strength of the objective; ``solver`` which solver fitted it.
        n: training examples; ``iterations`` the solver's iterations.
        converged: the solver met ``tol``; ``grad_max`` the largest absolute gradient entry
            of the objective at the returned point (float64, computed here for both solvers).
        objective: the objective's value there.
        seconds: wall time of the fit.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    weight_std: torch.Tensor
    bias_std: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    l2: float
    solver: str
    n: int
    iterations: int
    converged: bool
    grad_max: float
    objective: float
    seconds: float

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` float64 logits of raw features ``z``."""
        return z.to(torch.float64) @ self.weight.T + self.bias

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(z).argmax(dim=1)

    def accuracy(self, z: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.predict(z) == y).double().mean()) if len(y) else float("nan")

    def linear(self, dtype: torch.dtype = torch.float32) -> nn.Linear:
        """The head as an ``nn.Linear`` on raw features (for ``head ∘ features`` models)."""
        layer = nn.Linear(self.weight.shape[1], self.weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(self.weight)
            layer.bias.copy_(self.bias)
        return layer.to(dtype)

    def to_dict(self) -> dict[str, Any]:
        """The scalars (no tensors)."""
        return {
            "solver": self.solver,
            "l2": self.l2,
            "n": self.n,
            "classes": self.num_classes,
            "features": int(self.weight.shape[1]),
            "iterations": self.iterations,
            "converged": self.converged,
            "grad_max": self.grad_max,
            "objective": self.objective,
            "seconds": self.seconds,
        }


def sklearn_C(l2: float, n: int, num_classes: int) -> float:
    """scikit-learn's ``C`` for our objective's ``l2`` on ``n`` examples (module doc):
    ``1 / (l2 n)`` for K ≥ 3, ``2 / (l2 n)`` for K = 2.

    Example:
        >>> sklearn_C(1e-4, 5000, 10), sklearn_C(1e-4, 5000, 2)
        (2.0, 4.0)
    """
    return (2.0 if num_classes == 2 else 1.0) / (l2 * n)


def _objective(
    w: torch.Tensor, b: torch.Tensor, s: torch.Tensor, y: torch.Tensor, l2: float
) -> torch.Tensor:
    ce = nn.functional.cross_entropy(s @ w.T + b, y)
    return ce + 0.5 * l2 * (w * w).sum()


def _check(z: torch.Tensor, y: torch.Tensor, l2: float, num_classes: int | None) -> int:
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y):
        raise TransferError(
            f"fit_head: features must be [N, F] and labels [N], got {tuple(z.shape)} and "
            f"{tuple(y.shape)}"
        )
    if len(y) < 2:
        raise TransferError(f"fit_head: {len(y)} training examples; pass at least 2 (--n-train)")
    if not (np.isfinite(l2) and l2 > 0):
        raise TransferError(f"fit_head: l2 must be a finite number > 0 (--l2), got {l2}")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise TransferError(f"fit_head: labels must lie in [0, {k}); check num_classes")
    if not bool(torch.isfinite(z).all()):
        raise TransferError("fit_head: the features hold NaN or inf; check the backbone")
    return k


def _fit_torch(
    s: torch.Tensor, y: torch.Tensor, k: int, l2: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    w = torch.zeros(k, s.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _objective(w, b, s, y, l2)
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    iterations = 0
    try:
        with torch.enable_grad():
            # torch's L-BFGS also stops when the loss stalls (float64 rounding near the
            # optimum); a new step() continues from its memory, up to the iteration budget
            for _ in range(_RESUMES):
                opt.step(closure)
                iterations = int(opt.state[opt._params[0]].get("n_iter", 0))
                assert w.grad is not None and b.grad is not None
                grad = torch.cat([w.grad.flatten(), b.grad])
                if iterations >= max_iter or float(grad.abs().max()) <= tol:
                    break
    finally:
        torch.set_num_threads(threads)
    return w.detach(), b.detach(), iterations, False  # fit_head judges convergence


def _fit_sklearn(
    s: torch.Tensor, y: torch.Tensor, k: int, l2: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # pragma: no cover - sklearn is in the data extra
        raise TransferError(
            "solver 'sklearn' needs scikit-learn (pip install 'robustscope[data]'); "
            "or use solver 'lbfgs-torch'"
        ) from None
    present = torch.unique(y)
    if len(present) != k:
        raise TransferError(
            f"solver 'sklearn': only {len(present)} of {k} classes occur in the training "
            "labels; pass more training examples (--n-train) or solver 'lbfgs-torch'"
        )
    n = len(y)
    clf = LogisticRegression(C=sklearn_C(l2, n, k), solver="lbfgs", tol=tol, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(s.numpy(), y.numpy())
    converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    coef = torch.from_numpy(np.asarray(clf.coef_, dtype=np.float64))
    icpt = torch.from_numpy(np.asarray(clf.intercept_, dtype=np.float64))
    if k == 2:  # one vector v = w₁ − w₀ (module doc)
        coef = torch.cat([-coef / 2, coef / 2])
        icpt = torch.cat([-icpt / 2, icpt / 2])
    return coef, icpt, int(np.max(clf.n_iter_)), converged


def fit_head(
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    l2: float = 1e-4,
    solver: str = "lbfgs-torch",
    num_classes: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> LinearHead:
    """Fit a multinomial logistic-regression head on features ``z`` ``[N, F]`` for labels
    ``y`` ``[N]`` (module doc: standardization, objective, the solvers' penalty matching).

    Args:
        z, y: training features and labels.
        l2: the L2 strength (> 0) on the standardized weights.
        solver: ``"lbfgs-torch"`` or ``"sklearn"``.
        num_classes: K (default ``max(y) + 1``).
        max_iter: solver iterations at most.
        tol: stop when the largest absolute gradient entry is ≤ tol.
    """
    if solver not in HEAD_SOLVERS:
        raise TransferError(
            f"fit_head: solver {solver!r} is unknown; valid solvers: {', '.join(HEAD_SOLVERS)}"
        )
    k = _check(z, y, l2, num_classes)
    t0 = time.perf_counter()
    z64 = z.detach().to("cpu", torch.float64)
    y = y.detach().to("cpu", torch.int64)
    mean = z64.mean(dim=0)
    std = z64.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    s = (z64 - mean) / std
    fit = _fit_torch if solver == "lbfgs-torch" else _fit_sklearn
    w, b, iterations, converged = fit(s, y, k, float(l2), int(max_iter), float(tol))
    b = b - b.mean()
    with torch.enable_grad():
        wg, bg = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        obj = _objective(wg, bg, s, y, float(l2))
        obj.backward()
    assert wg.grad is not None and bg.grad is not None
    grad_max = float(torch.cat([wg.grad.flatten(), bg.grad]).abs().max())
    if solver == "lbfgs-torch":  # it may also stop on a stalled step: judge by the gradient
        converged = grad_max <= tol
    return LinearHead(
        weight=w / std,
        bias=b - (w / std) @ mean,
        weight_std=w,
        bias_std=b,
        mean=mean,
        std=std,
        l2=float(l2),
        solver=solver,
        n=len(y),
        iterations=iterations,
        converged=converged,
        grad_max=grad_max,
        objective=float(obj.detach()),
        seconds=time.perf_counter() - t0,
    )
