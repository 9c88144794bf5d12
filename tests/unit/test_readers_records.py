"""Records API reader against the fake Zoho: restart-per-page paging, ties, tokens, groups."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from support.fakezoho import (
    BASE,
    FakeZoho,
    by_id,
    expected,
    make_records,
    make_schema,
    read_all,
    tuning,
    zid,
)

from connector.errors import DataError, FatalAPIError, RetriableAPIError
from connector.readers import make_reader
from connector.readers.records import RecordsReader, fetch_by_ids


def pages_asked(fake: FakeZoho) -> list[tuple[object, object]]:
    return [
        (c.params.get("page"), c.params.get("page_token"))
        for c in fake.calls
        if c.kind == "records" and c.params and "ids" not in c.params
    ]


def sorts_asked(fake: FakeZoho) -> list[tuple[object, object, object]]:
    """Each list call's sort, page and page token."""
    return [
        (c.params.get("sort_by"), c.params.get("page"), c.params.get("page_token"))
        for c in fake.calls
        if c.kind == "records" and c.params and "ids" not in c.params
    ]


def assert_time_ascending(table: pa.Table) -> None:
    """Ascending by Modified_Time; the rows of one second in any order."""
    times = table["Modified_Time"].to_pylist()
    assert times == sorted(times)


def test_full_read_equals_source_one_credit_per_page() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(2500, per_second=5))
    reader = make_reader("records", fake, tuning())  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert_time_ascending(table)
    assert reader.ordered and reader.name == "records"
    # Each page restarts from its last second: 200 rows a page, minus the re-read tie of 5 rows
    # at most, so 13 or 14 calls for 2,500 rows, never a page past 10.
    assert fake.count("records") <= 14
    assert all(p is not None and int(p) <= 10 for p, _ in pages_asked(fake))
    first = fake.calls[0].params or {}
    assert first["sort_by"] == "Modified_Time" and first["sort_order"] == "asc"
    assert first["per_page"] == 200


def test_incremental_sends_if_modified_since_and_304_means_nothing() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(30, per_second=3))
    table = read_all(RecordsReader(fake, tuning()), schema, BASE + timedelta(seconds=9))  # type: ignore[arg-type]
    assert sorted(table["Amount"].to_pylist()) == [27, 28, 29]
    later = read_all(RecordsReader(fake, tuning()), schema, BASE + timedelta(days=1))  # type: ignore[arg-type]
    assert later.num_rows == 0


def test_450_rows_sharing_one_second_page_within_the_second() -> None:
    schema = make_schema()
    rows = make_records(450, per_second=450)
    rows += [
        {**r, "id": zid(1000 + i), "Modified_Time": BASE + timedelta(seconds=5 + i)}
        for i, r in enumerate(make_records(100))
    ]
    fake = FakeZoho(rows)
    table = read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert table.num_rows == 550
    assert by_id(table).equals(expected(fake, schema))
    # The fake orders the second's ties anew on every call, so its rows are read by id: the
    # rows from that second on, three pages, then on by time from the second after it.
    asked = sorts_asked(fake)
    assert asked[:5] == [
        ("Modified_Time", 1, None),
        ("id", 1, None),
        ("id", 2, None),
        ("id", 3, None),
        ("Modified_Time", 1, None),
    ]


def test_more_than_2000_rows_in_one_second_switch_to_page_token() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(2300, per_second=2300))
    table = read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert by_id(table).equals(expected(fake, schema))
    asked = sorts_asked(fake)
    assert asked[0] == ("Modified_Time", 1, None)
    assert asked[1:11] == [("id", p, None) for p in range(1, 11)]
    assert asked[11][:2] == ("id", None) and asked[11][2] is not None


def test_the_100k_cap_is_never_reached_because_each_page_restarts() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(3000, per_second=3), records_cap=600)
    table = read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert by_id(table).equals(expected(fake, schema))


def test_cap_inside_one_second_is_a_clear_error() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(2600, per_second=2600), records_cap=2200)
    with pytest.raises(RetriableAPIError) as info:
        read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert info.value.code == "PAGINATION_LIMIT_EXCEEDED"


def test_expired_page_token_restarts_from_the_last_second() -> None:
    schema = make_schema()
    rows = make_records(2300, per_second=2300) + [
        {**r, "id": zid(5000 + i), "Modified_Time": BASE + timedelta(seconds=10 + i)}
        for i, r in enumerate(make_records(10))
    ]
    fake = FakeZoho(rows, expire_records_token_next=True)
    reader = RecordsReader(fake, tuning())  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert reader.stats.retries == 1
    assert any("EXPIRED_VALUE" in n for n in reader.stats.notes)


def test_other_errors_propagate() -> None:
    schema = make_schema()

    class Refusing(FakeZoho):
        def _get_json(self, path: str, **kwargs: object) -> None:
            raise FatalAPIError("no", status=400, code="INVALID_DATA")

    with pytest.raises(FatalAPIError):
        read_all(RecordsReader(Refusing([]), tuning()), schema)  # type: ignore[arg-type]


def test_a_record_modified_mid_read_is_not_skipped() -> None:
    # With offset paging, moving an early record to the end shifts every later row back by one
    # and a page boundary skips a row. Restarting each page from its last second avoids it.
    schema = make_schema()
    fake = FakeZoho(make_records(1000, per_second=1))
    early = fake.records[3]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n == 2:
            zoho.touch(early, Name="moved")

    fake.on_call = change
    table = read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    ids = table["id"].to_pylist()
    assert set(ids) == {r["id"] for r in fake.records}
    # The moved record comes twice (old and new version); every other once.
    assert len(ids) == 1001
    latest = table.filter(pa.compute.equal(table["id"], early)).to_pylist()
    assert [r["Name"] for r in latest][-1] == "moved"


