"""The output on an S3-compatible object store (moto in server mode on 127.0.0.1).

First the building blocks (Output, DatasetWriter, StateStore and the module lock) on ``s3://``,
then the whole extract against the simulator, read back from the bucket with pyarrow.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from support.s3 import S3Bucket, s3, s3_server
from support.source import TINY, latest_per_id, noop, source_table

from connector.config import load_settings
from connector.errors import LockError
from connector.lake.manifest import RunManifest
from connector.lake.output import FsspecOutput, Output
from connector.lake.schema import ModuleSchema, module_schema
from connector.lake.state import ModuleState, StateStore
from connector.lake.writer import DatasetWriter
from connector.run.sync import run_extract
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import list_fields

__all__ = ["s3", "s3_server"]  # fixtures used by name below

UTC = timezone.utc
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("Last_Name", pa.string()),
        ("Modified_Time", pa.timestamp("us", tz="UTC")),
    ]
)
DAY = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)


def batch(start: int, count: int, *, hours: int = 0) -> pa.RecordBatch:
    """``count`` rows with ids from ``start``, one minute apart, ``hours`` after ``DAY``."""
    base = DAY + timedelta(hours=hours)
    return pa.RecordBatch.from_pydict(
        {
            "id": [str(5_000_000 + i) for i in range(start, start + count)],
            "Last_Name": [f'Name, "{i}"\n😀' for i in range(start, start + count)],
            "Modified_Time": [base + timedelta(minutes=i) for i in range(count)],
        },
        schema=SCHEMA,
    )


@pytest.fixture
def out(s3: S3Bucket) -> FsspecOutput:
    """The test bucket's prefix, opened as the connector opens ``--output s3://…``."""
    output = Output.open(s3.url)
    assert isinstance(output, FsspecOutput)
    return output


def read_dataset(s3: S3Bucket, rel_dir: str) -> pa.Table:
    """The hive dataset under ``rel_dir``, read straight from the bucket by pyarrow."""
    dataset = ds.dataset(
        f"{s3.root}/{rel_dir}", filesystem=s3.arrow_fs, format="parquet", partitioning="hive"
    )
    return dataset.to_table().sort_by("id")


# --- Output ---------------------------------------------------------------------------------


def test_output_round_trip_on_s3(s3: S3Bucket, out: FsspecOutput) -> None:
    out.write_bytes_atomic("_state/Leads.json", b'{"a": 1}')
    out.write_bytes_atomic("Leads/modified_date=2026-07-01/part-r1-00000.parquet", b"PAR1")
    assert s3.objects() == [
        "Leads/modified_date=2026-07-01/part-r1-00000.parquet",
        "_state/Leads.json",
    ]
    assert out.read_bytes("_state/Leads.json") == b'{"a": 1}'
    assert out.read_bytes("_state/Contacts.json") is None
    assert out.exists("_state/Leads.json") and not out.exists("_state/Contacts.json")
    assert out.list_files("Leads", ".parquet") == [
        "Leads/modified_date=2026-07-01/part-r1-00000.parquet"
    ]
    assert out.list_files("Contacts", ".parquet") == []
    out.write_bytes_atomic("_state/Leads.json", b'{"a": 2}')
    assert out.read_bytes("_state/Leads.json") == b'{"a": 2}'
    out.delete("_state/Leads.json")
    out.delete("_state/Leads.json")  # a missing object is not an error
    assert s3.objects("_state") == []
    assert out.describe("_state/x.lock") == f"{s3.url}/_state/x.lock"


