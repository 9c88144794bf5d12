"""The record of paid Bulk jobs: which recorded job a read may take, and a record that fails."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.lake.bulk_jobs import BulkJobBook, token_hash
from connector.lake.output import Output
from connector.run.planner import Shape, least_credits, resumed_bulk_credits

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
FIELDS = ("id", "Modified_Time", "Last_Name")
SINCE = {"field": {"api_name": "Modified_Time"}, "comparator": "greater_equal", "value": "x"}


def _book(tmp_path: Path, after_run: str | None = "run-1") -> BulkJobBook:
    return BulkJobBook(Output.open(str(tmp_path)), "Leads", after_run=after_run, cap=T0)


def _paid(book: BulkJobBook, token: str | None = None, page: int = 1) -> None:
    book.paid(
        "J1" if token is None else f"J{page}",
        FIELDS,
        SINCE,
        page=page,
        token=token,
        created_time=T0,
    )


def test_a_recorded_job_is_found_by_a_later_book_for_the_same_request(tmp_path: Path) -> None:
    _paid(_book(tmp_path))
    _paid(_book(tmp_path), token="secret-token", page=2)
    later = _book(tmp_path)
    assert [j.id for j in later.jobs()] == ["J1", "J2"]
    assert later.find(FIELDS, SINCE, None, T0 + timedelta(hours=1)).id == "J1"  # type: ignore[union-attr]
    assert later.find(FIELDS, SINCE, "secret-token", T0).id == "J2"  # type: ignore[union-attr]
    # The page token itself is never stored, only its hash.
    text = (tmp_path / BulkJobBook.path("Leads")).read_text()
    assert "secret-token" not in text and token_hash("secret-token") in text
    assert later.jobs()[0].cap == T0


@pytest.mark.parametrize(
    ("fields", "criteria", "token", "after_run", "age"),
    [
        (FIELDS[:2], SINCE, None, "run-1", 0),  # another field group
        (FIELDS, None, None, "run-1", 0),  # a full load, not the same watermark
        (FIELDS, {**SINCE, "value": "y"}, None, "run-1", 0),  # another watermark
        (FIELDS, SINCE, "other", "run-1", 0),  # a later page of another chain
        (FIELDS, SINCE, None, "run-2", 0),  # a run committed the module since
        (FIELDS, SINCE, None, None, 0),
        (FIELDS, SINCE, None, "run-1", 23),  # too near Zoho's one day
    ],
)
def test_a_recorded_job_is_not_taken_for_another_request(
    tmp_path: Path,
    fields: tuple[str, ...],
    criteria: object,
    token: str | None,
    after_run: str | None,
    age: int,
) -> None:
    _paid(_book(tmp_path))
    later = _book(tmp_path, after_run)
    assert later.find(fields, criteria, token, T0 + timedelta(hours=age)) is None
    assert _book(tmp_path).find(FIELDS, SINCE, None, T0 + timedelta(hours=22)) is not None


def test_forget_and_clear(tmp_path: Path) -> None:
    book = _book(tmp_path)
    _paid(book)
    _paid(book, token="t", page=2)
    book.forget(["J1"])
    assert [j.id for j in _book(tmp_path).jobs()] == ["J2"]
    book.forget(["J2"])
    assert not (tmp_path / BulkJobBook.path("Leads")).exists()
    _paid(book)
    book.clear()
    assert not (tmp_path / BulkJobBook.path("Leads")).exists()
    assert _book(tmp_path).jobs() == []


def test_an_unreadable_record_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / BulkJobBook.path("Leads")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "jobs": [{"id": 5}]}')
    with caplog.at_level(logging.WARNING):
        assert _book(tmp_path).jobs() == []
    assert "unreadable" in caplog.text


def test_a_record_that_cannot_be_written_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = _book(tmp_path)

    def full(rel: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(book.output, "write_bytes_atomic", full)
    with caplog.at_level(logging.WARNING):
        _paid(book)
    assert "will pay for them again" in caplog.text


def test_a_resumed_job_costs_its_status_and_download() -> None:
    assert resumed_bulk_credits(1, None) == 2
    assert resumed_bulk_credits(1, 150_000) == 2
    # Two of five pages paid for: 2 each, the other three at 50 + 3 polls + 1 download.
    assert resumed_bulk_credits(2, 1_000_000) == 2 * 2 + 3 * 54
    assert least_credits("bulk", 1_000_000, Shape(10), resumed=2) == 4 + 3 * 54
    assert least_credits("bulk", 1_000_000, Shape(10)) == 5 * 54
