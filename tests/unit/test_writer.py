"""DatasetWriter: hive-partitioned Parquet that pyarrow and DuckDB read, committed atomically."""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from connector.errors import DataError
from connector.lake.output import FsspecOutput, Output
from connector.lake.partfiles import SMALL_FILE_ROWS
from connector.lake.schema import TOMBSTONE_SCHEMA, batch_from_records, module_schema
from connector.lake.writer import DatasetWriter
from connector.zoho.metadata import FieldMeta

UTC = timezone.utc
FIELDS = [
    FieldMeta("Last_Name", "text"),
    FieldMeta("Amount", "currency", decimal_place=2),
    FieldMeta("Tags", "multiselectpicklist"),
    FieldMeta("Modified_Time", "datetime"),
]
SCHEMA = module_schema("Leads", FIELDS)
START = datetime(2024, 6, 1, 22, 0, tzinfo=UTC)


def make_batch(first: int, count: int, *, step_minutes: int = 37) -> pa.RecordBatch:
    """Records whose Modified_Time spans several UTC days (and days in +05:30)."""
    rows = [
        {
            "id": f"{3652397000000000000 + i}",
            "Last_Name": f'Name, {i} "q"\n',
            "Amount": i / 4,
            "Tags": ["a", "b"] if i % 2 else None,
            "Modified_Time": (START + timedelta(minutes=step_minutes * i)).isoformat(),
        }
        for i in range(first, first + count)
    ]
    return batch_from_records(rows, SCHEMA)


def read_dataset(root: Path, module: str = "Leads") -> pa.Table:
    return ds.dataset(root / module, format="parquet", partitioning="hive").to_table()


def assert_nothing_left(root: Path) -> None:
    """No dataset appeared, and no file is left in the scratch area."""
    assert not (root / "Leads").exists()
    assert not [p for p in (root / "_tmp").rglob("*") if p.is_file()]


def assert_disk_full_fails_and_abort_cleans_up(
    writer: DatasetWriter, batches: list[pa.RecordBatch], root: Path
) -> None:
    """Writing ``batches`` and committing raises the injected "disk full"; abort then leaves
    nothing behind."""
    with pytest.raises(OSError, match="disk full"):
        for batch in batches:
            writer.write(batch)
        writer.commit()
    writer.abort()
    assert_nothing_left(root)


def test_commit_writes_hive_partitions_that_pyarrow_and_duckdb_read(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "run1")
    batch = make_batch(0, 200)
    writer.write(batch)
    files = writer.commit()
    assert writer.rows_written == 200
    assert sum(f.rows for f in files) == 200
    expected_days = sorted(
        {(START + timedelta(minutes=37 * i)).date().isoformat() for i in range(200)}
    )
    assert sorted(f.partition for f in files) == expected_days
    for f in files:
        assert f.path == f"Leads/modified_date={f.partition}/part-run1-{f.path[-13:-8]}.parquet"
        assert (tmp_path / f.path).stat().st_size == f.bytes
    table = read_dataset(tmp_path)
    assert table.num_rows == 200
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("Modified_Time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("Amount").type == pa.decimal128(38, 2)
    got = table.drop_columns(["modified_date"]).sort_by("id")
    assert got.equals(pa.Table.from_batches([batch]).sort_by("id"))
    # the partition value is the UTC date of Modified_Time
    for row in table.to_pylist():
        assert str(row["modified_date"]) == row["Modified_Time"].date().isoformat()

    con = duckdb.connect()
    rows = con.execute(
        f"select count(*), count(distinct id), sum(Amount), min(modified_date) "
        f"from read_parquet('{tmp_path}/Leads/**/*.parquet', hive_partitioning=true, "
        f"union_by_name=true)"
    ).fetchone()
    assert rows is not None
    assert rows[0] == 200 and rows[1] == 200
    assert rows[2] == sum(Decimal(i) / 4 for i in range(200))
    assert str(rows[3]) == expected_days[0]


@pytest.mark.parametrize(("rows", "codec"), [(SMALL_FILE_ROWS, "ZSTD"), (10, "SNAPPY")])
def test_parquet_format_zstd_with_statistics_snappy_for_small_files(
    tmp_path: Path, rows: int, codec: str
) -> None:
    out = Output.open(tmp_path)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "r")
    writer.write(make_batch(0, rows, step_minutes=0))
    (written,) = writer.commit()
    meta = pq.ParquetFile(tmp_path / written.path).metadata
    column = meta.row_group(0).column(0)
    assert column.compression == codec
    assert column.statistics is not None and column.statistics.has_min_max
    assert "modified_date" not in pq.read_schema(tmp_path / written.path).names


