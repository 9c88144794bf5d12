"""Zoho's API credit price table, the rolling 24-hour budget, and the per-call ledger.

Prices (zoho-api.md §7, §4): 1 by default; metadata 1; a records list 1, or 3 with ``cvid``;
deleted records 2; COQL by LIMIT (1-200 → 1, 201-1000 → 2, 1001-2000 → 3); Bulk Read create 50,
its status and download 1 each; inserts/updates/deletes 1 per 10 records. Refused calls (4xx,
5xx, 429) cost nothing: the server reserves the price before handling a call and refunds it when
the answer is an error.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.simulator.clock import Clock, utc_now

WINDOW = timedelta(hours=24)

# House choice: Zoho answers 429 TOO_MANY_REQUESTS both for spent credits and for too many
# concurrent calls (zoho-api.md §7, the status does not say which). The simulator gives the
# spent-credits case its own code so tests and logs can tell them apart.
LIMIT_REACHED_BODY: dict[str, object] = {
    "code": "LIMIT_REACHED",
    "details": {},
    "message": "API limit exceeded for the day",
    "status": "error",
}


def coql_price(limit: int) -> int:
    """Credits of a COQL query by its LIMIT."""
    if limit <= 200:
        return 1
    if limit <= 1000:
        return 2
    return 3


def write_price(records: int) -> int:
    """Credits of an insert/update/delete of ``records`` records (1 per 10, at least 1)."""
    return max(1, math.ceil(records / 10))


PRICES: dict[str, int] = {
    "default": 1,
    "metadata": 1,
    "records": 1,
    "records_cvid": 3,
    "deleted": 2,
    "bulk_create": 50,
    "bulk_status": 1,
    "bulk_download": 1,
}


@dataclass(frozen=True)
class CreditEntry:
    """One charged call."""

    at: datetime
    kind: str
    credits: int
    method: str
    path: str


class CreditLedger:
    """Credits charged so far, by kind, with an optional rolling 24-hour budget. Thread-safe."""

    def __init__(self, *, clock: Clock | None = None, daily_limit: int | None = None) -> None:
        self.clock: Clock = clock or utc_now
        self.daily_limit = daily_limit
        self.entries: list[CreditEntry] = []
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Credits charged since the simulator started."""
        with self._lock:
            return sum(e.credits for e in self.entries)

    @property
    def by_kind(self) -> dict[str, int]:
        """Credits charged per kind of call (``records``, ``coql``, ``bulk_create``, …)."""
        counts: Counter[str] = Counter()
        with self._lock:
            for e in self.entries:
                counts[e.kind] += e.credits
        return dict(counts)

    def _used(self, now: datetime) -> int:
        start = now - WINDOW
        return sum(e.credits for e in self.entries if e.at > start)

    def used_in_window(self) -> int:
        """Credits charged in the last 24 hours."""
        with self._lock:
            return self._used(self.clock())

    def remaining(self) -> int | None:
        """Credits left in the rolling window, or None without a budget."""
        if self.daily_limit is None:
            return None
        return max(0, self.daily_limit - self.used_in_window())

    def charge(
        self, kind: str, credits: int, method: str = "", path: str = ""
    ) -> CreditEntry | None:
        """Charge a call, or return None (charging nothing) when it would pass the budget."""
        with self._lock:
            now = self.clock()
            if self.daily_limit is not None and self._used(now) + credits > self.daily_limit:
                return None
            entry = CreditEntry(now, kind, credits, method, path)
            self.entries.append(entry)
            return entry

    def refund(self, entry: CreditEntry) -> None:
        """Take back a charge (the call was refused after all)."""
        with self._lock:
            for i in range(len(self.entries) - 1, -1, -1):
                if self.entries[i] is entry:
                    del self.entries[i]
                    return

    def header_value(self) -> str | None:
        """``X-API-CREDITS-REMAINING`` value, sent only once half the budget is used."""
        if self.daily_limit is None:
            return None
        with self._lock:
            used = self._used(self.clock())
        if used * 2 < self.daily_limit:
            return None
        return str(max(0, self.daily_limit - used))

    def snapshot(self) -> dict[str, object]:
        """JSON-friendly view for ``GET /_sim/credits``."""
        return {
            "total": self.total,
            "by_kind": self.by_kind,
            "daily_limit": self.daily_limit,
            "remaining": self.remaining(),
            "entries": [
                {
                    "at": e.at.isoformat(),
                    "kind": e.kind,
                    "credits": e.credits,
                    "method": e.method,
                    "path": e.path,
                }
                for e in list(self.entries)
            ],
        }
