"""``--max-credits``: every rerun with the same small budget gets further, none spends more than
the budget, no paid Bulk job is left unfinished, and the loop ends with the complete data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.extract import (
    READERS,
    assert_output_equals_source,
    client_for,
    extract,
    schema_of,
    settings_for,
)

from connector.lake.output import Output
from connector.lake.state import StateStore
from connector.simulator import Simulator

MODULES = ["Leads", "Notes", "Shipments"]


@pytest.mark.parametrize("reader", list(READERS))
def test_reruns_with_a_small_budget_always_get_further_and_finish(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    sim = make_simulator(seed=4, records=1_200, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_for(settings)
    out = tmp_path / "out"
    # Less than the full load of any of the three, more than one incremental run of all three
    # on an unchanged org (fields 3 + 3 + 3 + 4 here), which the loop must reach to end.
    budget = 16
    last: dict[str, str] = {}  # each module's status in the run before
    for _ in range(60):
        before = sim.credits.total
        run = extract(
            settings, client, out, modules=MODULES, max_credits=budget, checkpoint_rows=100
        )
        assert sim.credits.total - before <= budget, run.summary_lines()
        # A paid Bulk job is never left unread: a Bulk read that started finished.
        assert all(m.status == "ok" for m in run.modules if m.jobs), run.summary_lines()
        # Progress, every time: rows landed, or a module the last run stopped read to the end.
        finished = {
            m.module for m in run.modules if m.status == "ok" and last.get(m.module) != "ok"
        }
        assert run.rows > 0 or finished, run.summary_lines()
        last = {m.module: m.status for m in run.modules}
        if run.exit_code == 0:
            break
        assert run.exit_code == 4, run.summary_lines()
        # A module that did not start for want of credits says the least it needs.
        for report in run.modules:
            if report.error and report.error.startswith("not started: its cheapest read"):
                assert "needs at least" in report.error and "left of the budget" in report.error
    else:
        pytest.fail("the reruns never finished")
    for module in MODULES:
        assert_output_equals_source(sim, out, schema_of(client, module))
        assert StateStore(Output.open(out)).load(module).watermark is not None


def test_a_bulk_read_that_does_not_fit_gives_way_to_one_that_commits_as_it_goes(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    # A Bulk job (~54 credits) is the cheapest read of 200,000 rows, but 20 credits are left.
    sim = make_simulator(seed=4, records=200, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    client = client_for(settings)
    out = tmp_path / "out"
    state = StateStore(Output.open(out))
    # The last full load read 200,000 rows: known large, Bulk without a count.
    leads = state.load("Leads")
    leads.full_rows = 200_000
    state.commit(leads)
    run = extract(settings, client, out, modules=["Leads"], max_credits=20, checkpoint_rows=50)
    report = run.module("Leads")
    assert report.reader == "coql", report.reason
    assert "a Bulk read needs" in (report.reason or "") and report.jobs == 0
    assert report.rows > 0 and client.meter.total <= 20
