"""Four workers against one: the same output, the same decisions and credits per module, the
named modules' fields calls (made at once during discovery) billed to their modules, and each
module's own time in the manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.extract import READERS, client_for, extract, output_table, schema_of, settings_for

from connector.simulator import Simulator

FOUR = ["Leads", "Contacts", "Deals", "Shipments"]


@pytest.mark.parametrize("reader", ["bulk", "coql"])
def test_four_workers_write_what_one_writes_and_spend_the_same(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    sim = make_simulator(seed=21, records=1_500, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    runs = {}
    for workers in (1, 4):
        before = sim.credits.total
        run = extract(settings, client, tmp_path / f"out{workers}", modules=FOUR, workers=workers)
        assert run.exit_code == 0, run.summary_lines()
        # Exact per module, whatever thread made the call: they add up to what Zoho billed.
        own = sum(run.discovery_credits.values())
        assert own == 1  # the modules list
        assert sum(m.credits_total for m in run.modules) + own == sim.credits.total - before
        # Each module's own time is in the manifest; one worker runs them one after another.
        durations = [m.duration_s for m in run.modules]
        assert all(d is not None and d > 0 for d in durations), durations
        assert run.duration_s is not None
        if workers == 1:
            assert sum(d for d in durations if d is not None) <= run.duration_s
        runs[workers] = run
    one, four = runs[1], runs[4]
    for name in FOUR:
        a, b = one.module(name), four.module(name)
        assert (b.reader, b.reason, b.rows) == (a.reader, a.reason, a.rows)
        assert b.credits == a.credits and b.calls == a.calls
        # The fields call is the module's own (1 credit), made during discovery.
        assert b.credits.get("metadata") == 1, b.credits
        schema = schema_of(client, name)
        key = [("id", "ascending")]
        assert (
            output_table(tmp_path / "out4", schema)
            .sort_by(key)
            .equals(output_table(tmp_path / "out1", schema).sort_by(key))
        )
