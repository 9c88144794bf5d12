"""The credit meter: the API credits a client has spent, the budget it must stay within, and the
module each call is made for.

:class:`CreditMeter` counts what Zoho billed (by kind of call), stops a call before it would pass
the budget (``--max-credits``), and tells listeners of every billed call, on the thread that made
it (:mod:`connector.run.credits` attributes them to modules through :data:`BILLED_TO`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from connector.errors import BudgetExceeded, StopRequested

# Which module the calls of the current context are made for (None: the run's own). The run sets
# it on each module's worker thread and the readers carry it into their helper threads, so the
# meter's listeners attribute every call to its module (connector.run.credits), and the credits a
# module holds (CreditMeter.hold) are drawn by its own calls only.
BILLED_TO: ContextVar[str | None] = ContextVar("billed_to", default=None)


class CreditMeter:
    """Adds up the API credits spent, thread-safely, and stops before a budget would be passed.

    Only answers Zoho served (2xx and 304) are recorded: Zoho does not bill a call it refused
    (429, 5xx, 4xx). Token refreshes go to the accounts server and cost no API credits; they are
    counted in ``token_refreshes``.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._total = 0
        self._calls = 0
        self._pending = 0
        self._by_kind: dict[str, int] = {}
        self._token_refreshes = 0
        self._listeners: list[Callable[[str, int], None]] = []
        self._holds: dict[str | None, int] = {}
        self.stopping: Callable[[], bool] | None = None
        """When set and true, no new call starts (:class:`StopRequested`): the run is stopping."""

    @property
    def total(self) -> int:
        """Credits spent so far."""
        with self._lock:
            return self._total

    @property
    def calls(self) -> int:
        """Billed calls so far."""
        with self._lock:
            return self._calls

    @property
    def by_kind(self) -> dict[str, int]:
        """Credits spent per kind of call (a copy)."""
        with self._lock:
            return dict(self._by_kind)

    @property
    def token_refreshes(self) -> int:
        """Token refresh calls made (they cost no API credits)."""
        with self._lock:
            return self._token_refreshes

    def reserve(self, credits: int) -> None:
        """Hold ``credits`` for a call about to be made; BudgetExceeded if it would pass the budget.

        The credits the call's module holds (:meth:`hold`) pay for it first. Pair with
        :meth:`release` once the call is answered. A stopping run refuses every new call here.
        """
        if self.stopping is not None and self.stopping():
            raise StopRequested(f"not starting a call that costs {credits} credits: stopping")
        owner = BILLED_TO.get()
        with self._lock:
            held = self._holds.get(owner, 0)
            drawn = min(held, credits)
            if (
                self.budget is not None
                and self._total + self._pending - drawn + credits > self.budget
            ):
                raise BudgetExceeded(
                    f"stopping before a call that costs {credits} credits: the budget is "
                    f"{self.budget} credits and {self._total} are spent"
                    + (f" ({self._pending} held by calls in flight)" if self._pending else "")
                )
            if drawn:
                self._holds[owner] = held - drawn
            self._pending += credits - drawn

    def left(self) -> int | None:
        """Credits of the budget neither spent nor held (None without a budget)."""
        with self._lock:
            if self.budget is None:
                return None
            return max(0, self.budget - self._total - self._pending)

    def hold(self, credits: int) -> None:
        """Set ``credits`` of the budget aside for the current context's module (a Bulk read,
        which is paid for before it can commit anything): other modules' calls cannot spend
        them, its own calls are paid from them first. BudgetExceeded if they are not left."""
        owner = BILLED_TO.get()
        with self._lock:
            if self.budget is not None and self._total + self._pending + credits > self.budget:
                raise BudgetExceeded(
                    f"{owner or 'the run'} needs at least {credits} credits; "
                    f"{max(0, self.budget - self._total - self._pending)} are left of the budget"
                )
            self._pending += credits
            self._holds[owner] = self._holds.get(owner, 0) + credits

    def drop_hold(self) -> None:
        """Give back what the current context's module still holds."""
        owner = BILLED_TO.get()
        with self._lock:
            self._pending = max(0, self._pending - self._holds.pop(owner, 0))

    def release(self, credits: int) -> None:
        """Give back credits held by :meth:`reserve`."""
        with self._lock:
            self._pending = max(0, self._pending - credits)

    def record(self, kind: str, credits: int) -> None:
        """Add one billed call, and tell the listeners (on the calling thread)."""
        with self._lock:
            self._total += credits
            self._calls += 1
            self._by_kind[kind] = self._by_kind.get(kind, 0) + credits
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, credits)

    def add_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(kind, credits)`` after every billed call (e.g. to attribute credits)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str, int], None]) -> None:
        """Stop calling ``listener``."""
        with self._lock:
            self._listeners.remove(listener)

    def record_token_refresh(self) -> None:
        """Count one token refresh."""
        with self._lock:
            self._token_refreshes += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything counted, as plain data (for run manifests)."""
        with self._lock:
            return {
                "total": self._total,
                "calls": self._calls,
                "by_kind": dict(self._by_kind),
                "token_refreshes": self._token_refreshes,
                "budget": self.budget,
            }
