"""External weights onto a lab model: the common layouts of a PyTorch weights file unwrapped,
and their names mapped onto an architecture's (the one owner of this logic).

What :func:`unwrap` undoes, in order (each step it takes is recorded in ``layout``):

* **containers**: the state dict under ``state_dict``, ``model_state_dict``, ``model``,
  ``net`` or ``network`` (nested ones too), or under an explicit ``key`` (``"a/b"`` for a
  nested one); other entries (optimizer, epoch, ...) are ignored and named;
* **a normalization layer** (when the target model has one, ``model.normalize``): a group of
  two tensors ``<prefix>.mean``/``.std`` (also ``mu``/``sigma``, ``new_mean``/``new_std``)
  with nothing else under the prefix — ``normalize.mean``, or ``0.mean`` of a
  ``Sequential(Normalize, net)`` — becomes the lab's normalization values.

:func:`map_onto` then aligns the remaining names with the model's: it strips one leading
prefix the file has (``module.`` of DataParallel/DDP, ``1.`` of that ``Sequential``,
``_orig_mod.`` of ``torch.compile``, ``model.``, ...) and adds one the model has (``net.`` of
a wrapped module), choosing the pair under which most names match with equal shapes.
Missing and unexpected names are listed by name; ``strict=False`` loads the rest (missing
tensors keep the model's values). ``by_order=True`` pairs tensors by position instead, for
files whose names differ but whose tensors come in the architecture's order with its shapes.
BatchNorm's ``num_batches_tracked``, absent from old files, is kept from the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustscope.errors import CheckpointError
from robustscope.models.base import Normalize

__all__ = [
    "CONTAINER_KEYS",
    "Mapped",
    "Normalization",
    "Unwrapped",
    "map_onto",
    "model_normalization",
    "unwrap",
]

#: keys under which checkpoints commonly keep the state dict, in the order they are tried
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
_MEAN_NAMES = ("mean", "mu", "new_mean")
_STD_NAMES = ("std", "sigma", "new_std")
_COUNTER = "num_batches_tracked"
_SHOWN = 8  # names listed in an error before "… and N more"


@dataclass(frozen=True)
class Normalization:
    """Per-channel (or single) mean and std found in a file, and the keys they came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    keys: tuple[str, ...]

    def agrees(self, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> bool:
        """Whether ``mean``/``std`` (None: 0 and 1) give the same layer, to 1e-6."""
        return _close(self.mean, mean or (0.0,)) and _close(self.std, std or (1.0,))


@dataclass(frozen=True)
class Unwrapped:
    """A file's state dict with its containers and normalization layer taken off."""

    tensors: dict[str, torch.Tensor]
    normalization: Normalization | None
    layout: tuple[str, ...]


@dataclass(frozen=True)
class Mapped:
    """A state dict renamed onto a model.

    Attributes:
        tensors: by the model's names (every model name when strict; loadable with
            ``load_state_dict(strict=False)`` otherwise).
        layout: the renaming steps (prefixes stripped/added, by position).
        missing: model names the file lacks (kept at the model's values).
        unexpected: file names the model lacks (ignored).
        kept: ``num_batches_tracked`` counters the file lacks, kept from the model.
    """

    tensors: dict[str, torch.Tensor]
    layout: tuple[str, ...]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    kept: tuple[str, ...] = field(default=())


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if ta.numel() != tb.numel() and 1 not in (ta.numel(), tb.numel()):
        return False  # 3 values against 2
    return bool(((ta - tb).abs() <= 1e-6).all())


def _names(names: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" … and {more} more" if more > 0 else "")


def model_normalization(model: nn.Module) -> Normalize | None:
    """The model's normalization layer (``model.normalize``), if it has one."""
    layer = getattr(model, "normalize", None)
    return layer if isinstance(layer, Normalize) else None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _find_state_dict(obj: Any, source: str, key: str | None) -> tuple[dict[str, Any], list[str]]:
    layout: list[str] = []
    if key:
        for part in key.split("/"):
            if not isinstance(obj, Mapping) or part not in obj:
                keys = list(obj) if isinstance(obj, Mapping) else []
                raise CheckpointError(
                    f"{source}: no key {part!r} in the file (key {key!r}); its keys here: "
                    f"{_names([str(k) for k in keys]) or '(not a dictionary)'}"
                )
            obj = obj[part]
        layout.append(f"state dict under {key!r}")
    for _ in range(8):  # nested containers, e.g. {"model": {"state_dict": ...}}
        if not isinstance(obj, Mapping) or not obj:
            what = "an empty dictionary" if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(
                f"{source}: expected a state dict (names → tensors), found {what}"
                + (f" under {key!r}" if key else "")
            )
        if _is_state_dict(obj):
            return dict(obj), layout
        found = next((k for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if found is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and all(isinstance(k, str) for k in tensors):
                others = [str(k) for k in obj if k not in tensors]
                layout.append(f"ignored non-tensor entries {_names(others)}")
                return tensors, layout
            raise CheckpointError(
                f"{source}: no state dict found: the file is a dictionary with keys "
                f"{_names([str(k) for k in obj])} and none of {', '.join(CONTAINER_KEYS)} holds "
                "tensors; name the entry that does with --key (key= in Python)"
            )
        others = [str(k) for k in obj if k != found]
        note = f" (ignored {_names(others)})" if others else ""
        layout.append(f"state dict under {found!r}{note}")
        obj = obj[found]
    raise CheckpointError(f"{source}: containers nested too deep; name the entry with --key")


def _values(t: torch.Tensor) -> tuple[float, ...]:
    """A 1-D tensor's values as floats, single-precision ones by their shortest decimal (0.2,
    not 0.20000000298023224), so the spec records what was written."""
    if t.dtype == torch.float64:
        return tuple(float(v) for v in t.tolist())
    return tuple(float(str(v)) for v in t.to(torch.float32).numpy())


def _normalization_groups(tensors: dict[str, torch.Tensor]) -> list[Normalization]:
    """Groups ``<prefix>.<mean name>`` + ``<prefix>.<std name>`` with nothing else under the
    prefix (or two such top-level names)."""
    by_prefix: dict[str, dict[str, str]] = {}
    for name in tensors:
        prefix, _, leaf = name.rpartition(".")
        by_prefix.setdefault(prefix, {})[leaf] = name
    groups = []
    for prefix, leaves in by_prefix.items():
        means = [leaf for leaf in leaves if leaf in _MEAN_NAMES]
        stds = [leaf for leaf in leaves if leaf in _STD_NAMES]
        if len(means) != 1 or len(stds) != 1:
            continue
        pair = (leaves[means[0]], leaves[stds[0]])
        under = [n for n in tensors if prefix and n.startswith(prefix + ".")]
        alone = len(leaves) == 2 and (not prefix or sorted(under) == sorted(pair))
        mean, std = (tensors[k].detach().flatten() for k in pair)
        if alone and mean.numel() == std.numel() and mean.numel() >= 1:
            groups.append(Normalization(_values(mean), _values(std), pair))
    return groups


def unwrap(
    obj: Any, *, source: str, key: str | None = None, model: nn.Module | None = None
) -> Unwrapped:
    """The state dict inside ``obj`` (what ``torch.load(weights_only=True)`` returned) and the
    normalization layer it carries (module doc).

    Args:
        obj: the loaded object.
        source: the file, for messages.
        key: the entry holding the state dict (``"a/b"`` nested); None: found by the module
            doc's rules.
        model: the model the weights are for, if built already: a normalization group is
            taken out only when it has its own layer (``model.normalize``) and the group is
            not one of its other tensors. None: a model of the registry, built afterwards
            with the normalization found.

    Example:
        >>> sd = {"0.mean": torch.tensor([0.5]), "0.std": torch.tensor([0.2]),
        ...       "1.weight": torch.ones(2, 4)}
        >>> u = unwrap({"epoch": 3, "state_dict": sd}, source="w.pt")
        >>> list(u.tensors), u.normalization.mean, u.normalization.std
        (['1.weight'], (0.5,), (0.2,))
        >>> u.layout
        ("state dict under 'state_dict' (ignored 'epoch')", "normalization from '0.mean', '0.std'")
    """
    tensors, layout = _find_state_dict(obj, source, key)
    norm = None
    if model is None or model_normalization(model) is not None:
        own = list(_target(model)) if model is not None else []
        groups = [
            g
            for g in _normalization_groups(tensors)
            if not any(m == k or m.endswith("." + k) for k in g.keys for m in own)
        ]
        if groups:
            first = groups[0]
            differ = [g for g in groups[1:] if not first.agrees(g.mean, g.std)]
            if differ:
                raise CheckpointError(
                    f"{source}: two different normalization layers "
                    f"({_names(list(first.keys))} and {_names(list(differ[0].keys))}); keep one "
                    "in the file, or pass --key to the entry holding the model"
                )
            keys = tuple(k for g in groups for k in g.keys)
            norm = Normalization(first.mean, first.std, keys)
            tensors = {k: v for k, v in tensors.items() if k not in keys}
            layout.append(f"normalization from {_names(list(keys))}")
    return Unwrapped(tensors, norm, tuple(layout))


def _prefixes(names: list[str], *, common: bool, depth: int = 3) -> list[str]:
    """``""`` and the dotted prefixes (up to ``depth`` parts) of ``names``: those every name
    has (``common``), or any name has."""
    seen: dict[str, int] = {"": len(names)}
    for name in names:
        parts = name.split(".")[:-1]
        for d in range(1, min(depth, len(parts)) + 1):
            p = ".".join(parts[:d]) + "."
            seen[p] = seen.get(p, 0) + 1
    return [p for p, n in seen.items() if not common or n == len(names)]


def _target(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without its normalization buffers (set from the spec)."""
    own = model.state_dict()
    if model_normalization(model) is not None:
        own = {k: v for k, v in own.items() if k not in ("normalize.mean", "normalize.std")}
    return own


def _by_order(
    tensors: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str
) -> Mapped:
    file_items = [(k, v) for k, v in tensors.items() if not k.endswith(_COUNTER)]
    model_items = [(k, v) for k, v in target.items() if not k.endswith(_COUNTER)]
    if len(file_items) != len(model_items):
        raise CheckpointError(
            f"{source}: by position needs as many tensors as the architecture: the file has "
            f"{len(file_items)}, the model {len(model_items)} (num_batches_tracked not counted)"
        )
    for i, ((fk, fv), (mk, mv)) in enumerate(zip(file_items, model_items, strict=True)):
        if fv.shape != mv.shape:
            raise CheckpointError(
                f"{source}: by position, tensor {i} {fk!r} {tuple(fv.shape)} does not fit the "
                f"model's {mk!r} {tuple(mv.shape)}"
            )
    out = {mk: fv for (_, fv), (mk, _) in zip(file_items, model_items, strict=True)}
    kept = tuple(k for k in target if k not in out)
    out.update({k: target[k] for k in kept})
    pairs = [f"{fk} → {mk}" for (fk, _), (mk, _) in zip(file_items, model_items, strict=True)]
    note = (
        f"mapped {len(pairs)} tensors by position ({'; '.join(pairs[:3])}{' …' * (len(pairs) > 3)})"
    )
    return Mapped(out, (note,), kept=kept)


def _order_fits(tensors: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> bool:
    a = [tuple(v.shape) for k, v in tensors.items() if not k.endswith(_COUNTER)]
    b = [tuple(v.shape) for k, v in target.items() if not k.endswith(_COUNTER)]
    return bool(a) and a == b


def map_onto(
    unwrapped: Unwrapped,
    model: nn.Module,
    *,
    source: str,
    strict: bool = True,
    by_order: bool = False,
) -> Mapped:
    """Rename ``unwrapped``'s tensors onto ``model``'s state dict (module doc).

    Raises:
        CheckpointError: naming the missing and unexpected tensors (strict), every shape
            mismatch (always), or a file with no name in common with the model — suggesting
            ``by_order`` when its tensors fit the architecture by position.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 2))
        >>> ddp = {"module.0.weight": torch.zeros(2, 4), "module.0.bias": torch.zeros(2)}
        >>> m = map_onto(Unwrapped(ddp, None, ()), net, source="w.pt")
        >>> sorted(m.tensors), m.layout
        (['0.bias', '0.weight'], ("stripped the prefix 'module.'",))
    """
    target = _target(model)
    tensors = unwrapped.tensors
    if by_order:
        return _by_order(tensors, target, source)
    best: tuple[int, int, str, str] | None = None
    for strip in _prefixes(list(tensors), common=False):
        for add in _prefixes(list(target), common=True):
            renamed = {add + k[len(strip) :]: v for k, v in tensors.items() if k.startswith(strip)}
            score = sum(1 for k, v in renamed.items() if k in target and target[k].shape == v.shape)
            rank = (score, -(len(strip) + len(add)), strip, add)
            if best is None or rank[:2] > best[:2]:
                best = rank
    assert best is not None
    score, _, strip, add = best
    if score == 0:
        hint = (
            "; its tensors fit the architecture by position: pass --by-order (by_order=True) "
            "to map them in order"
            if _order_fits(tensors, target)
            else ""
        )
        raise CheckpointError(
            f"{source}: no tensor name matches the architecture: the file has "
            f"{_names(list(tensors))}, the model expects {_names(list(target))}{hint}"
        )
    layout = []
    if strip:
        layout.append(f"stripped the prefix {strip!r}")
    if add:
        layout.append(f"added the prefix {add!r}")
    renamed = {add + k[len(strip) :]: v for k, v in tensors.items() if k.startswith(strip)}
    unused = [k for k in tensors if not k.startswith(strip)]
    unexpected = [k for k in renamed if k not in target] + unused
    kept = [k for k in target if k not in renamed and k.endswith(_COUNTER)]
    missing = [k for k in target if k not in renamed and k not in kept]
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in renamed.items()
        if k in target and target[k].shape != v.shape
    ]
    problems = []
    if wrong:
        problems.append(f"shapes differ for {_names(wrong)}")
    if strict and missing:
        problems.append(f"missing {_names(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if problems:
        fix = (
            "check --model and its --model-kwarg options"
            if wrong
            else "check --model and its --model-kwarg options, or pass --no-strict to load the "
            "matching tensors and keep the model's values for the missing ones"
        )
        if _order_fits(tensors, target):
            fix += "; the tensors fit the architecture by position: --by-order maps them in order"
        raise CheckpointError(
            f"{source}: the weights do not fit the architecture"
            + (f" (after: {', '.join(layout)})" if layout else "")
            + f": {'; '.join(problems)}. Fix: {fix}"
        )
    out = {k: v for k, v in renamed.items() if k in target}
    out.update({k: target[k] for k in kept})
    return Mapped(out, tuple(layout), tuple(missing), tuple(unexpected), tuple(kept))
