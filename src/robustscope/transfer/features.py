"""Frozen-backbone features: ``z = model.features(adapter(x))`` for a whole dataset, in one
pass per (model, dataset), optionally cached on disk.

The cache holds one safetensors file per (weights, data, adapter): its name is the first 24
hex digits of the SHA-256 of a JSON key made of the model key (the checkpoint file's SHA-256,
:func:`file_digest`, or of the weights themselves, :func:`weights_digest`), the SHA-256 of
the inputs' bytes and their number (with a dataset's name and split, for reading: two
loads of one split with other options — a subset, another root — are other inputs) and the
adapter's :meth:`~robustscope.data.adapt.Adapter.to_dict`. The key is also stored in the
file's header and compared on reading, so a file never answers for other inputs. Files are
written atomically and read with safetensors (never a pickle).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from robustscope.checkpoint import file_sha256
from robustscope.data.adapt import Adapter
from robustscope.data.dataset import ArrayDataset
from robustscope.device import model_device
from robustscope.io import write_bytes
from robustscope.transfer.errors import TransferError

__all__ = ["extract_features", "feature_cache_key", "file_digest", "weights_digest"]

#: bump when what a cached file means changes
CACHE_FORMAT = "robustscope-features/2"


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes (:func:`robustscope.checkpoint.file_sha256`)."""
    return file_sha256(path)


def _tensor_digest(h: Any, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's state dict (names, dtypes, shapes and bytes): the cache key
    of a model that did not come from a checkpoint file."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        _tensor_digest(h, t)
    return h.hexdigest()


def _data_key(data: ArrayDataset | torch.Tensor) -> dict[str, Any]:
    x = data.x if isinstance(data, ArrayDataset) else data
    h = hashlib.sha256()
    _tensor_digest(h, x)
    key: dict[str, Any] = {"tensor_sha256": h.hexdigest(), "n": len(x)}
    if isinstance(data, ArrayDataset):
        key |= {"dataset": data.name, "split": data.split}
    return key


def feature_cache_key(
    model_key: str, data: ArrayDataset | torch.Tensor, adapter: Adapter | None
) -> str:
    """The JSON text identifying one cached feature matrix (module doc)."""
    key = {
        "format": CACHE_FORMAT,
        "model": model_key,
        **_data_key(data),
        "adapter": adapter.to_dict() if adapter is not None else None,
    }
    return json.dumps(key, sort_keys=True)


def _cache_path(cache_dir: str | Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"features-{digest}.safetensors"


def _read_cached(path: Path, key: str) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            return f.get_tensor("z")
    except Exception:  # an unreadable cache file is recomputed and overwritten
        return None


@torch.no_grad()
def _forward(
    model: nn.Module, x: torch.Tensor, adapter: Adapter | None, batch_size: int
) -> torch.Tensor:
    features = getattr(model, "features", None)
    if not callable(features):
        raise TransferError(
            f"{type(model).__name__} has no features(x) method; pass a robustscope "
            "Classifier (models.create or checkpoint.load)"
        )
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            if adapter is not None:
                xb = adapter(xb)
            out.append(features(xb).flatten(1).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        raise TransferError("extract_features: no examples; pass a non-empty dataset")
    return torch.cat(out)


def extract_features(
    model: nn.Module,
    data: ArrayDataset | torch.Tensor,
    *,
    adapter: Adapter | None = None,
    batch_size: int = 500,
    cache_dir: str | Path | None = None,
    model_key: str | None = None,
) -> torch.Tensor:
    """The representation ``model.features(adapter(x))`` of every input, ``[N, F]`` float32
    on the CPU (eval mode, no gradients, ``batch_size`` inputs per forward; the model's mode
    is restored).

    Args:
        model: a robustscope ``Classifier`` (anything with ``features(x)``).
        data: an :class:`ArrayDataset` or a tensor of inputs ``[N, ...]``.
        adapter: maps the data's shape to the model's (None: the data already fits).
        batch_size: inputs per forward pass.
        cache_dir: a folder for the on-disk cache (module doc); None computes every time.
        model_key: what identifies the weights in the cache key (e.g. the checkpoint file's
            :func:`file_digest`); default :func:`weights_digest` of ``model``.
    """
    if batch_size < 1:
        raise TransferError(f"extract_features: batch_size must be ≥ 1, got {batch_size}")
    x = data.x if isinstance(data, ArrayDataset) else data
    if cache_dir is None:
        return _forward(model, x, adapter, batch_size)
    key = feature_cache_key(model_key or weights_digest(model), data, adapter)
    path = _cache_path(cache_dir, key)
    cached = _read_cached(path, key)
    if cached is not None and len(cached) == len(x):
        return cached
    z = _forward(model, x, adapter, batch_size).contiguous()
    write_bytes(path, save_safetensors({"z": z}, metadata={"key": key}))
    return z
