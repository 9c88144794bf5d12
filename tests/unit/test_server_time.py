"""The server's time, from Zoho's ``Date`` headers, that caps each module's watermark (the cap
itself: tests/unit/test_module_job.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import SecretStr
from support.fakehttp import fake_session, response

from connector.config import InitiateOAuth, Region, Settings, Tuning
from connector.zoho.http import ZohoClient

UTC = timezone.utc


def client(replies: list[Any]) -> ZohoClient:
    settings = Settings(
        region=Region.US,
        initiate_oauth=InitiateOAuth.OFF,
        access_token=SecretStr("1000.access-token-for-tests.abc"),
        tuning=Tuning(retry_initial_wait=0.0, retry_max_wait=0.0, max_attempts=2),
    )
    session, _ = fake_session(replies)
    return ZohoClient(settings, session=session, sleep=lambda _: None)


def test_server_time_is_the_greatest_date_header_seen() -> None:
    zoho = client(
        [
            response(200, {"a": 1}, headers={"Date": "Wed, 01 Jul 2026 12:00:05 GMT"}),
            response(200, {"a": 2}),  # no Date: the last known time stays
            response(200, {"a": 3}, headers={"Date": "not a date"}),
            # an answer that was slower to arrive, stamped earlier: never moves the time back
            response(200, {"a": 4}, headers={"Date": "Wed, 01 Jul 2026 12:00:01 GMT"}),
            response(
                500, {"code": "INTERNAL_ERROR"}, headers={"Date": "Wed, 01 Jul 2026 12:00:09 GMT"}
            ),
            response(200, {"a": 5}),
        ]
    )
    assert zoho.server_time() is None
    zoho.get_json("org")
    assert zoho.server_time() == datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)
    zoho.get_json("org")
    zoho.get_json("org")
    zoho.get_json("org")
    assert zoho.server_time() == datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)
    zoho.get_json("org")  # retried after the 500, whose Date still tells the server's time
    assert zoho.server_time() == datetime(2026, 7, 1, 12, 0, 9, tzinfo=UTC)