def test_failed_multipart_upload_leaves_the_old_object_and_no_partial_one(
    s3: S3Bucket, out: FsspecOutput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs.core

    rel = "Leads/modified_date=2026-07-01/part-r1-00000.parquet"
    out.write_bytes_atomic(rel, b"the committed version")
    # Tiny parts so a 64 KiB file goes up as a multipart upload; the second part fails.
    monkeypatch.setattr(s3fs.core, "calculate_chunksize", lambda *a, **k: 16 * 1024)
    real_call = out.fs._call_s3
    parts: list[int] = []

    async def flaky(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "upload_part":
            parts.append(kwargs["PartNumber"])
            if kwargs["PartNumber"] == 2:
                raise ConnectionResetError("connection dropped mid-upload")
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(out.fs, "_call_s3", flaky)
    local = tmp_path / "big.parquet"
    local.write_bytes(b"x" * (64 * 1024))
    with pytest.raises(ConnectionResetError):
        out.write_file_atomic(rel, local)
    monkeypatch.undo()
    assert 2 in parts  # it really was a multipart upload that failed part-way
    assert out.read_bytes(rel) == b"the committed version"
    assert s3.objects() == [rel]
    assert s3.pending_uploads() == []  # the unfinished upload was aborted, not left to bill


def test_files_reach_the_bucket_only_at_commit(s3: S3Bucket, out: FsspecOutput) -> None:
    writer = DatasetWriter(out, "Leads", SCHEMA, "r1", row_group_rows=10, max_buffer_bytes=1)
    writer.write(batch(0, 50))
    writer.write(batch(50, 50, hours=2))  # the next UTC day: a second partition
    # The buffer has been spilled (its bound is 1 byte), but only to local scratch.
    assert any(out.scratch.rglob("spill-*"))
    assert s3.objects() == []
    files = writer.commit()
    assert sorted(f.partition for f in files) == ["2026-06-30", "2026-07-01"]
    assert s3.objects() == sorted(f.path for f in files)
    assert not any(out.scratch.rglob("*.parquet"))  # uploaded and removed locally
    table = read_dataset(s3, "Leads")
    assert table.num_rows == 100
    assert table.schema.field("Modified_Time").type == pa.timestamp("us", tz="UTC")
    expected = pa.Table.from_batches([batch(0, 50), batch(50, 50, hours=2)]).sort_by("id")
    assert table.select(SCHEMA.names).equals(expected)


def test_aborted_writer_leaves_nothing(s3: S3Bucket, out: FsspecOutput) -> None:
    writer = DatasetWriter(out, "Leads", SCHEMA, "r1", row_group_rows=10, max_buffer_bytes=1)
    writer.write(batch(0, 30))
    writer.abort()
    assert s3.objects() == []
    assert not any(out.scratch.rglob("*.parquet"))


# --- state after data, recovery ---------------------------------------------------------------


def commit_run(out: Output, run_id: str, rows: pa.RecordBatch, state: ModuleState) -> list[str]:
    """Write ``rows`` as run ``run_id`` and commit the state after them (steps 3-4)."""
    writer = DatasetWriter(out, "Leads", SCHEMA, run_id)
    writer.write(rows)
    paths = [f.path for f in writer.commit()]
    state.record_files(run_id, paths)
    state.watermark = writer.max_value
    StateStore(out).commit(state)
    return paths


def test_state_is_committed_after_its_data_and_recover_removes_uncommitted_files(
    s3: S3Bucket, out: FsspecOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(out)
    assert store.recover("Leads") == []  # an empty bucket prefix: nothing to do
    kept = commit_run(out, "r1", batch(0, 20), store.load("Leads"))
    state = store.load("Leads")
    assert state.watermark == DAY + timedelta(minutes=19)
    assert all(s3.client().head_object(Bucket=s3.name, Key=f"{s3.prefix}/{p}") for p in kept)

    # Run r2 dies after uploading its first file, before its second and before its state.
    calls: list[str] = []
    real_put = out.write_file_atomic

    def dying_put(rel: str, local: Path) -> None:
        calls.append(rel)
        if len(calls) == 2:
            raise ConnectionResetError("the process was killed here")
        real_put(rel, local)

    monkeypatch.setattr(out, "write_file_atomic", dying_put)
    writer = DatasetWriter(out, "Leads", SCHEMA, "r2")
    writer.write(batch(20, 10))
    writer.write(batch(30, 10, hours=2))
    with pytest.raises(ConnectionResetError):
        writer.commit()
    orphan = calls[0]
    assert orphan in s3.objects()
    assert any(out.scratch.rglob("*.parquet"))  # the second file, still in local scratch
    assert store.load("Leads").watermark == DAY + timedelta(minutes=19)  # state unchanged

    # The next run (a new process: a new Output) recovers before reading.
    again = Output.open(s3.url)
    removed = StateStore(again).recover("Leads")
    assert removed == [orphan]
    assert sorted(s3.objects("Leads")) == sorted(kept)
    assert not any(out.scratch.rglob("*.parquet"))  # scratch of the killed run swept
    assert read_dataset(s3, "Leads").num_rows == 20
    # A retry of r2 then commits normally; r1's files stay.
    commit_run(again, "r2", batch(20, 20), StateStore(again).load("Leads"))
    assert StateStore(again).recover("Leads") == []
    table = read_dataset(s3, "Leads")
    assert table.column("id").to_pylist() == [str(5_000_000 + i) for i in range(40)]
    doc = json.loads(s3.fs.cat_file(f"{s3.root}/_state/Leads.json"))
    assert set(doc["committed_runs"]) == {"r1", "r2"}


# --- locks ----------------------------------------------------------------------------------


def test_lock_is_exclusive_and_released(s3: S3Bucket, out: FsspecOutput) -> None:
    store = StateStore(out)
    lock = store.lock("Leads", "run-1")
    assert s3.objects("_state") == ["_state/Leads.lock"]
    held = json.loads(s3.fs.cat_file(f"{s3.root}/_state/Leads.lock"))
    assert held["run_id"] == "run-1" and held["hostname"] == socket.gethostname()
    # A second process (its own Output) is refused, naming who holds the lock and where.
    with pytest.raises(LockError) as refused:
        StateStore(Output.open(s3.url)).lock("Leads", "run-2")
    message = str(refused.value)
    assert "run-1" in message and f"{s3.url}/_state/Leads.lock" in message
    assert "\n" not in message
    with StateStore(Output.open(s3.url)).lock("Contacts", "run-3"):  # modules lock apart
        assert s3.objects("_state") == ["_state/Contacts.lock", "_state/Leads.lock"]
    lock.release()
    assert s3.objects("_state") == []
    with store.lock("Leads", "run-4") as again:
        assert json.loads(s3.fs.cat_file(f"{s3.root}/_state/Leads.lock"))["run_id"] == "run-4"
        assert again.location == f"{s3.url}/_state/Leads.lock"
    assert s3.objects("_state") == []


def test_lock_create_is_a_conditional_put(s3: S3Bucket, out: FsspecOutput) -> None:
    # The lock relies on S3's If-None-Match: * (no check-then-write window): a second create of
    # the same key is refused by the server itself, even when the client skips any check.
    path = f"{s3.root}/_state/Leads.lock"
    s3.fs.pipe_file(path, b"first", mode="create")
    with pytest.raises(FileExistsError):
        s3.fs.pipe_file(path, b"second", mode="create")
    assert s3.fs.cat_file(path) == b"first"
    assert out._create_exclusive("_state/Leads.lock", b"third") is False
    assert out._create_exclusive("_state/Contacts.lock", b"mine") is True


def test_lock_of_another_host_is_never_broken(s3: S3Bucket, out: FsspecOutput) -> None:
    foreign = {"module": "Leads", "run_id": "elsewhere", "pid": 1, "hostname": "worker-7"}
    out.write_bytes_atomic("_state/Leads.lock", json.dumps(foreign).encode())
    with pytest.raises(LockError, match="worker-7"):
        StateStore(out).lock("Leads", "mine")
    assert json.loads(out.read_bytes("_state/Leads.lock") or b"{}")["run_id"] == "elsewhere"


# --- the whole extract ----------------------------------------------------------------------

E2E_MODULES = ("Leads", "Contacts")


def current_from_s3(s3: S3Bucket, schema: ModuleSchema) -> pa.Table:
    """What the bucket holds as the table now: latest version per id, minus tombstones."""
    gone = None
    if s3.fs.exists(f"{s3.root}/_deleted/{schema.module}"):
        gone = read_dataset(s3, f"_deleted/{schema.module}").column("id")
    return latest_per_id(read_dataset(s3, schema.module), schema, gone)


def test_extract_to_s3_then_incremental_equals_source(
    make_simulator: Callable[..., Simulator], s3: S3Bucket, tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC))
    sim = make_simulator(seed=11, records=60, bulk_polls=1, clock=clock)
    text = sim.connection_string(OAuthSettingsLocation=str(tmp_path / "tokens.json"))
    settings = load_settings(text, environ={}).settings.model_copy(update={"tuning": TINY})
    client = ZohoClient(settings, sleep=noop)
    schemas = {m: module_schema(m, list_fields(client, m)) for m in E2E_MODULES}

    def extract() -> RunManifest:
        return run_extract(settings, s3.url, modules=E2E_MODULES, client=client, sleep=noop)

    first = extract()
    assert first.exit_code == 0, first.summary_lines()
    for m in E2E_MODULES:
        assert first.module(m).mode == "full"
        assert current_from_s3(s3, schemas[m]).equals(source_table(sim, schemas[m])), m

    leads = sim.org.module("Leads")
    ids = leads.current_ids()
    leads.update(ids[0], {"Last_Name": 'Comma, "quote"\nnewline 😀'})
    new_id = leads.insert({"Last_Name": "New", "Company": "Zylker"})
    leads.delete(ids[1])
    clock.advance(5)
    second = extract()
    assert second.exit_code == 0, second.summary_lines()
    report = second.module("Leads")
    assert (report.mode, report.rows, report.tombstones) == ("incremental", 2, 1)
    assert second.module("Contacts").rows == 0
    for m in E2E_MODULES:
        assert current_from_s3(s3, schemas[m]).equals(source_table(sim, schemas[m])), m
    assert new_id in read_dataset(s3, "Leads").column("id").to_pylist()

    # What the bucket holds besides the data: state, manifests; no lock, no scratch.
    keys = s3.objects()
    assert {k for k in keys if k.startswith("_state/")} == {
        "_state/Leads.json",
        "_state/Contacts.json",
    }
    assert len([k for k in keys if k.startswith("_runs/")]) == 2
    assert not [k for k in keys if k.startswith("_tmp/") or k.endswith(".lock")]
    assert not any(FsspecOutput(s3.url).scratch.rglob("*.parquet"))
    # The watermark is the second of the update and the insert; both ids are recorded at it.
    state = StateStore(Output.open(s3.url)).load("Leads")
    assert state.watermark == datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
    assert {ids[0], new_id} <= state.ids_at_watermark

    # Nothing changed: a third run writes no data file.
    third = extract()
    assert third.exit_code == 0 and third.rows == 0
    after = s3.objects()
    assert [k for k in after if k.endswith(".parquet")] == [
        k for k in keys if k.endswith(".parquet")
    ]
