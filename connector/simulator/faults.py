"""Fault injection for the simulator: seeded, off by default, adjustable while it runs."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class FaultConfig:
    """What can go wrong, and how often. Every field off by default.

    - ``rate_429`` / ``rate_5xx``: chance per API call of a 429 ``TOO_MANY_REQUESTS`` / a 500
      ``INTERNAL_ERROR`` or 503 (HTML body, as a load balancer would send).
    - ``concurrency_cap``: API calls in flight above it get 429 ``TOO_MANY_REQUESTS``.
    - ``latency_ms``: added to every call, ``/oauth`` included.
    - ``bulk_fail_next``: the next N Bulk Read jobs end in ``FAILURE``.
    - ``truncate_download_next``: the next N downloads announce the full Content-Length but the
      connection closes half way.
    - ``corrupt_download_next``: the next N downloads send a full-length but corrupted ZIP.
    - ``expire_page_token_next``: the next records ``page_token`` presented counts as expired.
    - ``token_lifetime``: overrides the access-token lifetime (seconds) for new tokens.

    Faults never touch ``/_sim/``; only latency touches ``/oauth``.
    """

    seed: int = 0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    concurrency_cap: int | None = None
    latency_ms: int = 0
    bulk_fail_next: int = 0
    truncate_download_next: int = 0
    corrupt_download_next: int = 0
    expire_page_token_next: bool = False
    token_lifetime: int | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """ValueError naming the first setting out of its range (a share above 1, a negative
        latency, a cap of 0, ...): a fault that cannot happen is a typo, not "no fault"."""
        for name, value in dataclasses.asdict(self).items():
            problem = _problem(name, value)
            if problem:
                raise ValueError(f"{name} {problem}, not {value!r}")

    def update(self, values: Mapping[str, Any]) -> None:
        """Set fields from a mapping (``POST /_sim/faults``); unknown names or values out of
        range raise ValueError and change nothing."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        dataclasses.replace(self, **values)  # checks the new values before any is set
        for key, value in values.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-friendly dict."""
        return dataclasses.asdict(self)


# Each setting's allowed values: (what it must be, a test). None means "off" where allowed.
_SHARES = frozenset({"rate_429", "rate_5xx"})
_AT_LEAST_ONE = frozenset({"concurrency_cap", "token_lifetime"})
_OPTIONAL = frozenset({"concurrency_cap", "token_lifetime"})


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for setting ``name`` (None when it is fine)."""
    if value is None and name in _OPTIONAL:
        return None
    if name == "expire_page_token_next":
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if name in _SHARES:
        return None if 0 <= value <= 1 else "must be a share of calls from 0 to 1"
    if not float(value).is_integer():
        return "must be a whole number"
    if name == "seed":
        return None
    if name in _AT_LEAST_ONE:
        return None if value >= 1 else "must be at least 1"
    return None if value >= 0 else "must be 0 or more"


# Zoho answers 429 TOO_MANY_REQUESTS both when the org's credits are spent and when too many
# calls run at once, and its message is not a contract (zoho-api.md §7, §11). Assumed, as the
# least convenient reading: any wording is possible, so by default every 429 of the simulator
# (random faults, the concurrency cap, the download limit) speaks of credits whatever its cause;
# a client must never take the wording as "credits spent". ``Simulator(throttle_message=...)``
# changes it. No Retry-After is documented, so none is sent unless ``Simulator(retry_after=N)``.
DEFAULT_THROTTLE_MESSAGE = (
    "You have exceeded the maximum number of API credits or concurrent requests."
)


def too_many_requests_body(message: str = DEFAULT_THROTTLE_MESSAGE) -> dict[str, object]:
    """Zoho's 429 body, ``TOO_MANY_REQUESTS`` with ``message``."""
    return {"code": "TOO_MANY_REQUESTS", "details": {}, "message": message, "status": "error"}


TOO_MANY_REQUESTS_BODY: dict[str, object] = too_many_requests_body()
INTERNAL_ERROR_BODY: dict[str, object] = {
    "code": "INTERNAL_ERROR",
    "details": {},
    "message": "Internal Server Error",
    "status": "error",
}


class FaultInjector:
    """Decides, per call, which fault (if any) applies. Thread-safe."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._seed = config.seed
        self._rng = random.Random(config.seed)
        self.in_flight = 0

    def _rng_for_seed(self) -> random.Random:
        if self.config.seed != self._seed:
            self._seed = self.config.seed
            self._rng = random.Random(self._seed)
        return self._rng

    def enter(self) -> bool:
        """Count a call in; False when it exceeds the concurrency cap (it is still counted)."""
        with self._lock:
            self.in_flight += 1
            cap = self.config.concurrency_cap
            return cap is None or self.in_flight <= cap

    def leave(self) -> None:
        """Count a call out."""
        with self._lock:
            self.in_flight -= 1

    def roll(self) -> int | None:
        """The status of an injected failure for this call (429, 500, 503), or None."""
        with self._lock:
            rate_429, rate_5xx = self.config.rate_429, self.config.rate_5xx
            if not rate_429 and not rate_5xx:
                return None
            rng = self._rng_for_seed()
            draw = rng.random()
            if draw < rate_429:
                return 429
            if draw < rate_429 + rate_5xx:
                return 500 if rng.random() < 0.5 else 503
            return None

    def _take(self, name: str) -> bool:
        with self._lock:
            left = getattr(self.config, name)
            if isinstance(left, bool):
                if left:
                    setattr(self.config, name, False)
                return left
            if left > 0:
                setattr(self.config, name, left - 1)
                return True
            return False

    def take_bulk_failure(self) -> bool:
        """Consume one ``bulk_fail_next``."""
        return self._take("bulk_fail_next")

    def take_truncate(self) -> bool:
        """Consume one ``truncate_download_next``."""
        return self._take("truncate_download_next")

    def take_corrupt(self) -> bool:
        """Consume one ``corrupt_download_next``."""
        return self._take("corrupt_download_next")

    def take_page_token_expiry(self) -> bool:
        """Consume ``expire_page_token_next``."""
        return self._take("expire_page_token_next")
