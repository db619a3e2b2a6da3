"""Where datasets are looked for on disk.

Search order for a dataset ``NAME`` (first folder holding every required file wins):

1. ``root`` when the caller passes one (``root`` itself, then ``root/NAME``) — and
   nothing else, so an explicit folder is never silently replaced by another copy;
2. otherwise ``$ROBUSTSCOPE_DATA/NAME`` (when the variable is set),
   ``cache_dir()/NAME`` (``~/.cache/robustscope/NAME``, or
   ``$XDG_CACHE_HOME/robustscope/NAME``) and ``/usr/share/datasets/NAME`` (where
   Debian's ``dataset-*`` packages install).

Formats whose files sit in a folder of their own (``cifar-10-batches-py``) also
accept that folder directly under each place searched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_DATA = "ROBUSTSCOPE_DATA"
"""Environment variable naming a folder with one sub-folder per dataset."""

ENV_DOWNLOAD = "ROBUSTSCOPE_DOWNLOAD"
"""Environment variable: ``1`` lets :func:`robustscope.data.load` download missing files."""

SYSTEM_DIRS: tuple[str, ...] = ("/usr/share/datasets",)
"""System-wide dataset folders (Debian's ``dataset-fashion-mnist`` installs here)."""


def cache_dir() -> Path:
    """The per-user download cache: ``$XDG_CACHE_HOME/robustscope`` or ``~/.cache/robustscope``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "robustscope"


def system_dirs() -> list[Path]:
    """The system-wide folders searched last (see :data:`SYSTEM_DIRS`)."""
    return [Path(d) for d in SYSTEM_DIRS]


def download_enabled(download: bool | None = None) -> bool:
    """True when ``download`` is True or, when it is None/False, ``$ROBUSTSCOPE_DOWNLOAD`` is 1."""
    if download:
        return True
    return os.environ.get(ENV_DOWNLOAD, "").strip().lower() in ("1", "true", "yes", "on")


def default_bases() -> list[Path]:
    """The places searched when no ``root`` is given, in order."""
    bases: list[Path] = []
    env = os.environ.get(ENV_DATA)
    if env:
        bases.append(Path(env).expanduser())
    bases.append(cache_dir())
    bases.extend(system_dirs())
    return bases


def candidate_dirs(name: str, root: str | Path | None, inner: Sequence[str] = ()) -> list[Path]:
    """Every folder that may hold dataset ``name``, in search order.

    Args:
        name: the registry name, used as the sub-folder name.
        root: the caller's explicit folder, or None for the default places.
        inner: names of format-specific sub-folders (e.g. ``"cifar-10-batches-py"``)
            that may sit inside each place.
    """
    out: list[Path] = []
    if root is not None:
        r = Path(root).expanduser()
        for base in (r, r / name):
            out.extend(base / i for i in inner)
            out.append(base)
    else:
        for base in default_bases():
            out.extend(base / name / i for i in inner)
            out.append(base / name)
            out.extend(base / i for i in inner)
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


@dataclass(frozen=True)
class Located:
    """Result of a search: the folder found (or None) and one line per folder tried."""

    path: Path | None
    tried: tuple[str, ...]

    def status(self) -> tuple[bool, str]:
        """``(present, location)`` for the dataset listing: the folder found, or where it
        was looked for."""
        if self.path is not None:
            return True, str(self.path)
        return False, "not found in " + "; ".join(self.tried)

    def not_found(self, name: str, how_to_get: str) -> str:
        """The error message of dataset ``name`` not found: every folder tried, then
        ``how_to_get``."""
        searched = "\n".join(f"  - {t}" for t in self.tried)
        return f"dataset {name!r} not found. Searched:\n{searched}\n{how_to_get}"


def locate(
    candidates: Sequence[Path],
    required: Callable[[Path], list[str]],
) -> Located:
    """The first candidate folder for which ``required(folder)`` reports nothing missing.

    ``required(folder)`` returns the names of the files missing in ``folder``.
    """
    tried: list[str] = []
    for d in candidates:
        if not d.is_dir():
            tried.append(f"{d} (no such folder)")
            continue
        missing = required(d)
        if not missing:
            return Located(d, tuple(tried))
        tried.append(f"{d} (missing {', '.join(missing)})")
    return Located(None, tuple(tried))
