"""Output: atomic writes, listing and locks, on a local directory and on an fsspec URL."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.errors import ConfigError, LockError
from connector.lake.locks import pid_alive
from connector.lake.output import FsspecOutput, LocalOutput, Output


@pytest.fixture(params=["local", "memory"])
def output(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Output]:
    if request.param == "local":
        yield Output.open(tmp_path / "out")
    else:
        out = Output.open(f"memory://bucket-{uuid.uuid4().hex}/out")
        assert isinstance(out, FsspecOutput)
        yield out
        if out.fs.exists(out.base):
            out.fs.rm(out.base, recursive=True)
        shutil.rmtree(out.scratch, ignore_errors=True)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_open_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(Output.open(tmp_path), LocalOutput)
    assert isinstance(Output.open(f"file://{tmp_path}"), LocalOutput)
    assert Output.open(f"file://{tmp_path}").root == str(tmp_path)
    assert isinstance(Output.open("memory://b/x"), FsspecOutput)


def test_write_read_list_delete(output: Output) -> None:
    assert output.read_bytes("a/b.json") is None
    assert not output.exists("a/b.json")
    output.write_bytes_atomic("a/b.json", b"one")
    output.write_bytes_atomic("a/b.json", b"two")
    output.write_bytes_atomic("a/c/d.parquet", b"x")
    output.write_bytes_atomic("a/c/e.txt", b"y")
    assert output.read_bytes("a/b.json") == b"two"
    assert output.exists("a/b.json")
    assert output.list_files("a") == ["a/b.json", "a/c/d.parquet", "a/c/e.txt"]
    assert output.list_files("a", ".parquet") == ["a/c/d.parquet"]
    assert output.list_files("nothing/here") == []
    output.delete("a/b.json")
    output.delete("a/b.json")  # missing is fine
    assert output.read_bytes("a/b.json") is None


def test_write_file_atomic_moves_a_finished_file(output: Output) -> None:
    scratch = output.tmp_path("Leads/part-r-00000.parquet")
    scratch.write_bytes(b"PAR1 data PAR1")
    output.write_file_atomic("Leads/modified_date=2024-01-01/part-r-00000.parquet", scratch)
    assert not scratch.exists()
    assert output.read_bytes("Leads/modified_date=2024-01-01/part-r-00000.parquet") == (
        b"PAR1 data PAR1"
    )


def test_local_atomic_write_leaves_no_scratch_behind(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    out.write_bytes_atomic("_state/Leads.json", b"{}")
    assert out.tmp_path("x").parent == tmp_path / "_tmp"
    leftovers = [p for p in (tmp_path / "_tmp").rglob("*") if p.is_file()]
    assert leftovers == []


def test_local_write_file_atomic_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Output.open(tmp_path / "out")
    src = tmp_path / "elsewhere.bin"
    src.write_bytes(b"abc")
    real_replace = os.replace
    calls: list[str] = []

    def replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        if not calls:
            calls.append("exdev")
            raise OSError(18, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    out.write_file_atomic("M/f.bin", src)
    assert out.read_bytes("M/f.bin") == b"abc"
    assert not src.exists()
    assert calls == ["exdev"]


def test_local_place_file_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Output.open(tmp_path / "out")
    src = tmp_path / "elsewhere.bin"
    src.write_bytes(b"abc")
    real_replace = os.replace
    calls: list[str] = []

    def replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        # Like rename(2): a missing target directory first, then the other filesystem.
        if Path(a) == src:
            if not Path(b).parent.is_dir():
                raise FileNotFoundError(2, "No such file or directory")
            calls.append("exdev")
            raise OSError(18, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    out.prepare_files([src])
    out.place_file("M/modified_date=2024-01-01/f.bin", src)
    out.finish_placing(["M/modified_date=2024-01-01/f.bin"])
    assert out.read_bytes("M/modified_date=2024-01-01/f.bin") == b"abc"
    assert not src.exists()
    assert calls == ["exdev"]
    assert [p for p in (tmp_path / "out" / "_tmp").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("bad", ["../escape", "a/../../b"])
def test_paths_cannot_escape_the_output(output: Output, bad: str) -> None:
    with pytest.raises(ConfigError):
        output.write_bytes_atomic(bad, b"x")


def test_sweep_tmp_by_prefix(output: Output) -> None:
    for name in [
        "Leads/a.parquet",
        "Leads/b.parquet",
        "LeadsX/c.parquet",
        "_state/Leads.json.1.tmp",
    ]:
        output.tmp_path(name).write_bytes(b"x")
    assert output.sweep_tmp("Leads/") == ["Leads/a.parquet", "Leads/b.parquet"]
    assert output.tmp_path("LeadsX/c.parquet").exists()
    assert output.sweep_tmp("_state/Leads.json.") == ["_state/Leads.json.1.tmp"]


def test_lock_contention_names_holder_and_path(output: Output) -> None:
    lock = output.acquire_lock("_state/Leads.lock", {"module": "Leads", "run_id": "r1"})
    with pytest.raises(LockError) as err:
        output.acquire_lock("_state/Leads.lock", {"module": "Leads", "run_id": "r2"})
    message = str(err.value)
    assert "Leads" in message
    assert f"pid {os.getpid()}" in message
    assert socket.gethostname() in message
    assert "r1" in message
    assert output.describe("_state/Leads.lock") in message
    lock.release()
    assert not output.exists("_state/Leads.lock")
    with output.acquire_lock("_state/Leads.lock", {"module": "Leads", "run_id": "r3"}) as again:
        held = json.loads(output.read_bytes("_state/Leads.lock") or b"{}")
        assert held["run_id"] == "r3" and held["pid"] == os.getpid()
        assert again.info["run_id"] == "r3"
    assert not output.exists("_state/Leads.lock")


def test_different_locks_are_independent(output: Output) -> None:
    with (
        output.acquire_lock("_state/Leads.lock", {"module": "Leads"}),
        output.acquire_lock("_state/Deals.lock", {"module": "Deals"}),
    ):
        assert output.exists("_state/Leads.lock") and output.exists("_state/Deals.lock")


def test_stale_lock_of_a_dead_pid_is_taken_over(
    output: Output, caplog: pytest.LogCaptureFixture
) -> None:
    stale = {
        "module": "Leads",
        "run_id": "old",
        "pid": dead_pid(),
        "hostname": socket.gethostname(),
    }
    output.write_bytes_atomic("_state/Leads.lock", json.dumps(stale).encode())
    with caplog.at_level(logging.WARNING):
        lock = output.acquire_lock("_state/Leads.lock", {"module": "Leads", "run_id": "new"})
    assert "stale lock" in caplog.text
    held = json.loads(output.read_bytes("_state/Leads.lock") or b"{}")
    assert held["run_id"] == "new"
    assert not output.exists("_state/Leads.lock.break")
    lock.release()


def test_lock_of_another_host_is_not_broken(output: Output) -> None:
    other = {"module": "Leads", "run_id": "x", "pid": dead_pid(), "hostname": "elsewhere.example"}
    output.write_bytes_atomic("_state/Leads.lock", json.dumps(other).encode())
    with pytest.raises(LockError, match=r"elsewhere\.example"):
        output.acquire_lock("_state/Leads.lock", {"module": "Leads", "run_id": "new"})


def test_unreadable_lock_old_is_recovered_young_is_respected(tmp_path: Path) -> None:
    out = Output.open(tmp_path)
    lock_file = tmp_path / "_state" / "Leads.lock"
    lock_file.parent.mkdir(parents=True)
    lock_file.write_bytes(b"")
    with pytest.raises(LockError, match="still writing"):
        out.acquire_lock("_state/Leads.lock", {"module": "Leads"})
    old = time.time() - 3600
    os.utime(lock_file, (old, old))
    with out.acquire_lock("_state/Leads.lock", {"module": "Leads", "run_id": "n"}) as lock:
        assert lock.info["run_id"] == "n"


def test_release_leaves_a_lock_that_is_not_ours(output: Output) -> None:
    lock = output.acquire_lock("_state/Leads.lock", {"module": "Leads"})
    foreign = {"module": "Leads", "pid": 1, "hostname": "h", "token": "someone-else"}
    output.write_bytes_atomic("_state/Leads.lock", json.dumps(foreign).encode())
    lock.release()
    assert json.loads(output.read_bytes("_state/Leads.lock") or b"{}")["token"] == "someone-else"


def test_lock_held_by_a_second_process_is_refused(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from connector.lake.output import Output\n"
        "lock = Output.open(sys.argv[1]).acquire_lock('_state/Leads.lock', {'module': 'Leads'})\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "lock.release()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=f"pid {proc.pid}"):
            Output.open(tmp_path).acquire_lock("_state/Leads.lock", {"module": "Leads"})
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=30)
    with Output.open(tmp_path).acquire_lock("_state/Leads.lock", {"module": "Leads"}) as lock:
        assert lock.info["pid"] == os.getpid()
