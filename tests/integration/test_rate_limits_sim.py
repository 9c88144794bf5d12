"""Zoho's rate limits against the simulator, with time faked: the connector's sleep moves the
simulator's clock, so a minute of waiting costs nothing and the limits still bite.

- A Bulk full load of every module with many job pages stays under 10 downloads a minute, and a
  download refused anyway is downloaded again: no job is created twice.
- 429s worded about credits are waited out; 429s that never stop end the run as spent credits
  (exit 4), and the rerun resumes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from support.extract import READERS, faked, settings_for
from support.source import assert_output_equals_source, schema_for

from connector.config import Settings
from connector.lake.schema import module_schema
from connector.run.sync import run_extract
from connector.simulator import FaultConfig, Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import list_fields


def client_on(settings: Settings, clock: FakeClock) -> ZohoClient:
    return ZohoClient(settings, **faked(clock))


def bulk_jobs_created(sim: Simulator) -> int:
    return sum(
        1
        for r in sim.requests
        if r.method == "POST" and r.path.rstrip("/").endswith("/read") and r.status == 201
    )


def downloads(sim: Simulator) -> Counter[int]:
    return Counter(r.status for r in sim.requests if r.path.endswith("/result"))


def assert_every_module_equals_source(
    sim: Simulator, client: ZohoClient, out: Path, modules: list[str]
) -> None:
    assert len(modules) >= 6, modules
    for module in modules:
        assert_output_equals_source(sim, out, schema_for(client, module), required=True)


@pytest.mark.parametrize("connector_pace", [10, 30])
def test_bulk_full_load_under_the_download_limit(
    make_simulator: Callable[..., Simulator], tmp_path: Path, connector_pace: int
) -> None:
    """Many job pages, every module, Zoho's 10 downloads a minute: paced, or refused and fetched
    again when the connector is told a wrong pace (as when another process shares the org)."""
    clock = FakeClock()
    sim = make_simulator(seed=5, records=150, clock=clock, bulk_page_size=15, bulk_polls=1)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    settings = settings.model_copy(
        update={
            "tuning": settings.tuning.model_copy(update={"downloads_per_minute": connector_pace})
        }
    )
    client = client_on(settings, clock)
    out = tmp_path / "out"
    started = clock()

    # Paced, one worker: the fake clock is shared, so another worker's sleep would move time
    # between a download's slot and its arrival (a minute can pass in no real time), which real
    # clocks never do; the pacer's sharing between threads is unit-tested in test_pacing.py.
    # Mis-paced, three workers: refusals come anyway and every one is downloaded again.
    workers = 1 if connector_pace == 10 else 3
    manifest = run_extract(settings, str(out), client=client, workers=workers, sleep=clock.advance)

    assert manifest.exit_code == 0, manifest.summary_lines()
    served = downloads(sim)
    jobs = bulk_jobs_created(sim)
    assert jobs > 10 and served[200] == jobs  # one download per job, each job created once
    assert sim.credits.by_kind["bulk_create"] == 50 * jobs
    assert client.meter.total == sim.credits.total
    if connector_pace == 10:
        assert served[429] == 0  # paced: the limit was never hit
        assert client.pacer.waited > 0
    else:
        assert served[429] > 0 and client.pacer.refusals == served[429]
    # Never more than 10 served downloads in any minute of the simulator's clock.
    times = [entry.at for entry in sim.credits.entries if entry.kind == "bulk_download"]
    for start in times:
        assert sum(1 for t in times if start <= t < start + timedelta(minutes=1)) <= 10
    assert clock() - started >= timedelta(minutes=(jobs - 1) // 10)
    written = [m.module for m in manifest.modules if m.status == "ok"]
    assert_every_module_equals_source(sim, client, out, written)
    client.close()


@pytest.mark.parametrize("reader", list(READERS))
def test_429s_worded_about_credits_are_waited_out(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    clock = FakeClock()
    sim = make_simulator(
        seed=9,
        records=120,
        clock=clock,
        bulk_page_size=40,
        faults=FaultConfig(seed=1, rate_429=0.3),
    )
    assert "credits" in sim.app.throttle_message  # type: ignore[union-attr]
    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = client_on(settings, clock)
    out = tmp_path / "out"
    manifest = run_extract(
        settings, str(out), client=client, modules=["Leads", "Notes"], sleep=clock.advance
    )
    assert manifest.exit_code == 0, manifest.summary_lines()
    assert Counter(r.status for r in sim.requests)[429] > 0
    assert client.limiter.stats()["throttled"] > 0
    sim.faults.rate_429 = 0.0
    for module in ("Leads", "Notes"):
        schema = module_schema(module, list_fields(client, module))
        assert_output_equals_source(sim, out, schema)
    assert client.meter.total == sim.credits.total
    client.close()


def test_429s_that_never_stop_end_as_spent_credits_and_the_rerun_resumes(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    clock = FakeClock()
    sim = make_simulator(seed=9, records=120, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    client = client_on(settings, clock)
    out = tmp_path / "out"
    client.get_json("org")  # a token and one call before Zoho starts refusing
    sim.faults.rate_429 = 1.0
    started = clock()
    stopped = run_extract(settings, str(out), client=client, modules=["Leads"], sleep=clock.advance)
    assert stopped.exit_code == 4, stopped.summary_lines()
    # It waited about five minutes (the rate-limit budget) before deciding.
    assert clock() - started >= timedelta(seconds=300)
    sim.faults.rate_429 = 0.0
    again = run_extract(settings, str(out), client=client, modules=["Leads"], sleep=clock.advance)
    assert again.exit_code == 0, again.summary_lines()
    assert_output_equals_source(sim, out, module_schema("Leads", list_fields(client, "Leads")))
    client.close()
