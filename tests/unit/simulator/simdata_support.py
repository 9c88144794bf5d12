"""A settable clock shared by the simulator data-layer tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

START = datetime(2026, 7, 1, 8, 0, 0, tzinfo=timezone.utc)


class StepClock:
    """A clock tests move by hand (never sleeps)."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
