"""robustscope.theory.binary_mnist on the real 5-vs-7 digits (mnist-5k unless MNIST is present):
the claims of tsipras2019 App. E (Table 5, Fig. 5, E.1) as inequalities between our own
measurements, the exact adversarial accuracy against the lab's PGD, and the result's form."""

from __future__ import annotations

import json

import pytest
import torch

from robustscope import attacks, data
from robustscope.data.box import UNIT
from robustscope.errors import ParameterError
from robustscope.theory import binary_mnist as bm
from robustscope.theory.linear import adversarial_accuracy, to_classifier, worst_case_margin

KS = (1, 5, 20, 784)


@pytest.fixture(scope="module")
def result() -> bm.BinaryMnistResult:
    return bm.run(ks=KS)


@pytest.fixture(scope="module")
def digits() -> bm.BinaryMnist:
    return bm.load_binary_mnist()


def test_data_is_5_vs_7_with_7_positive(digits: bm.BinaryMnist) -> None:
    assert digits.dataset in bm.DATASETS
    ds = data.load(digits.dataset, "train")
    sevens = ds.x[ds.y == 7].reshape(-1, 784).to(torch.float64)
    fives = ds.x[ds.y == 5].reshape(-1, 784).to(torch.float64)
    torch.testing.assert_close(digits.x_train[digits.y_train > 0].mean(0), sevens.mean(0))
    torch.testing.assert_close(digits.x_train[digits.y_train < 0].mean(0), fives.mean(0))
    for x, y in ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test)):
        assert x.shape[1] == 784 and x.dtype == torch.float64
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        assert set(y.tolist()) == {-1.0, 1.0}
    counts = digits.to_dict()
    assert counts["positive"] == 7 and counts["negative"] == 5
    assert counts["test"]["7"] > 0 and counts["test"]["5"] > 0


def test_table5_adversarial_training_trades_accuracy_for_robustness(
    result: bm.BinaryMnistResult,
) -> None:
    std, adv = result.table5.ours["standard"], result.table5.ours["adversarial"]
    # ‖w‖₁ of the adversarial model (same λ, same data) far below the standard one's
    assert adv.w_l1 < 0.5 * std.w_l1
    assert result.table5.l1_ratio > 2
    # the scale-free concentration too: fewer, larger weights
    sf = result.table5.to_dict()["scale_free"]
    assert sf["l1_over_l2"]["adversarial"] < 0.5 * sf["l1_over_l2"]["standard"]
    assert sf["nonzero_weights"]["adversarial"] < 0.25 * sf["nonzero_weights"]["standard"]
    # adversarial training costs standard accuracy, on train and test
    assert adv.standard_test < std.standard_test
    assert adv.standard_train < std.standard_train
    # and buys adversarial accuracy (exact, ε = 0.2 in [0, 1])
    assert adv.adversarial_test > std.adversarial_test + 30
    assert adv.adversarial_train > std.adversarial_train + 30
    assert result.table5.standard.converged and result.table5.adversarial.converged


def test_figure5_few_robust_pixels_beat_all_pixels_under_attack(
    result: bm.BinaryMnistResult,
) -> None:
    f5 = result.figure5
    assert f5.ks == KS
    t5 = result.table5.ours["standard"]
    # the top-784 model is the standard model (same problem, same unique minimiser)
    assert f5.topk_standard[-1] == pytest.approx(t5.standard_test)
    assert f5.topk_adversarial[-1] == pytest.approx(t5.adversarial_test)
    # App. E.1: the first point (one most-correlated pixel) is far more robust than all pixels
    assert f5.topk_adversarial[0] > f5.topk_adversarial[-1] + 20
    # while more (weakly correlated) pixels raise standard accuracy
    assert f5.topk_standard[-1] > f5.topk_standard[0]
    # Fig. 5(b): the robust model puts less of its weight on pixels below the threshold ε
    assert f5.mass_below_threshold("adversarial") < f5.mass_below_threshold("standard")
    assert f5.weights_standard.shape == f5.correlation.shape == (28, 28)
    corr = f5.correlation.reshape(-1)
    assert float(corr.max()) > f5.eps  # some pixels are robust features at ε = 0.2


def test_exact_adversarial_accuracy_agrees_with_pgd(
    result: bm.BinaryMnistResult, digits: bm.BinaryMnist
) -> None:
    eps = result.table5.eps
    for model in (result.table5.standard, result.table5.adversarial):
        clf = to_classifier(model, (1, 28, 28), box=UNIT, dtype=torch.float64)
        x = digits.x_test.reshape(-1, 1, 28, 28)
        y01 = (digits.y_test > 0).long()
        curve = attacks.evaluate(clf, x, y01, "pgd", [eps], steps=20, checks=False)
        exact = worst_case_margin(model, digits.x_test, digits.y_test, eps, box=UNIT)
        assert bool((exact.abs() > 1e-9).all())  # no ties: the two must agree exactly
        assert curve.robust_accuracy[eps] == pytest.approx(
            adversarial_accuracy(model, digits.x_test, digits.y_test, eps, box=UNIT)
        )


def test_to_dict_puts_ours_beside_the_papers(result: bm.BinaryMnistResult) -> None:
    d = json.loads(json.dumps(result.to_dict()))
    rows = d["table5"]["rows"]
    assert rows["standard"]["paper"] == bm.PAPER_TABLE5["standard"].to_dict()
    assert rows["adversarial"]["paper"]["w_l1"] == 13.69
    assert set(rows["standard"]["ours"]) == set(rows["standard"]["paper"])
    assert d["table5"]["scale_free"]["l1_ratio_standard_over_adversarial"]["paper"] == (
        pytest.approx(41.08 / 13.69)
    )
    assert d["settings"]["eps"] == 0.2 and d["data"]["positive"] == 7
    assert len(d["figure5"]["topk"]["k"]) == len(d["figure5"]["topk"]["adversarial_test"])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ParameterError, match="data"):
        bm.load_binary_mnist("cifar10")
    with pytest.raises(ParameterError, match="ks"):
        bm.run(ks=[0])
    with pytest.raises(ParameterError, match="loss"):
        bm.run(loss="squared")
