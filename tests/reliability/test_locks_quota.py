"""Locks between concurrent extracts, and runs that run out of API credits (Zoho's daily limit,
or ``--max-credits``): they stop cleanly with exit code 4, keep resumable state, and a rerun
completes with exactly the source's data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.reliability import (
    REPO,
    assert_clean_and_committed,
    assert_files_readable,
    assert_output_equals_source,
    cli_env,
    extract_args,
    gated_run,
    load_state,
    run_cli,
    schema_of,
    settings_for,
)

from connector.simulator import Simulator
from connector.simulator.clock import LiveClock


def _args(sim: Simulator, tmp: Path, out: Path, reader: str, modules: str, *extra: str) -> list:
    return extract_args(sim, tmp, out, reader, modules, *extra)


@pytest.mark.timeout(180)
def test_second_extract_of_a_module_is_refused_other_modules_run_side_by_side(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim, gate, out, env = gated_run(make_simulator, tmp_path)
    settings = settings_for(sim, tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "connector", *_args(sim, tmp_path, out, "coql", "Leads")],
        env=env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert gate.held.wait(timeout=120), "the first extract never took the Leads lock"
        holder = json.loads((out / "_state" / "Leads.lock").read_text())
        assert holder["pid"] == first.pid

        second = run_cli(_args(sim, tmp_path, out, "coql", "Leads"), env)
        assert second.returncode == 5, second.describe()
        assert str(first.pid) in second.stdout + second.stderr
        # Another module goes into the same output at the same time.
        other = run_cli(_args(sim, tmp_path, out, "records", "Accounts"), env)
        assert other.returncode == 0, other.describe()
        assert first.poll() is None, "the first extract should still be paused"
    finally:
        gate.release.set()
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, f"{stdout}\n{stderr}"
    for module in ("Leads", "Accounts"):
        assert_output_equals_source(sim, out, schema_of(settings, module))
        assert_clean_and_committed(out, module)


@pytest.mark.parametrize(
    ("reader", "limit", "resumes"),
    [
        # Bulk: 50 credits a job, four jobs; the third cannot be paid for. An unordered read
        # commits nothing, so the rerun reads everything again, taking the two paid jobs.
        ("bulk", 120, False),
        # Records: one credit a page; the limit is hit after the first page, which is committed
        # (the modules list and the fields call, that --modules costs, come first: 1 each).
        ("records", 3, True),
        # COQL: a full load reads pages of 2,000 rows (3 credits): the first page is refused, so
        # nothing is committed and the rerun is a full load.
        ("coql", 2, False),
    ],
)
def test_daily_credits_run_out_mid_way(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    reader: str,
    limit: int,
    resumes: bool,
) -> None:
    clock = LiveClock()
    sim = make_simulator(
        seed=8, records=250, bulk_page_size=80, bulk_polls=1, daily_credits=limit, clock=clock
    )
    out = tmp_path / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(home)
    args = _args(sim, tmp_path, out, reader, "Leads")

    stopped = run_cli(args, env)
    assert stopped.returncode == 4, stopped.describe()
    assert "Traceback" not in stopped.stderr
    # One line on stderr says what happened and what to do; the summary on stdout says it too.
    said = [
        line
        for line in stopped.stderr.splitlines()
        if "credits are spent" in line and ("run again" in line or "rerun" in line)
    ]
    assert len(said) == 1, stopped.describe()
    assert "a rerun resumes" in stopped.stdout
    assert any(r.code == "LIMIT_REACHED" for r in sim.requests)
    assert_files_readable(out, "Leads")
    state = load_state(out, "Leads")
    assert (state.watermark is not None) == resumes
    assert not (out / "_state" / "Leads.lock").exists()

    # The budget resets (a new day): the rerun completes and the output equals the source.
    sim.credits.daily_limit = None
    sim.org.module("Leads").update(sim.org.module("Leads").current_ids()[5], {"Last_Name": "x"})
    clock.advance(2)  # the rerun comes after the edit's second
    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.describe()
    manifest = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    leads = next(m for m in manifest["modules"] if m["module"] == "Leads")
    assert leads["mode"] == ("incremental" if resumes else "full")
    if reader == "bulk":
        # The two jobs the stopped run paid for are taken, not paid for again: their snapshot
        # predates the edit, which the next run reads.
        assert sum("resumed Bulk Read job" in w for w in leads["warnings"]) == 2
        assert leads["jobs"] == 2
        again = run_cli(args, env)
        assert again.returncode == 0, again.describe()
    settings = settings_for(sim, tmp_path)
    assert_output_equals_source(sim, out, schema_of(settings, "Leads"))
    assert_clean_and_committed(out, "Leads")


@pytest.mark.parametrize(
    ("reader", "budget", "resumes"), [("bulk", 60, False), ("records", 3, True)]
)
def test_max_credits_stops_cleanly_and_resumes(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    reader: str,
    budget: int,
    resumes: bool,
) -> None:
    sim = make_simulator(seed=8, records=250, bulk_page_size=80, bulk_polls=1)
    out = tmp_path / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(home)
    args = _args(sim, tmp_path, out, reader, "Leads")

    stopped = run_cli([*args, "--max-credits", str(budget)], env)
    assert stopped.returncode == 4, stopped.describe()
    assert "Traceback" not in stopped.stderr
    assert sim.credits.total <= budget + 1  # the token refresh is free; fields cost 1
    assert any("max-credits" in line or "budget" in line for line in stopped.stdout.splitlines())
    assert (load_state(out, "Leads").watermark is not None) == resumes
    assert_files_readable(out, "Leads")

    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.describe()
    settings = settings_for(sim, tmp_path)
    assert_output_equals_source(sim, out, schema_of(settings, "Leads"))
    assert_clean_and_committed(out, "Leads")
