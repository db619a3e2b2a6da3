"""The linear head (``robustscope.transfer.head``): the torch L-BFGS and scikit-learn solvers
minimise one objective — the penalty scaling ``C = 1/(l2·n)`` (K ≥ 3) and ``C = 2/(l2·n)``
(K = 2) is matched exactly, and a mismatched one is detected — and the raw-space head is
the standardized one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from robustscope import data, models
from robustscope.transfer import TransferError, fit_head, sklearn_C
from robustscope.transfer.features import extract_features
from robustscope.transfer.head import LinearHead

L2 = 1e-3


@pytest.fixture(scope="module")
def feature_map() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed feature map: a random-weight MLP (seeded) on sklearn's digits."""
    torch.manual_seed(0)
    net = models.create("mlp", 10, (1, 8, 8), widths=[48])
    train, test = data.load("digits", "train"), data.load("digits", "test")
    return (
        extract_features(net, train.head(800)),
        train.y[:800],
        extract_features(net, test),
        test.y,
    )


def weights_gap(a: LinearHead, b: LinearHead) -> float:
    """Largest difference of the standardized weights and centred biases, relative to the
    largest weight."""
    scale = float(a.weight_std.abs().max())
    dw = float((a.weight_std - b.weight_std).abs().max())
    db = float(((a.bias_std - a.bias_std.mean()) - (b.bias_std - b.bias_std.mean())).abs().max())
    return max(dw, db) / scale


@pytest.mark.parametrize("binary", [False, True])
def test_both_solvers_reach_the_same_head(
    feature_map: tuple[torch.Tensor, ...], binary: bool
) -> None:
    z, y, zt, yt = feature_map
    if binary:  # K = 2: scikit-learn fits one weight vector
        y, yt = (y >= 5).long(), (yt >= 5).long()
    a = fit_head(z, y, l2=L2, solver="lbfgs-torch", tol=1e-7)
    b = fit_head(z, y, l2=L2, solver="sklearn", tol=1e-7)
    assert a.converged and b.converged
    assert a.weight.shape == b.weight.shape == (2 if binary else 10, 48)
    agree = float((a.predict(zt) == b.predict(zt)).double().mean())
    assert agree >= 0.99
    assert weights_gap(a, b) < 1e-4
    assert a.objective == pytest.approx(b.objective, rel=1e-9, abs=1e-12)
    # both heads' rows sum to zero (the softmax's free direction, fixed by the penalty)
    assert float(a.weight_std.sum(0).abs().max()) < 1e-8
    assert float(b.weight_std.sum(0).abs().max()) < 1e-6
    assert a.accuracy(zt, yt) > (0.8 if binary else 0.6)


@pytest.mark.parametrize("binary", [False, True])
def test_a_mismatched_penalty_scaling_is_detected(
    feature_map: tuple[torch.Tensor, ...], binary: bool
) -> None:
    """The agreement above is not loose: scikit-learn with the other scaling (the
    multinomial C for K = 2, or C without the 1/n) lands measurably elsewhere."""
    z, y, _, _ = feature_map
    if binary:
        y = (y >= 5).long()
    ours = fit_head(z, y, l2=L2, tol=1e-7)
    n, k = len(y), int(y.max()) + 1
    wrong_c = 1 / (L2 * n) if binary else 1 / L2
    assert wrong_c != sklearn_C(L2, n, k)
    s = ((z.double() - ours.mean) / ours.std).numpy()
    clf = LogisticRegression(C=wrong_c, tol=1e-8, max_iter=5000).fit(s, y.numpy())
    coef = torch.from_numpy(clf.coef_)
    if binary:
        coef = torch.cat([-coef / 2, coef / 2])
    gap = float((coef - ours.weight_std).abs().max()) / float(ours.weight_std.abs().max())
    assert gap > 1e-2


def test_sklearn_C() -> None:
    assert sklearn_C(1e-4, 5000, 10) == pytest.approx(2.0)
    assert sklearn_C(1e-4, 5000, 2) == pytest.approx(4.0)


def test_raw_head_equals_the_standardized_one(feature_map: tuple[torch.Tensor, ...]) -> None:
    z, y, zt, _ = feature_map
    head = fit_head(z, y, l2=L2)
    s = (zt.double() - head.mean) / head.std
    assert torch.allclose(head.logits(zt), s @ head.weight_std.T + head.bias_std, atol=1e-9)
    assert torch.allclose(head.linear()(zt).double(), head.logits(zt), atol=1e-3)
    # features that never vary (dead units) get σ = 1 and no weight
    dead = int((z.std(0) == 0).sum())
    assert float(head.std.min()) > 0
    if dead:
        assert float(head.weight_std[:, z.std(0) == 0].abs().max()) < 1e-8
    # the stopping rule: the largest gradient entry of the objective
    assert head.grad_max <= 1e-6 and head.converged
    assert head.to_dict()["features"] == 48 and head.to_dict()["solver"] == "lbfgs-torch"


def test_a_stronger_penalty_shrinks_the_weights(feature_map: tuple[torch.Tensor, ...]) -> None:
    z, y, _, _ = feature_map
    norms = [float(fit_head(z, y, l2=l2).weight_std.norm()) for l2 in (1e-4, 1e-2, 1.0)]
    assert norms[0] > norms[1] > norms[2]


def test_refusals(feature_map: tuple[torch.Tensor, ...]) -> None:
    z, y, _, _ = feature_map
    with pytest.raises(TransferError, match="l2 must be"):
        fit_head(z, y, l2=0.0)
    with pytest.raises(TransferError, match="valid solvers"):
        fit_head(z, y, solver="newton")
    with pytest.raises(TransferError, match=r"\[N, F\]"):
        fit_head(z, y[:-1])
    with pytest.raises(TransferError, match="only 9 of 10 classes"):
        fit_head(z[y != 3], y[y != 3], solver="sklearn", num_classes=10)
    with pytest.raises(TransferError, match="NaN"):
        fit_head(z * np.nan, y)
