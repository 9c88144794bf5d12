"""Checks before spending, and failures that are not the data's: an unusable output location,
a full disk mid-run, Zoho out of reach. Each runs ``zoho-crm extract`` as a subprocess."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pytest
from support.reliability import (
    assert_clean_and_committed,
    assert_files_readable,
    assert_output_equals_source,
    cli_env,
    connection_for,
    load_state,
    read_local,
    run_cli,
    schema_of,
    settings_for,
)
from support.s3 import S3Bucket, s3, s3_server

from connector.simulator import Simulator

__all__ = ["s3", "s3_server"]  # fixtures used by name below


def _extract(sim: Simulator, tmp: Path, out: str, *extra: str, **overrides: str) -> list[str]:
    return [
        "extract",
        "--output",
        out,
        "--connection",
        connection_for(sim, tmp, "records", **overrides),
        "--modules",
        "Leads",
        "--no-progress",
        *extra,
    ]


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _home(tmp: Path) -> Path:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return home


def _unusable(tmp: Path, case: str) -> tuple[str, str]:
    """(an output location that cannot be used, a word the error line must hold)."""
    if case == "a file":
        target = tmp / "out.parquet"
        target.write_bytes(b"not a directory")
        return str(target), "is a file"
    if case == "missing parent":
        return str(tmp / "no" / "such" / "out"), "does not exist"
    if case == "parent is a file":
        (tmp / "plain").write_text("x")
        return str(tmp / "plain" / "out"), "does not exist"
    if case == "read-only parent":
        parent = tmp / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        return str(parent / "out"), "cannot be created"
    # Linux's sysfs: nobody, root included, may create a directory there.
    return "/sys/zoho-crm-connector-test-out", "cannot be created"


@pytest.mark.parametrize(
    "case", ["a file", "missing parent", "parent is a file", "read-only parent", "sysfs"]
)
def test_an_unusable_output_is_one_line_exit_2_and_costs_nothing(
    simulator: Simulator, tmp_path: Path, case: str
) -> None:
    if case == "read-only parent" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory (the sysfs case covers root)")
    if case == "sysfs" and not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs here")
    out, words = _unusable(tmp_path, case)
    proc = run_cli(_extract(simulator, tmp_path, out), cli_env(_home(tmp_path)))
    assert proc.returncode == 2, proc.describe()
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and words in errors[0] and out in errors[0], proc.describe()
    assert "Traceback" not in proc.stderr
    # Checked before the first call: no token, no credit.
    assert simulator.credits.total == 0
    assert simulator.requests == []


def test_a_missing_output_directory_under_an_existing_parent_is_created(
    simulator: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "new-dir"
    proc = run_cli(_extract(simulator, tmp_path, str(out)), cli_env(_home(tmp_path)))
    assert proc.returncode == 0, proc.describe()
    assert (out / "Leads").is_dir()


def test_a_bucket_that_does_not_exist_is_exit_2_before_any_call(
    simulator: Simulator, tmp_path: Path, s3: S3Bucket
) -> None:
    env = {**cli_env(_home(tmp_path)), **s3.server.env}
    url = f"s3://{s3.name}-missing/zoho"
    proc = run_cli(_extract(simulator, tmp_path, url), env)
    assert proc.returncode == 2, proc.describe()
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and url in errors[0] and "bucket" in errors[0], proc.describe()
    assert simulator.credits.total == 0 and simulator.requests == []


@pytest.mark.timeout(180)
def test_a_full_disk_mid_run_stops_cleanly_exit_7_and_a_rerun_resumes(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=8, records=250)
    out = tmp_path / "out"
    env = cli_env(_home(tmp_path), {"ZOHO_CRM_TUNING_CHECKPOINT_ROWS": "50"})
    args = _extract(sim, tmp_path, str(out))
    # Writes: first checkpoint's files, its state, then the second checkpoint's files fail.
    full = run_cli(args, {**env, "ZOHO_CRM_FAIL_WRITE_AT": "ENOSPC:3"})
    assert full.returncode == 7, full.describe()
    errors = [line for line in full.stderr.splitlines() if f"no space left on {out}" in line]
    assert len(errors) == 1, full.describe()
    assert "Traceback" not in full.stderr
    # Nothing partial is visible: every Parquet file is whole and covered by the state.
    assert_files_readable(out, "Leads")
    state = load_state(out, "Leads")
    assert state.watermark is not None  # the first checkpoint stays committed
    for path in (out / "Leads").rglob("*.parquet"):
        assert state.covers(path.relative_to(out).as_posix()), path
    assert not list((out / "_state").glob("*.lock*"))
    manifest = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    assert (manifest["status"], manifest["exit_code"]) == ("stopped: output write failed", 7)
    assert "no space left" in manifest["message"]

    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.describe()
    report = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())["modules"][0]
    assert report["mode"] == "incremental"  # resumed from the committed checkpoint
    assert_output_equals_source(sim, out, schema_of(settings_for(sim, tmp_path), "Leads"))
    assert_clean_and_committed(out, "Leads")
    data = read_local(out / "Leads")
    assert data is not None
    pairs = pc.binary_join_element_wise(
        data.column("id"), pc.cast(data.column("Modified_Time"), "string"), "@"
    )
    assert len(pc.unique(pairs)) == data.num_rows


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("host", ["AccountsServer", "APIDomain"])
def test_zoho_unreachable_is_exit_6_naming_the_host(
    simulator: Simulator, tmp_path: Path, host: str
) -> None:
    port = _closed_port()
    closed = f"http://127.0.0.1:{port}"
    out = tmp_path / "out"
    env = cli_env(_home(tmp_path), {"ZOHO_CRM_TUNING_MAX_ATTEMPTS": "2"})
    proc = run_cli(_extract(simulator, tmp_path, str(out), **{host: closed}), env)
    assert proc.returncode == 6, proc.describe()
    errors = [line for line in proc.stderr.splitlines() if f"127.0.0.1:{port}" in line]
    assert errors and "connection refused" in errors[-1], proc.describe()
    assert ("Region" if host == "AccountsServer" else "APIDomain") in errors[-1]
    assert "Traceback" not in proc.stderr
    assert not list(out.glob("_state/*.lock"))
