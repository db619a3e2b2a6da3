"""Provenance: where and with what a result was produced (:func:`collect_provenance`).

The store keeps it as key/value text per run and per study (``Store.add_provenance``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robustscope.studies.store.schema import robustscope_version, utc_now

__all__ = ["collect_provenance"]


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the robustscope sources, or (None, None)."""
    import robustscope

    src = Path(robustscope.__file__).resolve().parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of a shared tree
    run = functools.partial(
        subprocess.run, cwd=src, env=env, capture_output=True, text=True, timeout=5, check=True
    )
    try:
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        status = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (commit or None), bool(status.strip())


def collect_provenance(
    device: str | None = None, config: Mapping[str, Any] | None = None
) -> dict[str, str | None]:
    """Where and with what a result was produced — call it in the process that computed it.

    Keys: ``robustscope_version``, ``torch_version``, ``numpy_version``, ``python_version``,
    ``platform``, ``host``, ``device`` (as given), ``git_commit`` and ``git_dirty``
    (``"true"``/``"false"``: tracked files modified) of the checkout holding the robustscope
    sources (None outside git), ``created`` (UTC, ISO 8601) and, when ``config`` is given,
    ``config_hash`` (SHA-256 of ``config`` as sorted JSON).

    Example:
        >>> info = collect_provenance("cpu", {"lr": 0.1})
        >>> info["device"], len(info["config_hash"])
        ('cpu', 64)
    """
    import torch

    commit, dirty = _git_state()
    info: dict[str, str | None] = {
        "robustscope_version": robustscope_version(),
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "git_commit": commit,
        "git_dirty": None if dirty is None else str(dirty).lower(),
        "created": utc_now(),
    }
    if config is not None:
        text = json.dumps(config, sort_keys=True, default=str)
        info["config_hash"] = hashlib.sha256(text.encode()).hexdigest()
    return info
