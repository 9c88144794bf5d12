"""A paid Bulk Read job survives the run that paid for it: the next run downloads its result.

Each case kills a Bulk full load in-process after Zoho created (and charged) one or more jobs
(an exception no handler catches, as in ``test_extract_crash``), then runs again and reads the
simulator's credit ledger: every page is paid for once, unless the job cannot be used (a day
old, unknown to Zoho, another field list), when exactly one more job is paid for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
import requests
from support.crash import Crash, crash_at
from support.extract import (
    READERS,
    assert_output_equals_source,
    client_for,
    extract,
    schema_of,
    settings_for,
)
from support.reliability import (
    assert_clean_and_committed,
    cli_env,
    connection_for,
    load_state,
    read_local,
    run_cli,
)

from connector.lake.bulk_jobs import BulkJobBook
from connector.lake.output import Output
from connector.readers.bulk import BulkReader
from connector.run.plan import build_plan
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock

LEADS = "Leads"
JOB_CREDITS = 50
PAGE = 100


def _org(
    make_simulator: Callable[..., Simulator], tmp_path: Path, *, page_size: int = PAGE
) -> tuple[Simulator, FakeClock, Any, Any, Path]:
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc))
    sim = make_simulator(seed=12, records=250, bulk_page_size=page_size, bulk_polls=1, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["bulk"])
    return sim, clock, settings, client_for(settings), tmp_path / "out"


def _pages(sim: Simulator) -> int:
    """Bulk pages of the full load (the jobs leave converted leads out unless asked: all)."""
    assert sim.app is not None
    return math.ceil(sim.org.module(LEADS).count() / sim.app.bulk.page_size)


def _paid(sim: Simulator) -> int:
    """Bulk jobs Zoho has charged for."""
    return sim.credits.by_kind.get("bulk_create", 0) // JOB_CREDITS


def _record(out: Path) -> dict[str, Any]:
    path = out / BulkJobBook.path(LEADS)
    return json.loads(path.read_text()) if path.exists() else {}


def _killed_after_paying(
    monkeypatch: pytest.MonkeyPatch, settings: Any, client: Any, out: Path, jobs: int = 1
) -> list[str]:
    """Run a full load that dies right after Zoho created its ``jobs``-th job; the recorded ids."""
    with monkeypatch.context() as patch:
        crash_at(patch, BulkReader, "_create", jobs, after=True)
        with pytest.raises(Crash):
            extract(settings, client, out, modules=[LEADS])
    # The killed run's lock names this (live) process: remove it as a stale lock is taken over.
    (out / "_state" / f"{LEADS}.lock").unlink(missing_ok=True)
    return [job["id"] for job in _record(out)["jobs"]]


def _rerun(settings: Any, client: Any, out: Path, **kwargs: Any) -> Any:
    run = extract(settings, client, out, modules=[LEADS], **kwargs)
    assert run.exit_code == 0, run.summary_lines()
    return run.module(LEADS)


def test_a_run_killed_after_paying_resumes_every_page_it_paid_for(
    make_simulator: Callable[..., Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, _, settings, client, out = _org(make_simulator, tmp_path)
    pages = _pages(sim)
    assert pages >= 3
    # Killed once page 2's job is paid for: pages 1 and 2 are recorded, page 1 already read.
    recorded = _killed_after_paying(monkeypatch, settings, client, out, jobs=2)
    assert len(recorded) == 2 and _paid(sim) == 2
    assert not load_state(out, LEADS).committed_runs  # nothing of the killed run committed

    report = _rerun(settings, client, out)
    assert _paid(sim) == pages  # each page paid for once: no second job for pages 1 and 2
    assert report.reader == "bulk" and report.reason.startswith("resumes Bulk job")
    assert report.jobs == pages - 2
    resumed = [w for w in report.warnings if "resumed Bulk Read job" in w]
    assert len(resumed) == 2 and all(any(i in w for w in resumed) for i in recorded)
    assert_output_equals_source(sim, out, schema_of(client, LEADS))
    assert_clean_and_committed(out, LEADS)
    assert not (out / BulkJobBook.path(LEADS)).exists()  # removed once the data committed


def test_the_watermark_is_capped_where_the_paying_run_started(
    make_simulator: Callable[..., Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, clock, settings, client, out = _org(make_simulator, tmp_path, page_size=1_000)
    leads = sim.org.module(LEADS)
    twice, later = leads.current_ids()[:2]
    # Changed in the second the paid job is created in, and again in that second after the job's
    # snapshot: both versions have the same (id, Modified_Time).
    leads.update(twice, {"Last_Name": "In the job"})
    (old,) = _killed_after_paying(monkeypatch, settings, client, out)
    assert sim.app is not None
    assert sim.app.bulk.jobs[old].done.wait(10)  # the snapshot is taken
    leads.update(twice, {"Last_Name": "After the job, same second"})
    cap = datetime.fromisoformat(_record(out)["jobs"][0]["cap"])
    # An hour later another record changes, and the paid job is resumed.
    clock.advance(3600)
    leads.update(later, {"Last_Name": "An hour later"})
    clock.advance(2)

    report = _rerun(settings, client, out)
    assert _paid(sim) == 1
    # Capped at the paying run's start, not this run's: the rows of the job's last second are
    # left for the next run, which writes their final version.
    state = load_state(out, LEADS)
    assert state.watermark is not None and state.watermark < cap
    assert report.deferred_rows >= 1
    assert any("watermark capped" in note for note in report.notes)
    data = read_local(out / LEADS)
    assert data is not None

    def names(record_id: str) -> list[str]:
        return data.filter(pc.equal(data.column("id"), record_id)).column("Last_Name").to_pylist()

    # The job's version of the first is deferred (its second was not over), the second's
    # change is after the snapshot: neither is written yet.
    assert "In the job" not in names(twice) and "An hour later" not in names(later)

    # The next run reads both changes, from the capped watermark, as an increment.
    again = _rerun(settings, client, out)
    assert again.mode == "incremental" and again.rows >= 2
    assert _paid(sim) == 1
    assert_output_equals_source(sim, out, schema_of(client, LEADS))
    assert_clean_and_committed(out, LEADS)


def _a_day_later(sim: Simulator, clock: FakeClock, job_id: str) -> None:
    clock.advance(25 * 3600)


def _forgotten_by_zoho(sim: Simulator, clock: FakeClock, job_id: str) -> None:
    assert sim.app is not None
    del sim.app.bulk.jobs[job_id]  # Zoho answers 404 RESOURCE_NOT_FOUND


def _a_field_removed(sim: Simulator, clock: FakeClock, job_id: str) -> None:
    meta = sim.org.module(LEADS).meta
    meta.fields.remove(next(f for f in meta.fields if f.api_name == "Website"))


@pytest.mark.parametrize(
    ("spoil", "asked"),
    [
        # Too old for Zoho to keep its result: not even asked for.
        (_a_day_later, []),
        # Unknown to Zoho: one status call, answered 404, and the job is forgotten.
        (_forgotten_by_zoho, [404]),
        # Another field list is another request: never asked for.
        (_a_field_removed, []),
    ],
)
def test_a_job_that_cannot_serve_the_rerun_is_replaced_by_one_new_job(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spoil: Callable[[Simulator, FakeClock, str], None],
    asked: list[int],
) -> None:
    sim, clock, settings, client, out = _org(make_simulator, tmp_path, page_size=1_000)
    (old,) = _killed_after_paying(monkeypatch, settings, client, out)
    spoil(sim, clock, old)

    report = _rerun(settings, client, out)
    assert [r.status for r in sim.requests if r.path == f"/crm/bulk/v8/read/{old}"] == asked
    assert _paid(sim) == 2 and report.jobs == 1
    if asked:
        # Chosen to resume it; Zoho's 404 came later, and the report says so.
        assert any(old in w and "gone" in w for w in report.warnings)
        assert report.reason.endswith("; 1 paid job gone at Zoho, paid for again")
    else:
        assert not report.reason.startswith("resumes")
    assert_output_equals_source(sim, out, schema_of(client, LEADS))
    assert not (out / BulkJobBook.path(LEADS)).exists()


def test_a_budget_that_holds_only_the_download_resumes_the_paid_job(
    make_simulator: Callable[..., Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, _, settings, client, out = _org(make_simulator, tmp_path, page_size=1_000)
    (old,) = _killed_after_paying(monkeypatch, settings, client, out)

    # The plan says so: the fields call, the status and the download.
    plan = build_plan(settings, modules=[LEADS], output=str(out), client=client)
    (module,) = plan.modules
    assert module.reader == "bulk" and module.reason.startswith(f"resumes Bulk job {old}")
    assert module.estimated_credits == 1 + 2 and "2 credits" in module.reason

    # A new Bulk job (53) does not fit in 10 credits; the paid one's 2 do.
    before = sim.credits.total
    report = _rerun(settings, client, out, max_credits=10)
    assert report.reader == "bulk" and report.reason.startswith("resumes Bulk job")
    assert _paid(sim) == 1
    assert sim.credits.total - before <= 10
    assert sim.credits.by_kind["bulk_download"] == 1
    assert_output_equals_source(sim, out, schema_of(client, LEADS))


@pytest.mark.timeout(120)
def test_a_killed_process_resumes_its_job_on_the_next_run(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    # The one subprocess case: killed by SIGKILL right after the job is recorded.
    sim = make_simulator(seed=5, records=150, bulk_page_size=1_000, bulk_polls=1)
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    args = [
        "extract",
        "--output",
        str(out),
        "--connection",
        connection_for(sim, tmp_path, "bulk"),
        "--modules",
        LEADS,
        "--no-progress",
    ]
    killed = run_cli(args, cli_env(home, {"ZOHO_CRM_CRASH_AT": "bulk_job_recorded:1"}))
    assert killed.returncode == -9, killed.describe()
    rerun = run_cli(args, cli_env(home))
    assert rerun.returncode == 0, rerun.describe()
    ledger = requests.get(sim.url + "/_sim/credits", timeout=10).json()["by_kind"]
    assert ledger["bulk_create"] == JOB_CREDITS  # one job, paid for once
    assert ledger["bulk_download"] == 1
    assert_clean_and_committed(out, LEADS)
    assert not (out / BulkJobBook.path(LEADS)).exists()
    assert not Output.open(str(out)).exists(BulkJobBook.path(LEADS))
