"""Throttling, server errors, expiring tokens, a concurrency cap and slow answers: an extraction
through each reader still completes and its output equals the source."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.reliability import (
    READERS,
    assert_clean_and_committed,
    assert_output_equals_source,
    schema_of,
    settings_for,
)

from connector.config import Tuning
from connector.run.sync import run_extract
from connector.simulator import FaultConfig, Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.http import ZohoClient

MODULES = ["Leads", "Shipments", "Notes"]
# Short waits, but real ones: the concurrency cap is only relieved when a competitor finishes.
FAULT_TUNING = Tuning(
    bulk_poll_initial=0.0,
    bulk_poll_max=0.0,
    retry_initial_wait=0.002,
    retry_max_wait=0.02,
    max_attempts=12,
    price_readers=False,
)


def short_sleep(seconds: float) -> None:
    """Sleep, but never more than 20 ms (retry waits and Bulk polls)."""
    time.sleep(min(seconds, 0.02))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reader", list(READERS))
def test_extract_completes_under_faults(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    # The simulator's clock moves 1 s at every reading, so a 120 s token expires every few dozen
    # calls (the connector learns it from a 401 INVALID_TOKEN: its own clock is the real one),
    # and no more than 10 refreshes happen in Zoho's 10-minute throttle window.
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc), auto_advance=1.0)
    faults = FaultConfig(seed=2024, rate_429=0.05, rate_5xx=0.02, concurrency_cap=2, latency_ms=2)
    sim = make_simulator(
        seed=11,
        records=400,
        clock=clock,
        token_lifetime=120,
        bulk_page_size=60,
        bulk_polls=2,
        faults=faults,
    )
    settings = settings_for(sim, tmp_path, FAULT_TUNING, **READERS[reader])
    client = ZohoClient(settings, sleep=short_sleep)
    out = tmp_path / "out"

    # Every module the org offers (seven, of three readers' worth of shapes).
    manifest = run_extract(settings, str(out), client=client, workers=3, sleep=short_sleep)
    assert manifest.exit_code == 0, manifest.summary_lines()

    # Refused calls cost nothing: what the connector metered is what Zoho billed.
    assert client.meter.total == sim.credits.total

    modules = [m.module for m in manifest.modules if m.status == "ok"]
    assert set(MODULES) <= set(modules)
    sim.faults.rate_429 = sim.faults.rate_5xx = 0.0
    for module in modules:
        schema = schema_of(settings, module, client)
        assert_output_equals_source(sim, out, schema)
        assert_clean_and_committed(out, module)
    if reader == "bulk":
        assert manifest.module("Leads").pages >= 2

    # Incremental runs under the same faults after changes pick up exactly the changes.
    sim.faults.rate_429, sim.faults.rate_5xx = 0.05, 0.02
    leads = sim.org.module("Leads")
    for round_ in range(3):
        ids = leads.current_ids()
        leads.update(ids[0], {"Last_Name": f"Changed under fire {round_}"})
        leads.delete(ids[1])
        new_id = leads.insert({"Last_Name": f"Inserted under fire {round_}", "Company": "Z"})
        sim.org.module("Shipments").update(
            sim.org.module("Shipments").current_ids()[round_], {"Name": f"Moved {round_}"}
        )
        again = run_extract(settings, str(out), client=client, workers=3, sleep=short_sleep)
        assert again.exit_code == 0, again.summary_lines()
        assert again.module("Leads").mode == "incremental"
        assert again.module("Leads").tombstones == 1
        assert again.module("Leads").rows == 2
        assert again.module("Shipments").rows == 1
    sim.faults.rate_429 = sim.faults.rate_5xx = 0.0
    for module in modules:
        assert_output_equals_source(sim, out, schema_of(settings, module, client))
        assert_clean_and_committed(out, module)
    assert new_id in {str(i) for i in leads.current_ids()}
    assert client.meter.total == sim.credits.total
    client.close()

    # The faults really happened, over both runs.
    statuses = Counter(r.status for r in sim.requests)
    codes = Counter(r.code for r in sim.requests)
    assert statuses[429] > 0, statuses  # random throttling and the concurrency cap
    assert statuses[500] + statuses[503] > 0, statuses
    assert codes["INVALID_TOKEN"] > 0, codes  # tokens expired during the runs
    assert sum(1 for r in sim.requests if r.path == "/oauth/v2/token") >= 2
    assert not sim.server_errors
