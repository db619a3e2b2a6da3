"""One progress bar for long work (training epochs, attack sweeps, studies)."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """A transient rich progress bar; does nothing when ``enabled`` is False.

    Example:
        >>> bar = ProgressBar(False, "epoch 1/3", total=10)
        >>> bar.advance(); bar.close()
    """

    def __init__(self, enabled: bool, description: str, total: int | None = None) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._task = self._bar.add_task(description, total=total)
        self._bar.start()

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
