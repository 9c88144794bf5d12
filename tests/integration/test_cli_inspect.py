"""Modules named by the user, machine-readable output and inspecting a DIR, from the command line.

One subprocess per point, as a user or a scheduler runs it; the variations run in-process (Typer's
runner, or the functions the commands call).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.cli import clean_env, run_cli
from support.extract import READERS, client_for, extract, settings_for
from typer.testing import CliRunner

from connector.cli import app
from connector.lake.manifest import STATUS_LOCKED, read_runs
from connector.lake.output import Output
from connector.lake.state import StateStore
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock

# Bulk polls in milliseconds rather than seconds.
FAST_POLLS = {"ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0.01", "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0.05"}


def env_for(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path, FAST_POLLS)


def one_error(proc: object, code: int, *parts: str) -> str:
    """Assert exit ``code`` with exactly one ``error:`` line on stderr holding ``parts``."""
    returncode, stdout, stderr = (getattr(proc, n) for n in ("returncode", "stdout", "stderr"))
    assert returncode == code, (returncode, stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return str(lines[0])


# --- modules named by the user --------------------------------------------------------------


def test_modules_in_any_case_are_one_dataset_state_and_lock_spelled_as_zoho_does(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(records=60, bulk_polls=1)
    out = tmp_path / "out"
    proc = run_cli(
        "extract",
        "--connection",
        sim.connection_string(),
        "-o",
        str(out),
        "--modules",
        "leads, LEADS,Leads",
        "--no-progress",
        env=env_for(tmp_path),
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("_")) == ["Leads"]
    assert sorted(p.name for p in (out / "_state").iterdir()) == ["Leads.json"]
    assert sorted(p.name for p in (out / "_deleted").iterdir()) == ["Leads"]
    [run] = read_runs(Output.open(out))
    assert [m.module for m in run.modules] == ["Leads"]
    # One module list (the spelling), one fields call: nothing read twice.
    fields = [r for r in sim.requests if r.path.endswith("/settings/fields")]
    assert [r.query["module"] for r in fields] == ["Leads"]

    # The same lock whatever the case: a run naming "leads" waits on the lock of "Leads".
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    with StateStore(Output.open(out)).lock("Leads", "holder"), client_for(settings) as client:
        manifest = extract(settings, client, out, modules=["leads"])
    assert manifest.exit_code == 5
    assert manifest.module("Leads").status == STATUS_LOCKED


@pytest.mark.parametrize("value", ["", " , ,", " "])
def test_an_empty_modules_option_is_an_error_before_any_call(
    simulator: Simulator, tmp_path: Path, value: str
) -> None:
    # Once read as "every module": an empty variable in a scheduler extracted the whole org.
    connection = simulator.connection_string()
    if value == "":
        proc = run_cli(
            "extract", "-c", connection, "-o", str(tmp_path / "out"), "--modules", value,
            env=env_for(tmp_path),
        )  # fmt: skip
        one_error(proc, 2, "--modules names no module")
    else:
        for command in (["extract", "-o", str(tmp_path / "out")], ["plan"]):
            result = CliRunner().invoke(app, [*command, "-c", connection, "--modules", value])
            assert result.exit_code == 2, result.output
            assert "--modules names no module" in result.output
    assert simulator.requests == []
    assert not (tmp_path / "out").exists()


# --- --json on plan and modules -----------------------------------------------------------------


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}


def test_plan_json_prints_the_facts_of_the_table_and_nothing_else(
    simulator: Simulator, tmp_path: Path
) -> None:
    args = ["plan", "-c", simulator.connection_string(), "--modules", "Leads,notes"]
    table = run_cli(*args, env=env_for(tmp_path))
    proc = run_cli(*args, "--json", env=env_for(tmp_path))
    assert table.returncode == proc.returncode == 0, (proc.stderr, table.stderr)
    doc = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    rows = _rows(table.stdout)
    assert [m["module"] for m in doc["modules"]] == ["Leads", "Notes"]
    for m in doc["modules"]:
        assert rows[m["module"]][1:5] == [
            m["mode"],
            m["reader"],
            f"{m['estimated_rows']:,}",
            f"{m['estimated_credits']:,}",
        ]
    assert f"estimated total: {doc['estimated_total_credits']:,} credits" in table.stdout
    assert f"making this plan spent {doc['spent_credits']:,}" in table.stdout
    assert doc["discovery_credits"] == 1 and doc["rows_unknown"] is False


def test_modules_json_prints_the_facts_of_the_table(simulator: Simulator, tmp_path: Path) -> None:
    proc = run_cli("modules", "-c", simulator.connection_string(), "--json", env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by_name = {m["api_name"]: m for m in doc["modules"]}
    assert list(by_name) == [*simulator.org.modules, "Users"]
    assert by_name["Leads"]["readers"] == ["bulk", "coql", "records"]
    assert by_name["Visits"]["readers"] == []
    assert "api_supported: false" in by_name["Visits"]["note"]
    assert "linking module: read through its parent" in by_name["Contacts_X_Deals"]["note"]
    assert doc["readable"] == sum(1 for m in doc["modules"] if m["readers"])
    assert doc["credits_spent"] == simulator.credits.total
    # The table, in-process, shows the same rows.
    table = CliRunner().invoke(app, ["modules", "-c", simulator.connection_string()])
    rows = _rows(table.stdout)
    for name, module in by_name.items():
        assert rows[name][0] == name and (",".join(module["readers"]) or "-") in rows[name]


# --- inspecting a DIR ---------------------------------------------------------------------------


@pytest.fixture
def two_runs(make_simulator: Callable[..., Simulator], tmp_path: Path) -> tuple[Path, Simulator]:
    """An output with a full load of Leads and Notes, then an incremental run with a deletion."""
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc))
    sim = make_simulator(records=80, clock=clock)
    settings = settings_for(sim, tmp_path, **READERS["coql"])
    out = tmp_path / "out"
    with client_for(settings) as client:
        assert extract(settings, client, out, modules=["Leads", "Notes"]).exit_code == 0
        leads = sim.org.module("Leads")
        leads.delete(leads.current_ids()[0])
        clock.advance(2)  # the next run comes after the deletion's second
        assert extract(settings, client, out, modules=["Leads"]).exit_code == 0
    return out, sim


def test_state_prints_a_table_per_module(two_runs: tuple[Path, Simulator], tmp_path: Path) -> None:
    out, sim = two_runs
    proc = run_cli("state", "-o", str(out), env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert rows["module"] == [
        "module", "rows", "files", "size", "deleted", "watermark", "(UTC)", "last", "run",
        "status", "reader",
    ]  # fmt: skip
    runs = read_runs(Output.open(out))
    for name in ("Leads", "Notes"):
        files = sorted(p for p in (out / name).rglob("*.parquet"))
        size = sum(p.stat().st_size for p in files)
        cells = rows[name]
        assert cells[1:3] == [
            f"{sim.org.module(name).count() + (name == 'Leads'):,}",
            str(len(files)),
        ]
        assert cells[3:5] == [f"{size / 1024:.1f}", "KB"]
        assert cells[5] == ("1" if name == "Leads" else "0")
        newest = next(r for r in runs if any(m.module == name for m in r.modules))
        assert cells[8:] == [newest.run_id, "ok", "coql"]
    assert proc.stdout.splitlines()[-1].startswith("2 modules, ")


def test_state_variations_in_process(two_runs: tuple[Path, Simulator]) -> None:
    out, _sim = two_runs
    runner = CliRunner()
    doc = json.loads(runner.invoke(app, ["state", str(out), "--json", "-m", "leads"]).stdout)
    [leads] = doc["modules"]
    assert leads["module"] == "Leads" and leads["tombstones"] == 1
    assert leads["last_run_status"] == "ok" and leads["reader"] == "coql"
    # The same DIR given twice the same way is fine; two different ones are not.
    assert runner.invoke(app, ["state", str(out), "-o", str(out)]).exit_code == 0
    twice = runner.invoke(app, ["state", str(out), "-o", str(out / "x")])
    assert twice.exit_code == 2 and "two output directories" in twice.output
    unknown = runner.invoke(app, ["state", "-o", str(out), "--module", "Deals"])
    assert unknown.exit_code == 2
    assert "no module 'Deals'" in unknown.output and "Leads, Notes" in unknown.output
    assert runner.invoke(app, ["state"]).exit_code == 2


def test_runs_lists_the_manifests_newest_first(
    two_runs: tuple[Path, Simulator], tmp_path: Path
) -> None:
    out, _sim = two_runs
    proc = run_cli("runs", "-o", str(out), "--json", env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    manifests = sorted((out / "_runs").glob("*.json"), reverse=True)
    assert [r["run_id"] for r in doc["runs"]] == [p.stem for p in manifests]
    for run, path in zip(doc["runs"], manifests, strict=True):
        written = json.loads(path.read_text())
        assert run["exit_code"] == written["exit_code"] == 0
        assert run["rows"] == written["totals"]["rows"]
        assert run["credits"] == written["totals"]["credits"]
        assert [m["module"] for m in run["modules"]] == [m["module"] for m in written["modules"]]
    assert [m["module"] for m in doc["runs"][0]["modules"]] == ["Leads"]


def test_runs_variations_in_process(two_runs: tuple[Path, Simulator], tmp_path: Path) -> None:
    out, _sim = two_runs
    runner = CliRunner()
    table = runner.invoke(app, ["runs", str(out), "--last", "1"])
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "started", "(UTC)"] and lines[-1] == "1 run"
    assert lines[1].split()[3:6] == ["ok", "0", "Leads"]
    (tmp_path / "bare").mkdir()
    none = runner.invoke(app, ["runs", "-o", str(tmp_path / "bare")])
    assert none.exit_code == 2 and "holds no run manifests" in none.output


def test_snapshot_refuses_an_out_inside_the_datasets(
    two_runs: tuple[Path, Simulator], tmp_path: Path
) -> None:
    out, _sim = two_runs
    target = out / "Leads" / "now.parquet"
    proc = run_cli(
        "snapshot", "-o", str(out), "--module", "Leads", "--out", str(target),
        env=env_for(tmp_path),
    )  # fmt: skip
    one_error(proc, 2, f"--out {target} is inside the output {out}")
    assert not target.exists()
    assert not [p for p in (out / "Leads").rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("out", "result"),
    [
        ("{tmp}/now.parquet", "{tmp}/now.parquet"),
        ("{tmp}/now", "{tmp}/now/part-00000.parquet"),
        ("{tmp}/now.d/", "{tmp}/now.d/part-00000.parquet"),
        ("{out}/_snapshots/now.parquet", "{out}/_snapshots/now.parquet"),
        ("{out}/_snapshots", "{out}/_snapshots/part-00000.parquet"),
        ("{tmp}/now.csv", "not a .csv file"),
        ("{tmp}/now.json", "not a .json file"),
        ("{tmp}/afile.txt", "existing file"),
        ("{out}/now.parquet", "inside the output"),
        ("{out}/Notes/x", "inside the output"),
        ("{out}", "inside the output"),
        ("{out}/_deleted/Leads.parquet", "inside the output"),
        ("{out}/_state/Leads", "inside the output"),
        ("{link}/Leads/x.parquet", "inside the output"),
    ],
)
def test_snapshot_out_rules(
    two_runs: tuple[Path, Simulator], tmp_path: Path, out: str, result: str
) -> None:
    root, _sim = two_runs
    (tmp_path / "afile.txt").write_text("x")
    link = tmp_path / "link"
    if not link.exists():
        os.symlink(root, link)
    given = out.format(tmp=tmp_path, out=root, link=link)
    got = CliRunner().invoke(app, ["snapshot", str(root), "-m", "Leads", "--out", given])
    if result.startswith("{"):
        assert got.exit_code == 0, got.output
        assert got.stdout.strip().endswith(f"-> {result.format(tmp=tmp_path, out=root)}")
    else:
        assert got.exit_code == 2 and result in got.output, got.output


def test_compact_and_unlock_take_the_output_as_o_like_every_command(
    two_runs: tuple[Path, Simulator], tmp_path: Path
) -> None:
    out, _ = two_runs
    before = sorted(p.name for p in (out / "Leads").rglob("*.parquet"))
    compacted = run_cli("compact", "-o", str(out), "--module", "leads", env=env_for(tmp_path))
    assert compacted.returncode == 0, compacted.stderr
    assert len(sorted((out / "Leads").rglob("*.parquet"))) <= len(before)
    # No lock is held after the runs: unlock says so, naming the module as Zoho spells it.
    unlocked = run_cli(
        "unlock", "--output", str(out), "-m", "leads", "--yes", env=env_for(tmp_path)
    )
    assert unlocked.returncode == 2
    assert "Leads has no lock" in unlocked.stderr and "Traceback" not in unlocked.stderr
    both = run_cli(
        "compact", str(out), "-o", str(tmp_path / "other"), "-m", "Leads", env=env_for(tmp_path)
    )
    assert both.returncode == 2 and "two output directories" in both.stderr
