"""The server's time (Zoho's ``Date`` header) that caps each module's watermark."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from support.fakehttp import fake_session, response

from connector.config import InitiateOAuth, Region, Settings, Tuning
from connector.lake.manifest import ModuleReport
from connector.run.sync import LOCAL_TIME_MARGIN, SERVER_TIME_MARGIN, _ModuleJob
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


def job_with(server_time: datetime | None) -> tuple[_ModuleJob, ModuleReport]:
    report = ModuleReport("Leads")
    run = SimpleNamespace(client=SimpleNamespace(server_time=lambda: server_time))
    target = SimpleNamespace(meta=SimpleNamespace(api_name="Leads"))
    return _ModuleJob(run, target, report), report  # type: ignore[arg-type]


def test_cap_is_the_server_time_minus_the_margin() -> None:
    when = datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)
    job, report = job_with(when)
    assert job._read_start() == (when, when - SERVER_TIME_MARGIN)
    assert report.warnings == []


def test_without_a_date_header_the_local_clock_stands_in_with_a_wider_margin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job, report = job_with(None)
    before = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="connector.run.sync"):
        started, cap = job._read_start()
        job._read_start()
    after = datetime.now(UTC)
    assert started is None
    assert before - LOCAL_TIME_MARGIN - timedelta(seconds=1) <= cap <= after - LOCAL_TIME_MARGIN
    assert len(report.warnings) == 1 and "no Date header" in report.warnings[0]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
