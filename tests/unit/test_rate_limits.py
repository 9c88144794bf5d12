"""Zoho's 429s through the client: waited out whatever the message says, credits spent only on
strong evidence or a spent budget, Bulk downloads paced and a refused download fetched again."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
from support.fakehttp import fake_session, response
from support.faketime import FakeTime

from connector.config import InitiateOAuth, Region, Settings, Tuning
from connector.errors import CreditsExhausted, RetriableAPIError
from connector.zoho.http import ZohoClient
from connector.zoho.retry import CallRetries

ACCESS = "1000.access-token-for-tests.abc"
# Zoho's own wording is not a contract: this one speaks of credits, yet it may be concurrency.
CREDIT_WORDING = "You have exceeded the maximum number of API credits or concurrent requests."
DOWNLOAD = "/crm/bulk/v8/read/111/result"


def settings(**tuning: Any) -> Settings:
    return Settings(
        region=Region.US,
        initiate_oauth=InitiateOAuth.OFF,
        access_token=ACCESS,
        tuning=Tuning(**tuning),
    )


def client_for(
    script: list[Any] | None = None, *, handler: Any = None, **tuning: Any
) -> tuple[ZohoClient, Any, FakeTime]:
    session, adapter = fake_session(script, handler)
    fake = FakeTime(1000.0)
    client = ZohoClient(settings(**tuning), session=session, sleep=fake.sleep, clock=fake.clock)
    return client, adapter, fake


def too_many(message: str = CREDIT_WORDING, **headers: str) -> requests.Response:
    body = {"code": "TOO_MANY_REQUESTS", "details": {}, "message": message, "status": "error"}
    return response(429, body, headers=headers)


def test_a_429_that_mentions_credits_is_waited_out() -> None:
    client, adapter, fake = client_for(
        [too_many(), too_many("API limit exceeded"), response(200, {"org": []})]
    )
    assert client.get_json("org") == {"org": []}
    assert len(adapter.requests) == 3
    # Exponential backoff with jitter, from rate_limit_initial_wait (2 s): 2-3 s, then 4-6 s.
    assert 2.0 <= fake.sleeps[0] <= 3.0 and 4.0 <= fake.sleeps[1] <= 6.0
    assert client.meter.total == 1  # refused calls are not billed


@pytest.mark.parametrize(
    "reply",
    [
        too_many("Too many requests", **{"X-API-CREDITS-REMAINING": "0"}),
        response(429, {"code": "LIMIT_REACHED", "details": {}, "message": "", "status": "error"}),
    ],
)
def test_strong_evidence_stops_at_once(reply: requests.Response) -> None:
    client, adapter, fake = client_for([reply])
    with pytest.raises(CreditsExhausted) as info:
        client.get_json("org")
    assert info.value.exit_code == 4
    assert len(adapter.requests) == 1 and fake.sleeps == []


def test_429s_past_the_budget_are_taken_as_spent_credits() -> None:
    client, adapter, fake = client_for([too_many()] * 50)
    with pytest.raises(CreditsExhausted, match="rate_limit_budget of 300 s") as info:
        client.get_json("org")
    assert info.value.exit_code == 4 and info.value.status == 429
    # About five minutes of waiting, in growing steps of at most a minute and a half.
    assert 300.0 <= sum(fake.sleeps) < 300.0 + 90.0
    assert max(fake.sleeps) <= 90.0
    assert len(adapter.requests) == len(fake.sleeps) + 1
    assert len(adapter.requests) < 15


def test_the_budget_is_a_knob() -> None:
    client, adapter, fake = client_for([too_many()] * 5, rate_limit_budget=0)
    with pytest.raises(CreditsExhausted):
        client.get_json("org")
    assert len(adapter.requests) == 1 and fake.sleeps == []


def test_a_retry_after_beyond_the_budget_stops() -> None:
    client, _, fake = client_for([too_many(**{"Retry-After": "3600"})])
    with pytest.raises(CreditsExhausted):
        client.get_json("org")
    assert fake.sleeps == []


def test_429s_lower_the_calls_in_flight_and_successes_raise_them_again() -> None:
    script: list[Any] = [too_many(), too_many()] + [response(200, {"org": []})] * 40
    client, _, _ = client_for(script, workers=4, group_calls=2)
    assert client.limiter.limit == 8
    client.get_json("org")
    assert client.limiter.limit == 2
    for _ in range(39):
        client.get_json("org")
    assert client.limiter.limit == 7  # one more per 8 answers served (40 in all)
    assert client.limiter.in_flight == 0


def test_5xx_attempts_stay_bounded_by_max_attempts() -> None:
    server_error = response(500, {"code": "INTERNAL_ERROR", "details": {}, "message": ""})
    client, adapter, _ = client_for([server_error] * 10, max_attempts=3)
    with pytest.raises(RetriableAPIError):
        client.get_json("org")
    assert len(adapter.requests) == 3


# -- Bulk downloads -------------------------------------------------------------------------------


def test_downloads_are_paced_to_ten_a_minute() -> None:
    client, adapter, fake = client_for(handler=lambda _: response(200, body=b"PK"))
    sent: list[float] = []
    for _ in range(12):
        client.download(DOWNLOAD, io.BytesIO())
        sent.append(fake.now)
    assert sent[:10] == [1000.0] * 10
    assert sent[10] == sent[11] == pytest.approx(1062.0)  # a minute plus a margin
    assert len(adapter.requests) == 12


def test_a_refused_download_waits_the_minute_and_downloads_again() -> None:
    replies = iter([too_many("Too many requests"), response(200, body=b"PK-zip")])
    client, adapter, fake = client_for(handler=lambda _: next(replies))
    dest = io.BytesIO()
    assert client.download(DOWNLOAD, dest) == 6
    assert dest.getvalue() == b"PK-zip"
    assert [r.url for r in adapter.requests] == [adapter.requests[0].url] * 2
    assert fake.sleeps == [pytest.approx(62.0)]  # no Retry-After: the documented minute
    assert client.pacer.refusals == 1


def test_a_download_refused_too_long_fails_without_claiming_spent_credits() -> None:
    client, adapter, _ = client_for([too_many()] * 10, download_wait_budget=180)
    with pytest.raises(RetriableAPIError) as info:
        client.download(DOWNLOAD, io.BytesIO())
    assert not isinstance(info.value, CreditsExhausted)
    assert info.value.code == "BULK_DOWNLOAD_REFUSED"
    assert len(adapter.requests) == 4  # 3 lockouts of 62 s reach the 180 s budget


def test_call_retries_alone() -> None:
    retries = CallRetries(Tuning(rate_limit_initial_wait=1.0), jitter=lambda low, high: high)
    throttled = RetriableAPIError("busy", status=429)
    assert [retries.wait_after(throttled) for _ in range(4)] == [1.5, 3.0, 6.0, 12.0]
    assert retries.throttle_waited == 22.5
    assert retries.failures == 0
