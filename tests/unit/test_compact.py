"""compact: small files merged, or converted to another granularity, every row version kept."""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from support.lake import SCHEMA, START, WIDER, extract_like, parquet_files, versions

from connector.errors import ConfigError, LockError
from connector.lake import compact as compact_mod
from connector.lake.compact import compact_module
from connector.lake.output import Output
from connector.lake.snapshot import materialise_snapshot
from connector.lake.state import DELETED_DIR, ModuleState, StateStore


def test_merging_small_files_keeps_every_version_and_the_state_lists_the_new_files(
    tmp_path: Path,
) -> None:
    out = Output.open(tmp_path)
    # 60 daily runs at month granularity: two months of 30-31 small files each.
    extract_like(out, range(60), granularity="month")
    before, dead_before = versions(tmp_path), versions(tmp_path, f"{DELETED_DIR}/Leads")
    snapshot_before = materialise_snapshot(
        str(tmp_path), "Leads", str(tmp_path / "_snapshots" / "s1.parquet")
    )
    assert len(parquet_files(tmp_path)) == 60

    result = compact_module(str(tmp_path), "Leads")

    assert result.granularity == result.granularity_before == "month"
    assert result.files_read == 120 and result.rows == 660
    assert len(parquet_files(tmp_path)) == 2  # January and February (2024 is a leap year)
    assert len(parquet_files(tmp_path, f"{DELETED_DIR}/Leads")) == 2
    assert versions(tmp_path) == before  # every version, none twice
    assert versions(tmp_path, f"{DELETED_DIR}/Leads") == dead_before
    # The committed state covers exactly the new files: recover removes nothing.
    store = StateStore(out)
    assert store.recover("Leads") == []
    state = store.load("Leads")
    assert state.partition_by == "month"
    assert state.watermark == START + timedelta(days=59, minutes=9)
    (run_id,) = state.committed_runs
    assert run_id.endswith("-compact")
    present = parquet_files(tmp_path) + parquet_files(tmp_path, f"{DELETED_DIR}/Leads")
    assert sorted(present) == sorted(result.files_written)
    snapshot_after = materialise_snapshot(
        str(tmp_path), "Leads", str(tmp_path / "_snapshots" / "s2.parquet")
    )
    assert snapshot_after.rows == snapshot_before.rows
    # Nothing left to do the second time.
    again = compact_module(str(tmp_path), "Leads")
    assert again.files_read == 0 and len(parquet_files(tmp_path)) == 2


