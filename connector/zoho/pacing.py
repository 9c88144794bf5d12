"""Pacing calls to one org: an adaptive cap on calls in flight, and the Bulk download pacer.

Zoho answers 429 ``TOO_MANY_REQUESTS`` when too many calls of one org run at once (15-25 by
edition, about 10 for COQL and Bulk), and refuses more than 10 Bulk result downloads a minute per
org (429, no ``Retry-After``, served again only a minute later). Both limits are per org, so both
objects here are shared by every worker of a run: they live on the one
:class:`~connector.zoho.http.ZohoClient` all workers use.

- :class:`ConcurrencyLimiter` halves the calls allowed in flight on a 429 and gives one back
  after a run of answers served, between 1 and a ceiling (the configured workers x group calls).
- :class:`DownloadPacer` keeps downloads under a sliding window (10 per 60 s, plus a margin for
  the clocks of two hosts) so that the limit is not hit, and after a refused download holds
  every download back until a minute has passed since the refusal.

Neither knows about HTTP; both take their clock and sleep so tests never wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from connector.zoho import limits

# Answers served in a row (since the last change) before the limiter allows one more call.
SUCCESSES_TO_GROW = 8


@dataclass(frozen=True)
class Ticket:
    """A call let through by :meth:`ConcurrencyLimiter.acquire`: hand it back when answered."""

    epoch: int


class ConcurrencyLimiter:
    """How many calls may be in flight at once, lowered on 429s and raised again on successes.

    Additive increase, multiplicative decrease, as TCP does: a 429 halves the limit (never below
    1), and ``SUCCESSES_TO_GROW`` answers served in a row raise it by one (never above
    ``ceiling``). Calls already in flight when the limit fell were sent under the old limit, so
    their 429s do not lower it again (each ticket remembers the epoch it was issued in). Blocks
    in :meth:`acquire` while the limit is reached. Thread-safe.
    """

    def __init__(self, ceiling: int) -> None:
        if ceiling < 1:
            raise ValueError("the ceiling of calls in flight must be at least 1")
        self.ceiling = ceiling
        self._limit = ceiling
        self._in_flight = 0
        self._epoch = 0
        self._successes = 0
        self._throttled = 0
        self._lowest = ceiling
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        """Calls allowed in flight now."""
        with self._cond:
            return self._limit

    @property
    def in_flight(self) -> int:
        """Calls in flight now."""
        with self._cond:
            return self._in_flight

    def stats(self) -> dict[str, int]:
        """What happened so far: 429s seen, the lowest limit reached, the limit now."""
        with self._cond:
            return {"throttled": self._throttled, "lowest": self._lowest, "limit": self._limit}

    def acquire(self) -> Ticket:
        """Wait until a call may go out; the returned ticket must be given to :meth:`release`."""
        with self._cond:
            while self._in_flight >= self._limit:
                self._cond.wait()
            self._in_flight += 1
            return Ticket(self._epoch)

    def release(self, ticket: Ticket, *, served: bool = False, throttled: bool = False) -> None:
        """The call is over: ``served`` (an answer, 2xx/304), ``throttled`` (a 429), or neither."""
        with self._cond:
            self._in_flight -= 1
            if throttled:
                self._throttled += 1
                self._successes = 0
                if ticket.epoch == self._epoch and self._limit > 1:
                    self._limit = max(1, self._limit // 2)
                    self._lowest = min(self._lowest, self._limit)
                    self._epoch += 1
            elif served:
                self._successes += 1
                if self._successes >= SUCCESSES_TO_GROW and self._limit < self.ceiling:
                    self._limit += 1
                    self._successes = 0
                    self._epoch += 1
            self._cond.notify_all()


class DownloadPacer:
    """Spaces Bulk result downloads: at most ``per_window`` in any ``window`` seconds per org.

    :meth:`acquire` books the earliest moment the window allows (so workers queue in order
    instead of all waking at once), sleeps until then and returns the seconds it waited.
    :meth:`refused` is called when Zoho refused a download anyway (another process of the same
    org downloading, or clocks that disagree): no download goes out until ``lockout`` seconds
    after the refusal. Thread-safe; the sleep happens outside the lock.
    """

    def __init__(
        self,
        per_window: int = limits.BULK_DOWNLOADS_PER_MINUTE,
        *,
        window: float = limits.BULK_DOWNLOAD_WINDOW + limits.BULK_DOWNLOAD_MARGIN,
        lockout: float = limits.BULK_DOWNLOAD_LOCKOUT + limits.BULK_DOWNLOAD_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_window < 1:
            raise ValueError("downloads per minute must be at least 1")
        self.per_window = per_window
        self.window = window
        self.lockout = lockout
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._booked: deque[float] = deque()
        self._blocked_until = float("-inf")
        self.waited = 0.0
        """Seconds spent waiting in :meth:`acquire`, over all callers."""
        self.refusals = 0
        """Downloads Zoho refused (reported through :meth:`refused`)."""

    def acquire(self) -> float:
        """Wait for a download slot; return the seconds waited.

        A refusal reported while waiting moves the booking past the new lockout.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                at = self._book(now)
                refusals = self.refusals
                wait = at - now
                self.waited += max(0.0, wait)
            if wait > 0:
                self._sleep(wait)
                waited += wait
            with self._lock:
                if self.refusals == refusals or self._blocked_until <= at:
                    return waited
                self._booked.remove(at)

    def _book(self, now: float) -> float:
        """Book the earliest moment a download may go out (under the lock)."""
        while self._booked and self._booked[0] <= now - self.window:
            self._booked.popleft()
        at = max(now, self._blocked_until)
        if self._booked:
            at = max(at, self._booked[-1])  # in booking order, so the deque stays sorted
        if len(self._booked) >= self.per_window:
            # The download per_window places back must have left the window first.
            at = max(at, self._booked[-self.per_window] + self.window)
        self._booked.append(at)
        return at

    def refused(self, retry_after: float | None = None) -> None:
        """Zoho refused a download: hold every download back until the lockout has passed.

        A ``Retry-After`` longer than the lockout (Zoho documents none) is honoured.
        """
        pause = self.lockout
        if retry_after is not None and math.isfinite(retry_after):
            pause = max(pause, retry_after)
        with self._lock:
            self.refusals += 1
            self._blocked_until = max(self._blocked_until, self._clock() + pause)
