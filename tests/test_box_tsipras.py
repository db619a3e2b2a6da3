"""The input box is the data's (issue 11 §1): on the Tsipras et al. (2019) vector data, whose
box is unbounded, ℓ∞ attacks reach the closed-form worst case of a linear model exactly —
through the Python API and through ``robustscope attack`` — instead of clamping the Gaussian
coordinates into [0, 1] (which read 0.51 robust accuracy where the truth was 0.90).

Closed form: for logits ``z = W x + b``, the ℓ∞ ball of radius ε lowers the margin
``z_y − z_k`` by exactly ``ε ‖w_y − w_k‖₁`` at its worst point, so a point is robust iff it is
correct and ``z_y − z_k − ε ‖w_y − w_k‖₁ > 0`` for every ``k ≠ y``. With two classes FGSM,
PGD and APGD all reach that point.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from robustscope import attacks, checkpoint, data, models
from robustscope.data.box import UNBOUNDED
from robustscope.training import TrainConfig, train

#: margins within this distance of 0 (float32 logits) are ties an attack may decide either way
TIE = 1e-4


def linear_worst_case(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(robust, usable) per point, in float64, from the affine map the model computes
    (normalization included): W from autograd, b = z(0)."""
    m = copy.deepcopy(model).double().eval()
    d = x.shape[1]
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        b = m(torch.zeros(1, d, dtype=torch.float64))[0]
        w = (m(eye) - b).T  # [K, D]
        z = m(x.double())
    k = z.shape[1]
    gaps = []
    for j in range(k):
        wy_minus_wj = w[y] - w[j]  # [N, D]
        gap = z.gather(1, y[:, None])[:, 0] - z[:, j] - eps * wy_minus_wj.abs().sum(1)
        gaps.append(torch.where(y == j, torch.full_like(gap, float("inf")), gap))
    worst = torch.stack(gaps, 1).amin(1)
    return worst > 0, worst.abs() > TIE


@pytest.fixture(scope="module")
def tsipras_linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    cfg = TrainConfig(
        dataset="tsipras", model="linear", epochs=3, train_subset=4000, device="cpu", seed=0
    )
    model = train(cfg, None, progress=False, log=None).model.eval()
    test = data.load("tsipras", "test").head(1000)
    return model, test.x, test.y


def test_the_data_and_the_model_declare_an_unbounded_box(
    tsipras_linear: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, _ = tsipras_linear
    assert data.info("tsipras").box == UNBOUNDED
    assert data.load("tsipras", "test").box == UNBOUNDED
    assert models.declared_box(model) == UNBOUNDED
    assert float(x.min()) < -1 and float(x.max()) > 2  # far outside [0, 1]


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "apgd"])
def test_linf_attacks_reach_the_closed_form_worst_case(
    attack: str, tsipras_linear: tuple[nn.Module, torch.Tensor, torch.Tensor]
) -> None:
    model, x, y = tsipras_linear
    params = {} if attack == "fgsm" else {"steps": 20}
    epsilons = [0.05, 0.1, 0.2]
    curve = attacks.evaluate(model, x, y, attack, epsilons, checks=False, **params)
    assert curve.box == UNBOUNDED
    for e, eps in enumerate(epsilons):
        robust, usable = linear_worst_case(model, x, y, eps)
        assert float(usable.double().mean()) > 0.99
        assert torch.equal(curve.robust[e][usable], robust[usable]), (attack, eps)
    # the trade-off is visible: robust accuracy falls well below clean at ε = 0.2
    assert curve.robust_accuracy[0.2] < curve.clean_accuracy - 0.05


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "robustscope", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_attack_reaches_the_closed_form_worst_case(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _cli("train", "--dataset", "tsipras", "--model", "linear", "--epochs", "3",
         "--train-subset", "4000", "--out", str(run), "--device", "cpu")  # fmt: skip
    out = _cli("attack", str(run), "--dataset", "tsipras", "--attack", "pgd", "--norm",
               "linf", "--eps", "0.2,8/255", "--steps", "20", "--n", "1000", "--json",
               "--no-checks", "--device", "cpu")  # fmt: skip
    result = json.loads(out.stdout)
    assert result["conventions"]["box"] == "unbounded"
    assert [r["eps"] for r in result["results"]] == [0.2, 8 / 255]  # exact, not %g
    model, meta = checkpoint.load(run)
    assert meta.model.box == UNBOUNDED
    params = meta.training.get("dataset_params", {})
    test = data.load("tsipras", "test", **params).head(1000)
    for eps, key in ((0.2, "0.2"), (8 / 255, f"{8 / 255:g}")):
        robust, usable = linear_worst_case(model, test.x, test.y, eps)
        got = result["robust_accuracy"][key]
        want = float(robust.double().mean())
        # only near-ties (|worst margin| ≤ 1e-4) may be decided either way
        assert abs(got - want) <= float((~usable).double().mean()) + 1e-12, (eps, got, want)
