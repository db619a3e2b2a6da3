"""Checkpoints: exact round trip, run directories, and refusal of unsafe or broken files."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from robustscope import checkpoint, models
from robustscope.errors import CheckpointError


def _model(seed: int = 0) -> models.Classifier:
    torch.manual_seed(seed)
    return models.create("smallcnn", 10, (1, 28, 28), mean=[0.3], std=[0.4])


def test_round_trip_is_exact(tmp_path: Path) -> None:
    m = _model()
    path = checkpoint.save(
        tmp_path / "m.safetensors",
        m,
        {"dataset": "fashion-mnist", "metrics": {"test_accuracy": 0.9}, "training": {"lr": 0.1}},
    )
    loaded, meta = checkpoint.load(path)
    original = m.state_dict()
    restored = loaded.state_dict()
    assert set(original) == set(restored)
    for k in original:
        assert torch.equal(original[k], restored[k]), k
    x = torch.rand(3, 1, 28, 28)
    m.eval()
    assert torch.equal(m(x), loaded(x))
    assert meta.model == m.spec
    assert meta.model.mean == (0.3,) and meta.model.std == (0.4,)
    assert meta.dataset == "fashion-mnist"
    assert meta.metrics == {"test_accuracy": 0.9}
    assert meta.torch_version == torch.__version__
    assert meta.robustscope_version
    assert not loaded.training


def test_run_directory_resolves_to_model_file(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / checkpoint.MODEL_FILE, _model())
    assert checkpoint.resolve(tmp_path) == tmp_path / checkpoint.MODEL_FILE
    model, _ = checkpoint.load(tmp_path)
    assert isinstance(model, models.Classifier)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="directory without"):
        checkpoint.load(empty)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.safetensors")


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_is_refused_and_never_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps(_Exploit(marker), protocol=protocol))
    with pytest.raises(CheckpointError, match="pickle") as info:
        checkpoint.load(bad)
    assert str(bad) in str(info.value)
    assert not marker.exists()


def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    pt = tmp_path / "weights.pt"
    torch.save(_model().state_dict(), pt)
    with pytest.raises(CheckpointError, match=r"\.pt/zip archive"):
        checkpoint.load(pt)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    raw = path.read_bytes()
    for cut in (4, 50, len(raw) // 2, len(raw) - 1):
        broken = tmp_path / f"cut{cut}.safetensors"
        broken.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError) as info:
            checkpoint.load(broken)
        assert str(broken) in str(info.value)


def test_plain_safetensors_without_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="without robustscope metadata"):
        checkpoint.load(path)


def test_mismatched_architecture_is_refused(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    tensors, meta = checkpoint.load_tensors(path)
    meta["model"]["kwargs"] = {}
    meta["model"]["name"] = "lenet"
    forged = tmp_path / "forged.safetensors"
    save_file(
        tensors,
        str(forged),
        metadata={"format": checkpoint.FORMAT, "robustscope": json.dumps(meta)},
    )
    with pytest.raises(CheckpointError, match="do not match the recorded architecture"):
        checkpoint.load(forged)


def test_header_length_beyond_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        checkpoint.load(path)


def test_failed_save_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = checkpoint.save(tmp_path / "m.safetensors", _model(seed=1))
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        Path(str(args[1])).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, _model(seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_model_without_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"robustscope\.models\.create"):
        checkpoint.save(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))


def test_import_state_dict_uses_weights_only(tmp_path: Path) -> None:
    source = _model(seed=3)
    pt = tmp_path / "external.pt"
    torch.save({"state_dict": source.state_dict()}, pt)
    target = _model(seed=4)
    checkpoint.import_state_dict(pt, target, key="state_dict")
    for k, v in source.state_dict().items():
        assert torch.equal(v, target.state_dict()[k])
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError, match="weights_only"):
        checkpoint.import_state_dict(evil, target)
    assert not marker.exists()


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_header_length_starting_like_a_pickle_or_zip_still_loads(
    tmp_path: Path, first_bytes: bytes
) -> None:
    """The header length's low bytes can equal pickle/zip magic (0x80; 'PK' = 0x4B50): such a
    valid checkpoint must load (this once failed at random, depending on metadata length)."""
    model = _model()
    modulus = 256 ** len(first_bytes)
    target = int.from_bytes(first_bytes, "little")

    def save(pad: int) -> Path:
        return checkpoint.save(tmp_path / "m.safetensors", model, {"extra": {"pad": "x" * pad}})

    n0 = int.from_bytes(save(0).read_bytes()[:8], "little")
    guess = (target - n0) % modulus  # each pad character adds one header byte (up to alignment)
    for pad in range(max(guess - 16, 0), guess + 16):
        path = save(pad)
        if path.read_bytes()[: len(first_bytes)] == first_bytes:
            break
    else:
        pytest.fail(f"no padding gave a header length starting with {first_bytes!r}")
    loaded, meta = checkpoint.load(path)
    assert meta.extra["pad"] == "x" * pad
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
