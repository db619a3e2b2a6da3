"""Safe checkpoints: safetensors weights with JSON metadata, never a pickle.

A checkpoint is one ``.safetensors`` file. Its header's ``__metadata__`` holds
``{"format": "robustscope-checkpoint/1", "robustscope": "<JSON>"}`` where the JSON
records the model's :class:`~robustscope.models.ModelSpec` (architecture, kwargs,
input shape, classes, normalization), the dataset, the training configuration,
metrics, the transforms applied after training, and the robustscope and torch
versions. :func:`load` rebuilds the model from that metadata and loads the
weights strictly; it never unpickles anything, so no code in a file can run.

A run directory (``robustscope train --out DIR``) holds ``model.safetensors``
(the latest completed epoch; the final model once training has finished),
``train_state.safetensors`` (optimizer and RNG state for ``--resume``),
``config.json`` and ``history.json``. Wherever a checkpoint is expected, a run
directory may be given instead.
"""

from __future__ import annotations

import json
import platform
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import robustscope
from robustscope.errors import CheckpointError
from robustscope.io import atomic_write
from robustscope.models import Classifier, ModelSpec, from_spec

FORMAT = "robustscope-checkpoint/1"
MODEL_FILE = "model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024

_PICKLE_HINT = (
    "robustscope never unpickles files (a pickle can run arbitrary code). "
    "Convert trusted PyTorch weights with robustscope.checkpoint.import_state_dict "
    "(uses torch.load(weights_only=True)) and save them with robustscope.checkpoint.save"
)


