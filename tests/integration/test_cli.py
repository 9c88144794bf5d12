"""The ``zoho-crm`` command line, end to end: every command as a real subprocess against the simulator.

Each test runs ``python -m connector …`` the way a user or a scheduler does, with the simulator
serving on loopback in the test process (or, for ``simulate``, in a subprocess of its own), and
asserts on the exit code, the key content of stdout and the shape of stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from support.cli import FAST_TUNING, REPO, clean_env, first_line_starting, run_cli

from connector.simulator import Simulator


def cli_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no inherited ZOHO_CRM_* settings, a private token cache, tiny waits."""
    # Bulk settings read small orgs by Bulk Read, as these tests mean (see support.source.TINY).
    return clean_env(tmp_path, {**FAST_TUNING, "ZOHO_CRM_TUNING_PRICE_READERS": "false"})


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert a clean success (exit 0, no traceback) and return stdout."""
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error:" not in proc.stderr
    return proc.stdout


def stdout_lines_by_module(stdout: str) -> dict[str, list[str]]:
    """The rows of a table whose first column is a module name, split on whitespace."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells:
            rows.setdefault(cells[0], cells)
    return rows


def api_modules(sim: Simulator) -> list[str]:
    """Modules the connector reads by default: the API-supported ones, not linking modules."""
    return [
        name
        for name, store in sim.org.modules.items()
        if store.meta.api_supported and store.meta.generated_type in ("default", "custom")
    ]


def test_check_prints_the_org_region_host_and_no_missing_scopes(
    simulator: Simulator, tmp_path: Path
) -> None:
    out = ok(run_cli("check", "--connection", simulator.connection_string(), env=cli_env(tmp_path)))

    assert "org:             Zylker Traders" in out
    assert "region:          US" in out
    assert "instance type:   production" in out
    assert f"API host:        {simulator.url}" in out
    assert "ZohoCRM.bulk.READ" in out
    assert "missing scopes:  none" in out
    assert "warning:" not in out


