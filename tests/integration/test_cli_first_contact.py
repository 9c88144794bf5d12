"""A new user's first contact and a scheduler's view, end to end as subprocesses: ``--version``,
help with exit codes, "no connection" instead of a missing key, the example config refused before
any call, JSON logs on stderr (and nothing else), global options after the command, and
``simulate`` on a busy port, with bad fault values, and with its way to change data."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests
from support.cli import FAST_TUNING, REPO, clean_env, first_line_starting, run_cli

from connector.cli.app import EXIT_CODES
from connector.simulator import Simulator

NO_CONNECTION = "no connection: use --connection, ZOHO_CRM_CONNECTION or --config"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"


def cli_env(tmp_path: Path) -> dict[str, str]:
    """No inherited ZOHO_CRM_* settings, a private token cache, tiny waits, a wide terminal."""
    return {**clean_env(tmp_path, FAST_TUNING), "COLUMNS": "200"}


def json_objects(stderr: str) -> list[dict[str, object]]:
    """Every non-empty stderr line parsed as one JSON object (fails on any other line)."""
    objects = []
    for line in stderr.splitlines():
        if line.strip():
            parsed = json.loads(line)
            assert isinstance(parsed, dict), line
            assert {"time", "level", "logger", "message"} <= set(parsed), parsed
            objects.append(parsed)
    return objects


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The exit code, no traceback, and exactly one ``error:`` line on stderr, returned."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


# --- help and first contact ---------------------------------------------------------------------


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    proc = run_cli("--version", env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"zoho-crm \d+\.\d+\.\d+\S*\n", proc.stdout), proc.stdout


def test_help_lists_every_exit_code_an_example_and_no_type_placeholders(tmp_path: Path) -> None:
    proc = run_cli("--help", env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Exit codes:" in out
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^\W*{code}\s+{re.escape(meaning[:30])}", out, re.MULTILINE), code
    assert "Example: " in out
    assert "--version" in out
    assert "<bool>" not in out and "<str>" not in out


def test_no_settings_at_all_says_where_the_connection_comes_from(tmp_path: Path) -> None:
    line = one_error_line(run_cli("check", env=cli_env(tmp_path)), 2)
    assert line == f"error: {NO_CONNECTION}"


def test_the_example_config_is_refused_before_any_call_naming_the_keys(
    simulator: Simulator, tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    # Were the example's credentials sent anywhere, they would reach this simulator.
    env["ZOHO_CRM_ACCOUNTSSERVER"] = simulator.url
    env["ZOHO_CRM_APIDOMAIN"] = simulator.url
    proc = run_cli("check", "--config", str(EXAMPLE_CONFIG), env=env)

    line = one_error_line(proc, 2)
    assert "OAuthClientId, OAuthClientSecret, OAuthRefreshToken still hold" in line
    assert "placeholder" in line
    assert simulator.requests == []


# --- JSON logs ----------------------------------------------------------------------------------


def test_json_logs_after_the_command_put_every_line_of_an_extract_on_stderr_as_json(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(records=60, bulk_polls=1)
    env = cli_env(tmp_path)
    env["ZOHO_CRM_CONNECTION"] = sim.connection_string()
    out_dir = tmp_path / "out"
    # --log-format after the command's name, as a scheduler's command line often has it.
    args = ["extract", "-o", str(out_dir), "--modules", "Leads,Notes", "--log-format", "json"]

    proc = run_cli(*args, env=env)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    events = json_objects(proc.stderr)
    modules = {e["module"]: e for e in events if e.get("event") == "module"}
    assert set(modules) == {"Leads", "Notes"}
    leads = modules["Leads"]
    # 60 rows: APIType=Bulk reads them by COQL, far cheaper than a Bulk job.
    assert (leads["status"], leads["reader"], leads["rows"]) == ("ok", "coql", 60)
    assert isinstance(leads["credits"], int) and leads["credits"] > 0
    (run,) = [e for e in events if e.get("event") == "run"]
    assert run["exit_code"] == 0 and run["status"] == "ok"
    assert run["rows"] == 60 + modules["Notes"]["rows"]
    assert run["credits"] >= leads["credits"] + modules["Notes"]["credits"]
    assert leads["run_id"] == run["run_id"]
    assert (out_dir / "_runs" / f"{run['run_id']}.json").exists()
    # Progress as events too, never bars.
    assert any(e.get("event") == "progress" and e.get("module") == "Leads" for e in events)

    # A failing run (credits stop: exit 4) reports the same way.
    # modules list 1 + two fields calls 2: the stop comes once the modules start reading.
    stopped = run_cli(*args, "--full-refresh", "--max-credits", "3", env=env)
    assert stopped.returncode == 4, stopped.stderr
    assert stopped.stdout == ""
    (run,) = [e for e in json_objects(stopped.stderr) if e.get("event") == "run"]
    assert (run["exit_code"], run["level"]) == (4, "ERROR")
    assert "rerun resumes" in str(run["reason"])


def test_json_logs_turn_a_bad_config_and_a_usage_error_into_one_json_error(
    tmp_path: Path,
) -> None:
    env = cli_env(tmp_path)
    # --debug after the command too: the traceback rides inside the object.
    proc = run_cli("check", "--log-format", "json", "--debug", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (error,) = [e for e in json_objects(proc.stderr) if e.get("event") == "error"]
    assert (error["message"], error["exit_code"], error["level"]) == (NO_CONNECTION, 2, "ERROR")
    assert "Traceback" in str(error["exception"])

    usage = run_cli("--log-format", "json", "extract", "--modules", "Leads", env=env)
    assert usage.returncode == 2, usage.stderr
    (error,) = json_objects(usage.stderr)
    assert error["event"] == "error" and "--output" in str(error["message"])


# --- simulate -----------------------------------------------------------------------------------


def test_simulate_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("simulate", "--port", str(port), env=cli_env(tmp_path), timeout=60)
    line = one_error_line(proc, 2)
    assert line == (
        f"error: port {port} is in use: choose another with --port, or 0 for any free port"
    )


def test_simulate_rejects_a_share_above_one(tmp_path: Path) -> None:
    proc = run_cli(
        "simulate", "--port", "0", "--rate-429", "1.5", env=cli_env(tmp_path), timeout=30
    )
    line = one_error_line(proc, 2)
    assert "--rate-429" in line and "0 to 1" in line and "1.5" in line


def test_simulate_prints_how_to_change_its_data_and_that_way_works(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "connector", "simulate", "--port", "0", "--records", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path),
        cwd=REPO,
    )
    try:
        curl = first_line_starting(server, "curl ")
        match = re.fullmatch(r"curl -s -X POST (\S+/_sim/mutate) -d '(.+)'", curl)
        assert match, curl
        answer = requests.post(match[1], data=match[2], timeout=30)
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["results"]
        assert re.fullmatch(r"\d{19}", result["id"])
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- the README's scheduling section ------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_block(language: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Scheduling") :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block in the README's scheduling section"
    return match[1]


def test_the_readmes_cron_line_runs_and_reruns_with_json_lines_only(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(records=40, bulk_polls=1)
    (entry,) = [line for line in _readme_block("cron").splitlines() if not line.startswith("#")]
    command = entry.split(None, 5)[5]  # after minute, hour, day, month, weekday
    assert "--connection" not in command  # the secret never on a command line
    out_dir = tmp_path / "lake"
    command = command.replace("/srv/lake/zoho", str(out_dir))
    home = tmp_path / "home"
    # The installed console script, where the line expects it.
    (home / "zoho-crm" / ".venv" / "bin").mkdir(parents=True)
    script = home / "zoho-crm" / ".venv" / "bin" / "zoho-crm"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m connector "$@"\n')
    script.chmod(0o755)
    conn = home / ".zoho-crm.conn"
    conn.write_text(sim.connection_string(APIType="REST", UseCOQL="true") + "\n")
    conn.chmod(0o600)
    env = {**cli_env(tmp_path), "HOME": str(home)}

    for _ in range(2):  # the scheduled run, then a rerun
        proc = subprocess.run(
            ["sh", "-c", command], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, (proc.stdout, proc.stderr)

    events = json_objects((home / "zoho-crm.log").read_text())
    runs = [e for e in events if e.get("event") == "run"]
    assert [r["exit_code"] for r in runs] == [0, 0]
    leads = [e for e in events if e.get("event") == "module" and e.get("module") == "Leads"]
    assert [e["mode"] for e in leads] == ["full", "incremental"]
    assert [e["rows"] for e in leads] == [40, 0]  # the rerun writes nothing twice


def test_the_readmes_airflow_task_command_runs_one_module(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(records=30, bulk_polls=1)
    dag = _readme_block("python")
    match = re.search(r'bash_command=f"(zoho-crm [^"]+)"', dag)
    assert match, dag
    assert "ZOHO_CRM_CONNECTION" in dag and "--connection" not in dag
    template = match[1].replace("s3://lake/zoho", str(tmp_path / "lake"))
    args = template.format(module="Leads").split()[1:]
    env = {**cli_env(tmp_path), "ZOHO_CRM_CONNECTION": sim.connection_string()}

    proc = run_cli(*args, env=env)

    assert proc.returncode == 0, proc.stderr
    (run,) = [e for e in json_objects(proc.stderr) if e.get("event") == "run"]
    assert (run["exit_code"], run["rows"]) == (0, 30)
