"""The run directory (``--out``): what a run writes after every epoch and how it resumes.

``config.json`` (the configuration), ``history.json`` (one row per completed epoch),
``model.safetensors`` (a checkpoint of the latest completed epoch; the final model when
finished) and ``train_state.safetensors`` — the resume authority, written first each epoch:
the model weights, optimizer state, global RNG state, objective state and the state of
stateful callbacks, flattened into named tensors plus a JSON skeleton
(:mod:`robustscope.training.state`). Every file is written atomically
(:func:`robustscope.io.atomic_write`), so a run killed at any point leaves the previous
epoch's files or the new ones, never a mix that would resume differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustscope import checkpoint, models
from robustscope.data.dataset import ArrayDataset
from robustscope.errors import CheckpointError, TrainingError
from robustscope.io import write_json
from robustscope.training import distributed
from robustscope.training.config import TrainConfig
from robustscope.training.hooks import EpochCallback
from robustscope.training.objectives import Objective
from robustscope.training.state import flatten, rng_state, set_rng_state, unflatten

__all__ = [
    "CONFIG_FILE",
    "HISTORY_FILE",
    "STATE_FILE",
    "restore",
    "save_epoch",
    "saved_epochs",
    "start_run",
]

STATE_FILE = "train_state.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"

Logger = Callable[[str], None]


def start_run(
    run_dir: Path | None,
    config: TrainConfig,
    *,
    resume: bool,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    callbacks: Sequence[EpochCallback],
    log: Logger | None,
) -> tuple[int, list[dict[str, Any]]]:
    """``(epochs done, history)`` of the run in ``run_dir``, after restoring its saved state
    into ``model``, ``optimizer``, ``objective``, ``callbacks`` and the global RNG (``(0, [])``
    for a new run). Then rank 0 writes ``config.json``.

    Raises:
        TrainingError: ``run_dir`` holds a run and ``resume`` is False (nothing is
            overwritten), or the saved run cannot be resumed with ``config``.
    """
    start_epoch, history = 0, list[dict[str, Any]]()
    state_path = run_dir / STATE_FILE if run_dir is not None else None
    if state_path is not None and state_path.exists():
        if not resume:
            raise TrainingError(
                f"{run_dir} already holds a run ({saved_epochs(state_path)} epoch(s) done); "
                "pass --resume to continue it, or choose another --out (nothing was overwritten)"
            )
        start_epoch, history = restore(state_path, config, model, optimizer, objective, callbacks)
        if log:
            log(f"resuming {run_dir} after epoch {start_epoch}")
    elif resume and log:
        log(f"nothing to resume in {run_dir}; starting a new run")
    distributed.barrier()  # every rank has checked/restored the state before rank 0 writes
    if run_dir is not None and distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_FILE, config.model_dump())
    return start_epoch, history


def _callback_states(callbacks: Sequence[EpochCallback]) -> dict[str, Any]:
    """The state of every stateful callback, by its ``name`` (else its position)."""
    return {
        str(getattr(cb, "name", f"callback{i}")): cb.state_dict()
        for i, cb in enumerate(callbacks)
        if hasattr(cb, "state_dict")
    }


def save_epoch(
    run_dir: Path,
    model: models.Classifier,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    callbacks: Sequence[EpochCallback],
    config: TrainConfig,
    history: list[dict[str, Any]],
    train_ds: ArrayDataset,
) -> None:
    """Persist one completed epoch: resume state first (the authority), then model and history.

    Under DDP every rank must call this (the ranks' RNG and objective states are gathered);
    only rank 0 writes.
    """
    world = distributed.world_size()
    own = {
        "rng": rng_state(),
        "objective": objective.state_dict() if hasattr(objective, "state_dict") else None,
    }
    per_rank = distributed.all_gather_objects(_to_cpu(own)) if world > 1 else None
    if not distributed.is_main():
        return
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    skeleton = {
        "optimizer": flatten(optimizer.state_dict(), "optimizer", tensors),
        "rng": flatten(rng_state(), "rng", tensors),
        "objective": flatten(
            objective.state_dict() if hasattr(objective, "state_dict") else None,
            "objective",
            tensors,
        ),
        "callbacks": flatten(_callback_states(callbacks), "callbacks", tensors),
    }
    if per_rank is not None:
        skeleton["ranks"] = flatten(per_rank, "ranks", tensors)
    meta = {
        "epoch": len(history),
        "world_size": world,
        "config": config.model_dump(),
        "history": history,
        "state": skeleton,
    }
    checkpoint.save_tensors(run_dir / STATE_FILE, tensors, meta)
    checkpoint.save(
        run_dir / checkpoint.MODEL_FILE,
        model,
        {
            "dataset": config.dataset,
            "training": config.model_dump(),
            "metrics": history[-1],
            "extra": {
                "epochs_completed": len(history),
                "finished": len(history) >= config.epochs,
                "stop_reason": history[-1].get("stop_reason"),
                "classes": list(train_ds.classes),
            },
        },
    )
    write_json(run_dir / HISTORY_FILE, history)


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor (in nested dicts, lists, tuples) detached and on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def saved_epochs(state_path: Path) -> int:
    """Epochs completed in the resume state at ``state_path`` (0 when it cannot be read)."""
    try:
        _, meta = checkpoint.load_tensors(state_path)
        return int(meta.get("epoch", 0))
    except CheckpointError:
        return 0


def restore(
    state_path: Path,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    callbacks: Sequence[EpochCallback],
) -> tuple[int, list[dict[str, Any]]]:
    """Load the resume state at ``state_path`` into the run's objects: ``(epochs done,
    history)``. The configuration (apart from :attr:`TrainConfig.RESUMABLE_CHANGES`) and the
    number of processes must be those it was saved with."""
    tensors, meta = checkpoint.load_tensors(state_path)
    saved = TrainConfig.model_validate(meta["config"])
    diffs = saved.differences(config)
    if diffs:
        listing = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diffs.items())
        raise TrainingError(
            f"cannot resume {state_path.parent}: the configuration differs ({listing}); "
            "resume with the same options or start a new run with another --out"
        )
    world = distributed.world_size()
    saved_world = int(meta.get("world_size", 1))
    if saved_world != world:
        raise TrainingError(
            f"cannot resume {state_path.parent}: it was trained by {saved_world} process(es), "
            f"this run has {world}; resume with the same number of processes "
            "(each rank restores its own random streams)"
        )
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    checkpoint.load_weights(model, weights, source=str(state_path))
    state = meta["state"]
    # Optimizer.load_state_dict moves the state tensors to the parameters' device
    optimizer.load_state_dict(unflatten(state["optimizer"], tensors))
    own = {"rng": state["rng"], "objective": state["objective"]}
    if world > 1:
        own = unflatten(state["ranks"], tensors)[distributed.rank()]
    else:
        own = {k: unflatten(v, tensors) for k, v in own.items()}
    set_rng_state(own["rng"])
    obj_state = own["objective"]
    if obj_state is not None and hasattr(objective, "load_state_dict"):
        objective.load_state_dict(obj_state)
    saved_cbs = unflatten(state["callbacks"], tensors) if "callbacks" in state else {}
    for i, cb in enumerate(callbacks):
        key = str(getattr(cb, "name", f"callback{i}"))
        if key in saved_cbs and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(saved_cbs[key])
    return int(meta["epoch"]), list(meta["history"])
