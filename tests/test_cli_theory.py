"""``robustscope theory tsipras`` and ``robustscope theory mnist`` (issue 12 §4)."""

from __future__ import annotations

import json
import math

import pytest
from scipy.special import ndtr
from typer.testing import CliRunner

from robustscope.cli import app


def test_theory_tsipras_json_has_the_closed_forms_and_the_checks() -> None:
    result = CliRunner().invoke(
        app,
        [
            "theory",
            "tsipras",
            "--d",
            "400",
            "--p",
            "0.95",
            "--eta",
            "0.2",
            "--eps",
            "0.1",
            "--n",
            "20000",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["eps"] == [0.1, 0.4]
    rows = {(r["classifier"], r["eps"]): r for r in out["classifiers"]}
    favg = rows[("f_avg", 0.4)]
    assert favg["standard"] == pytest.approx(float(ndtr(0.2 * math.sqrt(400))))
    assert favg["robust"] == pytest.approx(float(ndtr(-0.2 * math.sqrt(400))))
    assert rows[("sign(x_1)", 0.1)]["robust"] == pytest.approx(0.95)
    for r in out["classifiers"]:
        assert abs(r["robust_mc"] - r["robust"]) <= 4 * r["robust_se"] + 1e-3
    assert out["theorem21"]["holds"] and out["theorem21"]["frontier_max_excess"] <= 1e-12
    assert out["theorem22"]["hypotheses"] and all(out["theorem22"]["verdicts"].values())
    levels = out["frontier"]
    assert all(lv["robust_symmetric"] <= lv["robust"] + 1e-9 <= lv["bound"] + 2e-9 for lv in levels)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--d", "0"], "d must be an integer >= 1"),
        (["--p", "0.3"], "p must lie in [0.5, 1]"),
        (["--eta", "-1"], "eta must be a finite number > 0"),
        (["--eps", "x"], "--eps"),
    ],
)
def test_theory_tsipras_refuses_bad_parameters(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["theory", "tsipras", *args, "--n", "100"])
    assert result.exit_code != 0
    assert message in str(result.exception) + result.output


def test_theory_mnist_prints_table5_beside_the_papers() -> None:
    result = CliRunner().invoke(app, ["theory", "mnist", "--json"])
    assert result.exit_code == 0, result.output
    t5 = json.loads(result.output)["table5"]
    assert t5["rows"]["standard"]["paper"]["w_l1"] == 41.08
    ours = {k: v["ours"] for k, v in t5["rows"].items()}
    assert ours["adversarial"]["w_l1"] < ours["standard"]["w_l1"]
    assert ours["adversarial"]["adversarial_test"] > ours["standard"]["adversarial_test"]
