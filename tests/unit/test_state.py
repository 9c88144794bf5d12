"""State: watermarks, dedupe at the watermark, crash recovery and locks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from connector.errors import ConfigError, DataError, LockError
from connector.lake.output import LocalOutput, Output
from connector.lake.schema import TOMBSTONE_SCHEMA, module_schema
from connector.lake.state import (
    ModuleState,
    StateStore,
    WatermarkTracker,
    dedupe_against_watermark,
)
from connector.lake.writer import DatasetWriter
from connector.zoho.metadata import FieldMeta

UTC = timezone.utc
T0 = datetime(2024, 6, 4, 20, 34, 9, tzinfo=UTC)
SCHEMA = module_schema("Leads", [FieldMeta("Name", "text"), FieldMeta("Modified_Time", "datetime")])


def batch(rows: Iterable[tuple[str, datetime | None]]) -> pa.RecordBatch:
    rows = list(rows)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([r[0] for r in rows], pa.string()),
            pa.array([f"name {r[0]}" for r in rows], pa.string()),
            pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            pa.nulls(len(rows), pa.string()),  # $raw_values
        ],
        schema=SCHEMA.arrow,
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- state file -----------------------------------------------------------------------------


def test_load_without_state_is_empty(tmp_path: Path) -> None:
    state = StateStore(Output.open(tmp_path)).load("Leads")
    assert state == ModuleState(module="Leads")
    assert state.watermark is None and state.committed_runs == {}


def test_commit_and_load_round_trip_human_readable(tmp_path: Path) -> None:
    clock_value = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store = StateStore(Output.open(tmp_path), clock=lambda: clock_value)
    state = ModuleState(
        module="Leads",
        watermark=datetime(2024, 6, 5, 2, 4, 9, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        remembered=frozenset({("2", T0), ("1", T0), ("3", T0 + 2 * S), ("1", T0 + 2 * S)}),
        deleted_watermark=T0,
        deleted_remembered=frozenset({("9", T0)}),
        fields=("id", "Name", "Modified_Time"),
        reader="coql",
    )
    state.record_files("r1", ["Leads/modified_date=2024-06-04/part-r1-00000.parquet"])
    store.commit(state)
    text = (tmp_path / "_state" / "Leads.json").read_text()
    doc = json.loads(text)
    assert doc["version"] == 2
    assert doc["watermark"] == "2024-06-04T20:34:09+00:00"
    # (id, time) pairs grouped by time, both sorted: small and readable
    assert doc["remembered"] == {
        "2024-06-04T20:34:09+00:00": ["1", "2"],
        "2024-06-04T20:34:11+00:00": ["1", "3"],
    }
    assert doc["deleted_remembered"] == {"2024-06-04T20:34:09+00:00": ["9"]}
    assert doc["committed_runs"] == {"r1": ["Leads/modified_date=2024-06-04/part-r1-00000.parquet"]}
    assert "\n  " in text  # indented, for humans
    loaded = store.load("Leads")
    assert loaded == state
    assert loaded.updated_at == clock_value
    assert loaded.last_run_id == "r1"
    assert loaded.watermark is not None and loaded.watermark.utcoffset() == timedelta(0)
    assert loaded.ids_at_watermark == {"1", "2"} and loaded.deleted_ids_at_watermark == {"9"}


def test_version_1_state_file_still_loads(tmp_path: Path) -> None:
    """Files written before (id, time) pairs: the ids at the watermark become pairs at it."""
    (tmp_path / "_state").mkdir()
    doc = {
        "version": 1,
        "module": "Leads",
        "watermark": "2024-06-05T02:04:09+05:30",
        "ids_at_watermark": ["1", "2"],
        "deleted_watermark": None,
        "deleted_ids_at_watermark": ["7"],
        "fields": ["id"],
        "last_run_id": "r1",
        "updated_at": None,
        "reader": "bulk",
        "committed_runs": {"r1": None},
    }
    (tmp_path / "_state" / "Leads.json").write_text(json.dumps(doc))
    state = StateStore(Output.open(tmp_path)).load("Leads")
    assert state.watermark == T0
    assert state.remembered == {("1", T0), ("2", T0)}
    assert state.deleted_watermark is None and state.deleted_remembered == frozenset()
    assert state.committed_runs == {"r1": None} and state.reader == "bulk"
    kept = dedupe_against_watermark(batch([("1", T0), ("3", T0), ("2", T0 + S)]), state)
    assert kept.column("id").to_pylist() == ["3", "2"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": 99, "module": "Leads"}',
        b'{"version": 1}',
        b'{"version": 1, "module": "Leads", "watermark": "yesterday"}',
        b'{"version": 1, "module": "Leads", "ids_at_watermark": "1"}',
        b'{"version": 1, "module": "Leads", "committed_runs": {"r": "x"}}',
        b'{"version": 2, "module": "Leads", "remembered": ["1"]}',
        b'{"version": 2, "module": "Leads", "remembered": {"soon": ["1"]}}',
        b'{"version": 2, "module": "Leads", "remembered": {"2024-06-04T20:34:09+00:00": "1"}}',
        b'{"version": 2, "module": "Leads", "deleted_remembered": {"2024-06-04T20:34:09": []}}',
        b'{"version": true, "module": "Leads"}',
        b'{"version": 2, "module": "Leads", "watermark": "2024-06-04T20:34:09"}',
        b"\xff\xfe",
    ],
)
def test_corrupt_state_is_a_clear_data_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "_state").mkdir()
    (tmp_path / "_state" / "Leads.json").write_bytes(content)
    with pytest.raises(DataError) as err:
        StateStore(Output.open(tmp_path)).load("Leads")
    message = str(err.value)
    assert str(tmp_path / "_state" / "Leads.json") in message
    assert "corrupt" in message and "delete it" in message
    assert err.value.module == "Leads"


def test_state_of_another_module_is_refused(tmp_path: Path) -> None:
    store = StateStore(Output.open(tmp_path))
    store.commit(ModuleState(module="Deals"))
    (tmp_path / "_state" / "Deals.json").rename(tmp_path / "_state" / "Leads.json")
    with pytest.raises(DataError, match="belongs to module 'Deals'"):
        store.load("Leads")


@pytest.mark.parametrize("module", ["../x", "a/b", "", "_state"])
def test_bad_module_names(tmp_path: Path, module: str) -> None:
    with pytest.raises(ConfigError):
        StateStore(Output.open(tmp_path)).load(module)


# --- watermark and dedupe --------------------------------------------------------------------

S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("rows", "watermark", "pairs", "kept"),
    [
        ([("1", T0), ("2", T0 + S)], None, set(), ["1", "2"]),
        ([("1", T0 - S), ("2", T0), ("3", T0), ("4", T0 + S)], T0, {("2", T0)}, ["3", "4"]),
        ([("1", T0), ("2", T0)], T0, {("1", T0), ("2", T0)}, []),
        ([("1", T0), ("2", T0)], T0, set(), ["1", "2"]),
        ([("1", T0 - S)], T0, set(), []),
        ([("2", T0 + S)], T0, {("2", T0)}, ["2"]),  # same id, newer version: kept
        ([("5", None), ("6", T0)], T0, {("6", T0)}, ["5"]),  # rows without a time are kept
        # pairs after the watermark (written during a capped run) are dropped, only them
        (
            [("1", T0), ("2", T0 + S), ("3", T0 + S), ("2", T0 + 2 * S), ("4", T0 + 3 * S)],
            T0,
            {("2", T0 + S), ("4", T0 + 3 * S), ("9", T0 + S)},
            ["1", "3", "2"],
        ),
        # a remembered id with another time is another version: kept
        ([("7", T0 + S)], T0, {("7", T0 + 2 * S)}, ["7"]),
    ],
)
def test_dedupe_against_watermark(
    rows: list[tuple[str, datetime | None]],
    watermark: datetime | None,
    pairs: set[tuple[str, datetime]],
    kept: list[str],
) -> None:
    state = ModuleState(module="Leads", watermark=watermark, remembered=frozenset(pairs))
    result = dedupe_against_watermark(batch(rows), state)
    assert result.column("id").to_pylist() == kept
    assert result.schema == SCHEMA.arrow


def test_dedupe_tombstones_uses_the_deleted_watermark() -> None:
    tombs = pa.RecordBatch.from_pylist(
        [
            {"id": "1", "deleted_time": T0},
            {"id": "2", "deleted_time": T0},
            {"id": "3", "deleted_time": T0 + S},
        ],
        schema=TOMBSTONE_SCHEMA,
    )
    state = ModuleState(
        module="Leads",
        watermark=T0 + timedelta(days=9),
        remembered=frozenset({("2", T0)}),  # the data pairs play no part for tombstones
        deleted_watermark=T0,
        deleted_remembered=frozenset({("1", T0)}),
    )
    kept = dedupe_against_watermark(tombs, state, time_column="deleted_time")
    assert kept.column("id").to_pylist() == ["2", "3"]


def test_tracker_keeps_max_and_ids_at_max_across_batches() -> None:
    tracker = WatermarkTracker()
    tracker.observe(batch([("1", T0), ("2", T0 - S), ("3", T0)]))
    assert tracker.watermark == T0 and tracker.ids_at_watermark == {"1", "3"}
    tracker.observe(batch([("4", T0), ("5", T0 - S)]))
    assert tracker.ids_at_watermark == {"1", "3", "4"}
    tracker.observe(batch([("6", T0 + S), ("7", None)]))
    assert tracker.watermark == T0 + S and tracker.ids_at_watermark == {"6"}
    tracker.observe(batch([("8", T0)]))
    tracker.observe(batch([]))
    tracker.observe(batch([("9", None)]))
    assert tracker.watermark == T0 + S and tracker.ids_at_watermark == {"6"}


def test_tracker_from_state_accumulates_ids_at_an_unchanged_watermark() -> None:
    state = ModuleState(module="Leads", watermark=T0, remembered=frozenset({("1", T0)}))
    tracker = WatermarkTracker.from_state(state)
    tracker.observe(batch([("2", T0)]))
    tracker.apply(state)
    assert state.watermark == T0 and state.remembered == {("1", T0), ("2", T0)}

    tombs = pa.RecordBatch.from_pylist([{"id": "7", "deleted_time": T0}], schema=TOMBSTONE_SCHEMA)
    deleted = WatermarkTracker.from_state(state, time_column="deleted_time")
    deleted.observe(tombs)
    deleted.apply(state)
    assert state.deleted_watermark == T0 and state.deleted_remembered == {("7", T0)}
    assert state.ids_at_watermark == {"1", "2"}


# --- the cap: the server time the read started ------------------------------------------------


def test_capped_tracker_remembers_every_pair_at_or_after_the_cap() -> None:
    cap = T0 + 10 * S
    tracker = WatermarkTracker(cap=cap)
    tracker.observe(batch([("1", T0), ("2", T0 + 5 * S)]))
    # below the cap the watermark is the greatest time, as without a cap
    assert tracker.watermark == T0 + 5 * S and tracker.remembered == {("2", T0 + 5 * S)}
    tracker.observe(batch([("3", cap + 3 * S), ("4", cap), ("5", cap - S), ("6", cap + 3 * S)]))
    tracker.observe(batch([("3", cap + 9 * S), ("7", None)]))
    assert tracker.watermark == cap  # never past the cap
    assert tracker.remembered == {
        ("4", cap),
        ("3", cap + 3 * S),
        ("6", cap + 3 * S),
        ("3", cap + 9 * S),
    }
    assert tracker.ids_at_watermark == {"4"}
    state = ModuleState(module="Leads")
    tracker.apply(state)
    assert state.watermark == cap and state.remembered == tracker.remembered


def test_cap_below_the_previous_watermark_keeps_the_previous_one() -> None:
    # A cap from a skewed local clock must not move the watermark back past pairs it forgot.
    state = ModuleState(module="Leads", watermark=T0, remembered=frozenset({("1", T0)}))
    tracker = WatermarkTracker.from_state(state, cap=T0 - 60 * S)
    tracker.observe(batch([("2", T0 + S)]))
    tracker.apply(state)
    assert state.watermark == T0
    assert state.remembered == {("1", T0), ("2", T0 + S)}


def test_capped_tracker_memory_is_bounded_by_rows_after_the_cap() -> None:
    """A big unordered read (a Bulk full load): times in random order, most below the cap."""
    cap = T0 + 100_000 * S
    tracker = WatermarkTracker(cap=cap)
    seconds = [(i * 7919) % 50_000 for i in range(50_000)]  # every second once, shuffled
    rows = [(str(i), T0 + s * S) for i, s in enumerate(seconds)]
    for start in range(0, len(rows), 5_000):
        tracker.observe(batch(rows[start : start + 5_000]))
        assert len(tracker._pairs) <= 1  # only the greatest second so far
    assert tracker.watermark == T0 + 49_999 * S
    assert len(tracker.remembered) == 1
    late = [(str(100_000 + i), cap + (i % 3) * S) for i in range(30)]
    tracker.observe(batch(late))
    assert tracker.watermark == cap
    assert tracker.remembered == set(late)


def test_cap_rereads_a_change_the_run_missed() -> None:
    """The live edge: during a run, record A changes at cap+1 s but the reader has already passed
    it (a keyset cursor, an earlier Bulk page's snapshot); record B changes at cap+2 s and the
    reader sees it. Uncapped, the watermark would be cap+2 s and A (cap+1 s) never read again.
    Capped, the next run reads from the cap, gets A, and drops B, which it already has."""
    cap = T0 + 10 * S
    state = ModuleState(module="Leads", watermark=T0, remembered=frozenset({("0", T0)}))
    first_run = [("0", T0), ("1", T0 + 3 * S), ("B", cap + 2 * S)]  # A's new version unseen
    fresh = dedupe_against_watermark(batch(first_run), state)
    assert fresh.column("id").to_pylist() == ["1", "B"]
    tracker = WatermarkTracker.from_state(state, cap=cap)
    tracker.observe(fresh)
    tracker.apply(state)
    assert state.watermark == cap and state.remembered == {("B", cap + 2 * S)}

    uncapped = WatermarkTracker(T0, {("0", T0)})
    uncapped.observe(fresh)
    assert uncapped.watermark == cap + 2 * S  # what the old logic committed: A is behind it

    # the next run reads from the watermark inclusive: A's new version and B come again
    second_run = [("A", cap + S), ("B", cap + 2 * S)]
    again = dedupe_against_watermark(batch(second_run), state)
    assert again.column("id").to_pylist() == ["A"]


# --- locks -----------------------------------------------------------------------------------


def test_module_lock_contention_and_independence(tmp_path: Path) -> None:
    store = StateStore(Output.open(tmp_path))
    with store.lock("Leads", "r1"):
        with pytest.raises(LockError) as err:
            store.lock("Leads", "r2")
        assert "Leads" in str(err.value) and str(tmp_path / "_state" / "Leads.lock") in str(
            err.value
        )
        with store.lock("Deals", "r2"):
            assert (tmp_path / "_state" / "Deals.lock").exists()
    assert not (tmp_path / "_state" / "Leads.lock").exists()


def test_stale_module_lock_is_recovered(tmp_path: Path) -> None:
    (tmp_path / "_state").mkdir()
    stale = {
        "module": "Leads",
        "run_id": "dead",
        "pid": dead_pid(),
        "hostname": socket.gethostname(),
    }
    (tmp_path / "_state" / "Leads.lock").write_text(json.dumps(stale))
    with StateStore(Output.open(tmp_path)).lock("Leads", "alive") as lock:
        assert lock.info["run_id"] == "alive"


# --- recovery --------------------------------------------------------------------------------


def test_recover_removes_uncommitted_files_and_seals_runs(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    store = StateStore(out)
    keep = "Leads/modified_date=2024-01-01/part-r1-00000.parquet"
    lost = "Leads/modified_date=2024-01-02/part-r1-00001.parquet"
    other_run = "Leads/modified_date=2024-01-02/part-r2-00000.parquet"
    tomb_lost = "_deleted/Leads/deleted_date=2024-01-02/part-r2-00000.parquet"
    foreign = "Leads/modified_date=2024-01-01/compacted.parquet"
    for rel in [keep, lost, other_run, tomb_lost, foreign]:
        out.write_bytes_atomic(rel, b"x")
    out.tmp_path("Leads/part-r2-00009.parquet").write_bytes(b"partial")
    out.tmp_path("Deals/part-r9-00000.parquet").write_bytes(b"another module's")
    state = ModuleState(module="Leads", watermark=T0)
    state.record_files("r1", [keep])
    state.record_files("gone", ["Leads/modified_date=2020-01-01/part-gone-00000.parquet"])
    store.commit(state)

    removed = store.recover("Leads")

    assert sorted(removed) == sorted([lost, other_run, tomb_lost])
    assert out.list_files("Leads") == [foreign, keep]
    assert out.list_files("_deleted") == []
    assert not out.tmp_path("Leads/part-r2-00009.parquet").exists()
    assert out.tmp_path("Deals/part-r9-00000.parquet").exists()
    sealed = store.load("Leads")
    assert sealed.committed_runs == {"r1": None}  # sealed; the run with no file left forgotten
    assert sealed.watermark == T0
    # sealed runs keep all their files on the next recover
    assert store.recover("Leads") == []
    assert out.exists(keep)


def test_recover_without_state_removes_files_of_a_first_run_that_crashed(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    out.write_bytes_atomic("Leads/modified_date=2024-01-01/part-r1-00000.parquet", b"x")
    assert StateStore(out).recover("Leads") == [
        "Leads/modified_date=2024-01-01/part-r1-00000.parquet"
    ]
    assert not out.exists("_state/Leads.json")


# --- crash simulation ------------------------------------------------------------------------


class Crash(Exception):
    """Stands for SIGKILL: nothing after it runs, no cleanup, no lock release."""


class FaultyOutput(LocalOutput):
    """A local output that can crash after N file moves or in the middle of a state write."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.moves_before_crash: int | None = None
        self.crash_in_state_write = False

    def _count_move(self) -> None:
        if self.moves_before_crash is not None:
            if self.moves_before_crash == 0:
                raise Crash("during file moves")
            self.moves_before_crash -= 1

    def write_file_atomic(self, rel: str, local_tmp_path: Path) -> None:
        self._count_move()
        super().write_file_atomic(rel, local_tmp_path)

    def place_file(self, rel: str, local_tmp_path: Path) -> None:
        self._count_move()
        super().place_file(rel, local_tmp_path)

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        if self.crash_in_state_write and rel.startswith("_state/"):
            self.tmp_path(f"{rel}.deadbeef.tmp").write_bytes(data[: len(data) // 2])
            raise Crash("during the state write")
        super().write_bytes_atomic(rel, data)


@dataclass
class Source:
    """An ordered source of record versions (id, Modified_Time); ties in a second are common."""

    versions: list[tuple[str, datetime]]

    def add(self, *new: tuple[str, datetime]) -> None:
        """Add record versions (a record updated again within the same second is one version)."""
        self.versions += [v for v in new if v not in self.versions]

    def read_from(self, watermark: datetime | None) -> list[tuple[str, datetime]]:
        rows = [v for v in self.versions if watermark is None or v[1] >= watermark]
        return sorted(rows, key=lambda v: (v[1], v[0]))


def make_source() -> Source:
    versions = []
    for i in range(60):
        # four records a second, seconds spread over three UTC days
        versions.append((f"{1000 + i}", T0 + timedelta(hours=20 * (i // 20), seconds=i // 4)))
    return Source(versions)


CRASH_POINTS = ["write", "moves", "files", "state_write", "state"]


def run_once(
    root: Path,
    source: Source,
    run_id: str,
    *,
    crash_at: str | None = None,
    crash_checkpoint: int = 0,
    page_rows: int = 7,
    checkpoint_pages: int = 2,
    cap: datetime | None = None,
) -> None:
    """One extract of an ordered reader with checkpoints; ``crash_at`` simulates a kill."""
    out = FaultyOutput(root)
    store = StateStore(out)
    lock = store.lock("Leads", run_id)
    store.recover("Leads")
    state = store.load("Leads")
    tracker = WatermarkTracker.from_state(state, cap=cap)
    writer = DatasetWriter(out, "Leads", SCHEMA.arrow, run_id, max_buffer_bytes=1)
    rows = source.read_from(state.watermark)
    pages = [rows[i : i + page_rows] for i in range(0, len(rows), page_rows)]
    checkpoint = 0
    for number, page in enumerate(pages, start=1):
        fresh = dedupe_against_watermark(batch(page), state)
        writer.write(fresh)
        tracker.observe(fresh)
        last = number == len(pages)
        if number % checkpoint_pages and not last:
            continue
        crashing = checkpoint == crash_checkpoint
        if crashing and crash_at == "write":
            raise Crash("before commit")
        if crashing and crash_at == "moves":
            out.moves_before_crash = 1
        files = writer.commit()
        if crashing and crash_at == "files":
            raise Crash("after files, before state")
        state.record_files(run_id, [f.path for f in files])
        tracker.apply(state)
        state.fields = tuple(SCHEMA.arrow.names)
        out.crash_in_state_write = crashing and crash_at == "state_write"
        store.commit(state)
        if crashing and crash_at == "state":
            raise Crash("after state")
        checkpoint += 1
    lock.release()


def mark_lock_owner_dead(root: Path) -> None:
    lock_file = root / "_state" / "Leads.lock"
    info = json.loads(lock_file.read_text())
    info["pid"] = dead_pid()
    lock_file.write_text(json.dumps(info))


def output_versions(root: Path) -> list[tuple[str, datetime]]:
    table = ds.dataset(root / "Leads", format="parquet", partitioning="hive").to_table()
    return list(
        zip(table.column("id").to_pylist(), table.column("Modified_Time").to_pylist(), strict=True)
    )


@pytest.mark.parametrize("capped", [False, True])
@pytest.mark.parametrize("crash_checkpoint", [0, 1, 2])
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_crash_then_rerun_gives_every_version_exactly_once(
    tmp_path: Path, crash_at: str, crash_checkpoint: int, capped: bool
) -> None:
    source = make_source()
    # Capped: every run started (server time) in the middle of the data, so the watermark stays
    # there and every later row is a remembered pair, across crashes and checkpoints.
    cap = T0 + timedelta(hours=20, seconds=2) if capped else None
    with pytest.raises(Crash):
        run_once(
            tmp_path,
            source,
            "run1",
            crash_at=crash_at,
            crash_checkpoint=crash_checkpoint,
            cap=cap,
        )
    # a killed process leaves its lock; the next run must take it over, not be blocked by it
    with pytest.raises(LockError):
        StateStore(Output.open(tmp_path)).lock("Leads", "too-early")
    mark_lock_owner_dead(tmp_path)

    # new versions arrive between runs (Zoho stamps them "now"), some in the newest second
    tie = max(v[1] for v in source.versions)
    source.add(("1000", tie), ("5000", tie), ("5001", tie + S), ("1003", tie + 2 * S))
    run_once(tmp_path, source, "run2", cap=cap)

    # and once more after a clean run
    last = max(v[1] for v in source.versions)
    source.add(("5002", last), ("1001", last + S))
    run_once(tmp_path, source, "run3", cap=cap)

    written = output_versions(tmp_path)
    duplicates = [v for v, n in Counter(written).items() if n > 1]
    assert duplicates == []
    assert sorted(written) == sorted(source.versions)
    assert not list((tmp_path / "_tmp").rglob("*.parquet"))
    assert not list((tmp_path / "_tmp").rglob("*.tmp"))
    assert not (tmp_path / "_state" / "Leads.lock").exists()
    final = StateStore(Output.open(tmp_path)).load("Leads")
    if cap is None:
        assert final.watermark == max(v[1] for v in source.versions)
    else:
        assert final.watermark == cap
        assert final.remembered == {v for v in source.versions if v[1] >= cap}
    # earlier runs were sealed by run3's recover; run3's own files are listed
    assert final.committed_runs["run3"]
    assert all(files is None for run, files in final.committed_runs.items() if run != "run3")


def test_crash_during_recover_is_itself_recoverable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source()
    with pytest.raises(Crash):
        run_once(tmp_path, source, "run1", crash_at="files", crash_checkpoint=1)
    mark_lock_owner_dead(tmp_path)
    real_delete = LocalOutput.delete
    calls = {"n": 0}

    def flaky_delete(self: LocalOutput, rel: str) -> None:
        if rel.endswith(".parquet"):
            calls["n"] += 1
        if calls["n"] == 2:
            raise Crash("during recover")
        real_delete(self, rel)

    monkeypatch.setattr(LocalOutput, "delete", flaky_delete)
    with pytest.raises(Crash):
        run_once(tmp_path, source, "run2")
    monkeypatch.setattr(LocalOutput, "delete", real_delete)
    assert calls["n"] == 2
    mark_lock_owner_dead(tmp_path)
    run_once(tmp_path, source, "run3")
    written = output_versions(tmp_path)
    assert sorted(written) == sorted(source.versions)
