"""External weights (issue 16 §2): ``checkpoint.import_weights`` / ``import_state_dict`` and
``robustscope import``.

Files are written here in each common layout (``torch.save`` of a bare state dict, of
``{"state_dict": …}``, ``{"model": …}``, with DataParallel's ``module.`` prefixes, with a
normalization layer as ``normalize.mean/std`` or as ``Sequential(Normalize, net)``, plain
safetensors); each imported model must compute exactly what the source model computes. Pickles
holding arbitrary objects are refused without running them; names that do not fit are listed.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from clirun import run_main as cli
from robustscope import checkpoint, data, models
from robustscope.errors import CheckpointError
from robustscope.evaluation import evaluate_clean

MEAN, STD = [0.2, 0.3, 0.4], [0.5, 0.6, 0.7]
SHAPE = (3, 8, 8)
KW = {"width": 0.25}  # resnet20: convolutions, BatchNorm (running stats, counters), a head


def _source() -> models.Classifier:
    torch.manual_seed(0)
    model = models.create("resnet20", 10, SHAPE, mean=MEAN, std=STD, **KW)
    model.train()
    with torch.no_grad():  # running statistics that differ from a fresh model's
        model(torch.rand(16, *SHAPE))
    return model.eval()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without the lab's normalization buffers: what another codebase saves."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}


def _norm(prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}mean": torch.tensor(MEAN), f"{prefix}std": torch.tensor(STD)}


def _prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def _touch(path: Path) -> None:
    path.touch()


class _Exploit:
    """Unpickling this calls ``_touch``, creating a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.marker,))


#: layout name → (the object torch.save writes, whether it carries the normalization,
#: the layout steps the report must list)
LAYOUTS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], Any], bool, list[str]]] = {
    "bare": (lambda sd: sd, False, []),
    "state_dict": (
        lambda sd: {"state_dict": sd, "epoch": 7, "best_acc": 0.9},
        False,
        ["state dict under 'state_dict' (ignored 'epoch', 'best_acc')"],
    ),
    "model": (
        lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": []}},
        False,
        ["state dict under 'model' (ignored 'optimizer')"],
    ),
    "nested": (
        lambda sd: {"model": {"state_dict": sd}},
        False,
        ["state dict under 'model'", "state dict under 'state_dict'"],
    ),
    "dataparallel": (
        lambda sd: _prefixed("module.", sd),
        False,
        ["stripped the prefix 'module.'"],
    ),
    "ddp_in_container": (
        lambda sd: {"state_dict": _prefixed("module.", sd), "epoch": 1},
        False,
        ["state dict under 'state_dict' (ignored 'epoch')", "stripped the prefix 'module.'"],
    ),
    "normalize_keys": (
        lambda sd: {**_norm("normalize."), **sd},
        True,
        ["normalization from 'normalize.mean', 'normalize.std'"],
    ),
    "sequential_normalize_net": (
        lambda sd: {**_norm("0."), **_prefixed("1.", sd)},
        True,
        ["normalization from '0.mean', '0.std'", "stripped the prefix '1.'"],
    ),
    "ddp_sequential_mu_sigma": (
        lambda sd: _prefixed(
            "module.",
            {"0.mu": torch.tensor(MEAN), "0.sigma": torch.tensor(STD), **_prefixed("1.", sd)},
        ),
        True,
        ["normalization from 'module.0.mu', 'module.0.sigma'", "stripped the prefix 'module.1.'"],
    ),
    "compiled": (
        lambda sd: _prefixed("_orig_mod.", sd),
        False,
        ["stripped the prefix '_orig_mod.'"],
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_imports_to_the_same_function(tmp_path: Path, layout: str) -> None:
    source = _source()
    build, has_norm, steps = LAYOUTS[layout]
    path = tmp_path / f"{layout}.pt"
    torch.save(build(_weights(source)), path)
    given = {} if has_norm else {"mean": MEAN, "std": STD}
    model, report = checkpoint.import_weights(path, "resnet20", 10, SHAPE, **given, **KW)
    x = torch.rand(5, *SHAPE)
    assert torch.equal(model.eval()(x), source(x))
    assert model.spec == source.spec
    assert list(report.layout) == steps
    assert report.normalization == ("file" if has_norm else "given")
    assert report.missing == report.unexpected == report.kept == ()
    # the saved checkpoint loads like any other and computes the same
    out = checkpoint.save(tmp_path / "ck.safetensors", model, {"extra": {"r": report.to_dict()}})
    loaded, meta = checkpoint.load(out)
    assert torch.equal(loaded(x), source(x)) and meta.extra["r"]["layout"] == steps


def test_safetensors_and_lab_checkpoints_import(tmp_path: Path) -> None:
    source = _source()
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in _weights(source).items()}, str(plain))
    model, report = checkpoint.import_weights(
        plain, "resnet20", 10, SHAPE, mean=MEAN, std=STD, **KW
    )
    x = torch.rand(3, *SHAPE)
    assert torch.equal(model.eval()(x), source(x)) and report.layout == ()
    # a robustscope checkpoint is a state dict with its normalization too
    lab = checkpoint.save(tmp_path / "lab.safetensors", source)
    model, report = checkpoint.import_weights(lab, "resnet20", 10, SHAPE, **KW)
    assert torch.equal(model.eval()(x), source(x)) and report.normalization == "file"


