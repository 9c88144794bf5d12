"""Bulk reader against the fake Zoho: jobs, polling, pages, faults, field groups, credits."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from support.fakezoho import (
    BASE,
    MODULE,
    FakeZoho,
    by_id,
    expected,
    make_records,
    make_schema,
    read_all,
    tuning,
)

from connector.errors import DataError, ModuleUnavailable, RetriableAPIError
from connector.readers import make_reader
from connector.readers.bulk import BulkReader


def reader_for(fake: FakeZoho, tmp_path: Path, **tune: Any) -> tuple[BulkReader, list[float]]:
    waits: list[float] = []
    reader = BulkReader(fake, tuning(**tune), sleep=waits.append, scratch_dir=tmp_path)  # type: ignore[arg-type]
    return reader, waits


def test_full_read_one_job_equals_source(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(500))
    reader, waits = reader_for(fake, tmp_path)
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert not reader.ordered and reader.name == "bulk"
    # create 50 + 2 polls + 1 download; the first poll waits bulk_poll_initial.
    assert fake.credits() == 53
    assert waits == [1.0, 2.0]
    body = fake.calls[0].body
    assert body["file_type"] == "csv" and body["query"]["module"] == {"api_name": "Deals"}
    assert "id" not in body["query"]["fields"] and len(body["query"]["fields"]) == 4
    assert list(tmp_path.iterdir()) == []  # the scratch files are gone


def test_make_reader_builds_bulk() -> None:
    reader = make_reader("bulk", FakeZoho([]), tuning())  # type: ignore[arg-type]
    assert reader.name == "bulk"
    with pytest.raises(ValueError):
        make_reader("odbc", FakeZoho([]), tuning())  # type: ignore[arg-type]


def test_incremental_criteria_are_whole_seconds_utc(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(30, per_second=3))
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, schema, BASE + timedelta(seconds=9, microseconds=123))
    assert sorted(table["Amount"].to_pylist()) == [27, 28, 29]
    criteria = fake.calls[0].body["query"]["criteria"]
    assert criteria == {
        "field": {"api_name": "Modified_Time"},
        "comparator": "greater_equal",
        "value": "2026-01-01T00:00:09+00:00",
    }


def test_multi_page_follows_page_tokens(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(250), bulk_page_size=100)
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    creates = [c.body for c in fake.calls if c.kind == "bulk_create"]
    assert len(creates) == 3
    assert creates[1] == {"query": {"page_token": "btok900"}, "file_type": "csv"}
    assert reader.stats.jobs == 3 and reader.stats.pages == 3
    assert fake.credits() == 3 * (50 + 2 + 1)


def test_the_next_pages_job_is_created_while_this_page_is_read(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(250), bulk_page_size=100)
    second_created = threading.Event()
    plain = fake.post_json

    def post_json(path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        answer = plain(path, body, **kwargs)
        if body.get("query", {}).get("page_token"):
            second_created.set()
        return answer

    fake.post_json = post_json  # type: ignore[method-assign]
    reader, _ = reader_for(fake, tmp_path)
    batches = reader.read(MODULE, schema, None)
    first = next(batches)
    # The caller holds the first page's first batch: the second page's job is asked for
    # meanwhile (read one after another, this would wait forever).
    assert second_created.wait(30)
    rows = pa.Table.from_batches([first, *batches], schema=schema.arrow)
    assert by_id(rows).equals(expected(fake, schema))
    assert fake.count("bulk_create") == 3  # the same jobs, no more


def test_closing_the_read_ends_the_wait_of_the_next_pages_job(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(250), bulk_page_size=100)
    fake.polls_to_complete = 1
    plain = fake.post_json

    def post_json(path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        if body.get("query", {}).get("page_token"):
            fake.polls_to_complete = 10**6  # the second page's job never completes
        return plain(path, body, **kwargs)

    fake.post_json = post_json  # type: ignore[method-assign]
    reader = BulkReader(fake, tuning(), scratch_dir=tmp_path)  # type: ignore[arg-type]

    def sleep(seconds: float) -> None:
        # The background page's waits last until the read is closed, as a real wait cut short.
        if threading.current_thread().name.startswith("prefetch"):
            reader._closing.wait(30)  # set by the close

    reader.sleep = sleep  # type: ignore[method-assign]
    batches = reader.read(MODULE, schema, None)
    next(batches)
    batches.close()  # the caller stops (a signal, an error)
    second_job = [c.path for c in fake.calls if c.kind == "bulk_status"][-1]
    polls = [c for c in fake.calls if c.kind == "bulk_status" and c.path == second_job]
    # Polled once, then the close ended its wait (polled on, it would run to bulk_poll_timeout).
    assert fake.count("bulk_create") == 2 and len(polls) == 1


def test_failure_recreates_the_job(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(50), bulk_fail_next=2)
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert fake.count("bulk_create") == 3 and reader.stats.retries == 2


def test_failure_every_time_raises(tmp_path: Path) -> None:
    fake = FakeZoho(make_records(50), bulk_fail_next=3)
    reader, _ = reader_for(fake, tmp_path)
    with pytest.raises(RetriableAPIError) as info:
        read_all(reader, make_schema())
    assert info.value.code == "BULK_FAILURE"
    assert fake.count("bulk_create") == 3


def test_truncated_zip_is_downloaded_again_and_nothing_partial_is_yielded(tmp_path: Path) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(3000), truncate_next=1)
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert fake.count("bulk_download") == 2 and fake.count("bulk_create") == 1


def test_always_truncated_recreates_the_job_then_raises(tmp_path: Path) -> None:
    fake = FakeZoho(make_records(300), truncate_next=4)
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, make_schema())
    # 3 bad downloads, a new job, a bad then a good download.
    assert table.num_rows == 300
    assert fake.count("bulk_create") == 2 and fake.count("bulk_download") == 5
    fake = FakeZoho(make_records(300), truncate_next=99)
    reader, _ = reader_for(fake, tmp_path)
    with pytest.raises(RetriableAPIError):
        read_all(reader, make_schema())


def test_csv_shorter_than_the_job_count_is_an_error(tmp_path: Path) -> None:
    fake = FakeZoho(make_records(300), csv_short_next=1)
    reader, _ = reader_for(fake, tmp_path)
    with pytest.raises(RetriableAPIError) as info:
        read_all(reader, make_schema())
    assert info.value.code == "BULK_INCOMPLETE"


def test_expired_page_token_asks_for_a_restart(tmp_path: Path) -> None:
    fake = FakeZoho(make_records(250), bulk_page_size=100, expire_bulk_token_next=True)
    reader, _ = reader_for(fake, tmp_path)
    with pytest.raises(RetriableAPIError) as info:
        read_all(reader, make_schema())
    assert info.value.code == "BULK_PAGE_TOKEN"


def test_poll_backoff_and_timeout(tmp_path: Path) -> None:
    fake = FakeZoho(make_records(10), polls_to_complete=10_000)
    reader, waits = reader_for(
        fake, tmp_path, bulk_poll_initial=1.0, bulk_poll_max=8.0, bulk_poll_timeout=40.0
    )
    with pytest.raises(RetriableAPIError) as info:
        read_all(reader, make_schema())
    assert info.value.code == "BULK_TIMEOUT"
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    assert fake.count("bulk_status") == len(waits)


def test_module_not_supported(tmp_path: Path) -> None:
    fake = FakeZoho(make_records(10), unsupported_bulk=True)
    reader, _ = reader_for(fake, tmp_path)
    with pytest.raises(ModuleUnavailable):
        read_all(reader, make_schema())


def test_more_than_200_fields_join_groups_by_id(tmp_path: Path) -> None:
    schema = make_schema(extra_fields=250)
    fake = FakeZoho(make_records(300, extra_fields=250), bulk_page_size=120)
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    creates = [c.body["query"] for c in fake.calls if c.kind == "bulk_create"]
    firsts = [q for q in creates if "fields" in q]
    assert len(firsts) == 2 and all(len(q["fields"]) <= 200 for q in firsts)
    assert all("Modified_Time" in q["fields"] for q in firsts)
    assert len(creates) == 6  # 3 pages x 2 groups


def test_record_changed_between_groups_is_read_again_by_id(tmp_path: Path) -> None:
    schema = make_schema(extra_fields=250)
    fake = FakeZoho(make_records(300, extra_fields=250), bulk_page_size=120)
    victim = fake.records[7]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n == 1:  # after the first group's job is created, before the second's
            zoho.touch(victim, X240="changed", Name="new")

    fake.on_call = change
    reader, _ = reader_for(fake, tmp_path)
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    row = table.filter(pa.compute.equal(table["id"], victim)).to_pylist()
    assert len(row) == 1 and row[0]["X240"] == "changed" and row[0]["Name"] == "new"
    assert reader.stats.dropped == 1
    assert any("read again by id" in n for n in reader.stats.notes)
    assert fake.count("records") == 6  # the record by id: 254 fields, 6 groups of <= 50


def test_empty_result(tmp_path: Path) -> None:
    fake = FakeZoho([])
    reader, _ = reader_for(fake, tmp_path)
    assert read_all(reader, make_schema()).num_rows == 0
    assert fake.count("bulk_create") == 1


def test_a_page_token_that_comes_back_stops_the_read(tmp_path: Path) -> None:
    # Every page answers with the same token: following it again would page in a circle, at 50
    # credits a job.
    class Circling(FakeZoho):
        def _bulk_status(self, job_id: str) -> dict[str, Any]:
            answer = super()._bulk_status(job_id)
            result = answer["data"][0].get("result") or {}
            if "next_page_token" in result:
                self.bulk_tokens["same"] = self.bulk_tokens.pop(result["next_page_token"])
                result["next_page_token"] = "same"
            return answer

    fake = Circling(make_records(500), bulk_page_size=100)
    reader, _ = reader_for(fake, tmp_path)
    with pytest.raises(DataError) as info:
        read_all(reader, make_schema())
    assert "same page token twice" in str(info.value)
    assert fake.count("bulk_create") == 2
