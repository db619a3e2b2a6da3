"""Safe checkpoints: safetensors weights with JSON metadata, never a pickle.

A checkpoint is one ``.safetensors`` file. Its header's ``__metadata__`` holds
``{"format": "robustscope-checkpoint/1", "robustscope": "<JSON>"}`` where the JSON
records the model's :class:`~robustscope.models.ModelSpec` (architecture, kwargs,
input shape, classes, normalization), the dataset, the training configuration,
metrics, the transforms applied after training, and the robustscope and torch
versions. :func:`load` rebuilds the model from that metadata and loads the
weights strictly; it never unpickles anything, so no code in a file can run.

External PyTorch weights become a checkpoint through :func:`import_weights` (a registered
architecture; ``robustscope import``) or :func:`import_state_dict` (a model at hand): the file
is read with ``torch.load(weights_only=True)`` only, or as plain safetensors, and its layout
unwrapped by :mod:`robustscope.models.external`. A model made by
:func:`robustscope.models.wrap` is saved with its weights and its module's class name; its
architecture is Python code, so :func:`load` needs the module again (``module=``).

A run directory (``robustscope train --out DIR``) holds ``model.safetensors``
(the latest completed epoch; the final model once training has finished),
``train_state.safetensors`` (optimizer and RNG state for ``--resume``),
``config.json`` and ``history.json``. Wherever a checkpoint is expected, a run
directory may be given instead.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import re
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import robustscope
from robustscope.data.box import BoxLike
from robustscope.errors import CheckpointError, ModelError
from robustscope.io import atomic_write
from robustscope.models import WRAPPED, Classifier, ModelSpec, create, from_spec, wrap
from robustscope.models.external import (
    Normalization,
    Unwrapped,
    map_onto,
    model_normalization,
    unwrap,
)

FORMAT = "robustscope-checkpoint/1"
MODEL_FILE = "model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024

_PICKLE_HINT = (
    "robustscope never unpickles files (a pickle can run arbitrary code). "
    "Convert PyTorch weights with 'robustscope import WEIGHTS --model NAME ... --out "
    "CKPT.safetensors' (robustscope.checkpoint.import_weights; uses "
    "torch.load(weights_only=True))"
)
_RESAVE_HINT = (
    "robustscope reads external weights only as tensors in plain containers "
    "(torch.load(weights_only=True): a file from torch.save(model.state_dict())) or as "
    "safetensors, and never unpickles other objects, since a pickle can run code. If you trust "
    "the file, re-save just its weights where its code is installed — "
    "torch.save(model.state_dict(), 'weights.pt') — and import that file"
)
#: what a checkpoint of a wrapped module says about its architecture (``extra``)
WRAPPED_NOTE = (
    "weights of a module wrapped with robustscope.models.wrap; the architecture is not "
    "recorded: supply the module again at load, checkpoint.load(path, module=<the module>)"
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

    ``model`` must come from :func:`robustscope.models.create` or
    :func:`robustscope.models.wrap` (it carries ``.spec``). ``meta`` may be a
    :class:`CheckpointMeta` or a dict of its fields other than ``model``. A wrapped model's
    checkpoint holds its weights and the module's class name, and notes in ``extra``
    (``"architecture"``) that :func:`load` needs the module again.
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise CheckpointError(
            "the model has no .spec; build it with robustscope.models.create (or make any "
            "module a lab model with robustscope.models.wrap) so that its architecture can be "
            "recorded"
        )
    if meta is None:
        meta = CheckpointMeta(model=spec)
    elif isinstance(meta, dict):
        meta = CheckpointMeta(model=spec, **meta)
    else:
        meta.model = spec
    if spec.name == WRAPPED:
        meta.extra.setdefault("architecture", WRAPPED_NOTE)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "robustscope": json.dumps(meta.to_dict(), default=str)}
    path = Path(path)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically save arbitrary named tensors plus a JSON object (e.g. training state)."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "robustscope": json.dumps(meta, default=str)}
    return atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=header))


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` has a safetensors file's structure: its header length (u64, little
    endian; its first byte may be anything, 0x80 or "PK" included) then a JSON object."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return n <= MAX_HEADER_BYTES and n + 8 <= size and head[8:9] == b"{"


def _check_header(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file, before parsing it.

    The file is judged by the safetensors structure first (:func:`_is_safetensors`) and only
    a file that fails it is named as a pickle or a zip archive by its magic bytes.
    """
    if _is_safetensors(path):
        return
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
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


