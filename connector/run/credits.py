"""Credits per module: which module each billed call of a run was made for.

The run manifest reports credits per module, and the calls made on no module's behalf (discovery)
as the run's own, billed to ``None`` here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from connector.zoho.http import CreditMeter


@dataclass
class Spend:
    """What one module's calls cost: credits by kind of call, and the number of calls."""

    credits: dict[str, int] = field(default_factory=dict)
    calls: int = 0


class CreditAttribution:
    """Attributes the shared meter's credits to the module each worker thread is reading.

    The client's :class:`CreditMeter` is shared by every worker (one budget for the run); each
    module runs in one thread, so a thread-local module name tells whose call was billed.
    """

    def __init__(self, meter: CreditMeter) -> None:
        self.meter = meter
        self._local = threading.local()
        self._lock = threading.Lock()
        self.spend: dict[str | None, Spend] = {}

    def _on_record(self, kind: str, credits: int) -> None:
        # Called on the thread that made the call: its module is the one billed.
        module = getattr(self._local, "module", None)
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

    def bind(self, module: str | None) -> None:
        """Bill this thread's next calls to ``module`` (``None``: to no module)."""
        self._local.module = module

    def of(self, module: str | None) -> Spend:
        """A copy of what ``module``'s calls have cost so far."""
        with self._lock:
            spend = self.spend.get(module, Spend())
            return Spend(dict(spend.credits), spend.calls)