@dataclass
class CheckpointMeta:
    """The metadata stored beside the weights.

    Attributes:
        model: the :class:`ModelSpec` that rebuilds the architecture.
        dataset: dataset name the model was trained on ('' if unknown).
        training: the training configuration (free-form JSON object).
        metrics: evaluation results at save time (e.g. ``test_accuracy``).
        transforms: post-hoc transforms applied after training, in order.
        extra: anything else (JSON object).
        robustscope_version, torch_version, python_version: versions at save time.
    """

    model: ModelSpec
    dataset: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    transforms: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    robustscope_version: str = robustscope.__version__
    torch_version: str = torch.__version__
    python_version: str = platform.python_version()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "dataset": self.dataset,
            "training": self.training,
            "metrics": self.metrics,
            "transforms": self.transforms,
            "extra": self.extra,
            "robustscope_version": self.robustscope_version,
            "torch_version": self.torch_version,
            "python_version": self.python_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "") -> CheckpointMeta:
        try:
            spec = ModelSpec.from_dict(d["model"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: metadata field 'model' is missing or malformed ({exc!r}); "
                "the file was not written by robustscope.checkpoint.save"
            ) from None
        return cls(
            model=spec,
            dataset=str(d.get("dataset", "")),
            training=dict(d.get("training") or {}),
            metrics=dict(d.get("metrics") or {}),
            transforms=list(d.get("transforms") or []),
            extra=dict(d.get("extra") or {}),
            robustscope_version=str(d.get("robustscope_version", "")),
            torch_version=str(d.get("torch_version", "")),
            python_version=str(d.get("python_version", "")),
        )


def resolve(path: str | Path) -> Path:
    """The checkpoint file for ``path``: the file itself, or a run directory's model file."""
    p = Path(path)
    if p.is_dir():
        candidate = p / MODEL_FILE
        if not candidate.is_file():
            raise CheckpointError(
                f"{p} is a directory without {MODEL_FILE}; pass a checkpoint file or a run "
                "directory written by 'robustscope train --out'"
            )
        return candidate
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or run directory")
    return p


def save(
    path: str | Path,
    model: torch.nn.Module,
    meta: CheckpointMeta | dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` to ``path`` (a ``.safetensors`` file) atomically, with metadata.

    ``model`` must come from :func:`robustscope.models.create` (it carries ``.spec``).
    ``meta`` may be a :class:`CheckpointMeta` or a dict of its fields other than ``model``.
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise CheckpointError(
            "the model has no .spec; build it with robustscope.models.create so that its "
            "architecture can be recorded and rebuilt"
        )
    if meta is None:
        meta = CheckpointMeta(model=spec)
    elif isinstance(meta, dict):
        meta = CheckpointMeta(model=spec, **meta)
    else:
        meta.model = spec
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "robustscope": json.dumps(meta.to_dict(), default=str)}
    path = Path(path)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically save arbitrary named tensors plus a JSON object (e.g. training state)."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "robustscope": json.dumps(meta, default=str)}
    return atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=header))


def _check_header(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file, before parsing it.

    A safetensors file starts with its header length (u64, little endian) followed by a JSON
    object; that length's first byte may be anything (0x80 or "PK" included), so the file is
    judged by that structure first and only a file that fails it is named as a pickle or a
    zip archive by its magic bytes.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if n <= MAX_HEADER_BYTES and n + 8 <= size and head[8:9] == b"{":
            return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        kind = "a PyTorch .pt/zip archive" if head[:2] == b"PK" else "a Python pickle"
        raise CheckpointError(f"{path} is {kind}, not a safetensors checkpoint. {_PICKLE_HINT}")
    if len(head) < 9:
        raise CheckpointError(f"{path} is truncated ({size} bytes): not a safetensors checkpoint")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES or n + 8 > size:
        raise CheckpointError(
            f"{path} is not a valid safetensors file (header length {n} for a {size}-byte file): "
            "truncated or not a checkpoint"
        )
    raise CheckpointError(f"{path} is not a valid safetensors file (header is not JSON)")


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read every tensor and the robustscope JSON metadata of a safetensors file, safely."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    _check_header(p)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p} cannot be read as safetensors: {exc}") from None
    if header.get("format") != FORMAT or "robustscope" not in header:
        raise CheckpointError(
            f"{p} is a safetensors file without robustscope metadata "
            f"(format={header.get('format')!r}); load raw weights with safetensors directly "
            "and build the model with robustscope.models.create"
        )
    try:
        meta = json.loads(header["robustscope"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: metadata is not valid JSON ({exc})") from None
    return tensors, meta


def read_meta(path: str | Path) -> CheckpointMeta:
    """The metadata of a checkpoint file or run directory, without building the model."""
    p = resolve(path)
    _, meta = load_tensors(p)
    return CheckpointMeta.from_dict(meta, source=str(p))


def load(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[Classifier, CheckpointMeta]:
    """Rebuild the model recorded in a checkpoint (file or run directory) and load its weights.

    The architecture comes from the metadata; weights must match it exactly
    (names and shapes), otherwise a :class:`CheckpointError` lists the differences.
    The model is returned in eval mode on ``device``.
    """
    p = resolve(path)
    tensors, raw = load_tensors(p)
    meta = CheckpointMeta.from_dict(raw, source=str(p))
    try:
        model = from_spec(meta.model)
    except Exception as exc:
        raise CheckpointError(
            f"{p}: cannot rebuild architecture {meta.model.name!r} from the metadata: {exc}"
        ) from None
    load_weights(model, tensors, source=str(p))
    model.to(device)
    model.eval()
    return model, meta


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], *, source: str) -> None:
    """Strictly load ``tensors`` into ``model``; mismatches raise a CheckpointError listing them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(tensors)
        if tensors[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:5]}{'…' if len(wrong) > 5 else ''}")
        raise CheckpointError(
            f"{source}: weights do not match the recorded architecture: " + "; ".join(parts)
        )
    model.load_state_dict(tensors, strict=True)


def import_state_dict(
    path: str | Path, model: torch.nn.Module, *, key: str | None = None
) -> torch.nn.Module:
    """Load external PyTorch weights (``.pt``/``.pth``) into ``model`` — for *trusted* files.

    Uses ``torch.load(weights_only=True)``, which refuses arbitrary Python objects;
    ``key`` selects a sub-dictionary (e.g. ``"state_dict"``). Save the result with
    :func:`save` to obtain a safe checkpoint.
    """
    p = Path(path)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{p}: cannot be read with torch.load(weights_only=True): {exc}"
        ) from None
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise CheckpointError(f"{p}: no key {key!r} in the file")
        obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a state dict, got {type(obj).__name__}")
    load_weights(model, dict(obj), source=str(p))
    return model
