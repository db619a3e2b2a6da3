"""A study's ``posthoc`` section: validated, hashed only when set, run on the runs it selects
and stored as the run's ``posthoc`` probe arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustscope import checkpoint, data
from robustscope.evaluation import predict
from robustscope.report.data import load_study
from robustscope.studies import run_study
from robustscope.studies.runner import measure_hash
from robustscope.studies.spec import StudyError, load_spec

BASE: dict[str, Any] = {
    "name": "ph",
    "dataset": "digits",
    "models": [{"model": "mlp", "model_kwargs": {"widths": [64, 32]}}],
    "methods": [{"method": "pgd", "eps": [0, 0.1], "params": {"steps": 3}}],
    "train": {"epochs": 3},
    "evaluation": {
        "n": 100,
        "attacks": [{"attack": "pgd", "eps": [0, 0.1], "params": {"steps": 5}}],
    },
}


def spec_with(**posthoc: Any) -> dict[str, Any]:
    return {**BASE, "posthoc": posthoc}


def test_unset_posthoc_leaves_the_dump_and_the_measure_hash_as_before() -> None:
    plain = load_spec(BASE)
    assert "posthoc" not in plain.model_dump(mode="json")
    with_ph = load_spec(spec_with(percents=[5]))
    assert measure_hash(with_ph) != measure_hash(plain)
    assert with_ph.posthoc is not None and with_ph.posthoc.percents == [0.0, 5.0]


@pytest.mark.parametrize(
    ("posthoc", "message"),
    [
        ({"percents": [100]}, r"posthoc\.percents.*\[0, 100\)"),
        ({"methods": ["m4"]}, r"posthoc\.methods"),
        ({"adaptive": [{"attack": "pgd"}]}, "not a minimal-norm attack"),
        ({"transferred": [{"attack": "nope"}]}, "unknown attack 'nope'"),
        ({"corruptions": {"severities": [6]}}, "severities are among"),
        ({"corruptions": {"types": ["smog"]}}, "unknown corruption .smog."),
        ({"runs": "some"}, r"posthoc\.runs"),
    ],
)
def test_bad_posthoc_sections_name_the_field(posthoc: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyError, match=message):
        load_spec(spec_with(**posthoc))


def test_the_sweep_runs_on_the_standard_run_and_is_stored(tmp_path: Path) -> None:
    spec = load_spec(
        spec_with(
            percents=[5, 30],
            n=60,
            train_n=200,
            transferred=[{"attack": "fgsm", "eps": [0, 0.1]}],
        )
    )
    run_study(spec, tmp_path, device="cpu", progress=False, echo=None)
    study = load_study(tmp_path)
    table = study.table()
    std = table.index[table["eps"] == 0][0]
    adv = table.index[table["eps"] > 0][0]
    assert study.array(adv, "posthoc", "clean_accuracy") is None  # runs: standard
    clean = study.array(std, "posthoc", "clean_accuracy")
    assert clean is not None and clean.shape == (3, 3)
    assert np.array_equal(study.array(std, "posthoc", "percents"), [0.0, 5.0, 30.0])
    model, _ = checkpoint.load(Path(table.loc[std, "checkpoint"]))
    test = data.load("digits", "test")
    expect = float((predict(model(test.x[:60])) == test.y[:60]).double().mean())
    assert clean[:, 0] == pytest.approx(expect, abs=1e-12)
    trans = study.array(std, "posthoc", "transferred/fgsm-linf")
    assert trans is not None and trans.shape == (3, 3, 2)
    assert np.allclose(trans[:, :, 0], clean)
    robust = study.array(std, "posthoc", "robust/pgd-linf")
    assert robust is not None and robust.shape == (3, 3, 2)
    assert study.array(std, "posthoc", "challenge_points/deepfool-l2").shape == (3, 3, 60)