def test_files_appear_only_at_commit_and_abort_cleans_up(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "r", max_buffer_bytes=1, target_file_rows=5)
    writer.write(make_batch(0, 50))
    assert not (tmp_path / "Leads").exists()
    assert list((tmp_path / "_tmp" / "Leads").glob("spill-*"))  # spilled to scratch
    writer.abort()
    assert_nothing_left(tmp_path)


def test_memory_bound_file_size_and_open_files(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    budget = 20_000
    writer = DatasetWriter(
        out,
        "Leads",
        SCHEMA.arrow,
        "r",
        max_buffer_bytes=budget,
        target_file_rows=40,
        row_group_rows=25,
    )
    for first in range(0, 2000, 100):
        writer.write(make_batch(first, 100, step_minutes=11))
        assert writer._buffered_bytes <= budget
    files = writer.commit()
    assert all(f.rows <= 40 for f in files)
    assert len({f.path for f in files}) == len(files)
    table = read_dataset(tmp_path)
    assert table.num_rows == 2000
    assert len(set(table.column("id").to_pylist())) == 2000
    for f in files:
        assert pq.ParquetFile(tmp_path / f.path).metadata.num_rows == f.rows


def test_spilled_runs_give_one_file_per_partition_per_commit(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    budget = 8_000
    # One row a day, so no partition ever fills a row group: every row goes through the spills.
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "r", max_buffer_bytes=budget)
    batches = [make_batch(first, 50, step_minutes=24 * 60 + 1) for first in range(0, 300, 50)]
    # The same days again, out of order, as a Bulk export delivers them.
    batches += [make_batch(first, 50, step_minutes=24 * 60 + 1) for first in range(1000, 1300, 50)]
    for batch in reversed(batches):
        writer.write(batch)
        assert writer._buffered_bytes <= budget
    assert len(writer._runs) > 2
    assert not (tmp_path / "Leads").exists()
    files = writer.commit()
    partitions = [f.partition for f in files]
    assert len(partitions) == len(set(partitions))  # one file per partition
    assert not list((tmp_path / "_tmp").rglob("spill-*"))  # runs are removed at commit
    table = read_dataset(tmp_path)
    assert table.num_rows == 600
    expected = pa.Table.from_batches(batches).sort_by("id")
    assert table.drop_columns(["modified_date"]).sort_by("id").equals(expected)
    for f in files:
        assert pq.ParquetFile(tmp_path / f.path).metadata.num_rows == f.rows


def test_a_single_writer_thread_writes_the_same_files(tmp_path: Path) -> None:
    results = []
    for threads in (1, 3):
        root = tmp_path / str(threads)
        writer = DatasetWriter(
            Output.open(root), "Leads", SCHEMA.arrow, "r", max_buffer_bytes=4_000, threads=threads
        )
        for first in range(0, 400, 100):
            writer.write(make_batch(first, 100, step_minutes=200))
        files = writer.commit()
        results.append(sorted((f.path, f.rows) for f in files))
        assert read_dataset(root).num_rows == 400
    assert results[0] == results[1]


def test_checkpoint_commits_return_only_new_files_and_seq_continues(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "run7")
    writer.write(make_batch(0, 5, step_minutes=1))
    first = writer.commit()
    writer.write(make_batch(5, 5, step_minutes=1))
    second = writer.commit()
    assert [f.path.rsplit("/", 1)[1] for f in first] == ["part-run7-00000.parquet"]
    assert [f.path.rsplit("/", 1)[1] for f in second] == ["part-run7-00001.parquet"]
    assert writer.commit() == []
    assert read_dataset(tmp_path).num_rows == 10


def test_a_second_writer_of_the_same_run_never_replaces_a_committed_file(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    first = DatasetWriter(out, "Leads", SCHEMA.arrow, "run7")
    first.write(make_batch(0, 5, step_minutes=1))
    (a,) = first.commit()
    second = DatasetWriter(out, "Leads", SCHEMA.arrow, "run7")
    second.write(make_batch(5, 5, step_minutes=1))
    (b,) = second.commit()
    assert a.path != b.path
    assert read_dataset(tmp_path).num_rows == 10


def test_max_value_is_greatest_utc_time(tmp_path: Path) -> None:
    writer = DatasetWriter(Output.open(tmp_path), "Leads", SCHEMA.arrow, "r")
    assert writer.max_value is None
    writer.write(make_batch(10, 5))
    writer.write(make_batch(0, 5))
    assert writer.max_value == START + timedelta(minutes=37 * 14)
    writer.abort()


def test_tombstones_partition_by_deleted_date(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    batch = pa.RecordBatch.from_pylist(
        [
            {
                "id": "1",
                "deleted_time": datetime(2024, 1, 1, 23, 59, 59, tzinfo=UTC),
                "type": "recycle",
            },
            {
                "id": "2",
                "deleted_time": datetime(2024, 1, 2, 0, 0, 0, tzinfo=UTC),
                "type": "permanent",
            },
        ],
        schema=TOMBSTONE_SCHEMA,
    )
    writer = DatasetWriter(
        out,
        "_deleted/Leads",
        TOMBSTONE_SCHEMA,
        "r",
        partition_column="deleted_time",
        partition_name="deleted_date",
    )
    writer.write(batch)
    files = writer.commit()
    assert sorted(f.path.rsplit("/", 1)[0] for f in files) == [
        "_deleted/Leads/deleted_date=2024-01-01",
        "_deleted/Leads/deleted_date=2024-01-02",
    ]
    table = ds.dataset(tmp_path / "_deleted" / "Leads", partitioning="hive").to_table()
    assert sorted(table.column("id").to_pylist()) == ["1", "2"]


def test_null_partition_time_goes_to_the_hive_default_partition(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    batch = batch_from_records(
        [{"id": "1", "Modified_Time": None}, {"id": "2", "Modified_Time": "2024-01-01T10:00:00Z"}],
        SCHEMA,
    )
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "r")
    writer.write(batch)
    partitions = sorted(f.partition for f in writer.commit())
    assert partitions == ["2024-01-01", "__HIVE_DEFAULT_PARTITION__"]
    assert read_dataset(tmp_path).num_rows == 2


def test_schema_drift_old_and_new_files_read_together(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    old = DatasetWriter(out, "Leads", SCHEMA.arrow, "run1")
    old.write(make_batch(0, 30))
    old_files = old.commit()

    drifted = module_schema("Leads", [*FIELDS, FieldMeta("Score", "integer")])
    rows = [
        {"id": f"9{i}", "Last_Name": "n", "Score": i, "Modified_Time": "2024-06-02T08:00:00+05:30"}
        for i in range(10)
    ]
    new = DatasetWriter(out, "Leads", drifted.arrow, "run2")
    new.write(batch_from_records(rows, drifted))
    new_files = new.commit()

    paths = [str(tmp_path / f.path) for f in [*old_files, *new_files]]
    unified = pa.unify_schemas([pq.read_schema(p) for p in paths])
    table = ds.dataset(
        tmp_path / "Leads", schema=unified, format="parquet", partitioning="hive"
    ).to_table()
    assert table.num_rows == 40
    scores = dict(
        zip(table.column("id").to_pylist(), table.column("Score").to_pylist(), strict=True)
    )
    assert scores["95"] == 5
    assert scores["3652397000000000000"] is None

    con = duckdb.connect()
    result = con.execute(
        f"select count(*), count(Score), sum(Score) from read_parquet("
        f"'{tmp_path}/Leads/**/*.parquet', hive_partitioning=true, union_by_name=true)"
    ).fetchone()
    assert result == (40, 10, 45)


def test_batches_are_conformed_or_refused(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "r")
    batch = make_batch(0, 3)
    reordered = batch.select(list(reversed(batch.schema.names)))
    writer.write(reordered)
    with pytest.raises(DataError, match="does not match"):
        writer.write(batch.drop_columns(["Amount"]))
    writer.commit()
    assert read_dataset(tmp_path).num_rows == 3


@pytest.mark.parametrize(
    ("schema", "kwargs", "match"),
    [
        (pa.schema([("id", pa.string())]), {}, "no Modified_Time"),
        (pa.schema([("id", pa.string()), ("Modified_Time", pa.string())]), {}, "timestamp"),
        (
            pa.schema(
                [
                    ("id", pa.string()),
                    ("Modified_Time", pa.timestamp("us", tz="UTC")),
                    ("modified_date", pa.string()),
                ]
            ),
            {},
            "partition",
        ),
    ],
)
def test_bad_schemas_are_refused(
    tmp_path: Path, schema: pa.Schema, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        DatasetWriter(Output.open(tmp_path), "Leads", schema, "r")


@pytest.mark.parametrize("run_id", ["a/b", "", "../x", "a b"])
def test_run_ids_must_fit_in_a_file_name(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(DataError, match="run id"):
        DatasetWriter(Output.open(tmp_path), "Leads", SCHEMA.arrow, run_id)


def test_writes_to_an_fsspec_url() -> None:
    out = Output.open(f"memory://w-{uuid.uuid4().hex}/out")
    assert isinstance(out, FsspecOutput)
    try:
        writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "r", max_buffer_bytes=1)
        writer.write(make_batch(0, 60))
        assert out.list_files("Leads") == []  # nothing in the store before commit
        files = writer.commit()
        assert out.list_files("Leads", ".parquet") == sorted(f.path for f in files)
        dataset = ds.dataset(
            f"{out.base}/Leads", filesystem=out.fs, format="parquet", partitioning="hive"
        )
        assert dataset.to_table().num_rows == 60
    finally:
        out.fs.rm(out.base, recursive=True)
        shutil.rmtree(out.scratch, ignore_errors=True)


def test_scratch_space_removed_between_commits_is_recreated(tmp_path: Path) -> None:
    """A recover() in between (or a user tidying _tmp/) must not break the next checkpoint."""
    out = Output.open(tmp_path)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, "run8", max_buffer_bytes=1)
    writer.write(make_batch(0, 40))
    writer.commit()
    shutil.rmtree(tmp_path / "_tmp")
    writer.write(make_batch(40, 40))
    writer.commit()
    table = read_dataset(tmp_path)
    assert table.num_rows == 80
    assert sorted(table.column("id").to_pylist()) == [
        f"{3652397000000000000 + i}" for i in range(80)
    ]


# --- ordered input: complete partitions written while reading goes on ---------------------------


def ordered_batches(days: int, per_day: int, *, per_batch: int) -> list[pa.RecordBatch]:
    """``days`` × ``per_day`` rows in ascending Modified_Time, cut into batches that straddle days."""
    step = 24 * 60 // per_day
    whole = make_batch(0, days * per_day, step_minutes=step)
    return [whole.slice(i, per_batch) for i in range(0, whole.num_rows, per_batch)]


def scratch_files(root: Path) -> list[Path]:
    return sorted((root / "_tmp").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("days", "per_day", "per_batch", "buffer", "sealed"),
    [
        (30, 8, 20, 16 << 20, 25),
        # Every batch spills (a 1-byte buffer): the days are in runs, none is left buffered when
        # the next day's batch comes. A complete day is still written then, not at the commit.
        (12, 6, 6, 1, 10),
    ],
)
def test_ordered_input_writes_complete_days_before_the_commit(
    tmp_path: Path, days: int, per_day: int, per_batch: int, buffer: int, sealed: int
) -> None:
    batches = ordered_batches(days, per_day, per_batch=per_batch)
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=buffer
    )
    for batch in batches[:-1]:
        writer.write(batch)
    writer._collect_sealed(everything=True)
    # Every day before the last batch's first day is already a file in the scratch area...
    assert len(scratch_files(tmp_path)) >= sealed
    assert not (tmp_path / "Leads").exists()
    writer.write(batches[-1])
    files = writer.commit()
    # ...and the result is exactly what an unordered writer makes: one file a day, every row.
    partitions = [f.partition for f in files]
    assert len(partitions) == len(set(partitions)) == days + 1
    table = read_dataset(tmp_path).drop_columns(["modified_date"]).sort_by("id")
    assert table.equals(pa.Table.from_batches(batches).sort_by("id"))
    assert not scratch_files(tmp_path)
    assert not list((tmp_path / "_tmp").rglob("spill-*"))


def test_ordered_and_unordered_writers_make_the_same_dataset(tmp_path: Path) -> None:
    batches = ordered_batches(20, 5, per_batch=7)
    results = []
    for ordered in (False, True):
        root = tmp_path / str(ordered)
        writer = DatasetWriter(Output.open(root), "Leads", SCHEMA.arrow, "r", ordered=ordered)
        for batch in batches:
            writer.write(batch)
        files = writer.commit()
        results.append(sorted((f.partition, f.rows) for f in files))
        assert (
            read_dataset(root)
            .drop_columns(["modified_date"])
            .sort_by("id")
            .equals(pa.Table.from_batches(batches).sort_by("id"))
        )
    assert results[0] == results[1]


def test_a_row_that_comes_after_its_day_was_written_is_kept_in_a_file_of_its_own(
    tmp_path: Path,
) -> None:
    batches = ordered_batches(10, 4, per_batch=6)
    late = make_batch(100, 1, step_minutes=0)  # Modified_Time = START: the first day, again
    writer = DatasetWriter(Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True)
    for batch in batches:
        writer.write(batch)
    writer.write(late)
    files = writer.commit()
    first_day = START.date().isoformat()
    # START is 22:00 UTC and rows come every 6 hours: the first day held one row, then one more.
    assert [f.rows for f in files if f.partition == first_day] == [1, 1]
    table = read_dataset(tmp_path)
    assert table.num_rows == 41 and len(set(table.column("id").to_pylist())) == 41


def test_ordered_days_spilled_to_a_run_are_written_once(tmp_path: Path) -> None:
    # A tiny buffer makes the writer spill rows of days that are complete only later.
    batches = ordered_batches(40, 6, per_batch=30)
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=3_000
    )
    for batch in batches:
        writer.write(batch)
    files = writer.commit()
    table = read_dataset(tmp_path)
    assert table.num_rows == 240 and len(set(table.column("id").to_pylist())) == 240
    assert sum(f.rows for f in files) == 240
    assert not list((tmp_path / "_tmp").rglob("spill-*"))


def no_spill(writer: DatasetWriter) -> None:
    def spill() -> None:
        raise AssertionError("ordered input spilled to a scratch run")

    writer._spill = spill  # type: ignore[method-assign]


def test_a_big_ordered_partition_is_streamed_to_one_file_a_row_group_at_a_time(
    tmp_path: Path,
) -> None:
    # Four days of 300 rows each, and a buffer of a few rows' bytes: every day is far bigger
    # than a row group, so its rows go to its file's write as they come, never to a spill run.
    batches = ordered_batches(4, 300, per_batch=25)
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=8_000
    )
    no_spill(writer)
    for batch in batches:
        writer.write(batch)
    files = writer.commit()
    assert len(files) == len({f.partition for f in files})  # one file a partition
    big = [f for f in files if f.rows >= 250]
    assert len(big) >= 3
    for f in big:
        parquet = pq.ParquetFile(tmp_path / f.path)
        assert parquet.metadata.num_row_groups > 1
        times = parquet.read().column("Modified_Time").to_pylist()
        assert times == sorted(times)
    table = read_dataset(tmp_path).drop_columns(["modified_date"]).sort_by("id")
    assert table.equals(pa.Table.from_batches(batches).sort_by("id"))
    assert not scratch_files(tmp_path)


def test_a_late_row_of_the_streamed_partition_starts_a_file_of_its_own(tmp_path: Path) -> None:
    batches = ordered_batches(2, 300, per_batch=25)
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=8_000
    )
    no_spill(writer)
    for batch in batches[:20]:  # well into the second day, which is streaming
        writer.write(batch)
    second_day = batches[19].column("Modified_Time")[0].as_py().date().isoformat()
    late = pa.Table.from_batches(batches[12:13]).to_batches()[0]  # rows of the second day again
    late = late.set_column(0, "id", pa.array([f"late{i}" for i in range(late.num_rows)]))
    writer.write(late)
    for batch in batches[20:]:
        writer.write(batch)
    files = writer.commit()
    day_files = [f for f in files if f.partition == second_day]
    assert len(day_files) >= 2
    for f in files:
        times = pq.read_table(tmp_path / f.path).column("Modified_Time").to_pylist()
        assert times == sorted(times)  # every file stays sorted
    table = read_dataset(tmp_path)
    assert table.num_rows == 600 + late.num_rows
    assert len(set(table.column("id").to_pylist())) == 600 + late.num_rows


