"""The machine a benchmark ran on, described once for every script in benchmarks/.

``describe("numpy", "torchattacks")`` returns a dict for a report's JSON::

    cpu            CPU model (/proc/cpuinfo "model name", else lscpu "Model name",
                   else platform.processor() or platform.machine())
    cores          logical cores (os.cpu_count())
    torch_threads  torch intra-op threads at the time of the call
    load_average   1-minute load average (NaN where the OS has none)
    python         Python version
    torch          torch.__version__
    <package>      one key per named distribution: its installed version, or "not installed"
                   ("robustscope" falls back to robustscope.__version__ when not installed)
    date           UTC time of the call, ISO 8601 to the second

``summary(info)`` is the same as one line, for the scripts that report a string, and
``load_avg()`` the load average alone, for scripts that log it during a run.

The scripts run as ``python benchmarks/bench_x.py``, which puts benchmarks/ on sys.path, so they
import this module as ``machine``.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

# the keys describe() always sets; any other key but "date" is a package version
_BASE = ("cpu", "cores", "torch_threads", "load_average", "python", "torch")


def cpu_model() -> str:
    """The CPU's model name, or the architecture when the OS does not say."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:  # e.g. arm64 Linux, whose /proc/cpuinfo has no model name
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "?"


def load_avg() -> float:
    """The 1-minute load average, NaN where the OS has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def version(dist: str) -> str:
    """The installed version of distribution ``dist``, or "not installed"."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "robustscope":  # run from a source tree on PYTHONPATH
            try:
                import robustscope
            except ImportError:
                return "not installed"
            return getattr(robustscope, "__version__", "?")
        return "not installed"


def describe(*packages: str) -> dict[str, Any]:
    """The machine, Python, torch and the named distributions' versions, now."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": load_avg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for dist in packages:
        info[dist] = version(dist)
    info["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return info


def summary(info: dict[str, Any]) -> str:
    """``info`` (from describe) as one line; the date is left out."""
    parts = [
        f"{info['cpu']}",
        f"{info['cores']} logical cores",
        f"{info['torch_threads']} torch threads",
        f"python {info['python']}",
        f"torch {info['torch']}",
    ]
    parts += [f"{k} {v}" for k, v in info.items() if k not in _BASE and k != "date"]
    load = info.get("load_average", math.nan)
    parts.append(f"load average {load:.1f}" if not math.isnan(load) else "load average ?")
    return ", ".join(parts)
