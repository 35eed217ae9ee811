"""A rich progress bar with ETA for many independent runs (sweeps, capacity searches)."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int], None]


class RichBar:
    """`bar(done, total)` draws a bar on the console (stderr in the CLI); a no-op where it is not a terminal."""

    def __init__(self, console, label: str):
        self.console = console
        self.label = label
        self.bar = None
        self.task = None

    def __enter__(self) -> RichBar:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


__all__ = ["ProgressFn", "RichBar"]
