"""The idx reader, the folder search, the missing-data message and the verified download."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from robustscope import data
from robustscope.data import download, idx, paths
from robustscope.errors import DataError

FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh HOME, no data/download variables, and a network that fails the test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_CACHE_HOME", paths.ENV_DATA, paths.ENV_DOWNLOAD):
        monkeypatch.delenv(var, raising=False)

    def no_network(url: str) -> bytes:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(download, "http_get", no_network)


@pytest.fixture
def no_system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the system-wide folders at an empty folder."""
    empty = tmp_path / "system"
    empty.mkdir()
    monkeypatch.setattr(paths, "SYSTEM_DIRS", (str(empty),))
    return empty


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """Serialize a uint8 array as an idx file (optionally with a forced magic number)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write(path: Path, content: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return path


def make_idx_set(folder: Path, n_train: int, n_test: int = 2, gz: bool = True, seed: int = 0):
    """Write the four files of a tiny idx dataset; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img_name, lab_name = idx.SPLIT_FILES[split]
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        write(folder / img_name, idx_bytes(x), gz)
        write(folder / lab_name, idx_bytes(y), gz)
        arrays[split] = (x, y)
    return arrays


# --------------------------------------------------------------------------- reader


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = make_idx_set(tmp_path / "fashion-mnist", n_train=5, n_test=3, gz=gz)
    for split in ("train", "test"):
        ds = data.load("fashion-mnist", split, root=tmp_path)
        x, y = arrays[split]
        assert ds.x.shape == (len(x), 1, 28, 28)
        assert ds.x.dtype.is_floating_point and str(ds.x.dtype) == "torch.float32"
        assert str(ds.y.dtype) == "torch.int64"
        np.testing.assert_array_equal((ds.x[:, 0].numpy() * 255).round().astype(np.uint8), x)
        np.testing.assert_array_equal(ds.y.numpy(), y)
        assert ds.split == split and ds.name == "fashion-mnist"
        assert ds.classes == idx.FASHION_MNIST_CLASSES


def test_parse_idx_generic_dtypes() -> None:
    arr = np.arange(12, dtype=">i4").reshape(3, 4)
    blob = struct.pack(">I", 0x0C02) + struct.pack(">2I", 3, 4) + arr.tobytes()
    out = idx.parse_idx(blob, "mem")
    np.testing.assert_array_equal(out, np.arange(12).reshape(3, 4))
    assert out.dtype.isnative


