"""DatasetWriter layouts: granularity folders, rows sorted by time, file and row-group sizes."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from connector.errors import ConfigError
from connector.lake.layout import folder_key, resolve_granularity
from connector.lake.output import Output
from connector.lake.schema import batch_from_records, module_schema
from connector.lake.writer import DatasetWriter
from connector.zoho.metadata import FieldMeta

UTC = timezone.utc
SCHEMA = module_schema(
    "Leads", [FieldMeta("Last_Name", "text"), FieldMeta("Modified_Time", "datetime")]
)
START = datetime(2020, 1, 1, tzinfo=UTC)
FIVE_YEARS = timedelta(days=5 * 365)


def rows_over(count: int, span: timedelta, *, seed: int = 1) -> list[pa.RecordBatch]:
    """``count`` rows spread evenly over ``span`` from START, shuffled (as Bulk Read gives them),
    in batches of 500."""
    step = span / count
    records = [
        {
            "id": str(10**18 + i),
            "Last_Name": f"n{i}",
            "Modified_Time": (START + step * i).isoformat(),
        }
        for i in range(count)
    ]
    random.Random(seed).shuffle(records)
    return [batch_from_records(records[i : i + 500], SCHEMA) for i in range(0, count, 500)]


def write(root: Path, batches: list[pa.RecordBatch], **options: object) -> list:
    writer = DatasetWriter(Output.open(root), "Leads", SCHEMA.arrow, "r", **options)  # type: ignore[arg-type]
    for batch in batches:
        writer.write(batch)
    return writer.commit()


@pytest.mark.parametrize(
    ("granularity", "key", "example"),
    [
        ("day", "modified_date", "2020-01-01"),
        ("month", "modified_month", "2020-01"),
        ("year", "modified_year", "2020"),
        ("none", None, ""),
    ],
)
def test_granularity_names_the_folders_and_hive_readers_read_every_row(
    tmp_path: Path, granularity: str, key: str | None, example: str
) -> None:
    batches = rows_over(2_000, timedelta(days=800))
    files = write(tmp_path, batches, granularity=granularity)
    assert folder_key("modified_date", granularity) == key
    if key is None:
        assert len(files) == 1 and files[0].path == "Leads/part-r-00000.parquet"
    else:
        assert all(f.path.startswith(f"Leads/{key}={f.partition}/") for f in files)
        assert min(f.partition for f in files) == example
    table = ds.dataset(tmp_path / "Leads", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 2_000 and len(set(table.column("id").to_pylist())) == 2_000
    if key is not None:
        # The folder says where the row's Modified_Time falls, at the granularity.
        width = {"day": 10, "month": 7, "year": 4}[granularity]
        for row in table.select(["Modified_Time", key]).to_pylist():
            assert str(row[key]) == row["Modified_Time"].date().isoformat()[:width]


def test_rows_are_sorted_by_modified_time_in_every_file_with_row_group_statistics(
    tmp_path: Path,
) -> None:
    # Shuffled input through several spills: each file still comes out sorted.
    files = write(
        tmp_path,
        rows_over(6_000, FIVE_YEARS),
        granularity="year",
        max_buffer_bytes=40_000,
        row_group_rows=300,
    )
    assert len(files) == 5 or len(files) == 6  # five years (and the start of a sixth)
    for f in files:
        parquet = pq.ParquetFile(tmp_path / f.path)
        times = parquet.read(columns=["Modified_Time"]).column(0).to_pylist()
        assert times == sorted(times)
        column = parquet.schema_arrow.get_field_index("Modified_Time")
        assert parquet.metadata.num_row_groups > 1
        previous_max = None
        for number in range(parquet.metadata.num_row_groups):
            stats = parquet.metadata.row_group(number).column(column).statistics
            assert stats is not None and stats.has_min_max
            # Row groups cover consecutive time ranges: an engine skips those a filter excludes.
            if previous_max is not None:
                assert stats.min >= previous_max
            previous_max = stats.max


@pytest.mark.parametrize("target", [10_000, 50])
def test_file_count_is_partitions_plus_rows_over_the_target(tmp_path: Path, target: int) -> None:
    # 6,000 rows over five years at month granularity: about 100 rows a month. Scaled down from
    # 1M rows and a 1M-row target (at most ~60-100 files per module): one file per month, more
    # only past the target.
    files = write(
        tmp_path,
        rows_over(6_000, timedelta(days=60 * 365 / 12 - 1)),
        granularity="month",
        target_file_rows=target,
        max_buffer_bytes=30_000,
    )
    per_month: dict[str, int] = {}
    for f in files:
        per_month[f.partition] = per_month.get(f.partition, 0) + f.rows
    assert len(per_month) == 60
    assert len(files) == sum(-(-rows // target) for rows in per_month.values())
    assert len(files) <= 60 + 6_000 // target
    assert all(f.rows <= target for f in files)
    assert sum(f.rows for f in files) == 6_000


def test_files_close_at_the_byte_target(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        rows_over(3_000, timedelta(days=10)),
        granularity="none",
        row_group_rows=100,
        target_file_bytes=4_000,
    )
    assert len(files) > 3
    assert sum(f.rows for f in files) == 3_000
    # A file closes after the row group that reaches the target.
    assert all(f.bytes < 4_000 + 8_000 for f in files)
    times = [
        t
        for f in sorted(files, key=lambda f: f.path)
        for t in pq.read_table(tmp_path / f.path, columns=["Modified_Time"]).column(0).to_pylist()
    ]
    assert times == sorted(times)


def test_a_field_named_like_the_folder_key_is_refused() -> None:
    schema = module_schema(
        "Leads",
        [FieldMeta("modified_month", "text"), FieldMeta("Modified_Time", "datetime")],
    )
    with pytest.raises(Exception, match="modified_month"):
        DatasetWriter(Output.open("/tmp/unused"), "Leads", schema.arrow, "r", granularity="month")
    # The daily key is free then.
    DatasetWriter(Output.open("/tmp/unused"), "Leads", schema.arrow, "r", granularity="day")


@pytest.mark.parametrize(
    ("recorded", "has_data", "requested", "replacing", "expected"),
    [
        (None, False, None, False, "month"),  # a new dataset: month
        (None, False, "year", False, "year"),
        (None, True, None, False, "day"),  # written before the setting: daily, kept
        (None, True, "day", False, "day"),
        ("month", True, None, False, "month"),
        ("month", True, "month", False, "month"),
        (None, True, "month", True, "month"),  # --full-refresh converts
        ("year", True, "none", True, "none"),
    ],
)
def test_resolve_granularity(
    recorded: str | None, has_data: bool, requested: str | None, replacing: bool, expected: str
) -> None:
    got = resolve_granularity(
        "Leads", recorded, has_data=has_data, requested=requested, replacing=replacing
    )
    assert got == expected


@pytest.mark.parametrize(("recorded", "requested"), [(None, "month"), ("month", "day")])
def test_an_explicit_other_granularity_on_existing_data_says_how_to_convert(
    recorded: str | None, requested: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_granularity("Leads", recorded, has_data=True, requested=requested, replacing=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"compact DIR --module Leads --partition-by {requested}" in message
    assert f"--full-refresh --partition-by {requested}" in message