def _read(p: Path, *, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (when asked) and the header metadata of a safetensors file, safely."""
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    _check_header(p)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            found = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p} cannot be read as safetensors: {exc}") from None
    return found, header


def _metadata(p: Path, header: dict[str, str]) -> dict[str, Any]:
    """The robustscope JSON object of a safetensors header."""
    if header.get("format") != FORMAT or "robustscope" not in header:
        raise CheckpointError(
            f"{p} is a safetensors file without robustscope metadata "
            f"(format={header.get('format')!r}); load raw weights with safetensors directly "
            "and build the model with robustscope.models.create"
        )
    try:
        meta: dict[str, Any] = json.loads(header["robustscope"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: metadata is not valid JSON ({exc})") from None
    return meta


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read every tensor and the robustscope JSON metadata of a safetensors file, safely."""
    p = Path(path)
    tensors, header = _read(p, tensors=True)
    return tensors, _metadata(p, header)


def read_meta(path: str | Path) -> CheckpointMeta:
    """The metadata of a checkpoint file or run directory, without reading its tensors or
    building the model."""
    p = resolve(path)
    _, header = _read(p, tensors=False)
    return CheckpointMeta.from_dict(_metadata(p, header), source=str(p))


def load(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    module: nn.Module | None = None,
) -> tuple[Classifier, CheckpointMeta]:
    """Rebuild the model recorded in a checkpoint (file or run directory) and load its weights.

    The architecture comes from the metadata — for a checkpoint of a wrapped module
    (:func:`robustscope.models.wrap`) from ``module``, a fresh instance of that module's
    class, wrapped again with the recorded input shape, classes, normalization, features
    layer and box. Weights must match exactly (names and shapes), otherwise a
    :class:`CheckpointError` lists the differences. The model is returned in eval mode on
    ``device``.
    """
    p = resolve(path)
    tensors, raw = load_tensors(p)
    meta = CheckpointMeta.from_dict(raw, source=str(p))
    spec = meta.model
    if spec.name == WRAPPED and module is None:
        raise CheckpointError(
            f"{p} holds the weights of a {spec.kwargs.get('module', 'custom module')} wrapped "
            "with robustscope.models.wrap; its architecture is Python code the checkpoint does "
            "not record: load it in Python with checkpoint.load(path, module=<a new instance "
            "of that class>), or import the weights onto a registered architecture "
            "('robustscope import') to use them from the command line"
        )
    if module is not None and spec.name != WRAPPED:
        raise CheckpointError(
            f"{p} records the registered architecture {spec.name!r}, which load rebuilds "
            "itself; module= is only for checkpoints of wrapped modules"
        )
    try:
        if module is not None:
            features = spec.kwargs.get("features")
            model: Classifier = wrap(
                module,
                spec.input_shape,
                spec.num_classes,
                mean=spec.mean,
                std=spec.std,
                features=features,
                box=spec.box,
            )
        else:
            model = from_spec(spec)
    except Exception as exc:
        raise CheckpointError(
            f"{p}: cannot rebuild architecture {spec.name!r} from the metadata: {exc}"
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


@dataclass(frozen=True)
class ImportReport:
    """How external weights were read (what ``robustscope import`` prints and records).

    Attributes:
        source: the weights file; sha256: its digest.
        layout: the unwrapping and renaming steps, in order
            (:mod:`robustscope.models.external`).
        normalization: where the model's normalization came from: ``"file"`` (a layer in
            the file), ``"given"`` (mean/std passed), ``"file and given"`` (both, equal),
            ``"model"`` (the model's own: :func:`import_state_dict` of a file without one)
            or ``"none"``; mean, std: the model's recorded values (None: none).
        missing: the model's tensors the file lacks (kept at the model's values; only with
            ``strict=False``); unexpected: the file's tensors the model lacks (ignored).
        kept: BatchNorm counters the file lacks, kept from the model.
    """

    source: str
    sha256: str
    layout: tuple[str, ...]
    normalization: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "layout": list(self.layout),
            "normalization": self.normalization,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "kept": list(self.kept),
        }


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks: what identifies an imported
    file (``ImportReport.sha256``) and a checkpoint a study loads."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_external(path: str | Path) -> Any:
    """The object in an external weights file, read safely: a safetensors file as its tensors,
    anything else with ``torch.load(weights_only=True)`` only (tensors in plain containers).

    Raises:
        CheckpointError: naming the file, what it holds that cannot be read that way, and
            the fix (re-save its ``state_dict()`` where its code is installed).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such weights file")
    if _is_safetensors(p):
        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{p} cannot be read as safetensors: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the weights-only unpickler's protocol warning
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            detail = f"it holds the Python object {found.group(1)}, which needs full unpickling"
        else:
            detail = "torch.load(weights_only=True) cannot read it: " + " ".join(
                re.sub(r"\s+", " ", text.rpartition("WeightsUnpickler error:")[2]).split()[:6]
            )
        raise CheckpointError(f"{p}: refused: {detail}. {_RESAVE_HINT}") from None
    except Exception as exc:
        raise CheckpointError(
            f"{p}: cannot be read with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); pass a PyTorch "
            "weights file (.pt/.pth from torch.save(model.state_dict())) or a .safetensors file"
        ) from None


def _fmt(values: Sequence[float] | None) -> str:
    return "none" if values is None else "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _own_normalization(model: nn.Module) -> tuple[tuple[float, ...] | None, ...]:
    """The mean and std ``model`` normalizes with (None, None: no layer)."""
    layer = model_normalization(model)
    if layer is None:
        return None, None
    return tuple(layer.mean.flatten().tolist()), tuple(layer.std.flatten().tolist())


def _apply(
    model: nn.Module,
    unwrapped: Unwrapped,
    *,
    p: Path,
    strict: bool,
    by_order: bool,
    normalization: str,
) -> ImportReport:
    """Map ``unwrapped`` onto ``model``, load it (missing tensors keep the model's values)
    and report."""
    mapped = map_onto(unwrapped, model, source=str(p), strict=strict, by_order=by_order)
    full = dict(model.state_dict())
    full.update(mapped.tensors)
    model.load_state_dict(full, strict=True)
    spec = getattr(model, "spec", None)
    mean, std = (spec.mean, spec.std) if isinstance(spec, ModelSpec) else (None, None)
    return ImportReport(
        source=str(p),
        sha256=file_sha256(p),
        layout=unwrapped.layout + mapped.layout,
        normalization=normalization,
        mean=mean,
        std=std,
        missing=mapped.missing,
        unexpected=mapped.unexpected,
        kept=mapped.kept,
    )


def import_state_dict(
    path: str | Path,
    model: nn.Module,
    *,
    key: str | None = None,
    strict: bool = True,
    by_order: bool = False,
) -> ImportReport:
    """Load external PyTorch weights into ``model`` (built already), whatever their layout.

    The file is read by :func:`read_external` (never full unpickling) and unwrapped and
    renamed onto ``model`` by :mod:`robustscope.models.external`: containers such as
    ``{"state_dict": …}``, ``module.`` prefixes, a normalization layer (which must agree with
    ``model.normalize``). Save the result with :func:`save` to obtain a safe checkpoint.

    Args:
        key: the entry holding the state dict (``"a/b"`` nested); None: found.
        strict: refuse missing and unexpected tensors (False: load the rest, keep the
            model's values for the missing ones).
        by_order: pair tensors by position instead of by name.

    Returns:
        an :class:`ImportReport` (layout steps, missing and unexpected names).
    """
    p = Path(path)
    unwrapped = unwrap(read_external(p), source=str(p), key=key, model=model)
    found = unwrapped.normalization
    how = "model"
    if found is not None:
        own_mean, own_std = _own_normalization(model)
        if not found.agrees(own_mean, own_std):
            raise CheckpointError(
                f"{p}: the file's normalization ({', '.join(found.keys)}: mean "
                f"{_fmt(found.mean)}, std {_fmt(found.std)}) differs from the model's (mean "
                f"{_fmt(own_mean)}, std {_fmt(own_std)}); build the model with the file's "
                "values (models.create(..., mean=, std=)) or use checkpoint.import_weights"
            )
        how = "file"
    return _apply(model, unwrapped, p=p, strict=strict, by_order=by_order, normalization=how)


def _normalization(
    found: Normalization | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    p: Path,
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str]:
    """The normalization to build the model with, and where it came from."""
    given = mean is not None or std is not None
    m = tuple(float(v) for v in mean) if mean is not None else None
    s = tuple(float(v) for v in std) if std is not None else None
    if found is None:
        return m, s, "given" if given else "none"
    if not given:
        return found.mean, found.std, "file"
    if not found.agrees(m, s):
        raise CheckpointError(
            f"{p}: the file carries a normalization layer ({', '.join(found.keys)}: mean "
            f"{_fmt(found.mean)}, std {_fmt(found.std)}) but --mean/--std give mean {_fmt(m)}, "
            f"std {_fmt(s)}; drop --mean/--std to use the file's values, or correct them"
        )
    return m, s, "file and given"


def import_weights(
    path: str | Path,
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    box: BoxLike | None = None,
    key: str | None = None,
    strict: bool = True,
    by_order: bool = False,
    **model_kwargs: Any,
) -> tuple[Classifier, ImportReport]:
    """External PyTorch weights as a lab model of the registered architecture ``name``.

    The file is read safely (:func:`read_external`) and unwrapped
    (:mod:`robustscope.models.external`); its normalization layer, if any, becomes the
    model's (``mean``/``std`` given as well must agree with it), otherwise ``mean``/``std``
    are used. The model is built with :func:`robustscope.models.create` and the tensors are
    mapped onto it (``strict``, ``by_order``: as :func:`import_state_dict`). Save it with
    :func:`save` (``robustscope import`` records the report under ``extra["imported"]``).

    Example:
        >>> import tempfile
        >>> from robustscope import models
        >>> source = models.create("mlp", 3, (4,), widths=[5])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save({"model": {"module." + k: v for k, v in source.state_dict().items()
        ...                           if not k.startswith("normalize.")}}, f"{d}/w.pt")
        ...     model, report = import_weights(f"{d}/w.pt", "mlp", 3, (4,), widths=[5])
        >>> report.layout
        ("state dict under 'model'", "stripped the prefix 'module.'")
        >>> x = torch.randn(2, 4)
        >>> torch.equal(model(x), source(x))
        True
    """
    p = Path(path)
    unwrapped = unwrap(read_external(p), source=str(p), key=key)
    m, s, how = _normalization(unwrapped.normalization, mean, std, p)
    try:
        model = create(name, num_classes, input_shape, mean=m, std=s, box=box, **model_kwargs)
    except ModelError as exc:
        if unwrapped.normalization is None or "normalization" not in str(exc):
            raise
        keys = ", ".join(unwrapped.normalization.keys)
        raise CheckpointError(f"{p}: the file's normalization layer ({keys}): {exc}") from None
    report = _apply(model, unwrapped, p=p, strict=strict, by_order=by_order, normalization=how)
    return model, report
