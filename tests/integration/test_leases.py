"""Locks are leases: renewed while the extract runs, taken over once expired whatever host wrote
them (locally and on S3), never by two runs at once; ``zoho-crm unlock`` for the impatient."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.reliability import (
    assert_clean_and_committed,
    assert_output_equals_source,
    cli_env,
    extract_args,
    run_cli,
    schema_of,
    settings_for,
)
from support.s3 import S3Bucket, s3, s3_server

from connector.errors import LockError
from connector.lake.output import Output
from connector.lake.state import StateStore
from connector.simulator import Simulator

__all__ = ["s3", "s3_server"]  # fixtures used by name below

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


def _foreign(expires: datetime, host: str = "pod-7f9c") -> bytes:
    """A lock written by a run on another host (a pod that was killed)."""
    info = {
        "module": "Leads",
        "run_id": "killed-run",
        "pid": 1,
        "hostname": host,
        "started_at": (expires - timedelta(minutes=5)).isoformat(),
        "expires_at": expires.isoformat(),
        "lease_seconds": 300,
        "token": "theirs",
    }
    return json.dumps(info).encode()


def _extract(sim: Simulator, tmp: Path, out: Path) -> list[str]:
    return extract_args(sim, tmp, out, "records", "Leads")


def _home(tmp: Path) -> Path:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return home


def test_an_expired_lease_of_another_host_is_taken_over_by_the_next_extract(
    simulator: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    Output.open(out).write_bytes_atomic(
        "_state/Leads.lock", _foreign(datetime.now(timezone.utc) - timedelta(seconds=1))
    )
    proc = run_cli(_extract(simulator, tmp_path, out), cli_env(_home(tmp_path)))
    assert proc.returncode == 0, proc.describe()
    assert "taking over the lock" in proc.stderr and "pod-7f9c" in proc.stderr
    assert_output_equals_source(
        simulator, out, schema_of(settings_for(simulator, tmp_path), "Leads")
    )
    assert_clean_and_committed(out, "Leads")


def test_a_live_lease_refuses_and_unlock_removes_it_after_confirmation(
    simulator: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    lock = out / "_state" / "Leads.lock"
    Output.open(out).write_bytes_atomic(
        "_state/Leads.lock", _foreign(datetime.now(timezone.utc) + timedelta(hours=1))
    )
    env = cli_env(_home(tmp_path))
    refused = run_cli(_extract(simulator, tmp_path, out), env)
    assert refused.returncode == 5, refused.describe()
    assert "pod-7f9c" in refused.stdout + refused.stderr
    assert "zoho-crm unlock" in refused.stdout + refused.stderr

    # Without a terminal and without --yes: refused, the lock stays.
    asked = run_cli(["unlock", str(out), "--module", "leads"], env)
    assert asked.returncode == 2, asked.describe()
    assert "pod-7f9c" in asked.stdout and "--yes" in asked.stderr
    assert lock.exists()

    removed = run_cli(["unlock", str(out), "--module", "leads", "--yes"], env)
    assert removed.returncode == 0, removed.describe()
    assert "killed-run" in removed.stdout and "Leads: lock removed" in removed.stdout
    assert not lock.exists()

    none = run_cli(["unlock", str(out), "--module", "Leads", "--yes"], env)
    assert none.returncode == 2 and "no lock" in none.stderr, none.describe()
    assert run_cli(_extract(simulator, tmp_path, out), env).returncode == 0


def _clock(start: datetime) -> tuple[list[datetime], Callable[[], datetime]]:
    now = [start]
    return now, lambda: now[0]


def test_a_held_lease_is_renewed_and_a_lease_lost_to_a_takeover_stops_commits(
    tmp_path: Path,
) -> None:
    out = Output.open(tmp_path)
    now, clock = _clock(T0)
    lock = out.acquire_lock("_state/Leads.lock", {"module": "Leads"}, now=clock, lease=60)
    assert lock.expires_at == T0 + timedelta(seconds=60)
    # Renewed by the background thread, here with an injected wait: two renewals, then stop.
    waits: list[float] = []
    done = threading.Event()

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += timedelta(seconds=seconds)
        if len(waits) > 2:
            done.set()
            return True
        return False

    lock.keep_renewed(wait=wait)
    assert done.wait(timeout=30)
    assert waits[0] == 20  # a third of the lease
    on_disk = json.loads(out.read_bytes("_state/Leads.lock") or b"{}")
    assert on_disk["expires_at"] == (T0 + timedelta(seconds=100)).isoformat()
    with lock.held():
        pass
    # Not renewed for longer than a lease: another run takes it over; this one commits nothing.
    now[0] += timedelta(seconds=61)
    other = out.acquire_lock("_state/Leads.lock", {"module": "Leads"}, now=clock, lease=60)
    assert lock.renew() is False and lock.lost
    with pytest.raises(LockError, match="no longer held"), lock.held():
        pass
    lock.release()  # not ours any more: left in place
    assert json.loads(out.read_bytes("_state/Leads.lock") or b"{}")["token"] == other.info["token"]
    other.release()
    assert not out.exists("_state/Leads.lock")


def _race(out_of: Callable[[], Output], contenders: int = 8) -> list[object]:
    """``contenders`` runs (each its own Output) try to take the same expired lock at once."""
    barrier = threading.Barrier(contenders)
    results: list[object] = []
    mutex = threading.Lock()

    def one() -> None:
        output = out_of()
        barrier.wait()
        try:
            got: object = output.acquire_lock("_state/Leads.lock", {"module": "Leads"})
        except LockError as exc:
            got = exc
        with mutex:
            results.append(got)

    threads = [threading.Thread(target=one) for _ in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_runs_taking_over_at_once_never_both_hold_the_lock(tmp_path: Path) -> None:
    Output.open(tmp_path).write_bytes_atomic("_state/Leads.lock", _foreign(T0))
    results = _race(lambda: Output.open(tmp_path))
    winners = [r for r in results if not isinstance(r, LockError)]
    assert len(winners) == 1, results
    held = json.loads((tmp_path / "_state" / "Leads.lock").read_text())
    assert held["token"] == winners[0].info["token"]  # type: ignore[attr-defined]
    assert not (tmp_path / "_state" / "Leads.lock.break").exists()


def test_on_s3_an_expired_lease_is_taken_over_by_one_run_and_a_live_one_is_not(
    s3: S3Bucket,
) -> None:
    out = Output.open(s3.url)
    out.write_bytes_atomic(
        "_state/Leads.lock", _foreign(datetime.now(timezone.utc) + timedelta(hours=1))
    )
    with pytest.raises(LockError, match="pod-7f9c"):
        StateStore(out).lock("Leads", "mine")
    out.write_bytes_atomic("_state/Leads.lock", _foreign(T0))
    results = _race(lambda: Output.open(s3.url), contenders=4)
    winners = [r for r in results if not isinstance(r, LockError)]
    assert len(winners) == 1, results
    assert s3.objects("_state") == ["_state/Leads.lock"]
    winners[0].release()  # type: ignore[attr-defined]
    assert s3.objects("_state") == []
