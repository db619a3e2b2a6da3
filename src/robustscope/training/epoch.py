"""One epoch of optimisation: the data order, the steps, and the epoch's training metrics.

The data order and augmentation of epoch *e* come from :func:`epoch_generator` seeded by
``(seed, e)``; the learning rate of every step is a pure function of the step
(:func:`robustscope.training.schedule.learning_rate`). The generic hooks of objectives:

* an objective with an integer attribute ``replays`` is called that many times on each
  batch, each call followed by its own backward pass and optimizer step (free AT);
* an objective with a method ``set_progress(fraction)`` is told, before each step, the
  fraction of all training steps done after it (ε warm-up), a pure function of the step.

Under DDP each rank takes its shard of every global batch (see
:mod:`robustscope.training.distributed`); :func:`step_model` builds the module the
objective calls.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustscope import data
from robustscope.data.dataset import ArrayDataset
from robustscope.errors import RobustscopeError, TrainingError
from robustscope.evaluation import predict
from robustscope.progress import ProgressBar
from robustscope.training import distributed
from robustscope.training.config import TrainConfig
from robustscope.training.objectives import Objective
from robustscope.training.schedule import learning_rate

__all__ = ["epoch_generator", "step_model", "train_epoch"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that fixes the data order and augmentation of ``epoch`` (0-based)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


def step_model(
    model: nn.Module, config: TrainConfig, device: torch.device, world: int
) -> nn.Module:
    """The module the objective calls: ``model`` itself in a plain single-process run;
    under DDP and/or ``compile`` a :class:`~robustscope.training.distributed.StepModel`
    (training forward through DDP / the compiled module, attacks on the plain or compiled
    module without DDP)."""
    if world <= 1 and not config.compile:
        return model
    attack_forward: Any = model
    train_forward: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        train_forward = DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        attack_forward = torch.compile(model)
        train_forward = torch.compile(train_forward) if world > 1 else attack_forward
    return distributed.StepModel(model, train_forward, attack_forward)


def _run_objective(
    objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> Any:
    amp: Any = (
        torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)
        if config.amp
        else nullcontext()
    )
    try:
        with amp:
            return objective(model, x, y)
    except RobustscopeError:
        raise
    except Exception as exc:
        if not config.compile:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TrainingError(
            f"--compile: torch.compile failed ({type(exc).__name__}: {first}); on the CPU it "
            "needs a working C compiler (gcc/clang); run without --compile"
        ) from exc


def train_epoch(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    train_ds: ArrayDataset,
    augment: str,
    epoch: int,
    steps_per_epoch: int,
    device: torch.device,
    progress: bool,
    run_dir: Path | None,
    good_epochs: int,
) -> dict[str, Any]:
    model.train()
    gen = epoch_generator(config.seed, epoch)
    batches = data.iterate_batches(
        train_ds, config.batch_size, shuffle=True, generator=gen, augment=augment
    )
    world, rank = distributed.world_size(), distributed.rank()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    extras: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = ProgressBar(progress, f"epoch {epoch + 1}/{config.epochs}", steps_per_epoch)
    # free adversarial training replays each batch; every replay is a full optimizer step
    replays = int(getattr(objective, "replays", 1))
    try:
        for step, (x, y) in enumerate(batches):
            lr = learning_rate(config, epoch, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            n_global = len(x)
            weight = 1.0
            if world > 1:
                # this rank's shard of the global batch; its mean loss is weighted so that
                # DDP's gradient average equals the gradient of the global mean loss
                lo, hi = distributed.shard_bounds(n_global, world, rank)
                if hi > lo:
                    x, y, weight = x[lo:hi], y[lo:hi], world * (hi - lo) / n_global
                else:  # empty shard: join the all-reduce with a zero-weight step
                    x, y, weight = x[:1], y[:1], 0.0
            if config.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if hasattr(objective, "set_progress"):
                done = epoch * steps_per_epoch + step + 1
                objective.set_progress(done / (config.epochs * steps_per_epoch))
            for _ in range(replays):
                out = _run_objective(objective, model, x, y, config)
                finite = torch.isfinite(out.loss.detach())
                if world > 1:  # every rank stops together
                    finite = distributed.all_reduce_sum(finite.to(torch.int64)) == world
                if not finite:
                    where = f"{run_dir}" if run_dir is not None else "memory (no run directory)"
                    raise TrainingError(
                        f"non-finite loss ({float(out.loss.detach())}) at epoch {epoch + 1}, "
                        f"step {step + 1}; training stopped. The last good checkpoint (epoch "
                        f"{good_epochs}) is kept in {where}. Lower --lr, or check the data for NaNs"
                    )
                optimizer.zero_grad(set_to_none=True)
                (out.loss * weight if world > 1 else out.loss).backward()
                optimizer.step()
                target = out.y if out.y is not None else y
                n = len(target) if weight > 0 else 0
                loss_sum += out.loss.detach().double() * n
                if n:
                    correct += (predict(out.logits.detach()) == target).sum()
                seen += n
                for k, v in out.extras.items():
                    extras[k] = extras.get(k, 0.0) + float(v) * n
            bar.advance()
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    if world > 1:  # epoch sums over all ranks (same keys on every rank: same objective)
        keys = sorted(extras)
        sums = torch.tensor(
            [float(loss_sum), float(correct), float(seen), *(extras[k] for k in keys)],
            dtype=torch.float64,
            device=device,
        )
        distributed.all_reduce_sum(sums)
        loss_sum, correct, seen = sums[0], sums[1].round().long(), int(sums[2].round())
        extras = {k: float(sums[3 + i]) for i, k in enumerate(keys)}
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": learning_rate(config, epoch, steps_per_epoch - 1, steps_per_epoch),
        "train_loss": float(loss_sum) / seen,
        "train_accuracy": int(correct) / seen,
        "train_time_s": elapsed,
        "images_per_s": seen / elapsed if elapsed > 0 else float("nan"),
    }
    row.update({k: v / seen for k, v in extras.items()})
    return row
