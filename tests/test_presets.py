"""The built-in presets: valid specs, their deviations from the papers, the papers' settings."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from robustscope.cli import app
from robustscope.studies import StudyError, load_spec, plan, preset, run_study
from robustscope.studies.plan import probe_options
from robustscope.studies.presets import PRESETS, preset_names

SMALL_TIMES = {"shi2020-small": 20, "wen2020-small": 25}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_plans_and_states_its_deviations(name: str) -> None:
    spec = preset(name)
    assert spec.name == name and spec.description and spec.reproduces and plan(spec)
    assert spec.deviations, f"{name} lists no deviation from its paper"
    assert all(isinstance(d, str) and len(d) > 20 for d in spec.deviations)
    if name.endswith("-small") or name in ("tradeoff-fmnist", "tsipras2019-datasize"):
        assert re.search(r"≤ \d+ minutes on 2 CPU cores", spec.description), name


def test_presets_json_lists_the_deviations() -> None:
    result = CliRunner().invoke(app, ["presets", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert set(listed) == set(PRESETS)
    for name, row in listed.items():
        assert row["deviations"] == preset(name).deviations and row["deviations"]


@pytest.mark.parametrize(("name", "minutes"), sorted(SMALL_TIMES.items()))
def test_small_presets_state_their_time_and_warm_up_every_adversarial_run(
    name: str, minutes: int
) -> None:
    spec = preset(name)
    assert f"≤ {minutes} minutes on 2 CPU cores" in spec.description
    for method in spec.methods:
        assert method.params.get("eps_warmup", 0) > 0, method.method
    assert any("warm-up" in d for d in spec.deviations)


def test_shi2020_small_keeps_the_capacity_axis_and_tracks_cckl() -> None:
    spec = preset("shi2020-small")
    variants = [(m.model, m.model_kwargs["variant"]) for m in spec.models]
    assert variants == [
        ("vgg_small", "linear"),
        ("vgg_small", "half_linear"),
        ("vgg_small", "normal"),
    ]
    assert {"clean", "input_fisher", "cckl"} <= set(spec.train["track"])
    assert {m.method for m in spec.methods} == {"pgd", "trades"}
    trades = next(m for m in spec.methods if m.method == "trades")
    assert trades.params["beta"] == 5.0  # 1/λ = 5
    assert {a.attack for a in spec.evaluation.attacks} == {"pgd", "cw-linf"}


def test_shi2020_full_runs_table_1_as_the_paper_states() -> None:
    spec = preset("shi2020-full")
    models = [(m.model, m.model_kwargs, m.train.get("lr")) for m in spec.models]
    assert models == [
        ("vgg13", {"variant": "linear"}, 0.01),
        ("vgg13", {"variant": "half_linear"}, 0.01),
        ("vgg13", {}, 0.01),
        ("resnet20", {}, None),
        ("resnet32", {"width": 10}, None),
    ]
    assert spec.train["weight_decay"] == 1e-4 and spec.train["milestones"] == [80, 120]
    runs = plan(spec)
    assert len(runs) == 5 * 3
    for run in runs:
        cfg = run.config
        assert cfg.lr == (0.01 if cfg.model == "vgg13" else 0.1)
        assert cfg.epochs == 160 and cfg.momentum == 0.9
        if run.method != "standard":
            assert run.eps == pytest.approx(8 / 255)
            assert cfg.method_params["step_size"] == pytest.approx(2 / 255)
            assert cfg.method_params["steps"] == 10
    for attack in spec.evaluation.attacks:
        assert attack.params == {"steps": 20, "step_size": pytest.approx(2 / 255)}
        assert attack.eps == [pytest.approx(8 / 255)]


def test_wen2020_presets_measure_the_gap_at_each_runs_own_eps() -> None:
    full = preset("wen2020-full")
    (model,) = full.models
    assert model.model == "fixup_resnet" and model.model_kwargs == {"depth": 56, "scalars": False}
    assert {m.method for m in full.methods} == {"pgd", "fgsm"}
    for name in ("wen2020-small", "wen2020-full"):
        spec = preset(name)
        probes = {p.name: p.options for p in spec.probes.run}
        assert {"spectral_complexity", "loss_variation", "layer_spectra"} <= set(probes)
        gap = probes["generalization_gap"]
        assert gap["eps"] == "train"
        for run in plan(spec):
            resolved = probe_options("generalization_gap", gap, run)
            assert resolved["eps"] == run.eps and resolved["norm"] == "linf"


def test_probe_options_resolve_train_eps_and_norm() -> None:
    spec = load_spec(
        {
            "name": "t",
            "dataset": "digits",
            "methods": [
                {"method": "pgd", "norm": "l2", "eps": [0, 0.5]},
                {"method": "noise", "eps": [0.1]},
            ],
        }
    )
    runs = {(r.method, r.eps): r for r in plan(spec)}
    l2 = runs[("pgd", 0.5)]
    assert probe_options("loss_variation", {"eps": "train"}, l2) == {"eps": 0.5, "norm": "l2"}
    given = {"eps": "train", "norm": "linf"}
    assert probe_options("loss_variation", given, l2)["norm"] == "linf"
    assert probe_options("loss_variation", {"eps": 0.3}, l2) == {"eps": 0.3}
    assert (
        probe_options("generalization_gap", {"eps": "train"}, runs[("standard", 0.0)])["eps"] == 0
    )
    with pytest.raises(StudyError, match="not an ε"):
        probe_options("generalization_gap", {"eps": "train"}, runs[("noise", 0.1)])


def test_a_model_entrys_train_options_apply_to_its_runs_only() -> None:
    raw: dict[str, Any] = preset("smoke").model_dump(mode="json")
    before = {r.run_id for r in plan(load_spec(raw))}
    second = {**raw["models"][0], "label": "slow", "train": {"lr": 0.01}}
    raw["models"] = [raw["models"][0], second]
    runs = plan(load_spec(raw))
    assert {r.run_id for r in runs if r.model == "mlp32"} == before  # ids unchanged
    assert {r.config.lr for r in runs if r.model == "slow"} == {0.01}
    assert {r.config.lr for r in runs if r.model == "mlp32"} == {0.05}
    raw["models"][1]["train"] = {"model": "cnn"}
    with pytest.raises(StudyError, match=r"models\.1\.train"):
        load_spec(raw)


def test_study_stores_the_gap_at_each_runs_eps_and_the_new_probes(tmp_path: Path) -> None:
    raw: dict[str, Any] = preset("smoke").model_dump(mode="json")
    raw["methods"] = [{"method": "fgsm", "eps": [0.0, 0.1]}]
    raw["evaluation"] = {"n": 50, "checks": False, "attacks": [{"attack": "pgd", "eps": [0.1]}]}
    raw["train"] = {**raw["train"], "track": ["cckl", "spectral_complexity"], "track_n": 40}
    raw["probes"] = {
        "n": 60,
        "train_n": 60,
        "run": [
            {"name": "generalization_gap", "options": {"attack": "pgd", "eps": "train"}},
            {"name": "loss_variation", "options": {"eps": 0.1, "steps": 3}},
            {"name": "spectral_complexity"},
        ],
    }
    out = tmp_path / "s"
    summary = run_study(load_spec(raw), out, device="cpu", progress=False, echo=None)
    assert summary.done == 2 and not summary.failed
    from robustscope import studies

    with studies.open_store(out) as store:
        runs = store.runs_table().set_index("run_id")
        probes = store.probes_table()
        history = store.history_table()
    for run_id, row in probes.iterrows():
        assert row["generalization_gap/eps"] == pytest.approx(runs.loc[run_id, "eps"])
        assert math.isfinite(row["generalization_gap/adv_loss_gap"])
        assert row["loss_variation/std"] >= 0 and row["spectral_complexity/log_value"] > -1e9
    assert {"track/test/cckl_value", "track/test/spectral_complexity_log_value"} <= set(
        history.columns
    )