def test_pickles_of_objects_are_refused_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    messages = []
    for name, write in (
        ("torch_zip.pt", lambda p: torch.save({"model": _Exploit(marker)}, p)),
        ("raw.pkl", lambda p: p.write_bytes(pickle.dumps({"state_dict": _Exploit(marker)}))),
    ):
        path = tmp_path / name
        write(path)
        with pytest.raises(CheckpointError) as err:
            checkpoint.import_weights(path, "resnet20", 10, SHAPE, **KW)
        messages.append(str(err.value))
        assert messages[-1].startswith(f"{path}: refused")
        assert "torch.save(model.state_dict(), 'weights.pt')" in messages[-1]
    assert f"the Python object {__name__}._touch, which needs full unpickling" in messages[0]
    assert not marker.exists()
    # a whole pickled model (torch.save(model)) is refused too, naming its class
    whole = tmp_path / "whole.pt"
    torch.save(_source(), whole)
    with pytest.raises(CheckpointError, match=r"refused: it holds the Python object .*ResNet"):
        checkpoint.import_weights(whole, "resnet20", 10, SHAPE, **KW)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not weights at all")
    with pytest.raises(CheckpointError, match=rf"{junk}: refused: torch.load\(weights_only=True\)"):
        checkpoint.import_weights(junk, "resnet20", 10, SHAPE, **KW)


def test_names_that_do_not_fit_are_listed(tmp_path: Path) -> None:
    source = _source()
    sd = _weights(source)
    lacking = tmp_path / "lacking.pt"
    torch.save(
        {k: v for k, v in sd.items() if k != "head.bias"} | {"aux.weight": torch.ones(2)}, lacking
    )
    with pytest.raises(CheckpointError) as err:
        checkpoint.import_weights(lacking, "resnet20", 10, SHAPE, **KW)
    message = str(err.value)
    assert "missing 'head.bias'" in message and "unexpected 'aux.weight'" in message
    assert "--no-strict" in message
    # not strict: the rest is loaded, the missing tensor keeps the model's initial value
    torch.manual_seed(5)
    fresh = models.create("resnet20", 10, SHAPE, **KW)
    torch.manual_seed(5)
    model, report = checkpoint.import_weights(lacking, "resnet20", 10, SHAPE, strict=False, **KW)
    assert report.missing == ("head.bias",) and report.unexpected == ("aux.weight",)
    assert torch.equal(model.head.bias, fresh.head.bias)
    assert torch.equal(model.head.weight, source.head.weight)
    # a shape mismatch is refused even when not strict
    with pytest.raises(CheckpointError, match=r"shapes differ for 'body\.0\.weight: file"):
        checkpoint.import_weights(lacking, "resnet20", 10, SHAPE, strict=False, width=0.5)
    # old files without BatchNorm counters: kept from the model
    old = tmp_path / "old.pt"
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, old)
    _, report = checkpoint.import_weights(old, "resnet20", 10, SHAPE, **KW)
    assert len(report.kept) == 21 and report.missing == ()


