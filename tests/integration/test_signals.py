"""SIGINT and SIGTERM on ``zoho-crm extract``, sent to a real subprocess.

The first signal is acknowledged at once, no new module and no new paid call starts, locks are
released, the manifest says the run stopped, and the exit code is the shell's (130, 143); a
rerun then completes with every record exactly once. A second signal stops without waiting for
a call in flight, still releasing the locks, with no traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pytest
from support.reliability import (
    REPO,
    assert_clean_and_committed,
    assert_output_equals_source,
    cli_env,
    extract_args,
    gated_run,
    read_local,
    run_cli,
    schema_of,
    settings_for,
)

from connector.simulator import FaultConfig, Simulator

MODULES = ("Leads", "Contacts", "Accounts", "Deals")


def _args(sim: Simulator, tmp: Path, out: Path) -> list[str]:
    return extract_args(sim, tmp, out, "records", ",".join(MODULES), "--workers", "1")


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        env=env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> None:
    """Read the process's stderr until a line holds ``needle`` (no sleeping: the line is the
    event); every line read is kept in ``seen``."""
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never appeared on stderr:\n{''.join(seen)}")


def _manifest(out: Path) -> dict:
    return json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())


def _assert_each_record_once(sim: Simulator, tmp: Path, out: Path) -> None:
    settings = settings_for(sim, tmp)
    for module in MODULES:
        assert_output_equals_source(sim, out, schema_of(settings, module), required=True)
        assert_clean_and_committed(out, module)
        data = read_local(out / module)
        assert data is not None
        pairs = pc.binary_join_element_wise(
            data.column("id"), pc.cast(data.column("Modified_Time"), "string"), "@"
        )
        assert len(pc.unique(pairs)) == data.num_rows, f"{module}: a row written twice"


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_a_rerun_completes(
    make_simulator: Callable[..., Simulator], tmp_path: Path, signum: int, code: int
) -> None:
    # 40 ms a call: four modules read one at a time take seconds, so the signal lands mid-run.
    sim = make_simulator(seed=4, records=250, faults=FaultConfig(latency_ms=40))
    out = tmp_path / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(home)
    proc = _start(_args(sim, tmp_path, out), env)
    seen: list[str] = []
    try:
        _wait_for(proc, "Leads: reading with", seen)
        at_signal = sim.credits.total
        proc.send_signal(signum)
        stdout, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == code, f"{proc.returncode}\n{stdout}\n{stderr}"
    assert "stopping: finishing calls in flight" in stderr
    assert "Traceback" not in stderr
    assert not list((out / "_state").glob("*.lock*")), "a lock was left behind"
    # Only the calls in flight (a page and its prefetched successor) were paid after the signal.
    assert sim.credits.total - at_signal <= 3, (at_signal, sim.credits.total)
    manifest = _manifest(out)
    assert (manifest["status"], manifest["exit_code"]) == ("stopped: signal", code)
    statuses = {m["module"]: m["status"] for m in manifest["modules"]}
    assert statuses["Deals"] == "stopped: signal", statuses  # never started
    assert "not started" in next(m["error"] for m in manifest["modules"] if m["module"] == "Deals")
    assert f"exit {code}" in stdout

    rerun = run_cli(_args(sim, tmp_path, out), env)
    assert rerun.returncode == 0, rerun.describe()
    _assert_each_record_once(sim, tmp_path, out)


@pytest.mark.timeout(180)
def test_a_second_signal_abandons_the_call_in_flight_and_still_releases_locks(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim, gate, out, env = gated_run(make_simulator, tmp_path)
    proc = _start(_args(sim, tmp_path, out), env)
    seen: list[str] = []
    try:
        assert gate.held.wait(timeout=120), "the extract never made a call under its lock"
        proc.send_signal(signal.SIGTERM)
        _wait_for(proc, "stopping: finishing calls in flight", seen)
        # The call is still held by the simulator: only the second signal ends the run.
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        stdout, rest = proc.communicate(timeout=60)
    finally:
        gate.release.set()
        proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == 143, f"{proc.returncode}\n{stdout}\n{stderr}"
    assert "stopping now" in stderr, stderr
    assert "Traceback" not in stderr
    assert not list((out / "_state").glob("*.lock*")), "a lock was left behind"
    manifest = _manifest(out)
    assert (manifest["status"], manifest["exit_code"]) == ("stopped: signal", 143)
    leads = next(m for m in manifest["modules"] if m["module"] == "Leads")
    assert leads["status"] == "stopped: signal" and "second signal" in leads["error"]

    rerun = run_cli(_args(sim, tmp_path, out), env)
    assert rerun.returncode == 0, rerun.describe()
    _assert_each_record_once(sim, tmp_path, out)