def test_uncompressed_preferred_over_gz(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    make_idx_set(folder, n_train=4, gz=True, seed=1)
    raw = make_idx_set(folder, n_train=3, gz=False, seed=2)
    ds = data.load("mnist", root=folder)
    np.testing.assert_array_equal(ds.y.numpy(), raw["train"][1])


def _bad_file_case(tmp_path: Path, case: str, gz: bool) -> tuple[Path, str]:
    """Write a valid set, then spoil one file; return the spoiled path and a message fragment."""
    folder = tmp_path / "mnist"
    make_idx_set(folder, n_train=4, gz=gz)
    ext = ".gz" if gz else ""
    images = folder / f"train-images-idx3-ubyte{ext}"
    labels = folder / f"train-labels-idx1-ubyte{ext}"
    x = np.zeros((4, 28, 28), np.uint8)
    if case == "magic":
        images.unlink()
        write(folder / "train-images-idx3-ubyte", idx_bytes(x, magic=0x0801), gz)
        return images, "magic"
    if case == "magic-garbage":
        labels.unlink()
        write(folder / "train-labels-idx1-ubyte", b"\x12\x34\x56\x78" + bytes(8), gz)
        return labels, "magic"
    if case == "truncated":
        images.unlink()
        write(folder / "train-images-idx3-ubyte", idx_bytes(x)[:-10], gz)
        return images, "truncated"
    if case == "trailing":
        images.unlink()
        write(folder / "train-images-idx3-ubyte", idx_bytes(x) + b"\0", gz)
        return images, "trailing"
    if case == "count":
        labels.unlink()
        write(folder / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8)), gz)
        return labels, "count mismatch"
    if case == "label-range":
        labels.unlink()
        write(folder / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 10, 2], np.uint8)), gz)
        return labels, "out of range"
    if case == "image-size":
        images.unlink()
        write(folder / "train-images-idx3-ubyte", idx_bytes(np.zeros((4, 27, 28), np.uint8)), gz)
        return images, "27x28"
    if case == "short-header":
        images.unlink()
        write(folder / "train-images-idx3-ubyte", idx_bytes(x)[:9], gz)
        return images, "header"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "magic",
        "magic-garbage",
        "truncated",
        "trailing",
        "count",
        "label-range",
        "image-size",
        "short-header",
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_idx_names_the_file(tmp_path: Path, case: str, gz: bool) -> None:
    bad, fragment = _bad_file_case(tmp_path, case, gz)
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", root=tmp_path)
    assert bad.name in str(err.value)
    assert fragment in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    make_idx_set(folder, n_train=50, gz=True)
    images = folder / "train-images-idx3-ubyte.gz"
    blob = images.read_bytes()
    images.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*gzip"):
        data.load("mnist", root=folder)


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    make_idx_set(folder, n_train=3, gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        data.load("mnist", "test", root=folder)


def test_rewritten_file_is_reread(tmp_path: Path) -> None:
    """The in-process cache is keyed by mtime and size, so a changed file is not stale."""
    folder = tmp_path / "mnist"
    make_idx_set(folder, n_train=3, gz=False, seed=1)
    assert len(data.load("mnist", root=folder)) == 3
    make_idx_set(folder, n_train=7, gz=False, seed=2)
    assert len(data.load("mnist", root=folder)) == 7


def test_loaded_tensors_are_independent(tmp_path: Path) -> None:
    make_idx_set(tmp_path / "mnist", n_train=3)
    a = data.load("mnist", root=tmp_path)
    a.x.zero_()
    b = data.load("mnist", root=tmp_path)
    assert float(b.x.sum()) > 0


# --------------------------------------------------------------------------- search order


def test_search_order_root_env_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system: Path
) -> None:
    root, env, home = tmp_path / "root", tmp_path / "env", tmp_path / "home"
    make_idx_set(root, n_train=2)  # files directly in root
    make_idx_set(env / "mnist", n_train=3)
    make_idx_set(home / ".cache" / "robustscope" / "mnist", n_train=4)
    make_idx_set(no_system / "mnist", n_train=5)
    monkeypatch.setenv(paths.ENV_DATA, str(env))

    assert paths.cache_dir() == home / ".cache" / "robustscope"
    assert len(data.load("mnist", root=root)) == 2
    assert len(data.load("mnist")) == 3
    monkeypatch.delenv(paths.ENV_DATA)
    assert len(data.load("mnist")) == 4
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    ds = data.load("mnist")
    assert len(ds) == 5
    assert ds.source == str(no_system / "mnist")


def test_root_with_name_subfolder(tmp_path: Path) -> None:
    make_idx_set(tmp_path / "fashion-mnist", n_train=3)
    make_idx_set(tmp_path / "mnist", n_train=6)
    assert len(data.load("fashion-mnist", root=tmp_path)) == 3
    assert len(data.load("mnist", root=tmp_path)) == 6


def test_explicit_root_is_not_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system: Path
) -> None:
    env = tmp_path / "env"
    make_idx_set(env / "mnist", n_train=3)
    monkeypatch.setenv(paths.ENV_DATA, str(env))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not found"):
        data.load("mnist", root=tmp_path / "empty")


def test_incomplete_folder_is_skipped_and_reported(tmp_path: Path, no_system: Path) -> None:
    folder = tmp_path / "mnist"
    make_idx_set(folder, n_train=2)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        data.load("mnist", root=folder)
    assert "missing t10k-labels-idx1-ubyte" in str(err.value)


# --------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_missing_data_explains_how_to_get_it(name: str, tmp_path: Path, no_system: Path) -> None:
    with pytest.raises(DataError) as err:  # the autouse fixture fails on any download
        data.load(name)
    msg = str(err.value)
    assert f"dataset {name!r} not found" in msg
    assert str(tmp_path / "home" / ".cache" / "robustscope" / name) in msg
    assert str(no_system / name) in msg
    assert "ROBUSTSCOPE_DOWNLOAD=1" in msg
    assert f"robustscope datasets --download {name}" in msg
    assert f"$ROBUSTSCOPE_DATA/{name}" in msg
    assert "train-images-idx3-ubyte" in msg
    assert ("apt-get install dataset-fashion-mnist" in msg) == (name == "fashion-mnist")
    assert not (tmp_path / "home" / ".cache" / "robustscope" / name).exists()