def test_check_with_json_logs_writes_only_json_on_stderr(
    simulator: Simulator, tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    env["ZOHO_CRM_CONNECTION"] = simulator.connection_string()
    proc = run_cli("--log-format", "json", "--debug", "check", env=env)

    assert "missing scopes:  none" in ok(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # --debug logs every HTTP call: several lines, all of them JSON objects.
    assert len(lines) >= 2, proc.stderr
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record), record
    assert simulator.client_secret not in proc.stderr
    assert simulator.refresh_token not in proc.stderr


def test_modules_lists_readers_and_notes_has_no_bulk_reader(
    simulator: Simulator, tmp_path: Path
) -> None:
    out = ok(
        run_cli("modules", "--connection", simulator.connection_string(), env=cli_env(tmp_path))
    )
    rows = stdout_lines_by_module(out)

    for name in api_modules(simulator):
        assert name in rows, out
    assert "bulk,coql,records" in rows["Leads"]
    notes = rows["Notes"]
    assert "coql,records" in notes
    assert not any("bulk" in cell for cell in notes), notes
    assert "Bulk Read cannot export it" in out
    assert "credits spent:" in out


def test_extract_state_and_snapshot_in_sequence(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(records=120, bulk_polls=1)
    env = cli_env(tmp_path)
    out_dir = tmp_path / "out"
    modules = ["Leads", "Notes"]

    # The text summary on stdout (with --log-format json it goes to stderr as JSON events:
    # test_cli_first_contact.py).
    proc = run_cli(
        "extract",
        "--connection",
        sim.connection_string(),
        "--output",
        str(out_dir),
        "--modules",
        ",".join(modules),
        "--no-progress",
        env=env,
    )
    out = ok(proc)
    rows = stdout_lines_by_module(out)
    assert rows["Leads"][1:4] == ["ok", "bulk", "full"], out
    assert rows["Notes"][1:4] == ["ok", "coql", "full"], out
    assert "Notes: Bulk Read cannot export Notes" in out
    assert ": ok (exit 0)" in out
    for name in modules:
        table = ds.dataset(str(out_dir / name), partitioning="hive").to_table()
        assert table.num_rows == sim.org.module(name).count()
        assert int(rows[name][4].replace(",", "")) == table.num_rows

    # state --json: per module the rows, watermark, last run and reader the extract left.
    doc = json.loads(ok(run_cli("state", str(out_dir), "--json", env=env)))
    states = doc["modules"]
    assert sorted(s["module"] for s in states) == sorted(modules)
    for s in states:
        assert s["watermark"] is not None
        assert s["rows"] == sim.org.module(s["module"]).count()
        assert s["last_run_status"] == "ok"
        assert s["reader"] == ("coql" if s["module"] == "Notes" else "bulk")

    # snapshot: the module as it is now, as one Parquet file.
    target = tmp_path / "leads-now.parquet"
    out = ok(run_cli("snapshot", str(out_dir), "--module", "Leads", "--out", str(target), env=env))
    count = sim.org.module("Leads").count()
    assert out.startswith(f"{count} rows -> ")
    snap = pq.read_table(target)
    assert snap.num_rows == count
    assert snap.column("id").null_count == 0
    assert len(set(snap.column("id").to_pylist())) == count


def test_state_of_a_missing_or_empty_output_exits_2_with_one_line(tmp_path: Path) -> None:
    # Both once printed nothing useful with exit 0; a script could not tell them from success.
    missing = run_cli("state", "-o", str(tmp_path / "nothing-yet"), env=cli_env(tmp_path))
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"error: {tmp_path / 'nothing-yet'} does not exist: give the directory extract wrote "
        "(-o/--output)"
    ]
    (tmp_path / "empty").mkdir()
    empty = run_cli("state", str(tmp_path / "empty"), env=cli_env(tmp_path))
    assert empty.returncode == 2 and "holds no state" in empty.stderr
    assert len(empty.stderr.splitlines()) == 1


def test_demo_runs_a_full_and_an_incremental_extraction(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    out = ok(run_cli("demo", "--output", str(target), "--records", "40", env=cli_env(tmp_path)))

    assert "(40 records in Leads)" in out
    assert "full extraction:" in out
    assert "changing the org: 3 updated, 2 deleted, 4 created" in out
    assert "incremental extraction:" in out
    assert out.count(": ok (exit 0)") == 2, out
    incremental = out.split("incremental extraction:")[1]
    leads = stdout_lines_by_module(incremental)["Leads"]
    # 3 updates + 4 inserts read again, 2 tombstones.
    assert leads[1:4] == ["ok", "coql", "incremental"], leads
    assert leads[4:6] == ["7", "2"], leads
    table = ds.dataset(str(target / "Leads"), partitioning="hive").to_table()
    assert table.num_rows == 40 + 7
    tombstones = ds.dataset(str(target / "_deleted" / "Leads"), partitioning="hive").to_table()
    assert tombstones.num_rows == 2


def test_simulate_prints_a_connection_string_that_check_accepts(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "connector", "simulate", "--port", "0", "--records", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        connection = _read_connection_line(server)
        assert "AccountsServer=http://127.0.0.1:" in connection

        out = ok(run_cli("check", "--connection", connection, env=env))
        assert "org:             Zylker Traders" in out
        assert "missing scopes:  none" in out
    finally:
        server.terminate()
        code = server.wait(timeout=30)
    # SIGTERM is the documented way to stop it: a clean exit, no traceback.
    assert code == 0
    assert server.stderr is not None
    assert "Traceback" not in server.stderr.read()


def _read_connection_line(server: subprocess.Popen[str]) -> str:
    """The ``connection: …`` line ``simulate`` prints once it is serving (waits up to 60 s)."""
    line = first_line_starting(server, "connection: ")
    if not line:
        server.kill()
        raise AssertionError("simulate printed no connection line")
    return line.removeprefix("connection: ").strip()


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = ok(run_cli("--help", env=cli_env(tmp_path)))
    for command in (
        "extract",
        "check",
        "plan",
        "modules",
        "state",
        "runs",
        "snapshot",
        "auth",
        "simulate",
        "demo",
    ):
        assert command in out