def test_field_groups_page_in_step_and_reread_a_record_changed_between_groups() -> None:
    schema = make_schema(extra_fields=60)
    fake = FakeZoho(make_records(450, per_second=3, extra_fields=60))
    victim = fake.records[50]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n == 1:
            zoho.touch(victim, X055="changed")

    fake.on_call = change
    reader = RecordsReader(fake, tuning())  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert table["id"].to_pylist().count(victim) == 1
    assert reader.stats.dropped >= 1
    assert all(len(c.params["fields"].split(",")) <= 50 for c in fake.calls if c.params)  # type: ignore[union-attr]
    # Two groups: every page is two calls with the same paging parameters.
    pairs = pages_asked(fake)
    assert pairs[0::2] == pairs[1::2]


def test_field_groups_follow_their_own_page_tokens() -> None:
    schema = make_schema(extra_fields=60)
    fake = FakeZoho(make_records(2300, per_second=2300, extra_fields=60))
    table = read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert by_id(table).equals(expected(fake, schema))
    tokens = [t for _, t in pages_asked(fake) if t is not None]
    assert len(tokens) == 4 and len(set(tokens)) == 4


def test_fetch_by_ids_reads_current_versions_in_groups() -> None:
    schema = make_schema(extra_fields=60)
    fake = FakeZoho(make_records(300, extra_fields=60))
    wanted = [fake.records[i]["id"] for i in range(0, 300, 2)]
    rows, unstable = fetch_by_ids(fake, schema, [*wanted, zid(99_999)])  # type: ignore[arg-type]
    assert sorted(rows.column("id").to_pylist()) == sorted(wanted) and not unstable
    assert rows.schema == schema.arrow
    source = expected(fake, schema)
    assert by_id(rows).equals(by_id(source.filter(pc.is_in(source["id"], pa.array(wanted)))))
    assert all(len(c.params["ids"].split(",")) <= 100 for c in fake.calls)  # type: ignore[union-attr]


def test_a_record_changed_inside_a_crowded_second_shifts_nothing() -> None:
    # Read by id, a record that leaves the second keeps its place: no row of the second moves
    # across a page boundary, and the changed record's new version comes in its own second.
    schema = make_schema()
    fake = FakeZoho(make_records(600, per_second=600))
    early = fake.records[10]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n == 2:
            zoho.touch(early, Name="moved")

    fake.on_call = change
    reader = RecordsReader(fake, tuning())  # type: ignore[arg-type]
    table = read_all(reader, schema)
    source = expected(fake, schema)
    assert table.num_rows == 601  # every row once, the changed one once more in its new version
    assert by_id(table.filter(pc.not_equal(table["id"], early))).equals(
        by_id(source.filter(pc.not_equal(source["id"], early)))
    )
    latest = table.filter(pc.equal(table["id"], early)).to_pylist()
    assert latest[-1]["Name"] == "moved"


def test_empty_module() -> None:
    schema = make_schema()
    fake = FakeZoho([])
    assert read_all(RecordsReader(fake, tuning()), schema).num_rows == 0  # type: ignore[arg-type]
    assert fake.count("records") == 1


def test_field_groups_fetched_at_once_read_the_same_rows_for_the_same_credits() -> None:
    schema = make_schema(extra_fields=100)
    results = []
    for at_once in (1, 3):
        fake = FakeZoho(make_records(900, per_second=3, extra_fields=100))
        reader = RecordsReader(fake, tuning(group_calls=at_once))  # type: ignore[arg-type]
        table = read_all(reader, schema)
        # The threads end with the read.
        assert not [t for t in threading.enumerate() if t.name.startswith("records-groups")]
        results.append((by_id(table), fake.credits(), fake.count("records")))
    assert results[0][0].equals(results[1][0])
    assert results[0][1:] == results[1][1:]


def test_a_pages_field_group_calls_are_in_flight_together() -> None:
    schema = make_schema(extra_fields=100)  # three field groups
    fake = FakeZoho(make_records(300, per_second=3, extra_fields=100))
    # The first page's three calls each wait here until all three have arrived: one at a time,
    # the barrier would break instead.
    barrier = threading.Barrier(3, timeout=30)
    plain = fake.get_body
    seen = {"n": 0}
    lock = threading.Lock()

    def get_body(path: str, **kwargs: object) -> bytes | None:
        with lock:
            seen["n"] += 1
            first_page = seen["n"] <= 3
        if first_page:
            barrier.wait()
        return plain(path, **kwargs)  # type: ignore[arg-type]

    fake.get_body = get_body  # type: ignore[method-assign]
    table = read_all(RecordsReader(fake, tuning(group_calls=3)), schema)  # type: ignore[arg-type]
    assert by_id(table).equals(expected(fake, schema))


def test_a_page_token_that_comes_back_stops_the_read() -> None:
    # Past page 10 of one second, every page answers with the same token: following it again
    # would page in a circle.
    class Circling(FakeZoho):
        def _list(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
            answer = super()._list(params, headers)
            info = (answer or {}).get("info") or {}
            if info.get("next_page_token"):
                self.tokens["same"] = self.tokens.pop(info["next_page_token"])
                info["next_page_token"] = "same"
            return answer

    schema = make_schema()
    fake = Circling(make_records(2600, per_second=2600))
    with pytest.raises(DataError) as info:
        read_all(RecordsReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert "same page token twice" in str(info.value)
    assert [t for _, t in pages_asked(fake) if t is not None] == ["same"]
