"""Progress during a run: throttled log lines, and the silent base class keeping totals."""

from __future__ import annotations

import logging

import pytest

from connector.run.progress import LogProgress, Progress


def test_log_progress_throttles_lines(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = LogProgress(interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="connector.run.progress"):
        progress.start_module("Leads", "coql")
        progress.update("Leads", rows=200, pages=1, credits=1)  # within 10 s of the start
        now[0] = 11
        progress.update("Leads", rows=2200, pages=2, credits=4)
        progress.finish_module("Leads", "ok")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Leads: reading with coql",
        "Leads: 2,200 rows, 2 pages, 4 credits so far",
        "Leads: ok, 2,200 rows, 2 pages, 4 credits",
    ]
    assert progress.modules["Leads"].status == "ok"


def test_base_progress_keeps_totals_silently() -> None:
    progress = Progress()
    progress.update("Deals", rows=5)
    progress.update("Deals", credits=3)
    assert (progress.modules["Deals"].rows, progress.modules["Deals"].credits) == (5, 3)


def test_log_progress_says_1_row_1_page_1_credit_and_carries_the_facts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    progress = LogProgress(interval=10, clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="connector.run.progress"):
        progress.update("Users", rows=1, pages=1, credits=1)
        progress.finish_module("Users", "ok")
    assert caplog.records[-1].getMessage() == "Users: ok, 1 row, 1 page, 1 credit"
    facts = caplog.records[-1].facts  # type: ignore[attr-defined]
    assert facts == {
        "event": "progress",
        "module": "Users",
        "reader": "",
        "rows": 1,
        "pages": 1,
        "credits": 1,
        "status": "ok",
    }
