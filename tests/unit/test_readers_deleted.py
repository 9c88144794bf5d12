"""Deleted-records reader against the fake Zoho: paging, If-Modified-Since, 204, tombstones."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
from support.fakezoho import BASE, FakeZoho, zid

from connector.lake.schema import TOMBSTONE_SCHEMA
from connector.readers import read_deleted
from connector.readers.base import ReaderStats


def tombstones(n: int) -> list[dict[str, object]]:
    return [
        {
            "id": zid(i),
            "display_name": f"rec {i}",
            "type": "recycle" if i % 2 else "permanent",
            "deleted_by": {"name": "Pat", "id": zid(9000)},
            "created_by": {"name": "Lee", "id": zid(9001)},
            "deleted_time": BASE + timedelta(minutes=i),
        }
        for i in range(n)
    ]


def test_pages_until_no_more_records() -> None:
    fake = FakeZoho([])
    fake.deleted = tombstones(450)
    seen: list[ReaderStats] = []
    batches = list(read_deleted(fake, "Leads", None, on_progress=seen.append))  # type: ignore[arg-type]
    table = pa.Table.from_batches(batches)
    assert table.schema == TOMBSTONE_SCHEMA
    assert sorted(table["id"].to_pylist()) == sorted(zid(i) for i in range(450))
    assert [c.params["page"] for c in fake.calls] == [1, 2, 3]  # type: ignore[index]
    assert all(c.params["type"] == "all" and c.params["per_page"] == 200 for c in fake.calls)  # type: ignore[index]
    assert fake.credits() == 6
    assert seen[-1].rows == 450
    assert table.filter(pa.compute.equal(table["id"], zid(3)))["deleted_by_name"].to_pylist() == [
        "Pat"
    ]


def test_since_is_inclusive_and_enforced() -> None:
    fake = FakeZoho([])
    fake.deleted = tombstones(10)
    since = BASE + timedelta(minutes=7)
    table = pa.Table.from_batches(list(read_deleted(fake, "Leads", since)), schema=TOMBSTONE_SCHEMA)  # type: ignore[arg-type]
    assert sorted(table["id"].to_pylist()) == [zid(7), zid(8), zid(9)]


def test_since_filter_applies_even_when_the_server_ignores_it() -> None:
    class Loose(FakeZoho):
        def _deleted(self, params, headers):  # type: ignore[no-untyped-def]
            return super()._deleted(params, {})

    fake = Loose([])
    fake.deleted = tombstones(10)
    table = pa.Table.from_batches(
        list(read_deleted(fake, "Leads", BASE + timedelta(minutes=8))),
        schema=TOMBSTONE_SCHEMA,  # type: ignore[arg-type]
    )
    assert sorted(table["id"].to_pylist()) == [zid(8), zid(9)]


def test_nothing_deleted_is_one_call_and_no_batch() -> None:
    fake = FakeZoho([])
    assert list(read_deleted(fake, "Leads", BASE)) == []  # type: ignore[arg-type]
    assert len(fake.calls) == 1
    assert fake.calls[0].path == "Leads/deleted"