def test_other_names_in_the_same_order_map_by_position(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = nn.Sequential()
    theirs.add_module("flat", nn.Flatten())
    theirs.add_module("fc1", nn.Linear(12, 7))
    theirs.add_module("act", nn.ReLU())
    theirs.add_module("out", nn.Linear(7, 4))
    path = tmp_path / "theirs.pt"
    torch.save(theirs.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"no tensor name matches.*--by-order"):
        checkpoint.import_weights(path, "mlp", 4, (12,), widths=[7])
    model, report = checkpoint.import_weights(path, "mlp", 4, (12,), widths=[7], by_order=True)
    x = torch.randn(6, 12)
    assert torch.equal(model(x), theirs(x))
    assert report.layout[0].startswith("mapped 4 tensors by position (fc1.weight → body.1.weight")
    with pytest.raises(CheckpointError, match=r"tensor 0 'fc1\.weight' \(7, 12\) does not fit"):
        checkpoint.import_weights(path, "mlp", 4, (12,), widths=[8], by_order=True)


def test_containers_keys_and_normalization_conflicts(tmp_path: Path) -> None:
    source = _source()
    sd = _weights(source)
    other = {k: torch.zeros_like(v) for k, v in sd.items()}
    two = tmp_path / "two.pt"
    torch.save({"model": other, "ema": {"weights": sd}}, two)
    model, report = checkpoint.import_weights(
        two, "resnet20", 10, SHAPE, key="ema/weights", mean=MEAN, std=STD, **KW
    )
    x = torch.rand(2, *SHAPE)
    assert torch.equal(model.eval()(x), source(x)) and report.layout == (
        "state dict under 'ema/weights'",
    )
    with pytest.raises(CheckpointError, match=r"no key 'weight' in the file.*'weights'"):
        checkpoint.import_weights(two, "resnet20", 10, SHAPE, key="ema/weight", **KW)
    odd = tmp_path / "odd.pt"
    torch.save({"ema": {"weights": sd}, "step": 3}, odd)
    with pytest.raises(CheckpointError, match=r"keys 'ema', 'step'.*--key"):
        checkpoint.import_weights(odd, "resnet20", 10, SHAPE, **KW)
    normed = tmp_path / "normed.pt"
    torch.save({**_norm("0."), **_prefixed("1.", sd)}, normed)
    with pytest.raises(
        CheckpointError, match=r"0\.mean, 0\.std: mean \[0\.2, 0\.3, 0\.4\].*drop --mean"
    ):
        checkpoint.import_weights(normed, "resnet20", 10, SHAPE, mean=[0.5], std=[0.5], **KW)
    _, report = checkpoint.import_weights(normed, "resnet20", 10, SHAPE, mean=MEAN, std=STD, **KW)
    assert report.normalization == "file and given"
    one = tmp_path / "one_channel.pt"
    torch.save(
        {"normalize.mean": torch.tensor([0.1, 0.2]), "normalize.std": torch.ones(2), **sd}, one
    )
    with pytest.raises(CheckpointError, match=r"normalization layer \(normalize\.mean.*2 values"):
        checkpoint.import_weights(one, "resnet20", 10, SHAPE, **KW)


def test_import_state_dict_into_a_wrapped_module(tmp_path: Path) -> None:
    """The user's own module's weights, saved by DDP, into its wrapped instance: the
    wrapper's ``net.`` is added and ``module.`` stripped."""
    torch.manual_seed(0)
    theirs = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": _prefixed("module.", theirs.state_dict())}, path)
    torch.manual_seed(1)
    wrapped = models.wrap(
        nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3)), (12,), 3
    )
    report = checkpoint.import_state_dict(path, wrapped)
    assert report.layout[1:] == ("stripped the prefix 'module.'", "added the prefix 'net.'")
    x = torch.randn(4, 12)
    assert torch.equal(wrapped(x), theirs(x)) and report.normalization == "model"


