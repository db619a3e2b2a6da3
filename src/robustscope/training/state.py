"""Saving nested training state (optimizer, RNG, objective) as safetensors + JSON.

:func:`flatten` turns any nesting of dicts/lists/scalars/tensors into a dict of
named tensors plus a JSON skeleton in which each tensor is replaced by
``{"__tensor__": name}``; :func:`unflatten` inverts it exactly. This keeps the
resume state free of pickles.
"""

from __future__ import annotations

from typing import Any

import torch

_TENSOR = "__tensor__"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of ``obj``; tensors go into ``tensors`` under ``prefix.path`` keys."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        keys = list(obj)
        # JSON object keys must be strings; remember which were ints (optimizer state ids)
        return {
            "__dict__": [
                [k, type(k).__name__, flatten(obj[k], f"{prefix}.{k}", tensors)] for k in keys
            ]
        }
    if isinstance(obj, list | tuple):
        items = [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} in training state at {prefix!r}")


def unflatten(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(skel, dict):
        if _TENSOR in skel:
            return tensors[skel[_TENSOR]]
        if "__tuple__" in skel:
            return tuple(unflatten(v, tensors) for v in skel["__tuple__"])
        out: dict[Any, Any] = {}
        for k, kind, v in skel["__dict__"]:
            key: Any = int(k) if kind == "int" else k
            out[key] = unflatten(v, tensors)
        return out
    if isinstance(skel, list):
        return [unflatten(v, tensors) for v in skel]
    return skel


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU and every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
