"""Bulk reader: CSV rows longer than Arrow's block are read again with bigger blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakezoho import FakeZoho, by_id, expected, make_records, make_schema, read_all, tuning

import connector.readers.bulk as bulk
from connector.errors import DataError
from connector.readers.bulk import BulkReader


def long_row_fake(rows: int, long_at: int, length: int) -> FakeZoho:
    records = make_records(rows)
    records[long_at]["Name"] = "y" * length
    return FakeZoho(records)


def test_row_longer_than_a_block_is_read_with_bigger_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "CSV_BLOCK_SIZE", 4 << 10)
    schema = make_schema()
    # The long row sits after several blocks, so the first pass has already given rows.
    fake = long_row_fake(2000, 1500, 100_000)
    reader = BulkReader(fake, tuning(), sleep=lambda _: None, scratch_dir=tmp_path)  # type: ignore[arg-type]
    table = read_all(reader, schema)
    assert table.num_rows == 2000
    assert by_id(table).equals(expected(fake, schema))
    assert reader.stats.rows == 2000


def test_row_longer_than_the_largest_block_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "CSV_BLOCK_SIZE", 4 << 10)
    monkeypatch.setattr(bulk, "CSV_BLOCK_MAX", 32 << 10)
    fake = long_row_fake(200, 100, 100_000)
    reader = BulkReader(fake, tuning(), sleep=lambda _: None, scratch_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="straddl"):
        read_all(reader, make_schema())
