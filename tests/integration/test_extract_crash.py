"""A run that dies between any two commit steps loses nothing and duplicates nothing on rerun.

The crash is injected in-process (an exception no handler catches, raised at the Nth call of a
commit step); the next run recovers the output and must then equal the source exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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

from connector.lake.state import StateStore
from connector.lake.writer import DatasetWriter
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock

POINTS = [
    (DatasetWriter, "commit", 1, False),  # a checkpoint's files not yet in place
    (DatasetWriter, "commit", 1, True),  # its files in place, its state not yet committed
    (StateStore, "commit", 1, True),  # the first checkpoint committed, the rest not
    (DatasetWriter, "commit", 2, True),  # the last data files in place, state not committed
    (DatasetWriter, "commit", 3, True),  # tombstone files in place, state not committed
]


def changed_org(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str, *, full_first: bool
) -> tuple[Simulator, Any, Any, Path]:
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc))
    sim = make_simulator(seed=12, records=300, bulk_page_size=100, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    out = tmp_path / "out"
    if full_first:
        assert extract(settings, client, out, modules=["Leads"]).exit_code == 0
        leads = sim.org.module("Leads")
        ids = leads.current_ids()
        for record_id in ids[:120]:
            leads.update(record_id, {"Last_Name": "Changed"})
        leads.delete(ids[200])
        leads.delete(ids[201], permanent=True)
        clock.advance(2)  # the next run comes after the changes' second, as a scheduled one does
    return sim, settings, client, out


def crash_and_rerun(
    monkeypatch: pytest.MonkeyPatch,
    sim: Simulator,
    settings: Any,
    client: Any,
    out: Path,
    point: tuple[type, str, int, bool],
) -> None:
    with monkeypatch.context() as patch:
        crash_at(patch, *point)
        with pytest.raises(Crash):
            extract(settings, client, out, modules=["Leads"], checkpoint_rows=50)
    # The crashed run's lock names this (live) process: remove it as the stale-lock recovery
    # does for a dead one.
    (out / "_state" / "Leads.lock").unlink(missing_ok=True)
    again = extract(settings, client, out, modules=["Leads"], checkpoint_rows=50)
    assert again.exit_code == 0, again.summary_lines()
    assert_output_equals_source(sim, out, schema_of(client, "Leads"))


@pytest.mark.parametrize("point", POINTS)
def test_crash_in_an_incremental_run(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: tuple[type, str, int, bool],
) -> None:
    # 120 changes come in batches of at most 200 rows, checkpointed every 50 rows, then deletions.
    sim, settings, client, out = changed_org(make_simulator, tmp_path, "records", full_first=True)
    crash_and_rerun(monkeypatch, sim, settings, client, out, point)


@pytest.mark.parametrize(
    ("reader", "point"),
    [
        ("bulk", (DatasetWriter, "commit", 1, True)),  # all files in place, no state yet
        ("bulk", (StateStore, "commit", 1, False)),
        ("coql", (StateStore, "commit", 2, True)),  # a checkpoint committed mid full load
    ],
)
def test_crash_in_a_full_load(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reader: str,
    point: tuple[type, str, int, bool],
) -> None:
    sim, settings, client, out = changed_org(make_simulator, tmp_path, reader, full_first=False)
    crash_and_rerun(monkeypatch, sim, settings, client, out, point)
