"""Rows that share a second come in no promised order, and a read stopped inside such a second
loses nothing.

Zoho promises no order among rows that tie on the sort key, so the simulator shuffles them on
every call (docs/simulator.md, Assumptions). A mass update stamps hundreds of records with one
second; a run stopped in the middle of that second (by ``--max-credits`` or by a crash) and run
again must still end with the org's data exactly, each ``(id, Modified_Time)`` written once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from support.crash import Crash, crash_at
from support.extract import (
    READERS,
    assert_output_equals_source,
    client_for,
    extract,
    schema_of,
    settings_for,
)
from support.source import read_local

from connector.lake.output import Output
from connector.lake.state import StateStore
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock

START = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
RECORDS = 2_100
TIED = 700  # every third lead, updated within one second: more than three Records pages


class TiedOrg:
    """A simulated org of 2,100 leads, already extracted once, then 700 of them mass-updated
    within one second of its clock."""

    def __init__(self, make_simulator: Callable[..., Simulator], tmp: Path, reader: str) -> None:
        self.clock = FakeClock(START)
        self.sim = make_simulator(seed=21, records=RECORDS, clock=self.clock)
        self.settings = settings_for(self.sim, tmp, **READERS[reader])
        self.client = client_for(self.settings)
        self.out = tmp / "out"
        first = extract(self.settings, self.client, self.out, modules=["Leads"])
        assert first.exit_code == 0, first.summary_lines()
        leads = self.sim.org.module("Leads")
        assert leads.count() == RECORDS
        self.clock.advance(60)
        self.second = self.clock.now().replace(microsecond=0)
        # Spread over the whole id range, so that id order and any other order differ.
        self.tied = leads.current_ids()[::3][:TIED]
        for record_id in self.tied:
            leads.update(record_id, {"Last_Name": "Mass update"})
        self.clock.advance(5)  # the next run comes after the update's second is over

    def extract(self, **kwargs: Any) -> Any:
        """One incremental run of Leads, checkpointing every 100 rows."""
        return extract(self.settings, self.client, self.out, modules=["Leads"], **kwargs)

    def written(self) -> pa.Table:
        """Every row written so far (the change log), as (id, Modified_Time)."""
        table = read_local(self.out / "Leads")
        assert table is not None
        return table.select(["id", "Modified_Time"])

    def written_in_second(self) -> int:
        """How many rows of the mass update's second are written."""
        times = self.written().column("Modified_Time").cast(pa.timestamp("s", tz="UTC"))
        return pc.sum(pc.equal(times, pa.scalar(self.second, pa.timestamp("s", tz="UTC")))).as_py()

    def assert_stopped_inside_the_second(self) -> None:
        """The committed state ends inside the tied second: some of its rows written, not all."""
        state = StateStore(Output.open(self.out)).load("Leads")
        assert state.watermark == self.second
        assert 0 < self.written_in_second() < TIED

    def assert_complete(self) -> None:
        """The output is the org's data exactly, and no (id, Modified_Time) is written twice."""
        assert_output_equals_source(self.sim, self.out, schema_of(self.client, "Leads"))
        written = self.written()
        ids, times = (c.to_pylist() for c in written.columns)
        pairs = set(zip(ids, times, strict=True))
        assert len(pairs) == written.num_rows
        assert self.written_in_second() == TIED


@pytest.mark.parametrize("reader", ["records", "coql"])
def test_a_budget_stop_inside_a_tied_second_resumes_without_loss(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    org = TiedOrg(make_simulator, tmp_path, reader)
    # The fields call (1; no modules list: Leads has state) and one to three pages of the
    # second: a few hundred of its 700 rows.
    stopped = org.extract(max_credits=4, checkpoint_rows=100)
    assert (stopped.status, stopped.exit_code) == ("stopped: budget", 4)
    org.assert_stopped_inside_the_second()
    done = org.extract(checkpoint_rows=100)
    assert done.exit_code == 0, done.summary_lines()
    org.assert_complete()


@pytest.mark.parametrize("reader", ["records", "coql"])
def test_a_crash_inside_a_tied_second_resumes_without_loss(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reader: str,
) -> None:
    org = TiedOrg(make_simulator, tmp_path, reader)
    with monkeypatch.context() as patch:
        # Dies right after the second checkpoint of the run is committed.
        crash_at(patch, StateStore, "commit", 2, after=True)
        with pytest.raises(Crash):
            org.extract(checkpoint_rows=100)
    (org.out / "_state" / "Leads.lock").unlink(missing_ok=True)
    org.assert_stopped_inside_the_second()
    done = org.extract(checkpoint_rows=100)
    assert done.exit_code == 0, done.summary_lines()
    org.assert_complete()


def test_a_full_load_through_a_tied_second_is_exact(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    """The Records reader's first read meets the tied second at its end, in one run."""
    clock = FakeClock(START)
    sim = make_simulator(seed=22, records=RECORDS, clock=clock)
    leads = sim.org.module("Leads")
    for record_id in leads.current_ids()[1::3][:TIED]:
        leads.update(record_id, {"Last_Name": "Mass update"})
    clock.advance(5)
    settings = settings_for(sim, tmp_path, **READERS["records"])
    client = client_for(settings)
    out = tmp_path / "out"
    run = extract(settings, client, out, modules=["Leads"])
    assert run.exit_code == 0, run.summary_lines()
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))


