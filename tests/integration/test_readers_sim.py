"""The three readers against the simulator: each reads whole modules equal to the source, and
Bulk, COQL and Records give equal Arrow tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from support.source import TINY, source_table
from support.source import assert_same_table as assert_same

from connector.config import load_settings
from connector.lake.schema import TOMBSTONE_SCHEMA, ModuleSchema, module_schema
from connector.readers import coql_count, coql_probe, make_reader, read_deleted
from connector.simulator import Simulator
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import ModuleMeta, list_fields


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # 2,500 Leads (> 2,000 rows), Shipments with > 50 fields, Notes (no Bulk); small Bulk pages.
    with Simulator(seed=11, records=2500, bulk_page_size=700, bulk_polls=2) as running:
        yield running


def client_for(sim: Simulator, **overrides: str) -> ZohoClient:
    settings = load_settings(sim.connection_string(**overrides), environ={}).settings
    settings = settings.model_copy(update={"tuning": TINY})
    return ZohoClient(settings, sleep=lambda _: None)


def schema_of(client: ZohoClient, module: str) -> ModuleSchema:
    return module_schema(module, list_fields(client, module))


def read_table(
    reader_name: str, client: ZohoClient, schema: ModuleSchema, since: Any = None
) -> pa.Table:
    reader = make_reader(reader_name, client, TINY, sleep=lambda _: None)
    module = ModuleMeta(api_name=schema.module, module_name=schema.module)
    batches = list(reader.read(module, schema, since))
    assert all(b.schema == schema.arrow for b in batches)
    return pa.Table.from_batches(batches, schema=schema.arrow).sort_by("id")


@pytest.mark.parametrize("module", ["Leads", "Shipments"])
def test_three_readers_equal_the_source_and_each_other(sim: Simulator, module: str) -> None:
    client = client_for(sim)
    schema = schema_of(client, module)
    want = source_table(sim, schema)
    tables = {}
    for name in ("bulk", "coql", "records"):
        before = len(sim.requests)
        tables[name] = read_table(name, client, schema)
        if name == "bulk":
            creates = [
                r for r in sim.requests[before:] if r.method == "POST" and r.path.endswith("/read")
            ]
            # Pages of 700 rows: one job per page (field groups of <= 200 fields: one group).
            assert len(creates) == -(-want.num_rows // 700)
    for table in tables.values():
        assert_same(table, want)
    assert tables["bulk"].equals(tables["coql"]) and tables["coql"].equals(tables["records"])
    if module == "Leads":
        assert want.num_rows > 2000
    else:
        assert len(schema.names) > 50


def test_credits_match_the_simulators_ledger(sim: Simulator) -> None:
    client = client_for(sim)
    schema = schema_of(client, "Leads")
    before = client.meter.total
    first = len(sim.requests)
    read_table("coql", client, schema)
    assert sum(r.credits for r in sim.requests[first:]) == client.meter.total - before
    rows = sim.org.module("Leads").count()
    # A full load reads 2,000-row pages for 3 credits each from the start.
    assert client.meter.total - before == 3 * -(-rows // 2000)


@pytest.mark.parametrize("reader_name", ["coql", "records"])
def test_notes_without_bulk(sim: Simulator, reader_name: str) -> None:
    client = client_for(sim)
    schema = schema_of(client, "Notes")
    assert_same(read_table(reader_name, client, schema), source_table(sim, schema))


def test_incremental_reads_from_the_watermark_second_inclusive(sim: Simulator) -> None:
    client = client_for(sim)
    schema = schema_of(client, "Accounts")
    full = source_table(sim, schema)
    times = full.column("Modified_Time")
    since = pc.max(times).as_py() - timedelta(seconds=30)
    want = full.filter(pc.greater_equal(times, pa.scalar(since, times.type)))
    assert 0 < want.num_rows < full.num_rows
    for name in ("bulk", "coql", "records"):
        assert_same(read_table(name, client, schema, since), want)
    probe = coql_probe(client, schema, since)
    assert not probe.more_records and probe.rows == want.num_rows
    assert_same(probe.table, want)
    assert coql_count(client, "Accounts", since) == want.num_rows


def test_deleted_records_become_tombstones(sim: Simulator) -> None:
    client = client_for(sim)
    store = sim.org.module("Tasks")
    gone = store.current_ids()[:3]
    for rid in gone:
        store.delete(rid)
    batches = list(read_deleted(client, "Tasks", None))
    table = pa.Table.from_batches(batches, schema=TOMBSTONE_SCHEMA)
    assert set(gone) <= set(table.column("id").to_pylist())


def test_bulk_survives_a_failed_job_and_a_truncated_download(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    from connector.simulator.faults import FaultConfig

    fresh = make_simulator(
        records=400,
        faults=FaultConfig(
            seed=3, bulk_fail_next=1, truncate_download_next=1, corrupt_download_next=1
        ),
    )
    client = client_for(fresh)
    schema = schema_of(client, "Deals")
    assert_same(read_table("bulk", client, schema), source_table(fresh, schema))
