"""``run_extract`` end to end against the simulator, for each reader: full load, changes
(including changes in the watermark's own second, deletes and hard deletes), incremental runs;
after every run the output (latest version per id, minus tombstones) equals the source exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.extract import (
    MODULES,
    READERS,
    assert_output_equals_source,
    client_for,
    extract,
    output_table,
    schema_of,
    settings_for,
)

from connector.lake.manifest import RunManifest
from connector.lake.output import Output
from connector.lake.state import StateStore
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc))


@pytest.mark.parametrize("reader", list(READERS))
def test_full_then_incremental_equals_source(
    make_simulator: Callable[..., Simulator], tmp_path: Path, clock: FakeClock, reader: str
) -> None:
    # Shipments (> 50 fields), Notes (Bulk cannot read it); Bulk pages of 150 rows make the
    # Leads read multi-page. (The > 2,000-row module is its own test: many tiny daily
    # partitions make reading the output back slow.)
    sim = make_simulator(seed=5, records=600, bulk_page_size=150, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    out = tmp_path / "out"
    schemas = {m: schema_of(client, m) for m in MODULES}
    assert len(schemas["Shipments"].arrow) > 50

    first = extract(settings, client, out)
    assert first.exit_code == 0, first.summary_lines()
    for m in MODULES:
        assert first.module(m).mode == "full"
        assert_output_equals_source(sim, out, schemas[m])
    notes = first.module("Notes")
    if reader == "bulk":
        assert first.module("Leads").reader == "bulk" and first.module("Leads").pages >= 4
        assert notes.reader == "records" or notes.reader == "coql"
        assert notes.fallback is not None and "Notes" in notes.fallback
    else:
        assert {r.reader for r in first.modules} == {reader}

    leads, ships = sim.org.module("Leads"), sim.org.module("Shipments")
    lead_ids, ship_ids = leads.current_ids(), ships.current_ids()
    # Changes at 12:00:00, then time passes before the next scheduled run (rows modified in the
    # read's last second are left for the run after: see test_extract_live_edge.py). The
    # watermark is the change's second, 12:00:00, and lead 0's pair is remembered, so the next
    # run reads that second again and drops only what it has.
    leads.update(lead_ids[0], {"Last_Name": 'Comma, "quote"\nnewline 😀'})
    ships.update(ship_ids[0], {"Name": "Renamed"})
    clock.advance(2)
    second = extract(settings, client, out)
    assert second.exit_code == 0, second.summary_lines()
    assert second.module("Leads").mode == "incremental"
    assert second.module("Leads").rows == 1
    assert second.module("Leads").deferred_rows == 0
    assert second.module("Leads").watermark_after == "2026-07-01T12:00:00+00:00"
    for m in ["Leads", "Shipments"]:
        assert_output_equals_source(sim, out, schemas[m])

    # More changes in the second the previous read started in, plus deletes (recycle and
    # permanent); a later change; then the next run.
    leads.update(lead_ids[1], {"Last_Name": "Same second"})
    new_id = leads.insert({"Last_Name": "New in the same second", "Company": "Zylker"})
    leads.delete(lead_ids[2])
    leads.delete(lead_ids[3], permanent=True)
    ships.delete(ship_ids[1])
    clock.advance(5)
    leads.update(lead_ids[4], {"Last_Name": "Later"})
    clock.advance(2)
    third = extract(settings, client, out)
    assert third.exit_code == 0, third.summary_lines()
    assert third.module("Leads").rows == 3  # lead 1, the new lead, lead 4; lead 0 not again
    assert third.module("Leads").tombstones == 2
    assert third.module("Shipments").tombstones == 1
    for m in MODULES:
        assert_output_equals_source(sim, out, schemas[m])
    assert new_id in output_table(out, schemas["Leads"]).column("id").to_pylist()

    # Nothing changed: a fourth run writes nothing and duplicates nothing.
    fourth = extract(settings, client, out)
    assert fourth.rows == 0 and fourth.exit_code == 0
    assert_output_equals_source(sim, out, schemas["Leads"])
    # What the client metered is what the simulator billed; the manifest says the same.
    assert client.meter.total == sim.credits.total
    runs = sorted((out / "_runs").glob("*.json"))
    assert len(runs) == 4
    doc = json.loads((out / "_runs" / f"{fourth.run_id}.json").read_text())
    assert doc["run_id"] == fourth.run_id and doc["totals"]["rows"] == 0
    assert doc["status"] == "ok" and doc["modules"][0]["reader"]


@pytest.mark.parametrize("reader", list(READERS))
def test_module_over_2000_rows(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    sim = make_simulator(seed=5, records=2100, bulk_page_size=1000, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    out = tmp_path / "out"
    assert sim.org.module("Leads").count() > 2000
    run = extract(settings, client, out, modules=["Leads"])
    assert run.exit_code == 0 and run.module("Leads").reader == reader
    assert run.rows == sim.org.module("Leads").count()
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))
    assert client.meter.total == sim.credits.total


def test_incremental_with_bulk_settings_costs_at_most_5_credits(
    make_simulator: Callable[..., Simulator], tmp_path: Path, clock: FakeClock
) -> None:
    sim = make_simulator(seed=3, records=1000, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    client = client_for(settings)
    out = tmp_path / "out"
    assert extract(settings, client, out, modules=["Leads"]).exit_code == 0
    leads = sim.org.module("Leads")
    for record_id in leads.current_ids()[:100]:
        leads.update(record_id, {"Last_Name": "Changed"})
    clock.advance(2)  # the next scheduled run comes after the edits' second
    before = sim.credits.total
    run = extract(settings, client, out, modules=["Leads"])
    report = run.module("Leads")
    assert report.reader == "coql" and report.rows == 100
    # fields 1 + COQL probe 1 + deleted records 2; no modules list: the named module's state
    # describes it.
    assert sim.credits.total - before == 4 == run.credits_total
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))


def test_three_readers_write_equal_outputs(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=9, records=300, bulk_polls=1)
    tables = {}
    for reader, overrides in READERS.items():
        settings = settings_for(sim, tmp_path, **overrides)
        client = client_for(settings)
        out = tmp_path / reader
        assert extract(settings, client, out, modules=["Leads", "Shipments"]).exit_code == 0
        tables[reader] = {
            m: output_table(out, schema_of(client, m)) for m in ["Leads", "Shipments"]
        }
    for m in ["Leads", "Shipments"]:
        assert tables["bulk"][m].equals(tables["coql"][m])
        assert tables["coql"][m].equals(tables["records"][m])


HELPER_THREADS = ("prefetch", "records-groups", "parquet")


def helper_threads(since: set[threading.Thread] | None = None) -> set[threading.Thread]:
    """The readers' and writer's background threads alive now (and not in ``since``)."""
    alive = {t for t in threading.enumerate() if t.name.startswith(HELPER_THREADS)}
    return alive - (since or set())


@pytest.mark.parametrize(("reader", "budget"), [("coql", 3), ("records", 4), ("bulk", 30)])
def test_max_credits_stops_cleanly_and_a_rerun_completes(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str, budget: int
) -> None:
    sim = make_simulator(seed=4, records=500, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    out = tmp_path / "out"
    before = sim.credits.total
    threads_before = helper_threads()
    stopped = extract(
        settings, client, out, modules=["Leads"], max_credits=budget, checkpoint_rows=100
    )
    assert sim.credits.total - before <= budget
    if reader == "bulk":
        # A Bulk job (~53 credits) does not fit in 30: no job is paid for and left unfinished;
        # COQL, which commits as it goes, reads the module instead (within the budget).
        report = stopped.module("Leads")
        assert (stopped.exit_code, report.reader, report.jobs) == (0, "coql", 0)
        assert "a Bulk read needs" in (report.reason or "")
        assert not [r for r in sim.requests if r.path.startswith("/crm/bulk/")]
        assert_output_equals_source(sim, out, schema_of(client, "Leads"))
        return
    assert (stopped.status, stopped.exit_code) == ("stopped: budget", 4)
    # No call left out on a reader's prefetch thread, no file left building.
    assert not helper_threads(threads_before)
    assert "rerun resumes" in (stopped.message or "")
    assert stopped.module("Leads").status == "stopped: budget"
    state = StateStore(Output.open(out)).load("Leads")
    if reader == "records":
        # modules list 1 + fields 1 + two 200-row pages (1 each, committed, less the rows of
        # the last second, which the next page starts again); the third page would pass it.
        assert 200 < stopped.module("Leads").rows <= 400 and state.watermark is not None
    else:
        # COQL: modules list 1 + fields 1; a full load starts with a 2,000-row page (3),
        # which would pass it.
        assert stopped.module("Leads").rows == 0 and state.watermark is None
    done = extract(settings, client, out, modules=["Leads"])
    assert done.exit_code == 0
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))


def test_daily_credits_exhausted_stops_all_modules_and_resumes(
    make_simulator: Callable[..., Simulator], tmp_path: Path, clock: FakeClock
) -> None:
    sim = make_simulator(seed=4, records=500, daily_credits=6, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    client = client_for(settings)
    out = tmp_path / "out"
    threads_before = helper_threads()
    run = extract(
        settings, client, out, modules=["Leads", "Accounts"], workers=1, checkpoint_rows=100
    )
    assert (run.status, run.exit_code) == ("stopped: credits", 4)
    assert "daily API credits" in (run.message or "")
    assert any(m.status == "stopped: credits" for m in run.modules)
    assert sim.credits.total <= 6
    assert not helper_threads(threads_before)
    sim.credits.daily_limit = None
    done = extract(settings, client, out, modules=["Leads", "Accounts"])
    assert done.exit_code == 0, done.summary_lines()
    for m in ["Leads", "Accounts"]:
        assert_output_equals_source(sim, out, schema_of(client, m))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_refuses_a_second_extract_and_a_stale_lock_is_recovered(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=2, records=200, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS["records"])
    client = client_for(settings)
    out = tmp_path / "out"
    store = StateStore(Output.open(out))
    with store.lock("Leads", "another-run"):
        run = extract(settings, client, out, modules=["Leads", "Accounts"])
    assert (run.status, run.exit_code) == ("locked", 5)
    assert run.module("Leads").status == "locked" and "pid" in (run.module("Leads").error or "")
    assert run.module("Accounts").status == "ok"
    assert not (out / "Leads").exists()

    lock = out / "_state" / "Leads.lock"
    info = {"module": "Leads", "run_id": "killed", "pid": _dead_pid(), "started_at": "x"}
    import socket

    info["hostname"] = socket.gethostname()
    lock.write_text(json.dumps(info))
    again = extract(settings, client, out, modules=["Leads"])
    assert again.exit_code == 0 and not lock.exists()
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))


def test_two_modules_side_by_side_into_one_output(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=8, records=400, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    out = tmp_path / "out"
    results: dict[str, RunManifest] = {}

    def one(module: str) -> None:
        results[module] = extract(settings, client_for(settings), out, modules=[module])

    threads = [threading.Thread(target=one, args=(m,)) for m in ("Leads", "Contacts")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.exit_code == 0 for r in results.values())
    client = client_for(settings)
    for m in ("Leads", "Contacts"):
        assert_output_equals_source(sim, out, schema_of(client, m))
    assert len(list((out / "_runs").glob("*.json"))) == 2


def test_full_refresh_replaces_the_previous_generation(
    make_simulator: Callable[..., Simulator], tmp_path: Path, clock: FakeClock
) -> None:
    sim = make_simulator(seed=6, records=300, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    client = client_for(settings)
    out = tmp_path / "out"
    first = extract(settings, client, out, modules=["Leads"])
    leads = sim.org.module("Leads")
    leads.delete(leads.current_ids()[0])
    refresh = extract(settings, client, out, modules=["Leads"], full_refresh=True)
    assert refresh.module("Leads").mode == "full_refresh"
    old = {f.path for f in first.module("Leads").files}
    assert old and old <= set(refresh.module("Leads").removed_files)
    assert not any((out / p).exists() for p in old)
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))
