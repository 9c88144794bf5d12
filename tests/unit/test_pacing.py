"""The org's shared limits without HTTP: the adaptive concurrency limiter and the download pacer."""

from __future__ import annotations

import threading

import pytest
from support.faketime import FakeTime

from connector.zoho.pacing import SUCCESSES_TO_GROW, ConcurrencyLimiter, DownloadPacer

# -- ConcurrencyLimiter ---------------------------------------------------------------------------


def test_limiter_starts_at_the_ceiling_and_blocks_past_it() -> None:
    limiter = ConcurrencyLimiter(2)
    first, second = limiter.acquire(), limiter.acquire()
    assert limiter.in_flight == 2
    entered = threading.Event()

    def third() -> None:
        limiter.release(limiter.acquire(), served=True)
        entered.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not entered.wait(0.2)  # blocked while two calls are in flight
    limiter.release(first, served=True)
    assert entered.wait(5)
    thread.join(5)
    limiter.release(second, served=True)
    assert limiter.in_flight == 0


def test_a_429_halves_the_limit_once_per_congestion_and_never_below_one() -> None:
    limiter = ConcurrencyLimiter(8)
    tickets = [limiter.acquire() for _ in range(8)]
    # Eight calls sent under the same limit all come back 429: the limit halves once.
    for ticket in tickets:
        limiter.release(ticket, throttled=True)
    assert limiter.limit == 4
    # A call sent after the decrease that is throttled again halves it again.
    for expected in (2, 1, 1, 1):
        limiter.release(limiter.acquire(), throttled=True)
        assert limiter.limit == expected
    assert limiter.stats() == {"throttled": 12, "lowest": 1, "limit": 1}


def test_successes_raise_the_limit_one_at_a_time_up_to_the_ceiling() -> None:
    limiter = ConcurrencyLimiter(3)
    limiter.release(limiter.acquire(), throttled=True)
    assert limiter.limit == 1
    for _ in range(SUCCESSES_TO_GROW - 1):
        limiter.release(limiter.acquire(), served=True)
    assert limiter.limit == 1
    limiter.release(limiter.acquire(), served=True)
    assert limiter.limit == 2
    for _ in range(10 * SUCCESSES_TO_GROW):
        limiter.release(limiter.acquire(), served=True)
    assert limiter.limit == 3  # never above the ceiling


def test_a_429_resets_the_run_of_successes() -> None:
    limiter = ConcurrencyLimiter(4)
    limiter.release(limiter.acquire(), throttled=True)
    assert limiter.limit == 2
    for _ in range(SUCCESSES_TO_GROW - 1):
        limiter.release(limiter.acquire(), served=True)
    limiter.release(limiter.acquire())  # neither served nor throttled (a 5xx): no change
    stale = limiter.acquire()
    limiter.release(limiter.acquire(), throttled=True)  # a new congestion: 2 -> 1
    limiter.release(stale, throttled=True)  # sent before it: not counted twice
    assert limiter.limit == 1


def test_limiter_refuses_a_ceiling_below_one() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)


# -- DownloadPacer --------------------------------------------------------------------------------


def _in_any_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_pacer_keeps_any_window_at_ten_downloads() -> None:
    fake = FakeTime()
    pacer = DownloadPacer(10, window=62.0, lockout=62.0, clock=fake.clock, sleep=fake.sleep)
    sent = []
    for _ in range(25):
        pacer.acquire()
        sent.append(fake.now)
    assert sent[:10] == [0.0] * 10
    assert sent[10:20] == [62.0] * 10
    assert sent[20:] == [124.0] * 5
    assert _in_any_window(sent, 62.0) == 10
    assert pacer.waited == pytest.approx(62.0 * 2)


def test_pacer_spaces_workers_in_order() -> None:
    """Bookings are made under the lock: concurrent workers queue, never all wake at once."""
    fake = FakeTime()
    pacer = DownloadPacer(2, window=60.0, lockout=60.0, clock=fake.clock, sleep=lambda _: None)
    waits = [pacer.acquire() for _ in range(6)]
    assert waits == [0.0, 0.0, 60.0, 60.0, 120.0, 120.0]


def test_refusal_holds_every_download_for_the_lockout() -> None:
    fake = FakeTime()
    pacer = DownloadPacer(10, window=62.0, lockout=62.0, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire()
    fake.now = 5.0
    pacer.refused()
    assert pacer.acquire() == pytest.approx(62.0)
    assert fake.now == pytest.approx(67.0)
    pacer.refused(retry_after=90.0)  # a Retry-After longer than the lockout wins
    assert pacer.acquire() == pytest.approx(90.0)
    assert pacer.refusals == 2


def test_refusal_while_waiting_moves_the_booking() -> None:
    fake = FakeTime()
    pacers: list[DownloadPacer] = []

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if len(fake.sleeps) == 1:
            fake.now -= 30.0  # half way through the wait, another worker's download is refused
            pacers[0].refused()
            fake.now += 30.0

    pacers.append(DownloadPacer(1, window=60.0, lockout=60.0, clock=fake.clock, sleep=sleep))
    pacers[0].acquire()
    waited = pacers[0].acquire()
    # Booked for 60, but the refusal at 30 holds downloads until 90.
    assert fake.now == pytest.approx(90.0)
    assert waited == pytest.approx(90.0)