def test_a_streamed_write_that_fails_fails_the_run_and_abort_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=8_000
    )
    real = pq.ParquetWriter.write_table
    calls = {"n": 0}

    def write_table(self: pq.ParquetWriter, table: pa.Table, row_group_size: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(self, table, row_group_size=row_group_size)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)
    # The failure surfaces at a later write or at the commit; nothing waits for ever.
    assert_disk_full_fails_and_abort_cleans_up(
        writer, ordered_batches(4, 300, per_batch=25), tmp_path
    )


def test_input_that_is_not_ordered_after_all_stays_within_the_buffer_bound(
    tmp_path: Path,
) -> None:
    # Every batch holds a row of each of 30 days: no batch starts past the days buffered, so
    # none is known complete, and the last day grows by one row a batch. The buffer bound still
    # holds, every row is kept, and every file is sorted.
    whole = make_batch(0, 30 * 40, step_minutes=36)  # 40 rows a day
    order = sorted(range(whole.num_rows), key=lambda i: (i % 40, i))
    mixed = whole.take(pa.array(order))
    batches = [mixed.slice(i, 30) for i in range(0, mixed.num_rows, 30)]
    bound = 40_000
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=bound
    )
    no_spill(writer)
    for batch in batches:
        writer.write(batch)
        assert writer._buffered_bytes <= bound + batch.nbytes
    files = writer.commit()
    for f in files:
        times = pq.read_table(tmp_path / f.path).column("Modified_Time").to_pylist()
        assert times == sorted(times)
    table = read_dataset(tmp_path).drop_columns(["modified_date"]).sort_by("id")
    assert table.equals(pa.Table.from_batches([whole]).sort_by("id"))


