"""The idx format of MNIST and Fashion-MNIST, and the two datasets stored in it.

An idx file is a big-endian header — two zero bytes, a type code (``0x08`` =
unsigned byte), the number of dimensions, then one 32-bit size per dimension —
followed by the values in row-major order. Images are ``0x00000803``
(``[N, 28, 28]`` unsigned bytes), labels ``0x00000801`` (``[N]``). Files may be
gzipped (``.gz``); the uncompressed name is preferred when both exist.

Both datasets have 60,000 train and 10,000 test examples and 10 classes. They
are searched for as described in :mod:`robustscope.data.paths` and downloaded
(from the official URLs, SHA-256 of the *decompressed* files verified) only with
``download=True`` or ``ROBUSTSCOPE_DOWNLOAD=1``; see :func:`fetch`.
"""

from __future__ import annotations

import functools
import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustscope.data import download
from robustscope.data.dataset import ArrayDataset
from robustscope.data.paths import (
    ENV_DATA,
    ENV_DOWNLOAD,
    Located,
    cache_dir,
    candidate_dirs,
    download_enabled,
    locate,
)
from robustscope.data.registry import ImageSpec, register
from robustscope.errors import DataError, unknown_name

IMAGES_MAGIC = 0x00000803
"""Magic number of an idx file of unsigned-byte 3-d arrays (images)."""
LABELS_MAGIC = 0x00000801
"""Magic number of an idx file of unsigned-byte 1-d arrays (labels)."""

_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Per split: the (images, labels) file names without the optional ``.gz``."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True, kw_only=True)
class IdxSpec(ImageSpec):
    """A dataset in idx format (28×28 grey images): where to download it and what its files
    hash to.

    ``sha256`` maps each base file name to the SHA-256 of its *decompressed*
    content (Debian recompresses the ``.gz`` files, so their own hashes differ).
    """

    input_shape: tuple[int, ...] = (1, 28, 28)
    url_base: str
    sha256: dict[str, str]
    debian_package: str | None = None


SPECS: dict[str, IdxSpec] = {
    "fashion-mnist": IdxSpec(
        name="fashion-mnist",
        classes=FASHION_MNIST_CLASSES,
        url_base="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        # Computed once from the 60,000 train images as float64 over all pixels
        # (x / 255): mean 0.28604060, population std 0.35302424.
        mean=(0.2860406,),
        std=(0.3530242,),
        description="Fashion-MNIST: 28x28 grey clothing images, 10 classes, 60k/10k (Zalando)",
        debian_package="dataset-fashion-mnist",
    ),
    "mnist": IdxSpec(
        name="mnist",
        classes=MNIST_CLASSES,
        url_base="https://ossci-datasets.s3.amazonaws.com/mnist/",
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        # The widely published train-split statistics (x / 255 over all 60,000
        # images' pixels); MNIST was not on the machine these constants were
        # written on, so they were not recomputed here.
        mean=(0.1307,),
        std=(0.3081,),
        description="MNIST: 28x28 grey handwritten digits, 10 classes, 60k/10k (LeCun et al.)",
    ),
}


# --------------------------------------------------------------------------- reading


