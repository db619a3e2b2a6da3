"""Downloading with checksum verification and atomic writes.

Network access happens only in :func:`http_get`, which tests replace to serve
local bytes (nothing in the test-suite touches the network).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from robustscope.errors import DataError

TIMEOUT_S = 60.0
USER_AGENT = "robustscope-data/0.1"


def http_get(url: str) -> bytes:
    """The body of ``url`` (HTTP(S) GET); raises DataError on any failure."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return bytes(resp.read())
    except OSError as e:  # URLError, HTTPError, timeouts, connection resets
        raise DataError(f"download of {url} failed: {e}") from e


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and a failure leaves no file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
