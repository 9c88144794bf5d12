"""Feedback during a run: progress bars per module on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from connector.logging_setup import FACTS, counted

logger = logging.getLogger("connector.run.progress")


@dataclass
class ModuleProgress:
    """What is known about one module's read so far."""

    module: str
    reader: str = ""
    rows: int = 0
    pages: int = 0
    credits: int = 0
    status: str = "running"


class Progress:
    """Receives progress from the workers of a run. This base class shows nothing.

    Every method may be called from any worker thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.modules: dict[str, ModuleProgress] = {}

    def start_module(self, module: str, reader: str) -> None:
        """A module's read begins with ``reader``."""
        with self._lock:
            self.modules[module] = ModuleProgress(module, reader)
        self._shown(self.modules[module], started=True)

    def update(
        self,
        module: str,
        *,
        rows: int | None = None,
        pages: int | None = None,
        credits: int | None = None,
    ) -> None:
        """New totals for ``module`` (absolute values, not increments)."""
        with self._lock:
            state = self.modules.setdefault(module, ModuleProgress(module))
            if rows is not None:
                state.rows = rows
            if pages is not None:
                state.pages = pages
            if credits is not None:
                state.credits = credits
        self._shown(state)

    def finish_module(self, module: str, status: str) -> None:
        """The module is done (``status``: ok, failed, skipped, stopped, locked)."""
        with self._lock:
            state = self.modules.setdefault(module, ModuleProgress(module))
            state.status = status
        self._shown(state, finished=True)

    def _shown(
        self, state: ModuleProgress, *, started: bool = False, finished: bool = False
    ) -> None:
        """Show ``state``; subclasses override."""

    def close(self) -> None:
        """Stop showing progress."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LogProgress(Progress):
    """Plain log lines on the ``connector.run.progress`` logger, at most one per module per interval."""

    def __init__(
        self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}

    def _shown(
        self, state: ModuleProgress, *, started: bool = False, finished: bool = False
    ) -> None:
        now = self._clock()
        if not (started or finished):
            last = self._last.get(state.module)
            if last is not None and now - last < self._interval:
                return
        self._last[state.module] = now
        # With JSON logs the facts go out as fields too: one object per line, no parsing needed.
        fields = {
            "event": "progress",
            "module": state.module,
            "reader": state.reader,
            "rows": state.rows,
            "pages": state.pages,
            "credits": state.credits,
        }
        counts = (
            f"{counted(state.rows, 'row')}, {counted(state.pages, 'page')}, "
            f"{counted(state.credits, 'credit')}"
        )
        if started:
            logger.info("%s: reading with %s", state.module, state.reader, extra={FACTS: fields})
        elif finished:
            fields["status"] = state.status
            logger.info("%s: %s, %s", state.module, state.status, counts, extra={FACTS: fields})
        else:
            logger.info("%s: %s so far", state.module, counts, extra={FACTS: fields})


class RichProgress(Progress):
    """One live line per module (rows, pages, credits) drawn with ``rich`` on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import Progress as _Bars
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bars = _Bars(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[module]}"),
            TextColumn("{task.fields[reader]}"),
            TextColumn("{task.fields[rows]} rows"),
            TextColumn("{task.fields[pages]} pages"),
            TextColumn("{task.fields[credits]} credits"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(file=stream or sys.stderr),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._bars.start()

    def _shown(
        self, state: ModuleProgress, *, started: bool = False, finished: bool = False
    ) -> None:
        fields: dict[str, Any] = {
            "module": state.module,
            "reader": state.reader,
            "rows": f"{state.rows:,}",
            "pages": state.pages,
            "credits": state.credits,
            "status": "" if state.status == "running" else state.status,
        }
        with self._lock:
            task = self._tasks.get(state.module)
            if task is None:
                task = self._bars.add_task(state.module, total=None, **fields)
                self._tasks[state.module] = task
        self._bars.update(task, **fields)
        if finished:
            self._bars.update(task, total=1, completed=1)

    def close(self) -> None:
        self._bars.stop()


def make_progress(enabled_tty: bool) -> Progress:
    """Progress bars when writing to a terminal, plain log lines otherwise."""
    return RichProgress() if enabled_tty else LogProgress()