def parse_idx(data: bytes, source: str, magic: int | None = None) -> np.ndarray:
    """Parse the bytes of an (uncompressed) idx file.

    Args:
        data: the whole file content.
        source: the file name, used in error messages.
        magic: the required magic number (e.g. :data:`IMAGES_MAGIC`), or None for any.

    Returns:
        a read-only numpy array of the header's shape, in native byte order.

    Raises:
        DataError: bad magic, short header, or a payload whose length differs
            from the product of the dimensions.
    """
    if len(data) < 4:
        raise DataError(f"{source}: {len(data)} bytes is too short for an idx header")
    found = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or code not in _IDX_DTYPES:
        raise DataError(f"{source}: not an idx file (magic number 0x{found:08x})")
    if magic is not None and found != magic:
        raise DataError(
            f"{source}: wrong idx magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels' if magic == LABELS_MAGIC else '?'})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated idx header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    payload = len(data) - header
    if payload != expected:
        raise DataError(
            f"{source}: payload is {payload} bytes but dimensions {list(dims)} need {expected} "
            f"({'truncated' if payload < expected else 'trailing bytes'}; corrupt file?)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))
        arr.flags.writeable = False
    return arr


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when its name ends in ``.gz``.

    Raises:
        DataError naming the file when it cannot be read or is a truncated/corrupt gzip.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip file ({e})") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int, magic: int | None) -> np.ndarray:
    del mtime_ns, size  # part of the cache key only
    p = Path(path)
    return parse_idx(read_bytes(p), str(p), magic)


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an idx(.gz) file into a read-only numpy array (cached by path, mtime and size)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    return _read_idx_cached(str(p), st.st_mtime_ns, st.st_size, magic)


def find_file(folder: Path, base: str) -> Path | None:
    """``folder/base`` or else ``folder/base.gz``, whichever exists first."""
    for cand in (folder / base, folder / f"{base}.gz"):
        if cand.is_file():
            return cand
    return None


def read_idx_pair(
    images: Path, labels: Path, num_classes: int, image_hw: tuple[int, int] | None = (28, 28)
) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file and a labels file.

    Returns:
        ``(images uint8 [N, H, W], labels uint8 [N])``, both read-only.

    Raises:
        DataError naming the offending file: bad magic or size, image size other
        than ``image_hw``, different counts, or a label outside ``[0, num_classes)``.
    """
    x = read_idx(images, IMAGES_MAGIC)
    y = read_idx(labels, LABELS_MAGIC)
    if image_hw is not None and tuple(x.shape[1:]) != tuple(image_hw):
        raise DataError(
            f"{images}: images are {x.shape[1]}x{x.shape[2]}, expected {image_hw[0]}x{image_hw[1]}"
        )
    if len(x) != len(y):
        raise DataError(
            f"{labels}: {len(y)} labels but {images.name} holds {len(x)} images (count mismatch)"
        )
    if len(y) and int(y.max()) >= num_classes:
        raise DataError(f"{labels}: label {int(y.max())} out of range [0, {num_classes})")
    return x, y


# --------------------------------------------------------------------------- locating


def _missing_files(folder: Path) -> list[str]:
    return [
        base for pair in SPLIT_FILES.values() for base in pair if find_file(folder, base) is None
    ]


def _locate(name: str, root: str | Path | None) -> Located:
    return locate(candidate_dirs(name, root), _missing_files)


def _how_to_get(spec: IdxSpec) -> str:
    files = ", ".join(f"{b}.gz" for b in spec.sha256)
    lines = ["To get it:"]
    if spec.debian_package:
        lines.append(
            f"  - on Debian/Ubuntu: apt-get install {spec.debian_package} "
            f"(installs into /usr/share/datasets/{spec.name})"
        )
    lines += [
        f"  - let robustscope download it (SHA-256 verified) into {cache_dir() / spec.name}: "
        f"set {ENV_DOWNLOAD}=1, pass download=True, or run "
        f"`robustscope datasets --download {spec.name}`",
        f"  - or put the four files {files} (gzipped or not) from {spec.url_base} "
        f"into ${ENV_DATA}/{spec.name}",
    ]
    return "\n".join(lines)


def _status(name: str, root: str | Path | None) -> tuple[bool, str]:
    return _locate(name, root).status()


# --------------------------------------------------------------------------- downloading


def _verified(path: Path, digest: str) -> bool:
    try:
        return download.sha256(read_bytes(path)) == digest
    except DataError:
        return False


def fetch(name: str, root: str | Path | None = None, *, force: bool = False) -> Path:
    """Download the four files of idx dataset ``name`` and return their folder.

    Files go to ``root`` when given, else to ``cache_dir()/name``. Files already
    there whose decompressed SHA-256 matches are kept (unless ``force``). Each
    download is decompressed and checked against the known SHA-256 before it is
    written (through a temporary file and an atomic rename), so a wrong or
    truncated download never lands in the folder. An existing uncompressed file
    that fails the check is replaced by the verified uncompressed content.

    Raises:
        DataError: ``name`` is not downloadable, the download failed, or its
            checksum does not match.
    """
    if name not in SPECS:
        raise DataError(unknown_name("downloadable dataset", name, list(SPECS)))
    spec = SPECS[name]
    target = Path(root).expanduser() if root is not None else cache_dir() / name
    for base, digest in spec.sha256.items():
        existing = find_file(target, base)
        if existing is not None and not force and _verified(existing, digest):
            continue
        url = f"{spec.url_base}{base}.gz"
        blob = download.http_get(url)
        try:
            content = gzip.decompress(blob)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataError(f"{url}: downloaded file is not a valid gzip ({e}); not saved") from e
        got = download.sha256(content)
        if got != digest:
            raise DataError(
                f"{url}: SHA-256 of the decompressed content is {got}, expected {digest}; "
                "the file was not saved"
            )
        if existing is not None and existing.suffix != ".gz":
            download.atomic_write(existing, content)
        else:
            download.atomic_write(target / f"{base}.gz", blob)
    return target


# --------------------------------------------------------------------------- loading


def _load(name: str, split: str, root: str | Path | None, download: bool = False) -> ArrayDataset:
    spec = SPECS[name]
    loc = _locate(name, root)
    folder = loc.path
    if folder is None:
        if not download_enabled(download):
            raise DataError(loc.not_found(name, _how_to_get(spec)))
        try:
            folder = fetch(name, root)
        except DataError as e:
            raise DataError(f"{e}\n{loc.not_found(name, _how_to_get(spec))}") from e
    img_base, lab_base = SPLIT_FILES[split]
    images, labels = find_file(folder, img_base), find_file(folder, lab_base)
    if images is None or labels is None:  # removed between search and read
        raise DataError(_locate(name, root).not_found(name, _how_to_get(spec)))
    x8, y8 = read_idx_pair(images, labels, len(spec.classes))
    x = torch.from_numpy(np.divide(x8, np.float32(255.0), dtype=np.float32)).unsqueeze(1)
    y = torch.from_numpy(y8.astype(np.int64))
    return spec.info().dataset(
        split, x, y, source=str(folder), meta={"files": [str(images), str(labels)]}
    )


def _register(name: str) -> None:
    spec = SPECS[name]
    register(
        name,
        loader=functools.partial(_load, name),
        info=spec.info,
        locate=functools.partial(_status, name),
        params=("download",),
    )


for _name in SPECS:
    _register(_name)

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "SPECS",
    "SPLIT_FILES",
    "fetch",
    "find_file",
    "parse_idx",
    "read_bytes",
    "read_idx",
    "read_idx_pair",
]
