"""Credits per module are exact: every billed call, on whichever thread it was made (the module's
worker, a reader's prefetch thread, a Records read's field-group pool), goes to the module whose
read made it, and the modules' credits plus the run's own (the modules list) are the run's total,
which is what the simulator billed."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from support.extract import READERS, client_for, extract, settings_for

from connector.simulator import Simulator


@pytest.mark.parametrize("reader", list(READERS))
def test_module_credits_add_up_to_the_run_total_with_workers(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    sim = make_simulator(seed=12, records=2_000, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS[reader])
    # Two field-group calls at once: a Records read of Shipments (72 fields) uses the pool.
    settings = settings.model_copy(
        update={"tuning": settings.tuning.model_copy(update={"group_calls": 2})}
    )
    client = client_for(settings)
    before = sim.credits.total
    run = extract(settings, client, tmp_path / "out", modules=None, workers=4)
    assert run.exit_code == 0, run.summary_lines()
    billed = sim.credits.total - before
    modules = sum(m.credits_total for m in run.modules)
    own = sum(run.discovery_credits.values())
    assert modules + own == run.credits_total == billed
    assert own == 1  # the modules list, and nothing that a module's read made
    assert sum(m.calls for m in run.modules) + 1 == run.calls
    leads = run.module("Leads")
    if reader == "records":
        # Every page is billed to Leads (most are asked for on the prefetch thread).
        assert leads.credits.get("records", 0) >= math.ceil(leads.rows / 200)
    # The summary's last line and the table agree with the manifest.
    lines = run.summary_lines()
    assert any(line.startswith("(run)") and line.rstrip().endswith(f"{own:,}") for line in lines)


def test_an_incremental_run_of_named_modules_skips_the_module_list(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=12, records=300, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    out = tmp_path / "out"
    first = extract(settings, client_for(settings), out, modules=["Leads"], workers=1)
    assert first.exit_code == 0, first.summary_lines()
    assert sum(first.discovery_credits.values()) == 1  # no state yet: the list names it
    # Named in another case: the state's description spells it, and the list is not asked for.
    before = sim.credits.by_kind.copy()
    again = extract(settings, client_for(settings), out, modules=["leads"], workers=1)
    assert again.exit_code == 0, again.summary_lines()
    assert sum(again.discovery_credits.values()) == 0
    assert [m.module for m in again.modules] == ["Leads"]
    assert sim.credits.by_kind.get("metadata", 0) - before.get("metadata", 0) == 1  # fields only


def test_a_counted_coql_full_load_fits_its_last_page_to_the_rows_left(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=12, records=2_500, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    # The planner on (the suite's tuning turns it off): with APIType=Bulk it counts and prices.
    settings = settings.model_copy(
        update={"tuning": settings.tuning.model_copy(update={"price_readers": True})}
    )
    run = extract(settings, client_for(settings), tmp_path / "out", modules=["Leads"], workers=1)
    assert run.exit_code == 0, run.summary_lines()
    leads = run.module("Leads")
    assert (leads.reader, leads.rows) == ("coql", 2_500)
    # The count (1), a page of 2,000 (LIMIT 2000: 3), the last 500 (LIMIT 1000: 2), not 3 + 3.
    assert leads.credits["coql"] == 1 + 3 + 2
