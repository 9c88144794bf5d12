"""COQL reader against the fake Zoho: keyset paging, LIMIT growth, ties, field groups, credits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
from support.fakezoho import (
    BASE,
    MODULE,
    FakeZoho,
    assert_ascending,
    by_id,
    expected,
    limits,
    make_records,
    make_schema,
    read_all,
    tuning,
)

from connector.errors import RetriableAPIError
from connector.readers import coql_count, coql_probe, make_reader
from connector.readers.coql import CoqlReader


def test_full_read_equals_source_at_the_best_rate_from_the_first_page() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(4500, per_second=7))
    reader = make_reader("coql", fake, tuning())  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert_ascending(table)
    # A full load starts at LIMIT 2,000 (3 credits for 2,000 rows): no LIMIT-200 ramp.
    assert limits(fake) == [2000, 2000, 2000]
    assert fake.credits() == 3 * 3
    assert reader.ordered and reader.name == "coql"
    assert reader.stats.rows == 4500 and reader.stats.pages == 3
    assert "where (id is not null)" in str(fake.calls[0].body)
    assert "order by Modified_Time asc, id asc" in str(fake.calls[0].body)


def test_small_incremental_costs_one_credit_and_is_inclusive() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(1000, per_second=4))
    since = BASE + timedelta(seconds=247)  # rows 988..999 share seconds 247..249
    table = read_all(CoqlReader(fake, tuning()), schema, since)  # type: ignore[arg-type]
    assert sorted(table["Amount"].to_pylist()) == list(range(988, 1000))
    assert fake.credits() == 1
    assert "Modified_Time >= '2026-01-01T00:04:07+00:00'" in str(fake.calls[0].body)


def test_big_incremental_starts_at_limit_200_then_grows() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(3000, per_second=2))
    since = BASE + timedelta(seconds=100)  # rows 200..2999
    table = read_all(CoqlReader(fake, tuning()), schema, since)  # type: ignore[arg-type]
    assert table.num_rows == 2800
    assert_ascending(table)
    assert limits(fake) == [200, 2000, 2000]
    assert fake.credits() == 1 + 3 * 2


def test_incremental_with_microseconds_floors_to_the_second() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(30, per_second=3))
    since = BASE + timedelta(seconds=9, microseconds=500_000)
    table = read_all(CoqlReader(fake, tuning()), schema, since)  # type: ignore[arg-type]
    assert sorted(table["Amount"].to_pylist()) == [27, 28, 29]


def test_ties_across_page_boundaries_are_neither_lost_nor_doubled() -> None:
    schema = make_schema()
    # 450 rows in one second, then 50 more: every page boundary falls inside a tie.
    rows = make_records(450, per_second=450)
    rows += [
        {**r, "id": f"{int(r['id']) + 1000}", "Modified_Time": BASE + timedelta(seconds=5)}
        for r in make_records(50, per_second=1)
    ]
    fake = FakeZoho(rows)
    reader = CoqlReader(fake, tuning(), first_limit=200, max_limit=200)  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert table.num_rows == 500
    assert by_id(table).equals(expected(fake, schema))
    assert_ascending(table)
    assert "(id > '" in str(fake.calls[1].body)


def test_empty_module_is_one_call() -> None:
    schema = make_schema()
    fake = FakeZoho([])
    assert read_all(CoqlReader(fake, tuning()), schema).num_rows == 0  # type: ignore[arg-type]
    assert len(fake.calls) == 1


def test_groups_of_fifty_columns_merge_by_id() -> None:
    schema = make_schema(extra_fields=100)  # 104 fields + id → 3 groups
    fake = FakeZoho(make_records(500, per_second=3, extra_fields=100))
    reader = CoqlReader(fake, tuning(), max_limit=300)  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    selects = [str(c.body) for c in fake.calls]
    assert len(selects) == 6  # 2 pages x 3 groups
    for query in selects:
        columns = query.split("select ", 1)[1].split(" from ")[0].split(", ")
        assert len(columns) <= 50 and columns[:2] == ["id", "Modified_Time"]
    # Every group of a page asks for the same rows.
    assert [q.split(" from ")[1] for q in selects[:3]] == [selects[0].split(" from ")[1]] * 3


def test_field_groups_fetched_at_once_read_the_same_rows_for_the_same_credits() -> None:
    schema = make_schema(extra_fields=100)  # three groups
    results = []
    for at_once in (1, 3):
        fake = FakeZoho(make_records(900, per_second=3, extra_fields=100))
        reader = CoqlReader(fake, tuning(group_calls=at_once), max_limit=300)  # type: ignore[arg-type]
        table = read_all(reader, schema)
        # The threads end with the read.
        assert not [t for t in threading.enumerate() if t.name.startswith("coql-groups")]
        results.append((by_id(table), fake.credits(), [str(c.body) for c in fake.calls]))
    assert results[0][0].equals(expected(fake, schema))
    assert results[0][0].equals(results[1][0])
    assert results[0][1] == results[1][1]
    assert sorted(results[0][2]) == sorted(results[1][2])  # the same queries


Hook = Callable[[int, str], None]


def _around_calls(fake: FakeZoho, before: Hook, after: Hook | None = None) -> None:
    """Run ``before(n, query)`` as COQL call ``n`` (from 1) is made, ``after`` once answered."""
    plain = fake.post_body
    seen = {"n": 0}
    lock = threading.Lock()

    def post_body(path: str, body: dict[str, Any], **kwargs: Any) -> bytes | None:
        with lock:
            seen["n"] += 1
            n = seen["n"]
        before(n, str(body))
        answer = plain(path, body, **kwargs)
        if after is not None:
            after(n, str(body))
        return answer

    fake.post_body = post_body  # type: ignore[method-assign]


def _calls_meet(fake: FakeZoho, numbers: set[int]) -> None:
    """Make the calls numbered ``numbers`` each wait until all of them have arrived: made one
    at a time, they would break the barrier instead."""
    barrier = threading.Barrier(len(numbers), timeout=30)
    _around_calls(fake, lambda n, _: barrier.wait() if n in numbers else None)


@pytest.mark.parametrize(
    ("group_calls", "meeting"),
    [
        # The first page may be empty: its first group goes alone (call 1), then the other two.
        (2, {2, 3}),
        # The second page follows one that said more: its three groups go at once.
        (3, {4, 5, 6}),
    ],
)
def test_a_pages_field_group_calls_are_in_flight_together(
    group_calls: int, meeting: set[int]
) -> None:
    schema = make_schema(extra_fields=100)  # three groups
    fake = FakeZoho(make_records(300, per_second=3, extra_fields=100))
    _calls_meet(fake, meeting)
    reader = CoqlReader(fake, tuning(group_calls=group_calls), max_limit=200)  # type: ignore[arg-type]
    assert by_id(read_all(reader, schema)).equals(expected(fake, schema))
    assert fake.count("coql") == 6 and reader.stats.pages == 2


def test_a_record_changed_after_a_later_groups_call_is_read_again() -> None:
    # Page 2's groups go at once; here the second group is answered first, then a record of
    # its rows changes, then the first group reads: it lacks that record (now at the end) and
    # reaches one row further. The second group's copy is not merged half-changed, and its
    # rows past the first group's last row are left to the next page.
    schema = make_schema(extra_fields=60)  # two groups
    fake = FakeZoho(make_records(300, per_second=3, extra_fields=60))
    victim = fake.records[150]["id"]
    second_answered = threading.Event()

    def first_group_waits(n: int, query: str) -> None:
        if n in (3, 4) and "X050" not in query:
            assert second_answered.wait(30)

    def then_the_record_changes(n: int, query: str) -> None:
        if n in (3, 4) and "X050" in query:
            fake.touch(victim, X050="changed", Name="new name")
            second_answered.set()

    _around_calls(fake, first_group_waits, then_the_record_changes)
    reader = CoqlReader(fake, tuning(group_calls=2), max_limit=100)  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert second_answered.is_set()
    assert by_id(table).equals(expected(fake, schema))
    rows = table.filter(pa.compute.equal(table["id"], victim)).to_pylist()
    assert [(r["Name"], r["X050"]) for r in rows] == [("new name", "changed")]
    # Left out and read again: the victim, and the first group's extra last row, which the
    # second group's rows do not reach.
    assert reader.stats.dropped == 2


def test_record_changed_between_group_queries_is_read_again_never_half_merged() -> None:
    schema = make_schema(extra_fields=60)
    fake = FakeZoho(make_records(300, per_second=3, extra_fields=60))
    victim = fake.records[10]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n == 1:  # after the first group's query, before the second group's
            zoho.touch(victim, X050="changed", Name="new name")

    fake.on_call = change
    reader = CoqlReader(fake, tuning())  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    rows = table.filter(pa.compute.equal(table["id"], victim)).to_pylist()
    assert len(rows) == 1
    assert rows[0]["Name"] == "new name" and rows[0]["X050"] == "changed"
    assert reader.stats.dropped == 1
    assert any("changed while a page was read" in n for n in reader.stats.notes)


def test_record_changed_in_the_pages_last_second_behind_the_cursor_is_read() -> None:
    # The changed record gets a Modified_Time equal to the page's last second while its id is
    # below the page's last id: the cursor restarts at the lowest unstable id, inclusive.
    schema = make_schema(extra_fields=60)
    records = make_records(300, per_second=100, extra_fields=60)
    fake = FakeZoho(records)
    last_second = BASE + timedelta(seconds=1)  # rows 100..199; the first page ends at row 199
    victim = records[5]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n == 1:
            zoho.touch(victim, at=last_second, X001="late")

    fake.on_call = change
    reader = CoqlReader(fake, tuning(), max_limit=200)  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert by_id(table).equals(expected(fake, schema))
    assert table.num_rows == 300


def test_a_record_that_never_holds_still_gives_up_with_a_retriable_error() -> None:
    schema = make_schema(extra_fields=60)
    fake = FakeZoho(make_records(10, per_second=1, extra_fields=60))
    victim = fake.records[9]["id"]

    def change(zoho: FakeZoho, n: int) -> None:
        if n % 2 == 1:
            zoho.touch(victim)

    fake.on_call = change
    with pytest.raises(RetriableAPIError) as info:
        read_all(CoqlReader(fake, tuning()), schema)  # type: ignore[arg-type]
    assert info.value.code == "UNSTABLE_READ"


def test_progress_callback_sees_each_page() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(2500))
    seen: list[int] = []
    reader = CoqlReader(fake, tuning(), on_progress=lambda s: seen.append(s.rows))  # type: ignore[arg-type]
    read_all(reader, schema)
    assert seen == [2000, 2500]


def test_probe_returns_its_rows_and_whether_more_follow() -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(1000, per_second=4))
    small = coql_probe(fake, schema, BASE + timedelta(seconds=240))  # type: ignore[arg-type]
    assert small.rows == 40 and not small.more_records and small.credits == 1
    assert small.table.schema == schema.arrow
    big = coql_probe(fake, schema, None)  # type: ignore[arg-type]
    assert big.rows == 200 and big.more_records and big.credits == 1
    assert fake.credits() == 2


def test_probe_with_many_columns_uses_groups() -> None:
    schema = make_schema(extra_fields=60)
    fake = FakeZoho(make_records(20, extra_fields=60))
    result = coql_probe(fake, schema, None)  # type: ignore[arg-type]
    assert result.credits == 2 and result.rows == 20
    assert result.table.column("X059")[0].as_py() == "x59-0"


def test_count() -> None:
    fake = FakeZoho(make_records(1000, per_second=4))
    assert coql_count(fake, "Deals", None) == 1000  # type: ignore[arg-type]
    assert coql_count(fake, "Deals", BASE + timedelta(seconds=240)) == 40  # type: ignore[arg-type]
    assert fake.credits() == 2


@pytest.mark.parametrize("reader_name", ["coql", "records"])
def test_the_next_page_is_asked_for_while_the_caller_holds_this_one(reader_name: str) -> None:
    import threading

    schema = make_schema()
    fake = FakeZoho(make_records(5000, per_second=1))
    second_call = threading.Event()
    plain = {"get_body": fake.get_body, "post_body": fake.post_body}

    def counted(kind: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            answer = plain[kind](*args, **kwargs)
            if len(fake.calls) >= 2:
                second_call.set()
            return answer

        return call

    fake.get_body = counted("get_body")  # type: ignore[method-assign]
    fake.post_body = counted("post_body")  # type: ignore[method-assign]
    reader = make_reader(reader_name, fake, tuning())  # type: ignore[arg-type]
    batches = reader.read(MODULE, schema, None)
    next(batches)
    # The caller has the first page and has not asked for more: the second call is made anyway.
    assert second_call.wait(timeout=30)
    rest = list(batches)
    table = pa.Table.from_batches(rest, schema=schema.arrow)
    assert (
        table.num_rows + 2000 * (reader_name == "coql") + 200 * (reader_name == "records") == 5000
    )


@pytest.mark.parametrize("reader_name", ["coql", "records"])
def test_a_caller_that_stops_early_leaves_no_call_running(reader_name: str) -> None:
    import threading

    schema = make_schema()
    fake = FakeZoho(make_records(5000, per_second=1))
    reader = make_reader(reader_name, fake, tuning())  # type: ignore[arg-type]
    before = set(threading.enumerate())
    batches = reader.read(MODULE, schema, None)
    next(batches)
    batches.close()  # type: ignore[attr-defined]
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("prefetch")]
    assert len(fake.calls) <= 2  # the first page and at most the next (one field group)
