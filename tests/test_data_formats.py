"""CIFAR-10/100 pickles (and the restricted unpickler) and SVHN .mat files, on tiny generated files."""

from __future__ import annotations

import os
import pickle
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch

from robustscope import data
from robustscope.data import cifar, download, paths
from robustscope.data.safe_pickle import load_pickle
from robustscope.errors import DataError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh HOME, no data/download variables, empty system folders, no network."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_CACHE_HOME", paths.ENV_DATA, paths.ENV_DOWNLOAD):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(paths, "SYSTEM_DIRS", (str(tmp_path / "system"),))

    def no_network(url: str) -> bytes:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(download, "http_get", no_network)


# --------------------------------------------------------------------------- pickle writers


def py2_pickle(obj: Any) -> bytes:
    """Pickle ``obj`` exactly as python 2's cPickle (protocol 2) wrote the official CIFAR files.

    Python-2 ``str`` (here: ``bytes``) becomes SHORT_BINSTRING/BINSTRING, which
    python 3 reads back as ``bytes`` under ``encoding="bytes"``; numpy arrays use
    numpy 1's ``numpy.core.multiarray._reconstruct`` with a ``(1, shape, dtype,
    is_fortran, raw)`` state. Supports dict, list, tuple, bytes, int, bool,
    None and uint8 arrays.
    """
    out = bytearray(b"\x80\x02")

    def emit(o: Any) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, tuple):
            out.extend(b"(")
            for v in o:
                emit(v)
            out.extend(b"t")
        elif isinstance(o, bytes):
            if len(o) < 256:
                out.extend(b"U" + bytes([len(o)]) + o)
            else:
                out.extend(b"T" + struct.pack("<i", len(o)) + o)
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else b"J" + struct.pack("<i", o))
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit((0,))
            emit(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE, then the state tuple
            emit(1)
            emit(tuple(o.shape))
            out.extend(b"cnumpy\ndtype\n")
            emit((b"u1", 0, 1))
            out.extend(b"R")
            emit((3, b"|", None, None, None, -1, -1, 0))
            out.extend(b"b")
            emit(False)
            emit(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def _str_keys(d: dict[bytes, Any]) -> dict[str, Any]:
    return {k.decode(): v for k, v in d.items()}


WRITERS: dict[str, Callable[[dict[bytes, Any]], bytes]] = {
    "py2-official": py2_pickle,
    "py3-bytes-keys": lambda d: pickle.dumps(d, protocol=pickle.DEFAULT_PROTOCOL),
    "py3-str-keys-proto2": lambda d: pickle.dumps(_str_keys(d), protocol=2),
    "py3-str-keys-proto5": lambda d: pickle.dumps(_str_keys(d), protocol=5),
}


def test_py2_writer_matches_the_standard_loader() -> None:
    """Our emulation of the official format loads with the documented ``encoding='bytes'``."""
    arr = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    obj = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 300], b"data": arr}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = pickle.loads(py2_pickle(obj), encoding="bytes")
    assert back[b"batch_label"] == b"testing batch 1 of 1"
    assert back[b"labels"] == [3, 300]
    np.testing.assert_array_equal(back[b"data"], arr)


def cifar_batch(n: int, rng: np.random.Generator, label_keys: dict[str, int]) -> dict[bytes, Any]:
    d: dict[bytes, Any] = {b"batch_label": b"training batch 1 of 5"}
    for key, k in label_keys.items():
        d[key.encode()] = [int(v) for v in rng.integers(0, k, n)]
    d[b"data"] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    d[b"filenames"] = [f"img_{i}.png".encode() for i in range(n)]
    return d


