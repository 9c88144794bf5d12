"""Modules that do not fit the common shape, and the Users dataset, end to end against the simulator.

The simulated org holds, by default: ``Actions_Performed`` (no ``Modified_Time``), ``Events`` with
``Participants`` and ``Quotes`` with ``Product_Details`` (fields COQL refuses), ``Email_Analytics``
and ``CTI_Entry`` (listed as API-supported, refusing data calls), ``Visits`` (``api_supported:
false``) and more than 200 users (two pages of ``GET users``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from support.extract import READERS, client_for, extract, schema_of, settings_for
from support.source import assert_output_equals_source, assert_same_table, read_local

from connector.lake.manifest import STATUS_OK, STATUS_SKIPPED, RunManifest
from connector.lake.schema import ModuleSchema
from connector.readers.users import USERS, users_schema
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock

ODD = ["Actions_Performed", "Events", "Quotes", "Email_Analytics", "CTI_Entry", "Visits", USERS]


def whole_dataset(out: Path, schema: ModuleSchema) -> pa.Table:
    """A module read in full every run: its dataset is one generation, one row per id."""
    table = read_local(out / schema.module)
    assert table is not None, schema.module
    table = table.select(schema.arrow.names).cast(schema.arrow).sort_by("id")
    ids = table.column("id")
    assert len(pc.unique(ids)) == len(ids), f"{schema.module}: an id twice"
    return table


def source_users(sim: Simulator) -> pa.Table:
    """The simulator's users in the connector's Users schema."""
    schema = users_schema()
    rows = [u.to_api() for u in sim.org.users]
    from connector.lake.schema import batch_from_records

    return pa.Table.from_batches([batch_from_records(rows, schema)]).sort_by("id")


def check_output(sim: Simulator, out: Path, client_schema: Callable[[str], ModuleSchema]) -> None:
    """Every odd module's output equals the simulator's data."""
    for module in ("Events", "Quotes"):
        assert_output_equals_source(sim, out, client_schema(module), required=True)
    actions = client_schema("Actions_Performed")
    from support.source import source_table

    assert_same_table(whole_dataset(out, actions), source_table(sim, actions), "Actions_Performed")
    assert_same_table(whole_dataset(out, users_schema()), source_users(sim), USERS)


def check_manifest(manifest: RunManifest) -> None:
    assert manifest.exit_code == 0, manifest.summary_lines()
    by_name = {m.module: m for m in manifest.modules}
    for name in ("Actions_Performed", "Events", "Quotes", USERS):
        assert by_name[name].status == STATUS_OK, (name, by_name[name].error)
    for name in ("Email_Analytics", "CTI_Entry", "Visits"):
        report = by_name[name]
        assert report.status == STATUS_SKIPPED
        assert report.error and report.error.startswith("skipped: "), report.error
        assert report.calls == 0
    assert "api_supported: false" in (by_name["Visits"].error or "")
    assert "INVALID_QUERY" in (by_name["Email_Analytics"].error or "")
    assert "INVALID_MODULE" in (by_name["CTI_Entry"].error or "")
    assert any("no Modified_Time" in n for n in by_name["Actions_Performed"].notes)
    for name in ("Events", "Quotes"):
        assert by_name[name].reader == "records"
        assert "COQL refuses" in (by_name[name].reason or "")


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_module_full_then_incremental(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc))
    sim = make_simulator(records=300, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    out = tmp_path / "out"
    with client_for(settings) as client:

        def schema(module: str) -> ModuleSchema:
            return schema_of(client, module)

        first = extract(settings, client, out, modules=None)
        check_manifest(first)
        check_output(sim, out, schema)
        assert not [r for r in sim.requests if r.status >= 400], "no refused call"

        # Changes everywhere, then an incremental run.
        events = sim.org.module("Events")
        event_id = events.current_ids()[3]
        events.update(event_id, {"Event_Title": "Moved to Friday"})
        sim.org.module("Quotes").delete(sim.org.module("Quotes").current_ids()[0])
        actions = sim.org.module("Actions_Performed")
        actions.delete(actions.current_ids()[5])
        clock.advance(2)  # the next run comes after the edits' second

        second = extract(settings, client, out, modules=None)
        check_manifest(second)
        by_name = {m.module: m for m in second.modules}
        assert by_name["Events"].mode == "incremental"
        assert by_name["Actions_Performed"].mode == "full_refresh"
        check_output(sim, out, schema)
    doc = json.loads((out / "_runs" / f"{second.run_id}.json").read_text())
    assert {m["module"] for m in doc["modules"]} >= set(ODD)
