"""When a failed call is tried again, after how long, and when it gives up.

Three kinds of failure, three rules (one :class:`CallRetries` per call):

- **5xx and dropped connections**: exponential backoff with jitter from ``retry_initial_wait``
  to ``retry_max_wait``, at most ``max_attempts`` attempts.
- **429** (an ambiguous "too many requests": Zoho sends the same status and code for "the day's
  credits are spent" and for "too many calls at once", and any message, even one that speaks of
  credits). The clear cases never get here: :func:`connector.zoho.responses.raise_for_response`
  raises :class:`CreditsExhausted` at once for ``X-API-CREDITS-REMAINING: 0`` or
  ``LIMIT_REACHED``. Every other 429 is waited out: exponential backoff with jitter from
  ``rate_limit_initial_wait`` up to a minute, ``Retry-After`` honoured when Zoho sends one,
  until ``rate_limit_budget`` seconds have been spent waiting for this call; 429s that persist
  that long are taken as spent credits (exit 4, resumable).
- **429 on a Bulk result download**: Zoho's 10-downloads-a-minute limit. The shared
  :class:`~connector.zoho.pacing.DownloadPacer` holds the download back until the minute has
  passed; the call is tried again (the job, paid for with 50 credits, is never created again
  because of it) until ``download_wait_budget`` seconds of such refusals.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from connector.errors import CreditsExhausted, RetriableAPIError, ZohoAPIError
from connector.zoho import limits

if TYPE_CHECKING:
    from connector.config import Tuning

log = logging.getLogger("connector.zoho.http")


E = TypeVar("E", bound=ZohoAPIError)


def _replacing(kind: type[E], message: str, exc: RetriableAPIError, code: str | None) -> E:
    """An error of ``kind`` in place of ``exc``, keeping what Zoho said (status, url, details)."""
    return kind(message, status=exc.status, code=code, url=exc.url, details=exc.details)


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return max(0.0, value)


class CallRetries:
    """The retry state of one call: failed attempts, and seconds spent waiting on 429s."""

    def __init__(
        self,
        tuning: Tuning,
        *,
        download: bool = False,
        lockout: float = limits.BULK_DOWNLOAD_LOCKOUT,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.tuning = tuning
        self.download = download
        self.lockout = lockout
        self._jitter = jitter
        self.failures = 0
        """Failed attempts that were not 429s (5xx, dropped connections)."""
        self.throttles = 0
        """429s answered to this call."""
        self.throttle_waited = 0.0
        """Seconds spent waiting on 429s (a refused download counts as one lockout)."""

    def wait_after(self, exc: RetriableAPIError) -> float:
        """Seconds to wait before trying again after ``exc``; raises when the call gives up."""
        if exc.status == 429:
            self.throttles += 1
            if self.download:
                return self._after_refused_download(exc)
            return self._after_throttle(exc)
        self.failures += 1
        if self.failures >= self.tuning.max_attempts:
            raise exc
        exponent = min(self.failures - 1, 60)
        initial = self.tuning.retry_initial_wait
        wait = min(initial * (2**exponent) + self._jitter(0, initial), self.tuning.retry_max_wait)
        retry_after = _finite(exc.retry_after)
        return wait if retry_after is None else max(wait, retry_after)

    def _after_throttle(self, exc: RetriableAPIError) -> float:
        budget = self.tuning.rate_limit_budget
        left = budget - self.throttle_waited
        exponent = min(self.throttles - 1, 60)
        base = min(self.tuning.rate_limit_initial_wait * (2**exponent), limits.RATE_LIMIT_MAX_WAIT)
        wait = base + self._jitter(0, base / 2)
        retry_after = _finite(exc.retry_after)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if left <= 0 or (retry_after is not None and retry_after > left):
            message = (
                f"{exc} (429 on every attempt for {self.throttle_waited:.0f} s of waiting, the "
                f"rate_limit_budget of {budget:g} s: taking the org's daily API credits as spent; "
                "run again when they renew, the state is resumable)"
            )
            raise _replacing(CreditsExhausted, message, exc, exc.code) from exc
        self.throttle_waited += wait
        return wait

    def _after_refused_download(self, exc: RetriableAPIError) -> float:
        budget = self.tuning.download_wait_budget
        if self.throttle_waited >= budget:
            message = (
                f"{exc} (Zoho refused this Bulk result download for {self.throttle_waited:.0f} s, "
                f"the download_wait_budget: another client may be using the org's 10 downloads a "
                "minute)"
            )
            raise _replacing(RetriableAPIError, message, exc, "BULK_DOWNLOAD_REFUSED") from exc
        self.throttle_waited += max(self.lockout, _finite(exc.retry_after) or 0.0)
        # The pacer, shared by every worker, does the waiting before the next download.
        return 0.0

    def log(self, url: str, exc: RetriableAPIError, wait: float, limit: int) -> None:
        """Log the retry about to happen (``url`` without its query, ``limit``: calls allowed)."""
        status = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        code = f" {exc.code}" if exc.code else ""
        if exc.status != 429:
            why = f"attempt {self.failures} of {self.tuning.max_attempts}"
        elif self.download:
            why = "Zoho's download limit: waiting for the minute to pass"
        else:
            why = (
                f"{self.throttle_waited:.0f} s of the {self.tuning.rate_limit_budget:g} s "
                f"rate-limit budget; {limit} call(s) in flight allowed"
            )
        log.warning("retrying %s after %s%s (%s, waiting %.1f s)", url, status, code, why, wait)
