"""``robustscope corrupt`` (issue 13 §3): per-type accuracy, the baseline comparison, the
picture, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from robustscope import checkpoint, corruptions, data, models
from robustscope.cli import app


def _train(path: Path, epochs: int, seed: int) -> Path:
    torch.manual_seed(seed)
    train = data.load("mnist-5k", "train").head(2000)
    model = models.create("mlp", 10, (1, 28, 28), widths=[32], box=train.box)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(train.x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
            opt.step()
    return checkpoint.save(path, model, {"dataset": "mnist-5k"})


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corrupt")
    return _train(root / "model.safetensors", 2, 0), _train(root / "base.safetensors", 1, 1)


ARGS = ["--n", "150", "--types", "gaussian_noise,fog,contrast", "--severities", "1,5"]


def test_json_with_a_baseline_matches_the_python_api(ckpts: tuple[Path, Path]) -> None:
    model_path, base_path = ckpts
    result = CliRunner().invoke(
        app,
        [
            "corrupt",
            str(model_path),
            "--baseline",
            str(base_path),
            *ARGS,
            "--seed",
            "2",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["dataset"] == "mnist-5k" and out["n"] == 150 and out["severities"] == [1, 5]
    assert list(out["accuracy"]) == ["gaussian_noise", "fog", "contrast"]
    model, _ = checkpoint.load(model_path)
    base, _ = checkpoint.load(base_path)
    test = data.load("mnist-5k", "test").head(150)
    kw = {"names": ["gaussian_noise", "fog", "contrast"], "severities": [1, 5], "seed": 2}
    ours = corruptions.evaluate(model, test.x, test.y, **kw)
    ref = corruptions.evaluate(base, test.x, test.y, **kw)
    assert out["clean_accuracy"] == ours.clean_accuracy
    assert out["accuracy"]["fog"] == list(ours.accuracy["fog"])
    assert out["baseline"]["accuracy"]["fog"] == list(ref.accuracy["fog"])
    expected = corruptions.compare(ours, ref)
    comp = out["comparison"]
    assert comp["mce"] == pytest.approx(expected.mce)
    assert comp["rmce"] == pytest.approx(expected.rmce)
    assert comp["robustness"] == pytest.approx(expected.robustness)
    assert comp["se_method"].startswith("paired bootstrap") and comp["robustness_se"] >= 0
    assert "correct" not in out and "correct" not in out["baseline"]  # per-point: not in JSON
    assert set(out["category_accuracy"]) == {"noise", "weather", "digital"}


def test_table_output_names_the_metrics(ckpts: tuple[Path, Path]) -> None:
    model_path, base_path = ckpts
    plain = CliRunner().invoke(app, ["corrupt", str(model_path), *ARGS], env={"COLUMNS": "200"})
    assert plain.exit_code == 0, plain.output
    assert "gaussian_noise" in plain.output and "mean corrupted accuracy" in plain.output
    assert "mCE" not in plain.output
    both = CliRunner().invoke(
        app,
        ["corrupt", str(model_path), "--baseline", str(base_path), *ARGS],
        env={"COLUMNS": "200"},
    )
    assert both.exit_code == 0, both.output
    assert "relative mCE" in both.output and "RmCE" in both.output and "robustness" in both.output


def test_show_writes_a_grid(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "corrupt",
            "--show",
            "mnist-5k",
            "--out",
            str(tmp_path),
            "--n",
            "2",
            "--types",
            "fog,snow,pixelate",
        ],
    )
    assert result.exit_code == 0, result.output
    path = Path("".join(result.output.split()))  # rich wraps a long path at 80 columns
    assert path == tmp_path / "corruptions-mnist-5k.png" and path.is_file()
    with Image.open(path) as im:
        w, h = im.size
    assert w > h > 100  # 2 × 6 columns, 3 rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--show", "mnist-5k"], "needs --out"),
        (["--show", "no-such-set", "--out", "x"], "no-such-set"),
        (["--show", "mnist-5k", "--out", "x", "--types", "fog,haze"], "unknown corruption 'haze'"),
        (["--show", "mnist-5k", "--out", "x", "--severities", "0"], "1..5"),
    ],
)
def test_bad_input_is_a_robustscope_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["corrupt", *args])
    assert result.exit_code != 0
    assert message in str(result.exception)


def test_no_checkpoint_and_no_show_is_one_line_with_status_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robustscope", "corrupt"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--show DATASET --out DIR" in proc.stderr
