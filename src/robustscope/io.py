"""Small file helpers shared by checkpoints, run directories and data caches."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same
    folder, which is then fsynced and renamed over ``path``.

    A process killed at any point leaves either the old file or the new one, never
    a partial file. The file gets the permissions of a newly created file (``0o666`` less
    the umask), not the owner-only ones of a temporary file, so results can be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, payload: bytes) -> Path:
    """Atomically write ``payload`` (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(payload)

    return atomic_write(path, write)


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    return atomic_write(path, write)


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)
