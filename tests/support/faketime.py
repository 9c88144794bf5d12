"""A fake clock whose sleep moves it: waiting in tests is instant and exact."""

from __future__ import annotations


class FakeTime:
    """``clock()`` reads the time, ``sleep(s)`` records ``s`` and moves the time on by it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current fake time (seconds)."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the time on."""
        self.sleeps.append(seconds)
        self.now += seconds
