"""``robustscope robustify`` (issue 13 §1–2): the written checkpoint is the transform applied
and records it; the sweep's numbers match the checkpoint measured independently; every bad
input is one line with exit status 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from clirun import run_main
from robustscope import checkpoint, data, models
from robustscope.models.base import Classifier
from robustscope.models.registry import MODELS, ModelEntry
from robustscope.posthoc import apply, create, records_of
from robustscope.probes.base import ProbeData
from robustscope.training import TrainConfig, train

N = 100  # test points every command here measures


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``robustscope robustify ARGS`` as a user runs it."""
    return run_main(monkeypatch, capsys, "robustify", *args)


def strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP trained briefly on digits (3 Linear layers: body.1, body.3, head)."""
    out = tmp_path_factory.mktemp("robustify") / "run"
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        model_kwargs={"widths": [32, 16]},
        epochs=2,
        batch_size=32,
        lr=0.1,
        device="cpu",
    )
    train(cfg, out, progress=False, log=None)
    return out


def accuracy(model: nn.Module, n: int = N) -> float:
    """Clean accuracy on the first ``n`` digits test images, computed here."""
    ds = data.load("digits", "test")
    with torch.no_grad():
        return float((model(ds.x[:n]).argmax(1) == ds.y[:n]).double().mean())


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- --list-layers


def test_list_layers_marks_the_penultimate_one(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(monkeypatch, capsys, str(run), "--list-layers", "--json")
    assert code == 0, err
    found = strict(out)
    assert [(r["name"], r["in_features"], r["out_features"]) for r in found["layers"]] == [
        ("body.1", 64, 32),
        ("body.3", 32, 16),
        ("head", 16, 10),
    ]
    assert found["default"] == "body.3"
    assert [r["default"] for r in found["layers"]] == [False, True, False]
    code, out, _ = cli(monkeypatch, capsys, str(run), "--list-layers")
    assert code == 0 and re.search(r"body\.3\s*│\s*32\s*│\s*16\s*│\s*default", out), out
    assert not re.search(r"head\s*│.*default", out)


# ----------------------------------------------------------------------------- --out


def test_out_m2_is_the_transform_applied_and_records_it(
    run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "m2.safetensors"
    args = [str(run), "--method", "m2", "--percent", "70", "--out", str(target)]
    code, out, err = cli(monkeypatch, capsys, *args, "--n", str(N), "--json")
    assert code == 0, err
    found = strict(out)
    original, _ = checkpoint.load(run)
    written, meta = checkpoint.load(target)
    expected = apply(original, create("m2", percent=70))
    assert same_weights(written, expected.model)
    assert [r.to_dict() for r in records_of(meta)] == [r.to_dict() for r in expected.transforms]
    assert meta.transforms[0]["params"] == {"percent": 70.0, "layer": None}
    # what it printed: the layer, ⌊0.7·16⌋ = 11 of 16 singular values, the Frobenius norms
    (row,) = found["layers"]
    assert (row["layer"], row["dropped"], row["total"]) == ("body.3", 11, 16)
    w0, w1 = (m.body[3].weight.detach().double() for m in (original, written))
    s0, s1 = torch.linalg.svdvals(w0).tolist(), torch.linalg.svdvals(w1).tolist()
    assert s1[:5] == pytest.approx(s0[:5], rel=1e-5) and max(s1[5:]) < 1e-5 * s0[0]
    assert row["frobenius_before"] == pytest.approx(float(torch.linalg.norm(w0)), rel=1e-6)
    assert row["frobenius_after"] == pytest.approx(float(torch.linalg.norm(w1)), rel=1e-5)
    assert row["frobenius_after"] < row["frobenius_before"]
    assert found["clean_accuracy_before"] == pytest.approx(accuracy(original), abs=1e-12)
    assert found["clean_accuracy_after"] == pytest.approx(accuracy(written), abs=1e-12)
    assert found["n"] == N and found["transforms"] == ["m2"]

    # the human form says the same
    target.unlink()
    code, out, err = cli(monkeypatch, capsys, *args, "--n", str(N))
    assert code == 0, err
    assert re.search(r"body\.3\s*│\s*11 of 16 singular values", out), out
    before, after = found["clean_accuracy_before"], found["clean_accuracy_after"]
    assert f"clean accuracy on digits test (n={N}): {before:.4f} → {after:.4f}" in out
    squeezed = "".join(out.split())  # rich folds a long path across lines
    assert "".join(f"wrote {target} (transforms: m2)".split()) in squeezed


def test_out_m1_counts_activity_on_train_n_and_chains(
    run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    m1 = tmp_path / "m1.safetensors"
    args = ["--method", "m1", "--percent", "40", "--layer", "body.1", "--train-n", "300"]
    code, out, err = cli(monkeypatch, capsys, str(run), *args, "--out", str(m1), "--json")
    assert code == 0, err
    tr = data.load("digits", "train")
    original, _ = checkpoint.load(run)
    probe = ProbeData(test=(tr.x[:1], tr.y[:1]), train=(tr.x[:300], tr.y[:300]))
    expected = apply(original, create("m1", percent=40, layer="body.1"), data=probe)
    written, meta = checkpoint.load(m1)
    assert same_weights(written, expected.model)
    details = meta.transforms[0]["details"]
    assert details["counted_on"] == 300 and details["dropped"]["body.1"] > 0
    assert strict(out)["layers"][0]["dropped"] == details["dropped"]["body.1"]
    # robustifying the robustified checkpoint extends the chain
    clipped = tmp_path / "m1-clip.safetensors"
    args = ["--method", "spectral_clip", "--bound", "0.5", "--out", str(clipped)]
    code, out, err = cli(monkeypatch, capsys, str(m1), *args, "--json")
    assert code == 0, err
    model2, meta2 = checkpoint.load(clipped)
    assert [t["name"] for t in meta2.transforms] == ["m1", "spectral_clip"]
    again = apply(written, create("spectral_clip", bound=0.5), previous=records_of(meta))
    assert same_weights(model2, again.model)
    assert all(r["spectral_norm_after"] <= 0.5 for r in strict(out)["layers"])


# ----------------------------------------------------------------------------- --sweep


def test_sweep_json_matches_independent_measurements(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--sweep", "--method", "m1,m2", "--percent", "60,0", "--train-n", "400"]
    args += ["--transfer", "fgsm", "--eps", "0.1,0", "--adaptive", "deepfool", "--noise", "0.1"]
    code, out, err = cli(monkeypatch, capsys, str(run), *args, "--n", str(N), "--json")
    assert code == 0, err
    found = strict(out)
    assert found["methods"] == ["m1", "m2"] and found["percents"] == [0.0, 60.0]
    assert found["n"] == N and found["train_n"] == 400 and found["layers"] == ["body.3"]
    model, _ = checkpoint.load(run)
    clean = found["clean_accuracy"]
    assert clean[0][0] == clean[1][0] == pytest.approx(accuracy(model), abs=1e-12)
    tr = data.load("digits", "train")
    probe = ProbeData(test=(tr.x[:1], tr.y[:1]), train=(tr.x[:400], tr.y[:400]))
    dropped = apply(model, create("m1", percent=60), data=probe).model
    assert clean[0][1] == pytest.approx(accuracy(dropped), abs=1e-12)
    member = apply(model, create("m2", percent=60)).model
    assert clean[1][1] == pytest.approx(accuracy(member), abs=1e-12)
    assert found["dropped"][1] == [0, 9]  # ⌊0.6·16⌋ singular values
    fgsm = found["transferred"]["fgsm"]
    assert fgsm["eps"] == [0.0, 0.1] and fgsm["norm"] == "linf"
    x, y = data.load("digits", "test").x[:N], data.load("digits", "test").y[:N]
    x_adv = models_attack(model, x, y, 0.1)
    with torch.no_grad():
        transferred = float((member(x_adv).argmax(1) == y).double().mean())
    assert fgsm["accuracy"][1][1] == pytest.approx([clean[1][1], transferred], abs=1e-12)
    ch = found["challenge"]["deepfool"]
    assert ch["norm"] == "l2" and ch["score"][0][0] > 0
    for i in range(2):
        assert ch["change"][i] == pytest.approx([0.0, ch["score"][i][1] - ch["score"][i][0]])
    assert found["noise"]["bound"] == 0.1 and len(found["noise"]["score"]) == 2
    assert found["axes"]["transferred.*.accuracy"] == ["method", "percent", "eps"]


def models_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM at ε on the original, here by hand: x + ε·sign(∇ loss), clipped to [0, 1]."""
    x = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def test_sweep_tables(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--sweep", "--method", "m2", "--percent", "50", "--transfer", "fgsm"]
    code, out, err = cli(monkeypatch, capsys, str(run), *args, "--n", "50")
    assert code == 0, err
    assert re.search(r"method\s+p = 0\s+p = 50", out), out
    assert re.search(r"m2\s+[01]\.\d{4} \(0\)\s+[01]\.\d{4} \(8\)", out), out
    assert re.search(r"ε = 0\s+ε = 0\.05\s+ε = 0\.1\s+ε = 0\.2", out)  # the default grid
    assert re.search(r"m2\s+50\s+[01]\.\d{4}", out)


# ----------------------------------------------------------------------------- bad input


class ConvOnly(Classifier):
    """A classifier without any nn.Linear layer (an 8×8 convolution gives the logits)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        c, h, w = input_shape
        self.body = nn.Conv2d(c, num_classes, kernel_size=(h, w))
        self.head = nn.Identity()


@pytest.fixture
def conv_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    entry = ModelEntry("conv-only-test", ConvOnly, "test only", (1, 8, 8))
    monkeypatch.setitem(MODELS._entries, entry.name, entry)  # removed after the test
    path = tmp_path / "conv.safetensors"
    checkpoint.save(path, models.create(entry.name, 10, (1, 8, 8)), {"dataset": "digits"})
    return path


OUT = ["--out", "OUT.safetensors"]
BAD = [
    (["--method", "m2", "--percent", "100", *OUT], ["percent must be in [0, 100)", "got 100"]),
    (["--method", "m1", "--percent", "-1", *OUT], ["percent must be finite and ≥ 0"]),
    (["--sweep", "--percent", "0,100"], ["percent must be in [0, 100)"]),
    (
        ["--method", "m2", "--percent", "5", "--layer", "fc9", *OUT],
        ["layer 'fc9' is not a fully connected layer", "valid layers: body.1, body.3, head"],
    ),
    (["--sweep", "--layer", "fc9"], ["layer 'fc9'", "valid layers: body.1, body.3, head"]),
    (["--method", "m1,m2", "--percent", "5", *OUT], ["--out writes one transform", "m1,m2"]),
    (["--method", "m2", "--percent", "1,5", *OUT], ["--out writes one transform", "1,5"]),
    (["--method", "m2", "--percent", "5", "--sweep", *OUT], ["--out and --sweep"]),
    (["--method", "m2", "--percent", "5"], ["pass --out NEW.safetensors", "--sweep"]),
    (["--method", "m4", "--percent", "5", *OUT], ["unknown method 'm4'", "m1, m2, m3"]),
    (["--sweep", "--method", "m1,m4"], ["unknown method 'm4'", "m1, m2, m3"]),
    (["--sweep", "--method", "spectral_clip"], ["spectral_clip has no p grid"]),
    (["--method", "spectral_clip", *OUT], ["spectral_clip needs --bound"]),
    (["--method", "m2", *OUT], ["--method m2 needs --percent"]),
    (["--method", "m2", "--percent", "5", "--transfer", "fgsm", *OUT], ["--transfer"]),
    (["--sweep", "--transfer", "fgsm", "--eps", "0,x"], ["--eps must be a number"]),
    (["--sweep", "--transfer", "pgx"], ["unknown attack 'pgx'", "fgsm"]),
    (["--sweep", "--adaptive", "fgsm", "--n", "5"], ["challenge score needs a minimal-norm"]),
]


@pytest.mark.parametrize(("args", "messages"), BAD)
def test_bad_input_is_one_line_with_status_2(
    args: list[str],
    messages: list[str],
    run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "OUT.safetensors"
    args = [str(target) if a == "OUT.safetensors" else a for a in args]
    code, out, err = cli(monkeypatch, capsys, str(run), *args)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for message in messages:
        assert message in err, (message, err)
    assert "Traceback" not in err and not out and not target.exists()


def test_a_model_without_linear_layers_is_refused(
    conv_only: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "out.safetensors"
    for args in (
        ["--method", "m2", "--percent", "5", "--out", str(target)],
        ["--sweep", "--method", "m2"],
        ["--list-layers"],
    ):
        code, out, err = cli(monkeypatch, capsys, str(conv_only), *args)
        assert code == 2, (args, out, err)
        assert "the model has no fully connected (nn.Linear) layer" in err, err
        assert err.count("\n") == 1 and not target.exists()
    # spectral clipping needs no Linear layer: the convolution is clipped
    args = ["--method", "spectral_clip", "--bound", "0.1", "--out", str(target), "--json"]
    code, out, err = cli(monkeypatch, capsys, str(conv_only), *args, "--n", "20")
    assert code == 0, err
    assert [r["layer"] for r in strict(out)["layers"]] == ["body"]
