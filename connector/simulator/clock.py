"""Clocks for the simulator: the real UTC clock and a controllable one for tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, tz-aware UTC (the simulator's default clock)."""
    return datetime.now(timezone.utc)


class FakeClock:
    """A clock that moves only when told to, so tests advance time instead of sleeping.

    ``auto_advance`` (seconds) moves the clock forward after every reading, which makes
    consecutive mutations land in distinct seconds without explicit ``advance`` calls.
    The instance itself is callable, so it can be passed wherever a ``Clock`` is expected.
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        auto_advance: float = 0.0,
    ) -> None:
        self._now = start or datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc)
        if self._now.tzinfo is None:
            self._now = self._now.replace(tzinfo=timezone.utc)
        self.auto_advance = auto_advance
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the current fake time (then auto-advance, if configured)."""
        with self._lock:
            value = self._now
            if self.auto_advance:
                self._now += timedelta(seconds=self.auto_advance)
            return value

    def __call__(self) -> datetime:
        return self.now()

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (tz-aware)."""
        with self._lock:
            self._now = when


class LiveClock:
    """A clock that follows real time, plus the seconds skipped with :meth:`advance`.

    The connector leaves rows modified in the last second(s) before its read for the next run, so
    the demo and the tests skip ahead between changing the org and extracting, as time passes
    between a user's edit and a scheduled run, instead of sleeping; everything else (token
    lifetimes, download limits) keeps moving with real time.
    """

    def __init__(self) -> None:
        self._skipped = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(timezone.utc) + self._skipped

    def advance(self, seconds: float) -> None:
        """Skip ``seconds`` ahead."""
        with self._lock:
            self._skipped += timedelta(seconds=seconds)
