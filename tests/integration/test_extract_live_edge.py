"""Records modified while a run reads them (the live edge) are never lost.

The simulator's clock is a :class:`FakeClock`, so its ``Date`` header and the ``Modified_Time`` it
stamps agree to the second. The changes are made *during* a run by wrapping one of the simulator's
endpoint handlers: just before it answers the Nth call, the wrapper modifies records, exactly as a
user editing the CRM while the connector pages through it would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from test_extract_scenarios import (
    READERS,
    _dataset,
    assert_output_equals_source,
    client_for,
    extract,
    schema_of,
    settings_for,
)

from connector.output import Output
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.state import StateStore

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
    original = getattr(sim.app, handler)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            change()
        return original(*args, **kwargs)

    monkeypatch.setattr(sim.app, handler, wrapper)
    return calls


def output_version(out: Path, record_id: str) -> datetime:
    """The newest ``Modified_Time`` the output holds for ``record_id``."""
    table = _dataset(out / "Leads")
    assert table is not None
    mine = table.filter(pc.equal(table.column("id"), record_id))
    return max(mine.column("Modified_Time").to_pylist())


def newest_written(out: Path) -> datetime:
    table = _dataset(out / "Leads")
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
    lose ``d``'s change forever. Capped at the server time the read started (the Date header, T,
    minus 1 s), the watermark stays before T; the next run reads ``d`` and drops the 251 rows
    it already wrote (their (id, Modified_Time) pairs are remembered).
    """
    clock = FakeClock(T)
    sim = make_simulator(seed=3, records=600, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    client = client_for(settings)
    out = tmp_path / "out"
    schema = schema_of(client, "Leads")
    assert extract(settings, client, out, modules=["Leads"]).exit_code == 0

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

    calls = during_call(monkeypatch, sim, "coql", 2, user_edits)
    second = extract(settings, client, out, modules=["Leads"])
    assert second.exit_code == 0, second.summary_lines()
    assert calls[0] >= 2 and second.module("Leads").reader == "coql"
    report = second.module("Leads")
    assert report.rows == 251  # the 250, and e; d's new version was behind the cursor
    assert report.read_started_at_server == edge.isoformat()
    # What the old rule would have lost: d changed at T, below the greatest time written.
    current = leads.get(d)
    assert current is not None and current["Modified_Time"] == edge
    assert output_version(out, d) < edge
    assert newest_written(out) == edge + S
    state = StateStore(Output.open(out)).load("Leads")
    assert state.watermark == edge - S  # the cap, never past the read's start
    assert (e, edge + S) in state.remembered
    assert len(state.remembered) == 251

    monkeypatch.undo()
    third = extract(settings, client, out, modules=["Leads"])
    assert third.exit_code == 0, third.summary_lines()
    assert third.module("Leads").rows == 1  # d, and nothing written twice
    assert output_version(out, d) == edge
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
    run, reading from T+1, would never see ``d``'s change. Capped at the full load's start (T
    minus 1 s), the next run reads from there: ``d`` is written, ``e`` is not written again.
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
    assert output_version(out, d) < T  # page 1 held d's old version
    assert output_version(out, e) == T + S
    state = StateStore(Output.open(out)).load("Leads")
    assert state.watermark == T - S and state.deleted_watermark == T - S
    assert state.remembered == {(e, T + S)}

    monkeypatch.undo()
    second = extract(settings, client, out, modules=["Leads"])
    assert second.exit_code == 0, second.summary_lines()
    assert second.module("Leads").mode == "incremental"
    assert second.module("Leads").rows == 1  # d; e is remembered
    assert output_version(out, d) == T
    assert_output_equals_source(sim, out, schema)