def test_abort_with_a_partition_streaming_leaves_nothing(tmp_path: Path) -> None:
    writer = DatasetWriter(
        Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True, max_buffer_bytes=8_000
    )
    for batch in ordered_batches(2, 300, per_batch=25)[:18]:
        writer.write(batch)
    assert writer._stream is not None  # the second day is streaming
    writer.abort()
    assert writer._stream is None
    assert_nothing_left(tmp_path)


def test_abort_waits_for_background_writes_and_leaves_nothing(tmp_path: Path) -> None:
    writer = DatasetWriter(Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True)
    for batch in ordered_batches(30, 4, per_batch=10):
        writer.write(batch)
    writer.abort()
    assert_nothing_left(tmp_path)


def test_a_background_write_that_fails_fails_the_commit_and_abort_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = DatasetWriter(Output.open(tmp_path), "Leads", SCHEMA.arrow, "r", ordered=True)
    real = writer._write_partition
    failing_day = (START + timedelta(days=3)).date().isoformat()

    def write_partition(key: str, pieces: object) -> None:
        if key == failing_day:
            raise OSError("disk full")
        real(key, pieces)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "_write_partition", write_partition)
    # The failure surfaces at the first write or commit after it happened.
    assert_disk_full_fails_and_abort_cleans_up(
        writer, ordered_batches(10, 4, per_batch=6), tmp_path
    )


def test_a_schema_of_hundreds_of_columns_is_written_one_file_at_a_time(tmp_path: Path) -> None:
    wide = pa.schema(
        [pa.field("id", pa.string()), pa.field("Modified_Time", pa.timestamp("us", tz="UTC"))]
        + [pa.field(f"X{i:03d}", pa.string()) for i in range(300)]
    )
    out = Output.open(str(tmp_path))
    assert DatasetWriter(out, "Wide", wide, "r", threads=4).threads == 1
    assert DatasetWriter(out, "Leads", SCHEMA.arrow, "r", threads=4).threads == 4
