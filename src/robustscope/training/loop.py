"""The one training loop. Objectives plug in; the loop owns data order, optimisation,
evaluation, checkpoints and resumption.

Exact resumption on the CPU: the data order of epoch *e* comes from a generator
seeded by ``(seed, e)``, the learning rate is a pure function of the step, and
the global RNG state, optimizer state, objective state and the state of stateful
callbacks are saved with the weights after every epoch. A run killed at any point and
restarted with ``resume=True`` therefore ends with the same weights as an uninterrupted run.

Each epoch: the optimisation steps (:mod:`robustscope.training.epoch`, where the generic
hooks of objectives are), then the epoch hooks the configuration asks for
(:mod:`robustscope.training.hooks`: spectral-norm clipping), then the clean test evaluation, then the epoch callbacks — from the configuration
(tracking, :mod:`robustscope.training.tracking`; the catastrophic-overfitting detector,
:mod:`robustscope.training.overfitting`) and from the caller; a callback may return the
reserved key ``"stop"`` (a reason) to end training cleanly after the current epoch, which is
saved — and finally the run directory (:mod:`robustscope.training.rundir`).

Distributed data-parallel training (``torchrun ... -m robustscope train``): see
:mod:`robustscope.training.distributed` for the design (global batch sharded across ranks,
attacks on the unwrapped module, per-rank seeds, rank 0 writes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustscope import data, models
from robustscope.data.dataset import ArrayDataset
from robustscope.device import resolve_device
from robustscope.errors import TrainingError
from robustscope.evaluation import evaluate_clean
from robustscope.training import distributed, rundir
from robustscope.training.config import TrainConfig
from robustscope.training.epoch import step_model, train_epoch
from robustscope.training.hooks import EpochCallback, config_hooks
from robustscope.training.objectives import make_objective
from robustscope.training.overfitting import STOP, CatastrophicOverfittingDetector
from robustscope.training.schedule import make_optimizer
from robustscope.training.tracking import Tracker

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
    hooks = config_hooks(config, model, train_ds.input_shape)
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
    start_epoch, history = rundir.start_run(
        run_dir,
        config,
        resume=resume,
        model=model,
        optimizer=optimizer,
        objective=objective,
        callbacks=all_callbacks,
        log=log,
    )
    stepper = step_model(model, config, device, world)

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
        row = train_epoch(
            stepper,
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
        for hook in hooks:  # before evaluation: everything after sees the hooked weights
            row.update(hook(model, epoch + 1, row) or {})
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
            rundir.save_epoch(
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


def _summary(row: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.4f}  test loss {row['test_loss']:.4f} "
        f"acc {row['test_accuracy']:.4f}  {row['images_per_s']:.0f} img/s"
    )
