"""Credits per module: which module each billed call of a run was made for.

The run manifest reports credits per module, and the calls made on no module's behalf (the
modules list) as the run's own, billed to ``None`` here.

A module's calls are not all made on its worker thread: ordered readers ask for their next page on
a prefetch thread, and a Records read may send its field groups' calls on a small pool. The module
is therefore a :class:`contextvars.ContextVar`, set by :meth:`CreditAttribution.bind` on the
worker thread; the readers start their helper threads inside a copy of the caller's context
(:func:`connector.readers.base.in_context`), so each call is billed to the module that asked for
it, on whatever thread it runs, and the modules' credits add up to the meter's total.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from connector.zoho.http import CreditMeter
from connector.zoho.meter import BILLED_TO as _BILLED_TO


@dataclass
class Spend:
    """What one module's calls cost: credits by kind of call, and the number of calls."""

    credits: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    @property
    def total(self) -> int:
        """Credits of every kind together."""
        return sum(self.credits.values())


class CreditAttribution:
    """Attributes the shared meter's credits to the module whose read made each call.

    The client's :class:`CreditMeter` is shared by every worker (one budget for the run); the
    meter tells its listeners on the thread that made the call, whose context names the module.
    """

    def __init__(self, meter: CreditMeter) -> None:
        self.meter = meter
        self._lock = threading.Lock()
        self.spend: dict[str | None, Spend] = {}

    def _on_record(self, kind: str, credits: int) -> None:
        # Called on the thread that made the call, in the context it was started with.
        module = _BILLED_TO.get()
        with self._lock:
            spend = self.spend.setdefault(module, Spend())
            spend.credits[kind] = spend.credits.get(kind, 0) + credits
            spend.calls += 1

    def install(self) -> None:
        """Start listening to the meter."""
        self.meter.add_listener(self._on_record)

    def uninstall(self) -> None:
        """Stop listening to the meter."""
        self.meter.remove_listener(self._on_record)

    @staticmethod
    def bind(module: str | None) -> None:
        """Bill the next calls of this thread (and of the helper threads it starts) to
        ``module`` (``None``: to no module)."""
        _BILLED_TO.set(module)

    def of(self, module: str | None) -> Spend:
        """A copy of what ``module``'s calls have cost so far."""
        with self._lock:
            spend = self.spend.get(module, Spend())
            return Spend(dict(spend.credits), spend.calls)

    def total(self) -> int:
        """Credits attributed so far, every module and the run's own together."""
        with self._lock:
            return sum(spend.total for spend in self.spend.values())


@contextmanager
def billed_to(module: str | None) -> Iterator[None]:
    """Bill the calls made inside the block to ``module`` (e.g. a named module's fields call
    during discovery), then go back to what was billed before."""
    token = _BILLED_TO.set(module)
    try:
        yield
    finally:
        _BILLED_TO.reset(token)
