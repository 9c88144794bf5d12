"""One module's job (``connector.run.module_job``): the watermark cap taken when its read starts,
and the live edge it leaves for the next run (no sockets)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pyarrow as pa
import pytest

from connector.lake.manifest import ModuleReport
from connector.run.landing import defer_live_edge
from connector.run.module_job import (
    LOCAL_TIME_MARGIN,
    SERVER_TIME_MARGIN,
    ModuleJob,
)

UTC = timezone.utc
T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def job_with(server_time: datetime | None) -> tuple[ModuleJob, ModuleReport]:
    report = ModuleReport("Leads")
    run = SimpleNamespace(client=SimpleNamespace(server_time=lambda: server_time))
    target = SimpleNamespace(meta=SimpleNamespace(api_name="Leads"))
    return ModuleJob(run, target, report), report  # type: ignore[arg-type]


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


def test_rows_at_or_after_the_cap_are_deferred_rows_without_time_kept() -> None:
    utc_us = pa.timestamp("us", tz="UTC")
    cap = T0
    times = [
        T0 - timedelta(seconds=1),
        T0,
        None,
        T0 + timedelta(seconds=3),
        T0 - timedelta(0, 0, 1),
    ]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["a", "b", "c", "d", "e"]), pa.array(times, utc_us)], ["id", "Modified_Time"]
    )
    kept, deferred = defer_live_edge(batch, cap)
    assert kept.column("id").to_pylist() == ["a", "c", "e"] and deferred == 2
    assert defer_live_edge(batch, None) == (batch, 0)
    older = batch.filter(pa.array([True, False, True, False, True]))
    same, none = defer_live_edge(older, cap)
    assert same is older and none == 0
