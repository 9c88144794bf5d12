"""Records modified while a run reads them (the live edge) are never lost.

The simulator's clock is a :class:`FakeClock`, so its ``Date`` header and the ``Modified_Time`` it
stamps agree to the second. The changes are made *during* a run by wrapping one of the simulator's
endpoint handlers: just before it answers the Nth call, the wrapper modifies records, exactly as a
user editing the CRM while the connector pages through it would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
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

T = datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)


def during_call(
    monkeypatch: pytest.MonkeyPatch,
    sim: Simulator,
    handler: str,
    n: int,
    change: Callable[[], None],
) -> list[int]:
    """Run ``change`` just before the simulator answers the ``n``-th call to ``handler``
    (counted from now); returns the call counter, so a test can check the moment came."""
    original = sim.app.endpoints[handler]
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            change()
        return original(*args, **kwargs)

    monkeypatch.setitem(sim.app.endpoints, handler, wrapper)
    return calls


def output_version(out: Path, record_id: str) -> datetime:
    """The newest ``Modified_Time`` the output holds for ``record_id``."""
    table = read_local(out / "Leads")
    assert table is not None
    mine = table.filter(pc.equal(table.column("id"), record_id))
    return max(mine.column("Modified_Time").to_pylist())


def newest_written(out: Path) -> datetime:
    table = read_local(out / "Leads")
    assert table is not None
    return pc.max(table.column("Modified_Time")).as_py()


def test_coql_change_behind_the_keyset_cursor_is_read_by_the_next_run(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """COQL keyset paging at the live edge.

    At 12:01:00 (T) 250 leads change; the incremental run's first page (LIMIT 200) ends at the
    cursor (T, id #200 of them). Before the second page, lead ``d`` (the lowest id, not among
    them) changes in the same second T, so its new version sorts *behind* the cursor and the
    run cannot see it; then lead ``e`` changes at T+1, which the second page reads. The old
    rule, watermark = greatest Modified_Time written (T+1), would start the next run at T+1 and
    lose ``d``'s change forever. Now every row at or after the cap (the server time the read
    started, T, minus 1 s) is left for the next run: this run writes none of them and the
    watermark stays where it was; the next run, once the seconds are over, writes all 252.
    """
    clock = FakeClock(T)
    sim = make_simulator(seed=3, records=600, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    client = client_for(settings)
    out = tmp_path / "out"
    schema = schema_of(client, "Leads")
    assert extract(settings, client, out, modules=["Leads"]).exit_code == 0
    before = StateStore(Output.open(out)).load("Leads")
    assert before.watermark is not None and before.watermark < T - S

    leads = sim.org.module("Leads")
    ids = leads.current_ids()
    assert len(ids) > 400
    clock.advance(60)
    edge = clock()
    for record_id in ids[100:350]:
        leads.update(record_id, {"Last_Name": "Bulk edit"})
    d, e = ids[0], ids[-1]

    def user_edits() -> None:
        leads.update(d, {"Last_Name": "Behind the cursor"})  # at T, id below the cursor
        clock.advance(1)
        leads.update(e, {"Last_Name": "Ahead of the cursor"})  # at T+1

    calls = during_call(monkeypatch, sim, "run_coql", 2, user_edits)
    second = extract(settings, client, out, modules=["Leads"])
    assert second.exit_code == 0, second.summary_lines()
    assert calls[0] >= 2 and second.module("Leads").reader == "coql"
    report = second.module("Leads")
    assert report.read_started_at_server == edge.isoformat()
    # The 250 and e were read, at or after the cap: none is written, all are counted.
    assert report.rows == 0 and report.deferred_rows == 251
    current = leads.get(d)
    assert current is not None and current["Modified_Time"] == edge
    assert output_version(out, d) < edge
    assert newest_written(out) < edge - S
    state = StateStore(Output.open(out)).load("Leads")
    assert state.watermark == before.watermark  # nothing written: it stays
    assert state.remembered == before.remembered

    monkeypatch.undo()
    clock.advance(2)
    third = extract(settings, client, out, modules=["Leads"])
    assert third.exit_code == 0, third.summary_lines()
    assert third.module("Leads").rows == 252  # the 250, d and e, nothing written twice
    assert third.module("Leads").deferred_rows == 0
    assert output_version(out, d) == edge
    assert output_version(out, e) == edge + S
    assert_output_equals_source(sim, out, schema)


def test_bulk_change_after_an_earlier_page_snapshot_is_read_by_the_next_run(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A multi-page Bulk full load: each page is a job, a snapshot of its own.

    After page 1's job has exported lead ``d`` (the lowest id), and before page 2's job is
    created, ``d`` changes at T; then lead ``e`` (the highest id, in the last page) changes at
    T+1 and the last page exports it. The old rule would commit the watermark T+1 and the next
    run, reading from T+1, would never see ``d``'s change. Now the watermark stays below the full
    load's start (T minus 1 s) and ``e``'s new version, modified after it, is left for the next
    run, which writes ``d`` and ``e`` once their seconds are over.
    """
    clock = FakeClock(T)
    sim = make_simulator(seed=4, records=300, bulk_page_size=100, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    client = client_for(settings)
    out = tmp_path / "out"
    schema = schema_of(client, "Leads")
    leads = sim.org.module("Leads")
    ids = leads.current_ids()
    assert len(ids) > 200  # three pages or more
    d, e = ids[0], ids[-1]
    e_before = leads.get(e)
    assert e_before is not None

    def user_edits() -> None:
        leads.update(d, {"Last_Name": "Changed after its page"})
        clock.advance(1)
        leads.update(e, {"Last_Name": "Changed before its page"})

    calls = during_call(monkeypatch, sim, "bulk_create", 2, user_edits)
    first = extract(settings, client, out, modules=["Leads"])
    assert first.exit_code == 0, first.summary_lines()
    report = first.module("Leads")
    assert calls[0] >= 3 and report.reader == "bulk" and report.mode == "full"
    assert report.read_started_at_server == T.isoformat()
    assert report.rows == len(ids) - 1 and report.deferred_rows == 1  # e's new version
    assert output_version(out, d) < T  # page 1 held d's old version
    table = read_local(out / "Leads")
    assert table is not None and e not in table.column("id").to_pylist()
    state = StateStore(Output.open(out)).load("Leads")
    assert state.watermark == newest_written(out) < T - S
    assert state.deleted_watermark == state.watermark
    assert all(when == state.watermark for _, when in state.remembered)

    monkeypatch.undo()
    clock.advance(2)
    second = extract(settings, client, out, modules=["Leads"])
    assert second.exit_code == 0, second.summary_lines()
    assert second.module("Leads").mode == "incremental"
    assert second.module("Leads").rows == 2  # d and e
    assert output_version(out, d) == T
    assert output_version(out, e) == T + S
    assert_output_equals_source(sim, out, schema)


def run_leads(settings: Any, client: Any, out: Path, **kwargs: Any) -> Any:
    """One extract of Leads that must succeed."""
    manifest = extract(settings, client, out, modules=["Leads"], **kwargs)
    assert manifest.exit_code == 0, manifest.summary_lines()
    return manifest


@pytest.mark.parametrize(
    ("reader", "phase"),
    [
        ("bulk", "full"),
        ("coql", "full"),
        ("records", "full"),
        ("coql", "incremental"),
        ("records", "incremental"),
    ],
)
def test_a_record_edited_again_in_the_second_it_was_read_keeps_its_second_version(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str, phase: str
) -> None:
    """Lead R is read at T in the second it was modified, and changed again within T.

    Both versions have the same ``(id, Modified_Time)``. Had the run written the first one, the
    next run would read the second, find its pair remembered and drop it: the output would keep
    the first version forever. The run that reads R at T leaves it for later instead, and the
    next run, after T is over, writes the second version. (With Bulk settings an incremental
    read of a few changes is one COQL page, so Bulk is exercised by the full load.)
    """
    clock = FakeClock(T)
    sim = make_simulator(seed=6, records=200, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    out = tmp_path / "out"
    schema = schema_of(client, "Leads")
    leads = sim.org.module("Leads")
    r = leads.current_ids()[5]
    if phase == "incremental":
        assert run_leads(settings, client, out).module("Leads").rows == leads.count()
        clock.advance(60)
    edit_second = clock()
    leads.update(r, {"Last_Name": "First version"})

    reading = run_leads(settings, client, out)  # reads R's first version within its second
    report = reading.module("Leads")
    assert (report.reader, report.mode) == (reader, phase)
    assert report.deferred_rows == 1
    leads.update(r, {"Last_Name": "Second version"})
    current = leads.get(r)
    assert current is not None and current["Modified_Time"] == edit_second  # same second

    clock.advance(2)
    after = run_leads(settings, client, out)
    assert after.module("Leads").rows == 1 and after.module("Leads").deferred_rows == 0
    table = read_local(out / "Leads")
    assert table is not None
    mine = table.filter(pc.equal(table.column("id"), r)).sort_by("Modified_Time")
    # The full load may hold R's version from before T; from T, only the second version.
    assert mine.column("Last_Name").to_pylist()[-1] == "Second version"
    assert "First version" not in mine.column("Last_Name").to_pylist()
    assert mine.column("Modified_Time").to_pylist()[-1] == edit_second
    assert mine.num_rows == (2 if phase == "incremental" else 1)
    assert_output_equals_source(sim, out, schema)


def test_deferred_rows_are_counted_then_written_by_the_next_run(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    """Changes before the cap are written, changes in the read's last second are counted and
    named in the manifest and the summary, and written by the next run; checkpoints never take
    the watermark or its remembered pairs to the deferred seconds."""
    clock = FakeClock(T)
    sim = make_simulator(seed=8, records=300, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["records"])
    client = client_for(settings)
    out = tmp_path / "out"
    schema = schema_of(client, "Leads")
    run_leads(settings, client, out)
    leads = sim.org.module("Leads")
    ids = leads.current_ids()

    clock.advance(60)
    early = clock()
    for record_id in ids[:30]:
        leads.update(record_id, {"Last_Name": "Early"})
    clock.advance(5)
    late = clock()  # the read's own second: server time late, cap late - 1 s
    for record_id in ids[30:50]:
        leads.update(record_id, {"Last_Name": "Late"})
    clock.advance(-1)  # and one in the second before it, still at or after the cap
    leads.update(ids[50], {"Last_Name": "Just before"})
    clock.advance(1)

    second = run_leads(settings, client, out, checkpoint_rows=10)
    report = second.module("Leads")
    assert report.rows == 30 and report.deferred_rows == 21
    assert report.checkpoints >= 1
    note = (
        "21 rows modified in the last second(s) before the read "
        f"(at or after {(late - S).isoformat()}) are left for the next run"
    )
    assert report.notes == [note] and report.warnings == []
    assert f"Leads: {note}" in second.summary_lines()
    doc = json.loads((out / "_runs" / f"{second.run_id}.json").read_text())
    assert doc["modules"][0]["deferred_rows"] == 21 and doc["totals"]["deferred_rows"] == 21
    state = StateStore(Output.open(out)).load("Leads")
    assert state.watermark == early
    assert {when for _, when in state.remembered} == {early}
    assert newest_written(out) == early

    clock.advance(2)
    third = run_leads(settings, client, out)
    assert third.module("Leads").rows == 21 and third.module("Leads").deferred_rows == 0
    assert third.module("Leads").notes == []
    assert newest_written(out) == late
    assert_output_equals_source(sim, out, schema)
