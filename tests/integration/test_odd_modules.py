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
from support.cli import clean_env, run_cli
from support.extract import READERS, client_for, extract, schema_of, settings_for
from support.source import assert_output_equals_source, assert_same_table, read_local

from connector.lake.manifest import STATUS_OK, STATUS_SKIPPED, RunManifest
from connector.lake.output import Output
from connector.lake.schema import ModuleSchema
from connector.lake.state import StateStore
from connector.readers.users import USERS, users_schema
from connector.run import sync as sync_module
from connector.run.catalog import unavailable_reason
from connector.run.module_job import ModuleJob
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.metadata import ModuleMeta

FAST_TUNING = {
    "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0.01",
    "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0.05",
    "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0",
    "ZOHO_CRM_TUNING_RETRY_MAX_WAIT": "0",
}
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
        assert by_name["Actions_Performed"].mode == "full_every_run"
        assert by_name[USERS].mode == "full_every_run"
        check_output(sim, out, schema)
    doc = json.loads((out / "_runs" / f"{second.run_id}.json").read_text())
    assert {m["module"] for m in doc["modules"]} >= set(ODD)


def _refused(sim: Simulator) -> list[str]:
    """The calls the simulator refused with a 4xx, as ``METHOD path status``."""
    return [f"{r.method} {r.path} {r.status}" for r in sim.requests if 400 <= r.status < 500]


def test_a_column_coql_refuses_unannounced_is_learned_with_one_failed_call(
    simulator: Simulator, tmp_path: Path
) -> None:
    # A field COQL refuses that the connector's known list does not name.
    simulator.org.module("Deals").meta.field("Description").sim["coql"] = False
    settings = settings_for(simulator, tmp_path, **READERS["coql"])
    out = tmp_path / "out"
    with client_for(settings) as client:
        manifest = extract(settings, client, out, modules=["Deals"])
        report = manifest.module("Deals")
        assert manifest.exit_code == 0 and report.status == STATUS_OK, report.error
        assert report.reader == "records"
        assert "COQL refuses Description" in (report.reason or "")
        assert any("COQL refused Description (INVALID_QUERY)" in n for n in report.notes)
        assert _refused(simulator) == ["POST /crm/v8/coql 400"]
        assert_output_equals_source(simulator, out, schema_of(client, "Deals"), required=True)
        # The state remembers the refusal: later runs (and their plans) do not pay for it again.
        assert StateStore(Output.open(out)).load("Deals").coql_refused == ("Description",)
        again = extract(settings, client, out, modules=["Deals"], full_refresh=True)
        assert again.exit_code == 0 and again.module("Deals").reader == "records"
        assert _refused(simulator) == ["POST /crm/v8/coql 400"]  # still the one
        assert_output_equals_source(simulator, out, schema_of(client, "Deals"), required=True)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_module_zoho_refuses_unannounced_is_skipped_cleanly(
    simulator: Simulator, tmp_path: Path, reader: str
) -> None:
    # Listed as API-supported, not in the connector's known list, refusing every data call.
    simulator.org.module("Tasks").meta.refuse = "INVALID_QUERY"
    settings = settings_for(simulator, tmp_path, **READERS[reader])
    with client_for(settings) as client:
        manifest = extract(settings, client, tmp_path / "out", modules=["Tasks", "Leads"])
    assert manifest.exit_code == 0, manifest.summary_lines()
    tasks = manifest.module("Tasks")
    assert tasks.status == STATUS_SKIPPED, tasks.error
    assert tasks.error and tasks.error.startswith("not available: ")
    assert manifest.module("Leads").status == STATUS_OK
    assert len(_refused(simulator)) == 1, _refused(simulator)
    assert not (tmp_path / "out" / "Tasks").exists()


@pytest.mark.parametrize("name", ["email_analytics", "Visits", "Contacts_X_Deals"])
def test_a_named_module_that_cannot_be_read_is_refused_up_front(
    simulator: Simulator, tmp_path: Path, name: str
) -> None:
    # Once skipped after the run began (exit 0) or, for a linking module, read as a module.
    env = clean_env(tmp_path, FAST_TUNING)
    proc = run_cli(
        "extract",
        "--connection",
        simulator.connection_string(),
        "-o",
        str(tmp_path / "out"),
        "--modules",
        f"Users,{name}",
        env=env,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    meta = ModuleMeta.from_api(simulator.org.find_module(name).meta.to_api())  # type: ignore[union-attr]
    words = unavailable_reason(meta)
    assert words is not None
    assert (
        line == f"error: module {meta.api_name} cannot be extracted: {words} (see zoho-crm modules)"
    )
    # Nothing spent beyond the modules list that tells; no user page, no record read.
    assert simulator.credits.total == 1
    assert [r.path for r in simulator.requests if r.path.startswith("/crm/v8/")] == [
        "/crm/v8/settings/modules"
    ]
    assert not (tmp_path / "out" / "Users").exists()


def test_modules_command_shows_the_odd_modules_with_reasons(
    simulator: Simulator, tmp_path: Path
) -> None:
    proc = run_cli(
        "modules", "--connection", simulator.connection_string(), env=clean_env(tmp_path, {})
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "INVALID_QUERY" in lines["Email_Analytics"]
    assert "INVALID_MODULE" in lines["CTI_Entry"]
    assert "not available through the API" in lines["Visits"]
    assert "no Modified_Time" in lines["Actions_Performed"]
    assert "COQL refuses Participants" in lines["Events"]
    assert "users" in lines["Users"]


def test_an_unexpected_error_fails_its_module_only(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ModuleJob.execute

    def execute(self: ModuleJob) -> None:
        if self.name == "Notes":
            raise RuntimeError("injected")
        original(self)

    monkeypatch.setattr(ModuleJob, "execute", execute)
    settings = settings_for(simulator, tmp_path, **READERS["coql"])
    out = tmp_path / "out"
    with client_for(settings) as client:
        manifest = extract(settings, client, out, modules=["Notes", "Leads"])
    assert manifest.exit_code == 1
    notes = manifest.module("Notes")
    assert notes.status == "failed" and notes.error == "unexpected error: RuntimeError: injected"
    assert manifest.module("Leads").status == STATUS_OK
    doc = json.loads((out / "_runs" / f"{manifest.run_id}.json").read_text())
    assert doc["exit_code"] == 1


def test_the_manifest_is_written_when_the_whole_run_breaks(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected before any module")

    monkeypatch.setattr(sync_module, "discover_run", broken)
    settings = settings_for(simulator, tmp_path, **READERS["coql"])
    out = tmp_path / "out"
    with client_for(settings) as client, pytest.raises(RuntimeError, match="injected"):
        extract(settings, client, out, modules=["Leads"])
    [written] = list((out / "_runs").glob("*.json"))
    doc = json.loads(written.read_text())
    assert doc["status"] == "failed" and doc["exit_code"] == 1
    assert "injected before any module" in doc["message"]
