"""materialise_snapshot: latest version per id, minus tombstones, over hand-built datasets."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, DataError
from connector.lake.snapshot import SINGLE_FILE_NAME, materialise_snapshot

UTC = timezone.utc
TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def write_part(
    root: Path, module: str, rows: list[dict[str, Any]], schema: pa.Schema, *, name: str
) -> Path:
    """One data file in the extract layout: DIR/<Module>/modified_date=<day>/<name>.parquet."""
    day = rows[0]["Modified_Time"].date().isoformat() if rows else "2026-03-01"
    directory = root / module / f"modified_date={day}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


TOMB_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("deleted_time", TS),
        ("type", pa.string()),
        ("display_name", pa.string()),
    ]
)


def write_tombstones(
    root: Path, module: str, rows: list[tuple[str, datetime]], *, name: str
) -> None:
    day = rows[0][1].date().isoformat()
    directory = root / "_deleted" / module / f"deleted_date={day}"
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        [
            {"id": i, "deleted_time": when, "type": "recycle", "display_name": "x"}
            for i, when in rows
        ],
        schema=TOMB_SCHEMA,
    )
    pq.write_table(table, directory / f"{name}.parquet")


V1 = pa.schema([("id", pa.string()), ("Last_Name", pa.string()), ("Modified_Time", TS)])
V2 = pa.schema(
    [
        ("id", pa.string()),
        ("Last_Name", pa.string()),
        ("Modified_Time", TS),
        ("Score", pa.int64()),
    ]
)


def by_id(path: str | Path) -> list[dict[str, Any]]:
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: r["id"])


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    """Two runs of Leads with schema drift, and tombstones before and after latest versions."""
    root = tmp_path / "out"
    write_part(
        root,
        "Leads",
        [
            {"id": "1", "Last_Name": "a1", "Modified_Time": t(0)},
            {"id": "2", "Last_Name": "b1", "Modified_Time": t(1)},
            {"id": "3", "Last_Name": "c1", "Modified_Time": t(2)},
            {"id": "4", "Last_Name": "d1", "Modified_Time": t(3)},
            {"id": "5", "Last_Name": "e1", "Modified_Time": t(4)},
        ],
        V1,
        name="part-run1-00000",
    )
    # The second run has a new column and a later day partition.
    write_part(
        root,
        "Leads",
        [
            {"id": "1", "Last_Name": "a2", "Modified_Time": t(2000), "Score": 7},
            {"id": "3", "Last_Name": "c2", "Modified_Time": t(2001), "Score": None},
            {"id": "4", "Last_Name": "d2", "Modified_Time": t(2002), "Score": 9},
        ],
        V2,
        name="part-run2-00000",
    )
    write_tombstones(
        root,
        "Leads",
        [
            ("2", t(10)),  # after its only version: deleted
            ("3", t(10)),  # before its latest version (c2 at t(2001)): kept
            ("4", t(2002)),  # same second as its latest version: deleted
            ("99", t(10)),  # never extracted: ignored
        ],
        name="part-run2-00000",
    )
    (root / "Contacts" / "modified_date=2026-03-01").mkdir(parents=True)
    (root / "_state").mkdir()
    return root


def test_latest_version_minus_tombstones_with_schema_drift(extract: Path, tmp_path: Path) -> None:
    target = tmp_path / "snap" / "leads.parquet"
    result = materialise_snapshot(str(extract), "Leads", str(target))

    assert result.path == str(target)
    assert result.rows == 3
    assert result.versions_read == 8
    assert result.deleted == 2
    assert result.files_read == 2
    assert by_id(target) == [
        {"id": "1", "Last_Name": "a2", "Modified_Time": t(2000), "Score": 7},
        {"id": "3", "Last_Name": "c2", "Modified_Time": t(2001), "Score": None},
        {"id": "5", "Last_Name": "e1", "Modified_Time": t(4), "Score": None},
    ]
    schema = pq.read_schema(target)
    assert schema.names == ["id", "Last_Name", "Modified_Time", "Score"]
    assert schema.field("Modified_Time").type == TS
    assert schema.field("id").type == pa.string()


def test_directory_target_gets_one_file_and_no_temp_left(extract: Path, tmp_path: Path) -> None:
    target = tmp_path / "current" / "Leads"
    result = materialise_snapshot(str(extract), "Leads", str(target))

    assert result.path == str(target / SINGLE_FILE_NAME)
    assert sorted(p.name for p in target.iterdir()) == [SINGLE_FILE_NAME]
    assert [r["id"] for r in by_id(result.path)] == ["1", "3", "5"]


def test_rerun_replaces_previous_snapshot(extract: Path, tmp_path: Path) -> None:
    target = tmp_path / "leads.parquet"
    materialise_snapshot(str(extract), "Leads", str(target))
    write_tombstones(extract, "Leads", [("1", t(3000))], name="part-run3-00000")

    result = materialise_snapshot(str(extract), "Leads", str(target))

    assert result.rows == 2
    assert [r["id"] for r in by_id(target)] == ["3", "5"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_without_deleted_directory_every_latest_version_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "out"
    write_part(
        root,
        "Deals",
        [
            {"id": "7", "Last_Name": "old", "Modified_Time": t(5)},
            {"id": "7", "Last_Name": "new", "Modified_Time": t(6)},
            {"id": "8", "Last_Name": "only", "Modified_Time": t(1)},
        ],
        V1,
        name="part-a",
    )
    result = materialise_snapshot(str(root), "Deals", str(tmp_path / "d.parquet"))
    assert by_id(result.path) == [
        {"id": "7", "Last_Name": "new", "Modified_Time": t(6)},
        {"id": "8", "Last_Name": "only", "Modified_Time": t(1)},
    ]


def test_identical_versions_in_two_files_give_one_row(tmp_path: Path) -> None:
    root = tmp_path / "out"
    row = {"id": "7", "Last_Name": "same", "Modified_Time": t(5)}
    write_part(root, "Deals", [row], V1, name="part-a")
    write_part(root, "Deals", [row], V1, name="part-b")
    result = materialise_snapshot(str(root), "Deals", str(tmp_path / "d.parquet"))
    assert result.rows == 1
    assert by_id(result.path) == [row]


def test_partition_column_inside_files_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "out"
    schema = V1.append(pa.field("modified_date", pa.string()))
    write_part(
        root,
        "Deals",
        [{"id": "1", "Last_Name": "x", "Modified_Time": t(0), "modified_date": "2026-03-01"}],
        schema,
        name="part-a",
    )
    result = materialise_snapshot(str(root), "Deals", str(tmp_path / "d.parquet"))
    assert pq.read_schema(result.path).names == ["id", "Last_Name", "Modified_Time"]


def test_everything_deleted_writes_an_empty_typed_file(tmp_path: Path) -> None:
    root = tmp_path / "out"
    write_part(root, "Deals", [{"id": "1", "Last_Name": "x", "Modified_Time": t(0)}], V1, name="p")
    write_tombstones(root, "Deals", [("1", t(1))], name="p")
    result = materialise_snapshot(str(root), "Deals", str(tmp_path / "d.parquet"))
    table = pq.read_table(result.path)
    assert result.rows == 0
    assert table.num_rows == 0
    assert table.schema.names == ["id", "Last_Name", "Modified_Time"]


def test_module_name_matches_case_insensitively(extract: Path, tmp_path: Path) -> None:
    result = materialise_snapshot(str(extract), "leads", str(tmp_path / "l.parquet"))
    assert result.rows == 3


def test_unknown_module_lists_the_modules_that_exist(extract: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        materialise_snapshot(str(extract), "Accounts", str(tmp_path / "a.parquet"))
    message = str(info.value)
    assert "Accounts" in message
    assert "modules there: Contacts, Leads" in message
    assert "\n" not in message
    assert not (tmp_path / "a.parquet").exists()


def test_module_without_data_files_is_a_config_error(extract: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no data files"):
        materialise_snapshot(str(extract), "Contacts", str(tmp_path / "c.parquet"))


def test_conflicting_column_types_are_a_data_error(tmp_path: Path) -> None:
    root = tmp_path / "out"
    write_part(root, "Deals", [{"id": "1", "Last_Name": "x", "Modified_Time": t(0)}], V1, name="a")
    bad = pa.schema(
        [("id", pa.string()), ("Last_Name", pa.list_(pa.int64())), ("Modified_Time", TS)]
    )
    write_part(root, "Deals", [{"id": "2", "Last_Name": [1], "Modified_Time": t(1)}], bad, name="b")
    with pytest.raises(DataError, match="Deals"):
        materialise_snapshot(str(root), "Deals", str(tmp_path / "d.parquet"))


def test_fsspec_urls_for_input_and_output() -> None:
    fs = fsspec.filesystem("memory")
    rows = [
        {"id": "1", "Last_Name": "a", "Modified_Time": t(0)},
        {"id": "1", "Last_Name": "b", "Modified_Time": t(1)},
    ]
    with fs.open("/snapext/Leads/modified_date=2026-03-01/part-1.parquet", "wb") as handle:
        pq.write_table(pa.Table.from_pylist(rows, schema=V1), handle)
    try:
        result = materialise_snapshot("memory://snapext", "Leads", "memory://snapout/Leads")
        assert result.path == "memory://snapout/Leads/part-00000.parquet"
        with fs.open("/snapout/Leads/part-00000.parquet", "rb") as handle:
            assert pq.read_table(handle).to_pylist() == [rows[1]]
    finally:
        fs.rm("/snapext", recursive=True)
        fs.rm("/snapout", recursive=True)


versions = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.integers(0, 20), st.integers(0, 3)),
    min_size=1,
    max_size=40,
)
deletions = st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 20)), max_size=10)


@settings(max_examples=40, deadline=None)
@given(versions=versions, deletions=deletions, files=st.integers(1, 3))
def test_matches_a_naive_reference(
    versions: list[tuple[str, int, int]], deletions: list[tuple[str, int]], files: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "out"
        # The value is a function of (id, time) so that ties are identical, as the contract says.
        rows = [{"id": i, "Last_Name": f"{i}@{m}", "Modified_Time": t(m)} for i, m, _ in versions]
        for n in range(files):
            chunk = [r for r, (_, _, f) in zip(rows, versions, strict=True) if f % files == n]
            if chunk:
                write_part(root, "M", chunk, V1, name=f"part-{n}")
        if deletions:
            write_tombstones(root, "M", [(i, t(m)) for i, m in deletions], name="d")

        result = materialise_snapshot(str(root), "M", str(Path(tmp) / "s.parquet"))

        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["id"] not in latest or row["Modified_Time"] > latest[row["id"]]["Modified_Time"]:
                latest[row["id"]] = row
        last_delete: dict[str, datetime] = {}
        for i, m in deletions:
            last_delete[i] = max(last_delete.get(i, t(m)), t(m))
        expected = sorted(
            (
                r
                for i, r in latest.items()
                if i not in last_delete or last_delete[i] < r["Modified_Time"]
            ),
            key=lambda r: r["id"],
        )
        assert by_id(result.path) == expected
        assert result.rows == len(expected)


def test_reads_what_the_dataset_writer_wrote(tmp_path: Path) -> None:
    from connector.lake.output import Output
    from connector.lake.schema import TOMBSTONE_SCHEMA
    from connector.lake.writer import DatasetWriter

    output = Output.open(tmp_path / "out")
    run1 = DatasetWriter(output, "Leads", V1, "run1")
    run1.write(
        pa.RecordBatch.from_pylist(
            [
                {"id": "1", "Last_Name": "a1", "Modified_Time": t(0)},
                {"id": "2", "Last_Name": "b1", "Modified_Time": t(1)},
            ],
            schema=V1,
        )
    )
    run1.commit()
    run2 = DatasetWriter(output, "Leads", V2, "run2")
    run2.write(
        pa.RecordBatch.from_pylist(
            [{"id": "1", "Last_Name": "a2", "Modified_Time": t(3000), "Score": 5}], schema=V2
        )
    )
    run2.commit()
    deleted = DatasetWriter(
        output,
        "_deleted/Leads",
        TOMBSTONE_SCHEMA,
        "run2",
        partition_column="deleted_time",
        partition_name="deleted_date",
    )
    deleted.write(
        pa.RecordBatch.from_pylist(
            [{"id": "2", "deleted_time": t(5), "type": "recycle"}], schema=TOMBSTONE_SCHEMA
        )
    )
    deleted.commit()

    result = materialise_snapshot(str(tmp_path / "out"), "Leads", str(tmp_path / "s.parquet"))

    assert by_id(result.path) == [
        {"id": "1", "Last_Name": "a2", "Modified_Time": t(3000), "Score": 5}
    ]
    assert result.versions_read == 3


def test_many_small_files_give_one_row_group(tmp_path: Path) -> None:
    # Forty daily files of a few rows each: the snapshot gathers them, not a row group per file.
    for day in range(40):
        rows = [
            {"id": f"{day}-{i}", "Last_Name": "x", "Modified_Time": t(day * 24 * 60 + i)}
            for i in range(3)
        ]
        write_part(tmp_path, "Leads", rows, V1, name=f"p{day}")
    result = materialise_snapshot(str(tmp_path), "Leads", str(tmp_path / "_snapshots/now.parquet"))
    meta = pq.ParquetFile(result.path).metadata
    assert (result.files_read, result.rows) == (40, 120)
    assert (meta.num_row_groups, meta.num_rows) == (1, 120)


def test_row_groups_are_capped_and_winners_read_across_source_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.lake.snapshot as snapshot

    monkeypatch.setattr(snapshot, "ROW_GROUP_ROWS", 4)
    # One file of 10 rows in row groups of 3, holding two versions of ids 0..4: only the later
    # version of each (rows 5..9, in three of the file's four row groups) is kept.
    rows = [
        {"id": str(i % 5), "Last_Name": f"v{i // 5}-{i % 5}", "Modified_Time": t(i)}
        for i in range(10)
    ]
    directory = tmp_path / "Leads" / "modified_month=2026-03"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=V1), directory / "a.parquet", row_group_size=3)
    result = materialise_snapshot(str(tmp_path), "Leads", str(tmp_path / "_snapshots/now.parquet"))
    assert [r["Last_Name"] for r in by_id(result.path)] == [f"v1-{i}" for i in range(5)]
    groups = pq.ParquetFile(result.path).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [4, 1]
