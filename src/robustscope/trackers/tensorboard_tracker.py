"""TensorBoard: a run's history as scalars, one point per epoch.

* :class:`TensorBoardWriter` — an epoch callback of :func:`robustscope.training.train`
  (``robustscope train --tensorboard DIR``): after each epoch's evaluation and tracking it
  writes every number of the history row (``train_loss``, ``test_accuracy``, ``lr``, the
  tracked probes ``track/...``, ...) under the row's own key, at step = epoch, with
  :class:`torch.utils.tensorboard.SummaryWriter`. After training, :meth:`~TensorBoardWriter.close`
  writes the epochs of the history it has not seen (a ``--resume`` of a run trained without
  the flag), so DIR ends with every epoch once.
* :class:`TensorBoardStudyTracker` — a :class:`~robustscope.studies.runner.StudyTracker`
  (``robustscope study --tensorboard DIR``): each recorded run's history into its own
  subdirectory ``DIR/<label>`` (spaces as ``_``), written by the driver when the run is
  recorded — so also for runs trained by Ray workers.

Both need the ``tensorboard`` package (``pip install 'robustscope[tensorboard]'``).
Read the scalars with ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustscope.trackers.common import TrackerError, require, row_scalars

if TYPE_CHECKING:
    from torch import nn

    from robustscope.studies.execute import RunOutcome
    from robustscope.studies.plan import RunPlan
    from robustscope.studies.runner import StudySummary
    from robustscope.studies.spec import StudySpec

__all__ = ["EVENTS_PREFIX", "TensorBoardStudyTracker", "TensorBoardWriter", "written_steps"]

#: the start of the name of every event file TensorBoard writes
EVENTS_PREFIX = "events.out.tfevents."


def _summary_writer(log_dir: Path, flag: str) -> Any:
    require("tensorboard", "tensorboard", flag)
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _has_events(log_dir: Path) -> bool:
    return log_dir.is_dir() and any(p.name.startswith(EVENTS_PREFIX) for p in log_dir.iterdir())


def written_steps(log_dir: str | Path) -> set[int]:
    """The steps at which the event files directly in ``log_dir`` hold scalars (empty when it
    holds none)."""
    log_dir = Path(log_dir)
    if not _has_events(log_dir):
        return set()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def _write_rows(writer: Any, rows: Iterable[Mapping[str, Any]], skip: set[int]) -> set[int]:
    done = set()
    for i, row in enumerate(rows, 1):
        step = int(row.get("epoch", i))
        if step in skip:
            continue
        for key, value in row_scalars(row):
            writer.add_scalar(key, value, global_step=step)
        done.add(step)
    writer.flush()
    return done


class TensorBoardWriter:
    """The epoch callback of ``robustscope train --tensorboard DIR``.

    Args:
        log_dir: the directory of the event files (created).
        resume: the run continues (``--resume``): the epochs DIR already holds are not written
            again. Without it, a DIR holding event files is refused, as training refuses a run
            directory that holds a run.

    Raises:
        TrackerError: ``tensorboard`` is not installed (the message names the extra), or
            ``log_dir`` already holds events and ``resume`` is False.

    Example:
        >>> from robustscope.training import TrainConfig, train  # doctest: +SKIP
        >>> tb = TensorBoardWriter("tb/run1")  # doctest: +SKIP
        >>> result = train(TrainConfig(dataset="digits"), callbacks=[tb])  # doctest: +SKIP
        >>> tb.close(result.history)  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | Path, *, resume: bool = False) -> None:
        require("tensorboard", "tensorboard", "--tensorboard")
        self.log_dir = Path(log_dir)
        self.written: set[int] = written_steps(self.log_dir) if resume else set()
        if not resume and _has_events(self.log_dir):
            raise TrackerError(
                f"--tensorboard {self.log_dir}: the directory already holds TensorBoard events "
                "of another run; give a new directory (e.g. a subdirectory per run), delete "
                "the old events, or add --resume to continue that run"
            )
        self._writer = _summary_writer(self.log_dir, "--tensorboard")

    def __call__(self, model: nn.Module, epoch: int, row: dict[str, Any]) -> None:
        self.written |= _write_rows(self._writer, [{**row, "epoch": epoch}], self.written)

    def close(self, history: Iterable[Mapping[str, Any]] = ()) -> None:
        """Write the rows of ``history`` whose epoch DIR does not hold yet, and close."""
        self.written |= _write_rows(self._writer, history, self.written)
        self._writer.close()


def _dir_name(label: str) -> str:
    return re.sub(r"[\s/\\]+", "_", label.strip()) or "run"


class TensorBoardStudyTracker:
    """Writes each recorded run's history to ``root/<label>`` (``robustscope study
    --tensorboard DIR``). A run recorded again (measured again) replaces its event files.

    Raises:
        TrackerError: ``tensorboard`` is not installed (the message names the extra).
    """

    def __init__(self, root: str | Path) -> None:
        require("tensorboard", "tensorboard", "--tensorboard")
        self.root = Path(root)
        self.dirs: dict[str, Path] = {}  # run id → its directory

    def __str__(self) -> str:
        return f"TensorBoard ({self.root})"

    def start(self, spec: StudySpec, out: Path, plans: list[RunPlan]) -> None:
        """Name each planned run's directory (the label; the run id added if two runs share
        it) and create the root."""
        self.root.mkdir(parents=True, exist_ok=True)
        names = [_dir_name(p.label) for p in plans]
        for p, name in zip(plans, names, strict=True):
            unique = names.count(name) == 1
            self.dirs[p.run_id] = self.root / (name if unique else f"{name}_{p.run_id}")

    def record(self, run: RunPlan, outcome: RunOutcome) -> None:
        """Write ``outcome``'s history (every epoch) into the run's directory."""
        if not outcome.history:
            return
        log_dir = self.dirs.get(run.run_id, self.root / _dir_name(run.label))
        if log_dir.is_dir():
            for old in log_dir.iterdir():
                if old.name.startswith(EVENTS_PREFIX):
                    old.unlink()
        writer = _summary_writer(log_dir, "--tensorboard")
        try:
            _write_rows(writer, outcome.history, set())
        finally:
            writer.close()

    def finish(self, summary: StudySummary | None = None, report: Path | None = None) -> None:
        """Nothing to end (each run's events are closed when written)."""

    def abort(self, status: str = "KILLED") -> None:
        """Nothing to end."""