# --- the simulator: ties in no promised order -----------------------------------------------------


def test_records_pages_of_a_tied_second_overlap(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    """Two calls for consecutive pages of one second may share rows and so miss others: Zoho
    sorts by Modified_Time alone and promises no order among its ties."""
    clock = FakeClock(START)
    sim = make_simulator(seed=3, records=1_000, clock=clock)
    leads = sim.org.module("Leads")
    tied = leads.current_ids()[::2][:400]
    for record_id in tied:
        leads.update(record_id, {"Last_Name": "Mass update"})
    client = make_client(sim)
    params = {
        "fields": "Last_Name",
        "sort_by": "Modified_Time",
        "sort_order": "asc",
        "converted": "both",  # every lead of the mass update, converted or not
    }
    since = {"If-Modified-Since": "2026-07-01T12:00:00+00:00"}

    def page(**more: str) -> Any:
        body = client.get("/crm/v8/Leads", params={**params, **more}, headers=since).json()
        return [r["id"] for r in body["data"]], body["info"]

    first, info = page(page="1")
    second, _ = page(page="2")
    by_token, _ = page(page_token=info["next_page_token"])
    assert len(first) == len(second) == len(by_token) == 200
    assert set(first) | set(second) <= set(tied)
    # Read by id, the pages are disjoint and whole; by time, neither page numbers nor a token
    # keep the order of ties from one call to the next.
    assert set(first) & set(second) and set(first) & set(by_token)
    assert len(set(first) | set(second)) < len(tied)
    again, _ = page(page="1")
    assert again != first


def test_coql_orders_ties_only_when_asked_by_id(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    clock = FakeClock(START)
    sim = make_simulator(seed=3, records=600, clock=clock)
    leads = sim.org.module("Leads")
    for record_id in leads.current_ids()[:300]:
        leads.update(record_id, {"Last_Name": "Mass update"})
    client = make_client(sim)
    where = "where Modified_Time >= '2026-07-01T12:00:00+00:00'"

    def ids(order: str) -> list[str]:
        query = f"select Last_Name from Leads {where} order by {order} limit 300"
        body = client.post("/crm/v8/coql", json={"select_query": query}).json()
        return [r["id"] for r in body["data"]]

    shuffled = [ids("Modified_Time asc") for _ in range(2)]
    assert shuffled[0] != shuffled[1] and set(shuffled[0]) == set(shuffled[1])
    assert shuffled[0] != sorted(shuffled[0])
    ordered = [ids("Modified_Time asc, id asc") for _ in range(2)]
    assert ordered[0] == ordered[1] == sorted(ordered[0])


def test_a_record_deleted_during_the_id_pass_shifts_no_row_out_of_the_read(
    make_simulator: Callable[..., Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discrete pages are re-run queries: a record deleted between page 1 and page 2 of the id
    pass moves every later row back by one, so the first row of page 2 would slip into page 1's
    range, unread. The reader sees the deletion (deleted records since the pass began) and reads
    the second by id once more."""
    org = TiedOrg(make_simulator, tmp_path, "records")
    leads = org.sim.org.module("Leads")
    first_of_pass = sorted(org.tied, key=int)[0]
    original = org.sim.app.endpoints["list_records"]
    by_id_calls = [0]

    def wrapper(app: Any, call: Any, module: str) -> Any:
        if call.query.get("sort_by") == "id":
            by_id_calls[0] += 1
            if by_id_calls[0] == 2:  # just before page 2 of the first id pass
                org.clock.advance(1)
                leads.delete(first_of_pass)
        return original(app, call, module)

    monkeypatch.setitem(org.sim.app.endpoints, "list_records", wrapper)
    run = org.extract()
    assert run.exit_code == 0, run.summary_lines()
    assert by_id_calls[0] > 5  # the pass was read again: more than its 4 pages
    report = run.module("Leads")
    assert any("read it again" in note for note in report.notes + report.warnings), report
    assert_output_equals_source(org.sim, org.out, schema_of(org.client, "Leads"))