def test_an_incremental_run_after_compaction_appends_and_compacts_again(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    extract_like(out, range(20), granularity="month")
    compact_module(str(tmp_path), "Leads")
    extract_like(out, range(20, 25), granularity="month")
    total = versions(tmp_path)
    assert sum(total.values()) == 250
    compact_module(str(tmp_path), "Leads")
    assert versions(tmp_path) == total
    assert len(parquet_files(tmp_path)) == 1


def test_converting_a_daily_dataset_rewrites_records_and_tombstones(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    extract_like(out, range(40))  # a dataset written before granularity was recorded
    assert StateStore(out).load("Leads").partition_by is None
    before, dead_before = versions(tmp_path), versions(tmp_path, f"{DELETED_DIR}/Leads")

    result = compact_module(str(tmp_path), "Leads", partition_by="year")

    assert (result.granularity_before, result.granularity) == ("day", "year")
    assert parquet_files(tmp_path) == [
        f"Leads/modified_year=2024/{Path(result.files_written[0]).name}"
    ]
    assert [p.split("/")[2] for p in parquet_files(tmp_path, f"{DELETED_DIR}/Leads")] == [
        "deleted_year=2024"
    ]
    assert versions(tmp_path) == before
    assert versions(tmp_path, f"{DELETED_DIR}/Leads") == dead_before
    assert StateStore(out).load("Leads").partition_by == "year"
    assert not list(tmp_path.glob("Leads/modified_date=*"))


def test_files_of_different_schemas_are_not_merged_together(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    extract_like(out, range(10), granularity="month", wider_from=5)
    before = versions(tmp_path)
    compact_module(str(tmp_path), "Leads")
    files = parquet_files(tmp_path)
    assert len(files) == 2
    names = sorted(len(ds.dataset(tmp_path / f).schema.names) for f in files)
    # The old files keep their columns: no invented nulls.
    assert names == [len(SCHEMA.arrow), len(WIDER.arrow)] == [4, 5]
    assert versions(tmp_path) == before


def test_compact_refuses_without_data_and_while_the_module_is_locked(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    with pytest.raises(ConfigError, match="no extracted data of Leads"):
        compact_module(str(tmp_path), "Leads")
    extract_like(out, range(3))
    with pytest.raises(ConfigError, match="granularity 'weekly'"):
        compact_module(str(tmp_path), "Leads", partition_by="weekly")
    with StateStore(out).lock("Leads", "extract-run"), pytest.raises(LockError):
        compact_module(str(tmp_path), "Leads")


class Crash(BaseException):
    """Stands for the process dying at a crash point."""


@pytest.mark.parametrize(
    ("point", "hit"),
    [
        ("writer_row_group_written", 1),
        ("writer_after_rename", 1),
        ("compact_files_written", 1),
        ("compact_state_committed", 1),
        ("compact_old_deleted", 7),
    ],
)
@pytest.mark.parametrize("convert", [False, True])
def test_a_crash_anywhere_then_recover_sees_every_row_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, hit: int, convert: bool
) -> None:
    """In-process stand-in for a kill (tests/reliability/test_compact_crashes.py kills the
    process): whatever was placed, the next recover (of an extract or a compaction) leaves
    every version exactly once, then a compaction finishes the job."""
    out = Output.open(tmp_path)
    extract_like(out, range(12), granularity="month")
    before = versions(tmp_path)
    hits = Counter[str]()

    def crashpoint(name: str) -> None:
        hits[name] += 1
        if name == point and hits[name] == hit:
            raise Crash(name)

    from connector.lake import partfiles
    from connector.lake import writer as writer_mod

    monkeypatch.setattr(compact_mod, "crashpoint", crashpoint)
    monkeypatch.setattr(writer_mod, "crashpoint", crashpoint)
    monkeypatch.setattr(partfiles, "crashpoint", crashpoint)
    with pytest.raises(Crash):
        compact_module(str(tmp_path), "Leads", partition_by="year" if convert else None)
    monkeypatch.undo()
    (tmp_path / "_state" / "Leads.lock").unlink(missing_ok=True)  # the dead process's lock

    StateStore(out).recover("Leads")
    assert versions(tmp_path) == before
    compact_module(str(tmp_path), "Leads", partition_by="year" if convert else None)
    assert versions(tmp_path) == before
    assert len(parquet_files(tmp_path)) == 1


def test_compact_on_an_fsspec_output() -> None:
    out = Output.open(f"memory://c-{uuid.uuid4().hex}/out")
    try:
        extract_like(out, range(8), granularity="month")
        result = compact_module(out, "Leads")
        assert result.files_read == 16
        assert out.list_files("Leads", ".parquet") == [
            p for p in result.files_written if p.startswith("Leads/")
        ]
        table = ds.dataset(
            f"{out.base}/Leads",
            filesystem=out.fs,
            format="parquet",
            partitioning="hive",  # type: ignore[attr-defined]
        ).to_table()
        assert table.num_rows == 80
        assert StateStore(out).recover("Leads") == []
    finally:
        out.fs.rm(out.base, recursive=True)  # type: ignore[attr-defined]
        shutil.rmtree(out.scratch, ignore_errors=True)  # type: ignore[attr-defined]


def test_module_state_records_the_granularity() -> None:
    state = ModuleState("Leads", partition_by="month")
    assert ModuleState.from_json(state.to_json()).partition_by == "month"
    legacy = state.to_json()
    del legacy["partition_by"]
    assert ModuleState.from_json(legacy).partition_by is None
