"""The bucketed join of a Bulk page's field groups: every rule of the join, in several buckets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from support import fakezoho as fz

from connector.readers import bucketjoin
from connector.readers.bucketjoin import GroupBuckets, bucket_numbers, join_in_buckets
from connector.readers.bulk import BulkReader

SCHEMA = fz.make_schema(extra_fields=2)
FIRST = SCHEMA.select(["id", "Name", "Modified_Time", "Amount", "Tags"])
SECOND = SCHEMA.select(["id", "Modified_Time", "X000", "X001"])


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": fz.zid(i),
            "Name": f"name {i}",
            "Modified_Time": fz.BASE + timedelta(seconds=i),
            "Amount": i,
            "Tags": ["a"] if i % 2 else None,
            "X000": f"x0-{i}",
            "X001": f"x1-{i}",
            "$raw_values": None,
        }
        for i in range(n)
    ]


def _batches(rows: list[dict[str, Any]], part: Any, size: int) -> list[pa.RecordBatch]:
    table = pa.Table.from_pylist([{n: r[n] for n in part.names} for r in rows], schema=part.arrow)
    return table.to_batches(max_chunksize=size)


def test_bucket_numbers_are_in_range_stable_and_spread() -> None:
    ids = pa.array([fz.zid(i) for i in range(2_000)] + ["", "x", "é-long-id-" * 3])
    numbers = bucket_numbers(ids, 16)
    assert numbers.min() >= 0 and numbers.max() < 16
    # The same id in a slice of another array falls in the same bucket.
    assert (bucket_numbers(ids.slice(700, 50), 16) == numbers[700:750]).all()
    assert (
        bucket_numbers(pa.array([fz.zid(i) for i in range(700, 750)]), 16) == numbers[700:750]
    ).all()
    assert len(set(numbers[:2_000].tolist())) == 16
    assert max(list(numbers[:2_000]).count(b) for b in range(16)) < 2 * 2_000 / 16


def test_a_group_spilled_to_disk_gives_back_each_bucket_once(tmp_path: Path) -> None:
    group = GroupBuckets(SECOND.arrow, tmp_path, buckets=4, buffer_bytes=1_000)
    for batch in _batches(_rows(300), SECOND, 40):
        group.add(batch)
    group.seal()
    assert len(list(tmp_path.iterdir())) == 1  # past the buffer: one scratch file
    tables = [group.take([b]) for b in range(4)]
    assert sum(t.num_rows for t in tables) == 300 == sum(group.rows)
    for bucket, table in enumerate(tables):
        assert (bucket_numbers(table.column("id").combine_chunks(), 4) == bucket).all()
    assert group.take([0]).num_rows == 0  # taken once
    group.remove()
    assert list(tmp_path.iterdir()) == []


def test_groups_joined_in_several_buckets_leave_out_what_changed_between_them(
    tmp_path: Path,
) -> None:
    rows = _rows(200)
    first = [r for r in rows]
    second = [dict(r) for r in rows if r["id"] != fz.zid(10)]  # record 10: missing from group 2
    moved = next(r for r in second if r["id"] == fz.zid(20))
    moved["Modified_Time"] += timedelta(seconds=1)  # record 20: changed between the groups
    second.append({**_rows(201)[200], "id": "only-in-the-second"})
    # Record 30's unfit values, one in each group, are merged into one object.
    first[30] = {**first[30], "Amount": None, "$raw_values": '{"Amount":"1.5"}'}
    second[29] = {**second[29], "X000": None, "$raw_values": '{"X000":"x"}'}
    assert second[29]["id"] == fz.zid(30)
    unstable: set[str] = set()
    tables = list(
        join_in_buckets(
            [iter(_batches(first, FIRST, 16)), iter(_batches(second, SECOND, 16))],
            [FIRST.arrow, SECOND.arrow],
            SCHEMA,
            tmp_path,
            unstable,
            buckets=8,
            buffer_bytes=2_000,
            join_bytes=4_000,
        )
    )
    assert len(tables) > 1  # joined a few buckets at a time
    assert all(t.schema.equals(SCHEMA.arrow) for t in tables)
    assert unstable == {fz.zid(10), fz.zid(20), "only-in-the-second"}
    got = fz.by_id(pa.concat_tables(tables))
    want = [r for r in rows if r["id"] not in (fz.zid(10), fz.zid(20))]
    want = [
        {**r, "Amount": None, "X000": None, "$raw_values": '{"Amount":"1.5","X000":"x"}'}
        if r["id"] == fz.zid(30)
        else r
        for r in want
    ]
    assert got.equals(fz.by_id(pa.Table.from_pylist(want, schema=SCHEMA.arrow)))
    assert list(tmp_path.iterdir()) == []  # the scratch files are gone


def test_a_group_failing_its_row_count_leaves_no_scratch_file(tmp_path: Path) -> None:
    def broken() -> Any:
        yield from _batches(_rows(100), SECOND, 10)
        raise RuntimeError("the row count")

    joined = join_in_buckets(
        [iter(_batches(_rows(100), FIRST, 10)), broken()],
        [FIRST.arrow, SECOND.arrow],
        SCHEMA,
        tmp_path,
        set(),
        buffer_bytes=500,
    )
    with pytest.raises(RuntimeError):
        list(joined)
    assert list(tmp_path.iterdir()) == []


def test_bulk_reader_joins_field_groups_through_disk_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bucketjoin, "BUFFER_BYTES", 8_000)
    monkeypatch.setattr(bucketjoin, "JOIN_BYTES", 16_000)
    schema = fz.make_schema(extra_fields=250)
    fake = fz.FakeZoho(fz.make_records(300, extra_fields=250), bulk_page_size=120)
    victim = fake.records[7]["id"]

    def change(zoho: fz.FakeZoho, n: int) -> None:
        if n == 1:  # after the first group's job is created, before the second's
            zoho.touch(victim, X240="changed")

    fake.on_call = change
    reader = BulkReader(fake, fz.tuning(), sleep=lambda _: None, scratch_dir=tmp_path)  # type: ignore[arg-type]
    table = fz.read_all(reader, schema)
    assert fz.by_id(table).equals(fz.expected(fake, schema))
    assert reader.stats.dropped == 1
    assert list(tmp_path.iterdir()) == []
