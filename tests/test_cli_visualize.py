"""``robustscope visualize`` (issue 14 §3–§4): PNGs and the JSON of the numbers behind them
for several checkpoints side by side, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from robustscope import checkpoint, data
from robustscope.cli import app
from robustscope.training import TrainConfig, train
from robustscope.visual import paper_eps, saliency


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("visualize")
    base = {
        "dataset": "digits",
        "model": "mlp",
        "model_kwargs": {"widths": [16]},
        "epochs": 1,
        "train_subset": 200,
        "test_subset": 50,
        "device": "cpu",
    }
    quiet = {"progress": False, "log": None}
    train(TrainConfig(**base), root / "std", **quiet)
    robust = {"method": "pgd", "method_params": {"eps": 0.5, "norm": "l2", "steps": 3}}
    train(TrainConfig(**base, **robust), root / "rob", **quiet)
    return root / "std", root / "rob"


def _run(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["visualize", *args, "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for f in out["files"]:
        assert Path(f).is_file(), f
    return out


def test_saliency_side_by_side_matches_the_python_api(ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = _run([str(ckpts[0]), str(ckpts[1]), "--what", "saliency", "--out", str(tmp_path)])
    assert out["what"] == "saliency" and out["dataset"] == "digits" and out["n"] == 8
    labels = [c["label"] for c in out["checkpoints"]]
    assert labels == ["1. standard", "2. pgd ε=0.5 l2"]
    assert out["files"] == [str(tmp_path / "saliency.png"), str(tmp_path / "saliency.json")]
    assert json.loads((tmp_path / "saliency.json").read_text()) == out
    model, _ = checkpoint.load(ckpts[1])
    test = data.load("digits", "test").head(8)
    want = saliency(model, test.x, test.y).to_dict()
    got = out["models"][labels[1]]
    assert got["gradient_l2"] == pytest.approx(want["gradient_l2"])
    assert got["predicted"] == want["predicted"]
    with Image.open(tmp_path / "saliency.png") as im:
        assert im.size[0] > im.size[1] > 100  # 8 columns, 3 rows


def test_large_eps_and_interpolation(ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = [str(ckpts[0]), "--n", "3", "--steps", "5", "--out", str(tmp_path)]
    out = _run([*args, "--what", "large-eps", "--norm", "linf"])
    res = out["models"]["1. standard"]
    assert res["eps"] == paper_eps("linf", (1, 8, 8)) == 0.3 and res["norm"] == "linf"
    assert res["eps_rule"].startswith("tsipras2019 Table 3")
    assert all(d <= 0.3 + 1e-6 for d in res["distance"])
    test = data.load("digits", "test").head(3)
    assert res["targets"] == ((test.y + 1) % 10).tolist()
    out = _run([*args, "--what", "interpolation", "--points", "4", "--eps", "2", "--target", "0"])
    res = out["models"]["1. standard"]
    assert (
        res["alphas"] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0]) and res["large_eps"]["eps"] == 2.0
    )
    assert res["targets"] == [0, 0, 0] and len(res["prob_target"][0]) == 4
    assert (tmp_path / "interpolation.png").is_file()


def test_inversion_and_effective_images(ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = [str(ckpts[0]), str(ckpts[1]), "--n", "3", "--steps", "30", "--out", str(tmp_path)]
    out = _run([*args, "--what", "inversion"])
    inv = out["models"]["1. standard"]["inversion"]
    assert len(inv["mean_loss"]) == 31 and inv["mean_loss"][-1] < inv["mean_loss"][0]
    assert len(inv["psnr"]) == len(inv["ssim"]) == 3
    assert set(out["summary"]["2. pgd ε=0.5 l2"]) == {"inversion"}
    assert (tmp_path / "inversion-curves.png").is_file()
    out = _run([*args, "--what", "effective", "--train-n", "40", "--beta", "1e-6"])
    eff = out["models"]["2. pgd ε=0.5 l2"]["effective"]
    assert eff["beta"] == 1e-6 and eff["train_n"] == 40 and len(eff["shift"]) == 3
    assert all(s > 0 for s in eff["shift"])
    summary = out["summary"]["1. standard"]
    assert set(summary) == {"inversion", "effective"}
    # the same seed and steps: the plain inversion is the one --what inversion made
    assert out["models"]["1. standard"]["inversion"]["mean_loss"] == inv["mean_loss"]


def test_tsne(ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = [str(ckpts[0]), str(ckpts[1]), "--what", "tsne", "--n", "40", "--out", str(tmp_path)]
    out = _run(args)
    coords = out["coords"]
    assert list(coords) == ["1. standard", "2. pgd ε=0.5 l2"]
    assert len(coords["1. standard"]) == 40 and len(coords["1. standard"][0]) == 2
    assert out["labels"] == data.load("digits", "test").head(40).y.tolist()
    assert _run(args)["coords"] == coords  # the same seed, the same picture


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--what", "gradients"], "choose one of: saliency"),
        (["--n", "0"], "--n"),
        (["--what", "large-eps", "--norm", "l1"], "norm"),
        (["--what", "large-eps", "--eps", "-1"], "--eps"),
        (["--what", "large-eps", "--target", "12"], "classes 0"),
        (["--beta", "0"], "--beta"),
    ],
)
def test_bad_input_is_a_robustscope_error(ckpts, tmp_path: Path, args, message) -> None:  # type: ignore[no-untyped-def]
    base = [str(ckpts[0]), "--out", str(tmp_path), "--device", "cpu", "--steps", "1"]
    result = CliRunner().invoke(app, ["visualize", *base, *args])
    assert result.exit_code != 0
    assert message in str(result.exception), result.exception


def test_a_bad_option_is_one_line_with_status_2(ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    command = [sys.executable, "-m", "robustscope", "visualize", str(ckpts[0])]
    proc = subprocess.run(
        [*command, "--what", "pictures", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--what 'pictures'" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
