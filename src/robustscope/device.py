"""Device selection: ``auto`` picks CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from robustscope.errors import RobustscopeError


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a stateless module."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``device`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps').

    'auto' means CUDA when available, else CPU. Asking for CUDA on a machine
    without it is an error that says so rather than a silent fallback.
    """
    if isinstance(device, torch.device):
        return device
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RobustscopeError(
            f"device {device!r} requested but CUDA is not available here; use --device cpu or auto"
        )
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise RobustscopeError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