def test_available_reports_missing_and_present(tmp_path: Path, no_system: Path) -> None:
    status = {s.name: s for s in data.available()}
    assert not status["mnist"].present
    assert "not found" in status["mnist"].location
    make_idx_set(tmp_path / "home" / ".cache" / "robustscope" / "mnist", n_train=2)
    status = {s.name: s for s in data.available()}
    assert status["mnist"].present
    assert status["mnist"].location == str(tmp_path / "home" / ".cache" / "robustscope" / "mnist")


# --------------------------------------------------------------------------- download


def _fake_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tamper: str | None = None
) -> tuple[dict[str, bytes], list[str]]:
    """Serve a tiny idx set as 'mnist', with a spec whose hashes match it.

    ``tamper`` names a file whose served bytes differ from the hashed ones.
    Returns the served .gz blobs by URL and the list of requested URLs.
    """
    src = tmp_path / "served"
    make_idx_set(src, n_train=4, n_test=2, gz=True, seed=7)
    spec = idx.SPECS["mnist"]
    digests, served = {}, {}
    for base in spec.sha256:
        blob = (src / f"{base}.gz").read_bytes()
        digests[base] = hashlib.sha256(gzip.decompress(blob)).hexdigest()
        if base == tamper:
            content = bytearray(gzip.decompress(blob))
            content[-1] ^= 0xFF
            blob = gzip.compress(bytes(content))
        served[f"{spec.url_base}{base}.gz"] = blob
    monkeypatch.setitem(idx.SPECS, "mnist", dataclasses.replace(spec, sha256=digests))
    requested: list[str] = []

    def fake_get(url: str) -> bytes:
        requested.append(url)
        return served[url]

    monkeypatch.setattr(download, "http_get", fake_get)
    return served, requested


def test_fetch_verifies_and_writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    served, requested = _fake_server(monkeypatch, tmp_path)
    target = data.fetch("mnist", root=tmp_path / "dl")
    assert target == tmp_path / "dl"
    assert sorted(requested) == sorted(served)
    assert sorted(p.name for p in target.iterdir()) == sorted(Path(u).name for u in served)
    assert len(data.load("mnist", root=target)) == 4
    requested.clear()
    data.fetch("mnist", root=target)  # verified files are kept, nothing re-downloaded
    assert requested == []


def test_fetch_rejects_wrong_content(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_server(monkeypatch, tmp_path, tamper="train-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*SHA-256.*not saved"):
        data.fetch("mnist")
    cache = paths.cache_dir() / "mnist"
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_fetch_repairs_a_corrupt_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_server(monkeypatch, tmp_path)
    target = data.fetch("mnist", root=tmp_path / "dl")
    bad = target / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(b"garbage")
    data.fetch("mnist", root=target)
    assert len(data.load("mnist", "test", root=target)) == 2


def test_fetch_unknown_name() -> None:
    with pytest.raises(DataError, match="fashion-mnist, mnist"):
        data.fetch("cifar10")


def test_load_downloads_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system: Path
) -> None:
    _, requested = _fake_server(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="not found"):
        data.load("mnist")
    assert requested == []
    ds = data.load("mnist", "test", download=True)
    assert len(ds) == 2 and requested
    assert ds.source == str(paths.cache_dir() / "mnist")


def test_env_variable_enables_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system: Path
) -> None:
    _, requested = _fake_server(monkeypatch, tmp_path)
    monkeypatch.setenv(paths.ENV_DOWNLOAD, "1")
    assert len(data.load("mnist", root=tmp_path / "r")) == 4
    assert len(requested) == 4
    assert (tmp_path / "r" / "train-images-idx3-ubyte.gz").is_file()


def test_failed_download_keeps_instructions(
    monkeypatch: pytest.MonkeyPatch, no_system: Path
) -> None:
    def offline(url: str) -> bytes:
        raise DataError(f"download of {url} failed: offline")

    monkeypatch.setattr(download, "http_get", offline)
    with pytest.raises(DataError, match=r"(?s)offline.*apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist", download=True)


@pytest.mark.skipif(not FMNIST_SYSTEM.is_dir(), reason=f"{FMNIST_SYSTEM} absent")
def test_known_hashes_match_debian_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real Fashion-MNIST SHA-256 constants accept Debian's (recompressed) files."""
    spec = idx.SPECS["fashion-mnist"]
    served = {
        f"{spec.url_base}{b}.gz": (FMNIST_SYSTEM / f"{b}.gz").read_bytes() for b in spec.sha256
    }
    monkeypatch.setattr(download, "http_get", served.__getitem__)
    target = data.fetch("fashion-mnist", root=tmp_path / "fm")
    assert sorted(p.name for p in target.iterdir()) == sorted(Path(u).name for u in served)