def write_cifar10(folder: Path, writer: str = "py2-official", n: int = 3, seed: int = 0):
    """Write a tiny cifar-10-batches-py folder; return {file name: batch dict}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for fname in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batches[fname] = cifar_batch(n, rng, {"labels": 10})
        (folder / fname).write_bytes(WRITERS[writer](batches[fname]))
    meta = {b"label_names": [c.encode() for c in cifar.CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(WRITERS[writer](meta))
    return batches


def write_cifar100(folder: Path, n: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for fname in ("train", "test"):
        batches[fname] = cifar_batch(n, rng, {"fine_labels": 100, "coarse_labels": 20})
        (folder / fname).write_bytes(py2_pickle(batches[fname]))
    return batches


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_cifar10_round_trip(tmp_path: Path, writer: str) -> None:
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", writer)
    train = data.load("cifar10", "train", root=tmp_path)
    test = data.load("cifar10", "test", root=tmp_path)
    assert train.x.shape == (15, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    rows = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    np.testing.assert_array_equal(train.y.numpy(), labels)
    # row layout: 1024 R, 1024 G, 1024 B, each row-major 32x32
    i, c, h, w = 7, 2, 5, 30
    assert train.x[i, c, h, w].item() == pytest.approx(rows[i, c * 1024 + h * 32 + w] / 255)
    np.testing.assert_array_equal((train.x.numpy() * 255).round().reshape(15, 3072), rows)
    np.testing.assert_array_equal(test.y.numpy(), batches["test_batch"][b"labels"])
    assert train.classes == cifar.CIFAR10_CLASSES
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) <= 1.0


@pytest.mark.parametrize(
    "layout",
    [
        "root/cifar-10-batches-py",
        "root",
        "root/cifar10/cifar-10-batches-py",
        "env/cifar10/cifar-10-batches-py",
        "env/cifar-10-batches-py",
        "cache/cifar10",
    ],
)
def test_cifar10_folder_layouts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout: str
) -> None:
    base, _, rest = layout.partition("/")
    if base == "root":
        folder, root = tmp_path / "r" / rest, tmp_path / "r"
    elif base == "env":
        monkeypatch.setenv(paths.ENV_DATA, str(tmp_path / "env"))
        folder, root = tmp_path / "env" / rest, None
    else:
        folder, root = paths.cache_dir() / rest, None
    write_cifar10(folder, n=2)
    ds = data.load("cifar10", "test", root=root)
    assert len(ds) == 2 and ds.source == str(folder)
    status = {s.name: s for s in data.available(root)}["cifar10"]
    assert status.present and status.location == str(folder)


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    batches = write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    fine = data.load("cifar100", "train", root=tmp_path)
    coarse = data.load("cifar100", "test", root=tmp_path, label_mode="coarse")
    assert fine.num_classes == 100 and fine.classes == cifar.CIFAR100_FINE_CLASSES
    assert coarse.num_classes == 20 and coarse.classes == cifar.CIFAR100_COARSE_CLASSES
    np.testing.assert_array_equal(fine.y.numpy(), batches["train"][b"fine_labels"])
    np.testing.assert_array_equal(coarse.y.numpy(), batches["test"][b"coarse_labels"])
    assert coarse.meta["label_mode"] == "coarse"
    assert data.info("cifar100", label_mode="coarse").num_classes == 20
    with pytest.raises(DataError, match="label_mode"):
        data.load("cifar100", root=tmp_path, label_mode="medium")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class _EvilEval:
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("__import__('os').getpid()",))


@pytest.mark.parametrize("kind", ["os.system", "eval", "nested", "class"])
def test_malicious_pickle_is_refused(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar10(folder, n=2)
    marker = tmp_path / "pwned"
    good = batches["data_batch_3"]
    payload: Any
    if kind == "os.system":
        payload = _Evil(marker)
    elif kind == "eval":
        payload = _EvilEval()
    elif kind == "nested":
        payload = {**good, b"filenames": [b"a", _Evil(marker)]}
    else:
        payload = {**good, b"extra": Path("x")}
    (folder / "data_batch_3").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError) as err:
        data.load("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "data_batch_3" in msg and "refusing to unpickle global" in msg
    if kind in ("os.system", "nested"):
        assert "system" in msg  # posix.system / nt.system
    assert not marker.exists()


def test_restricted_unpickler_allows_plain_data(tmp_path: Path) -> None:
    obj = {"a": [1, 2.5, "x", b"y", None, True], "s": {1, 2}, "f": frozenset({3}), "t": (1,)}
    obj["arr"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    for proto in (2, 4, 5):
        p = tmp_path / f"p{proto}"
        p.write_bytes(pickle.dumps(obj, protocol=proto))
        back = load_pickle(p)
        np.testing.assert_array_equal(back.pop("arr"), obj["arr"])
        assert back == {k: v for k, v in obj.items() if k != "arr"}


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    p = tmp_path / "codec"
    # _codecs.encode("x", "rot13") built by hand (protocol 2, GLOBAL + REDUCE)
    p.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match=r"codec.*rot13"):
        load_pickle(p)


@pytest.mark.parametrize(
    ("spoil", "fragment"),
    [
        (lambda d: {k: v for k, v in d.items() if k != b"data"}, "missing key 'data'"),
        (lambda d: {k: v for k, v in d.items() if k != b"labels"}, "missing key 'labels'"),
        (lambda d: {**d, b"data": d[b"data"][:, :3071]}, "3071 columns"),
        (lambda d: {**d, b"data": d[b"data"].astype(np.int16)}, "uint8"),
        (lambda d: {**d, b"labels": d[b"labels"][:-1]}, "labels for 2 rows"),
        (lambda d: {**d, b"labels": [0, 10]}, "expected [0, 10)"),
        (lambda d: {**d, b"labels": [0, -1]}, "expected [0, 10)"),
        (lambda d: [d], "expected a pickled dict"),
    ],
)
def test_malformed_cifar_names_the_file(
    tmp_path: Path, spoil: Callable[[dict[bytes, Any]], Any], fragment: str
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar10(folder, n=2)
    (folder / "test_batch").write_bytes(pickle.dumps(spoil(batches["test_batch"])))
    with pytest.raises(DataError) as err:
        data.load("cifar10", "test", root=tmp_path)
    assert "test_batch" in str(err.value)
    assert fragment in str(err.value)


def test_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, n=2)
    blob = (folder / "data_batch_5").read_bytes()
    (folder / "data_batch_5").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"data_batch_5.*(corrupt|truncated)"):
        data.load("cifar10", root=tmp_path)


def test_missing_cifar_explains(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.load("cifar100")
    msg = str(err.value)
    assert "cifar-100-python.tar.gz" in msg and "$ROBUSTSCOPE_DATA/cifar100" in msg
    assert str(paths.cache_dir() / "cifar100") in msg


# --------------------------------------------------------------------------- SVHN


def write_svhn(folder: Path, n: dict[str, int], seed: int = 0, **overrides: Any):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in n.items():
        x = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        y = rng.integers(1, 11, (count, 1)).astype(np.uint8)
        y[0, 0] = 10
        mat = {"X": x, "y": y, **overrides}
        scipy.io.savemat(folder / f"{split}_32x32.mat", mat)
        written[split] = (x, y)
    return written


def test_svhn_round_trip(tmp_path: Path) -> None:
    written = write_svhn(tmp_path / "svhn", {"train": 5, "test": 3})
    ds = data.load("svhn", "train", root=tmp_path)
    x, y = written["train"]
    assert ds.x.shape == (5, 3, 32, 32) and ds.x.dtype == torch.float32
    # X is [H, W, C, N]
    assert ds.x[4, 1, 2, 31].item() == pytest.approx(x[2, 31, 1, 4] / 255)
    np.testing.assert_array_equal((ds.x.numpy() * 255).round(), x.transpose(3, 2, 0, 1))
    assert ds.y[0].item() == 0  # label 10 means digit 0
    np.testing.assert_array_equal(ds.y.numpy(), y[:, 0] % 10)
    assert len(data.load("svhn", "test", root=tmp_path)) == 3
    with pytest.raises(DataError, match=r"extra_32x32\.mat"):
        data.load("svhn", "extra", root=tmp_path)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"X": np.zeros((32, 32, 1, 3), np.uint8)}, "[32, 32, 3, N]"),
        ({"X": np.zeros((32, 32, 3, 3), np.float64)}, "uint8"),
        ({"y": np.zeros((3, 1), np.uint8)}, "1..10"),
        ({"y": np.full((3, 1), 11, np.uint8)}, "1..10"),
        ({"y": np.ones((4, 1), np.uint8)}, "4 labels"),
    ],
)
def test_malformed_svhn_names_the_file(
    tmp_path: Path, overrides: dict[str, Any], fragment: str
) -> None:
    write_svhn(tmp_path, {"train": 3, "test": 3})
    write_svhn(tmp_path, {"train": 3}, **overrides)
    with pytest.raises(DataError) as err:
        data.load("svhn", root=tmp_path)
    assert "train_32x32.mat" in str(err.value) and fragment in str(err.value)


def test_svhn_missing_key(tmp_path: Path) -> None:
    write_svhn(tmp_path, {"train": 2, "test": 2})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"images": np.zeros((32, 32, 3, 1), np.uint8)})
    with pytest.raises(DataError, match=r"test_32x32\.mat: missing key 'X'.*images"):
        data.load("svhn", "test", root=tmp_path)


def test_svhn_not_a_mat_file(tmp_path: Path) -> None:
    write_svhn(tmp_path, {"train": 2, "test": 2})
    (tmp_path / "test_32x32.mat").write_bytes(b"nope" * 10)
    with pytest.raises(DataError, match=r"test_32x32\.mat"):
        data.load("svhn", "test", root=tmp_path)
