"""The one training loop. Objectives plug in; the loop owns data order, optimisation,
evaluation, checkpoints and resumption.

Exact resumption on the CPU: the data order of epoch *e* comes from a generator
seeded by ``(seed, e)``, the learning rate is a pure function of the step, and
the global RNG state, optimizer state, objective state and the state of stateful
callbacks are saved with the weights after every epoch. A run killed at any point and
restarted with ``resume=True`` therefore ends with the same weights as an uninterrupted run.

Generic hooks (the loop never knows which objective it runs):

Distributed data-parallel training (``torchrun ... -m robustscope train``): see
:mod:`robustscope.training.distributed` for the design (global batch sharded across ranks,
attacks on the unwrapped module, per-rank seeds, rank 0 writes).

* an objective with an integer attribute ``replays`` is called that many times on each
  batch, each call followed by its own backward pass and optimizer step (free AT);
* an objective with a method ``set_progress(fraction)`` is told, before each step, the
  fraction of all training steps done after it (ε warm-up), a pure function of the step;
* epoch callbacks come from the caller and from the configuration (tracking,
  :mod:`robustscope.training.tracking`; the catastrophic-overfitting detector,
  :mod:`robustscope.training.overfitting`); a callback may return the reserved key
  ``"stop"`` (a reason) to end training cleanly after the current epoch, which is saved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustscope import checkpoint, data, models
from robustscope.data.dataset import ArrayDataset
from robustscope.device import resolve_device
from robustscope.errors import CheckpointError, RobustscopeError, TrainingError
from robustscope.evaluation import evaluate_clean, predict
from robustscope.io import write_json
from robustscope.models import spectral
from robustscope.progress import ProgressBar
from robustscope.training import distributed
from robustscope.training.config import TrainConfig
from robustscope.training.objectives import Objective, make_objective
from robustscope.training.overfitting import STOP, CatastrophicOverfittingDetector
from robustscope.training.schedule import learning_rate, make_optimizer
from robustscope.training.state import flatten, rng_state, set_rng_state, unflatten
from robustscope.training.tracking import Tracker

STATE_FILE = "train_state.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"

EpochCallback = Callable[[nn.Module, int, dict[str, Any]], dict[str, Any] | None]
"""``callback(model, epoch, row) -> extra metrics``: called after each epoch's evaluation
(``epoch`` is 1-based; ``row`` is the history row so far); returned items join the row,
except the reserved key ``"stop"``: a reason string that ends training after this epoch
(recorded as the row's ``stop_reason``). A callback with ``state_dict()`` /
``load_state_dict()`` and a ``name`` attribute has its state saved for ``--resume``."""

Logger = Callable[[str], None]


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        model: the trained model (eval mode).
        config: the configuration trained with.
        history: one row per completed epoch (``epoch`` is 1-based; accuracies in [0, 1]).
        run_dir: the run directory, or None for an in-memory run.
        finished: True when all ``config.epochs`` epochs are done.
        stop_reason: why training ended early at a callback's request (e.g. catastrophic
            overfitting), else None.
    """

    model: models.Classifier
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    finished: bool = False
    stop_reason: str | None = None

    @property
    def completed_epochs(self) -> int:
        return len(self.history)

    @property
    def final(self) -> dict[str, Any]:
        """The last history row (empty before the first epoch)."""
        return self.history[-1] if self.history else {}


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that fixes the data order and augmentation of ``epoch`` (0-based)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


def load_datasets(config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """The train and test sets named by ``config`` (after ``train_subset``/``test_subset``)."""

    def load(split: str) -> ArrayDataset:
        return data.load(config.dataset, split, root=config.data_root, **config.dataset_params)

    return load("train").head(config.train_subset), load("test").head(config.test_subset)


def build_model(config: TrainConfig, train_ds: ArrayDataset) -> models.Classifier:
    """The (seeded) untrained model of ``config`` for inputs shaped like ``train_ds``, declaring
    the dataset's input box."""
    mean = std = None
    if config.normalize:
        info = data.info(config.dataset, **config.dataset_params)
        mean, std = info.mean, info.std
    torch.manual_seed(config.seed)
    return models.create(
        config.model,
        train_ds.num_classes,
        train_ds.input_shape,
        mean=mean,
        std=std,
        box=train_ds.box,
        **config.model_kwargs,
    )


def config_callbacks(
    config: TrainConfig,
    train_ds: ArrayDataset,
    test_ds: ArrayDataset,
    device: torch.device,
    run_dir: Path | None,
) -> list[EpochCallback]:
    """The epoch callbacks the configuration asks for: the catastrophic-overfitting detector
    (``co_detect`` / ``early_stop``), then the tracker (``track``)."""
    out: list[EpochCallback] = []
    detector = CatastrophicOverfittingDetector.from_config(config, test_ds, device, run_dir)
    if detector is not None:
        out.append(detector)
    tracker = Tracker.from_config(config, train_ds, test_ds, device)
    if tracker is not None:
        out.append(tracker)
    return out


def _default_logger(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(message)


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = True,
    log: Logger | None = _default_logger,
    stop_after_epochs: int | None = None,
    datasets: tuple[ArrayDataset, ArrayDataset] | None = None,
) -> TrainResult:
    """Train the model described by ``config``; write checkpoints to the run directory ``out``.

    Args:
        config: what to train (see :class:`TrainConfig`).
        out: run directory (created). ``None`` trains in memory without files.
        resume: continue from the last completed epoch saved in ``out``. Without it,
            a run directory that already holds training state is refused (nothing is overwritten).
        callbacks: measurements run after each epoch, after those the configuration asks
            for (tracking, catastrophic-overfitting detection); results join the history row.
        progress: show a progress bar over the batches of each epoch.
        log: receives one summary line per epoch (None: silent).
        stop_after_epochs: stop (resumably) after this many epochs in this call —
            for time-limited jobs; ``--resume`` continues later.
        datasets: (train, test) to use instead of loading ``config.dataset``.

    Returns:
        a :class:`TrainResult`.

    Raises:
        TrainingError: non-finite loss (the last good checkpoint stays in ``out``),
            an inconsistent resume, or an unusable configuration.
    """
    device = resolve_device(config.device)
    owns_group = distributed.init(device)
    try:
        result = _train(
            config,
            out,
            resume=resume,
            callbacks=callbacks,
            progress=progress,
            log=log,
            stop_after_epochs=stop_after_epochs,
            datasets=datasets,
        )
    except BaseException:
        if owns_group:
            distributed.cleanup(sync=False)
        raise
    if owns_group:
        distributed.cleanup()
    return result


def _train(
    config: TrainConfig,
    out: str | Path | None,
    *,
    resume: bool,
    callbacks: Sequence[EpochCallback],
    progress: bool,
    log: Logger | None,
    stop_after_epochs: int | None,
    datasets: tuple[ArrayDataset, ArrayDataset] | None,
) -> TrainResult:
    run_dir = Path(out) if out is not None else None
    world, rank = distributed.world_size(), distributed.rank()
    main = rank == 0
    if not main:  # only rank 0 logs and shows progress
        log, progress = None, False
    device = distributed.device_for_rank(resolve_device(config.device))
    if config.amp and device.type != "cuda":
        raise TrainingError(
            f"--amp (bf16 autocast) needs a CUDA device, the run uses {device}; "
            "drop --amp on the CPU"
        )
    train_ds, test_ds = datasets if datasets is not None else load_datasets(config)
    if len(train_ds) == 0:
        raise TrainingError(f"dataset {train_ds.name!r} has no training examples")
    augment = config.augment
    if augment is None:
        augment = data.info(config.dataset, **config.dataset_params).augment

    model = build_model(config, train_ds).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if rank > 0:  # distinct global RNG stream per rank (dropout etc.); rank 0 = single process
        torch.manual_seed(distributed.rank_seed(config.seed, rank))
    clip_shapes = (
        spectral.layer_input_shapes(model, train_ds.input_shape)
        if config.spectral_clip is not None
        else {}
    )
    optimizer = make_optimizer(model, config)
    method_params = dict(config.method_params)
    if "seed" in method_params:
        method_params["seed"] = distributed.rank_seed(method_params["seed"], rank)
    objective = make_objective(
        config.method, run_seed=distributed.rank_seed(config.seed, rank), **method_params
    )
    # callbacks run on every rank (identical weights and seeds give identical results);
    # only rank 0 gets the run directory to write to
    cb_dir = run_dir if main else None
    all_callbacks = [*config_callbacks(config, train_ds, test_ds, device, cb_dir), *callbacks]
    history: list[dict[str, Any]] = []
    start_epoch = 0

    state_path = run_dir / STATE_FILE if run_dir is not None else None
    if state_path is not None and state_path.exists():
        if not resume:
            done = _saved_epochs(state_path)
            raise TrainingError(
                f"{run_dir} already holds a run ({done} epoch(s) done); pass --resume to "
                "continue it, or choose another --out (nothing was overwritten)"
            )
        start_epoch, history = _restore(
            state_path, config, model, optimizer, objective, all_callbacks
        )
        if log:
            log(f"resuming {run_dir} after epoch {start_epoch}")
    elif resume and log:
        log(f"nothing to resume in {run_dir}; starting a new run")
    distributed.barrier()  # every rank has checked/restored the state before rank 0 writes
    if run_dir is not None and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_FILE, config.model_dump())
    step_model = _step_model(model, config, device, world)

    train_dev = train_ds.to(device)
    steps_per_epoch = math.ceil(len(train_dev) / config.batch_size)
    stop_reason: str | None = history[-1].get("stop_reason") if history else None
    if stop_reason and log:
        log(f"{run_dir} was stopped early, not resuming it: {stop_reason}")
    for epoch in range(start_epoch, config.epochs):
        if stop_reason or (
            stop_after_epochs is not None and epoch - start_epoch >= stop_after_epochs
        ):
            break
        row = _train_epoch(
            step_model,
            objective,
            optimizer,
            config,
            train_dev,
            augment,
            epoch,
            steps_per_epoch,
            device,
            progress,
            run_dir,
            len(history),
        )
        if config.spectral_clip is not None:
            row["spectral_clip/max_norm"] = clip_spectral_norms(
                model, config.spectral_clip, clip_shapes
            )
        test_eval = evaluate_clean(model, test_ds, batch_size=config.eval_batch_size, device=device)
        row.update(test_loss=test_eval.loss, test_accuracy=test_eval.accuracy)
        for cb in all_callbacks:
            extra = cb(model, epoch + 1, row)
            if extra:
                extra = dict(extra)
                request = extra.pop(STOP, None)
                row.update(extra)
                if request and not stop_reason:
                    stop_reason = str(request)
        if stop_reason:
            row["stop_reason"] = stop_reason
        history.append(row)
        if run_dir is not None:
            _save_run(
                run_dir, model, optimizer, objective, all_callbacks, config, history, train_ds
            )
            distributed.barrier()
        if log:
            log(_summary(row, config.epochs))
            if stop_reason:
                log(f"stopping early: {stop_reason}")

    model.eval()
    return TrainResult(
        model=model,
        config=config,
        history=history,
        run_dir=run_dir,
        finished=len(history) >= config.epochs,
        stop_reason=stop_reason,
    )


def clip_spectral_norms(
    model: nn.Module, bound: float, input_shapes: dict[str, tuple[int, ...]]
) -> float:
    """Clip the operator norm of every Linear/Conv2d layer of ``model`` reached by its forward
    pass (``input_shapes``, from :func:`robustscope.models.spectral.layer_input_shapes`) to
    ``bound``, in place; the largest norm before clipping. Deterministic (exact methods or a
    seeded iteration), so a resumed run clips exactly as an uninterrupted one."""
    norms = [
        spectral.clip_operator_norm_(module, bound, input_shapes[name])
        for name, module in spectral.linear_layers(model)
        if name in input_shapes
    ]
    return max(norms, default=0.0)


def _step_model(
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


def _train_epoch(
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


def _summary(row: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.4f}  test loss {row['test_loss']:.4f} "
        f"acc {row['test_accuracy']:.4f}  {row['images_per_s']:.0f} img/s"
    )


def _callback_states(callbacks: Sequence[EpochCallback]) -> dict[str, Any]:
    """The state of every stateful callback, by its ``name`` (else its position)."""
    return {
        str(getattr(cb, "name", f"callback{i}")): cb.state_dict()
        for i, cb in enumerate(callbacks)
        if hasattr(cb, "state_dict")
    }


def _save_run(
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
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _saved_epochs(state_path: Path) -> int:
    try:
        _, meta = checkpoint.load_tensors(state_path)
        return int(meta.get("epoch", 0))
    except CheckpointError:
        return 0


def _restore(
    state_path: Path,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    callbacks: Sequence[EpochCallback],
) -> tuple[int, list[dict[str, Any]]]:
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