# ----------------------------------------------------------------------------- the command


def test_cli_imports_then_every_command_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    source = models.create("cnn", 10, (1, 8, 8), mean=[0.3], std=[0.2], width=0.25)
    weights = tmp_path / "external.pth"
    norm = {"normalize.mean": torch.tensor([0.3]), "normalize.std": torch.tensor([0.2])}
    ddp = _prefixed("module.", {**norm, **_weights(source)})  # DDP around the whole model
    torch.save({"epoch": 3, "state_dict": ddp}, weights)
    out = tmp_path / "mine.safetensors"
    args = ["import", str(weights), "--model", "cnn", "--model-kwarg", "width=0.25"]
    code, stdout, stderr = cli(
        monkeypatch, capsys, *args, "--dataset", "digits", "--out", str(out), "--json"
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["checkpoint"] == str(out) and result["model"]["input_shape"] == [1, 8, 8]
    assert result["imported"]["normalization"] == "file"
    assert result["imported"]["layout"] == [
        "state dict under 'state_dict' (ignored 'epoch')",
        "normalization from 'module.normalize.mean', 'module.normalize.std'",
        "stripped the prefix 'module.'",
    ]
    meta = checkpoint.read_meta(out)
    assert meta.dataset == "digits" and meta.extra["imported"]["source"] == str(weights)
    code, stdout, stderr = cli(monkeypatch, capsys, "eval", str(out), "--device", "cpu", "--json")
    assert code == 0, stderr
    test = data.load("digits", "test")
    assert json.loads(stdout)["clean_accuracy"] == evaluate_clean(source, test).accuracy
    code, stdout, stderr = cli(
        monkeypatch,
        capsys,
        "attack",
        str(out),
        "--n",
        "20",
        "--steps",
        "2",
        "--eps",
        "0,0.1",
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, stderr
    assert json.loads(stdout)["robust_accuracy"]


def test_cli_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _Exploit(marker)}, evil)
    base = [
        "--model",
        "mlp",
        "--model-kwarg",
        "widths=[6]",
        "--out",
        str(tmp_path / "o.safetensors"),
    ]
    code, _, stderr = cli(monkeypatch, capsys, "import", str(evil), *base, "--dataset", "digits")
    assert code == 2 and f"{evil}: refused" in stderr and not marker.exists()
    code, _, stderr = cli(monkeypatch, capsys, "import", str(evil), *base)
    assert code == 2 and "--num-classes K and --input-shape" in stderr
    code, _, stderr = cli(
        monkeypatch, capsys, "import", str(evil), *base, "--dataset", "digits", "--num-classes", "3"
    )
    assert code == 2 and "--num-classes 3 differs from dataset 'digits'" in stderr
    torch.manual_seed(0)
    source = models.create("mlp", 10, (1, 8, 8), widths=[6])
    lacking = tmp_path / "lacking.pt"
    torch.save({k: v for k, v in _weights(source).items() if k != "head.bias"}, lacking)
    code, _, stderr = cli(monkeypatch, capsys, "import", str(lacking), *base, "--dataset", "digits")
    assert (
        code == 2 and "missing 'head.bias'" in stderr and not (tmp_path / "o.safetensors").exists()
    )
    code, stdout, stderr = cli(
        monkeypatch, capsys, "import", str(lacking), *base, "--dataset", "digits", "--no-strict"
    )
    assert (
        code == 0 and "1 missing tensor(s) kept at the model's initial values: head.bias" in stderr
    )
    assert "warning (normalization)" in stderr and "layout: a bare state dict" in stdout
