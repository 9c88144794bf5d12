"""``zoho-crm plan``: a dry run that reads no records and prices the run that would follow it.

The plan runs as a subprocess against the in-process simulator, so the simulator's request log and
credit ledger show exactly what the plan called and what the following ``extract`` really spent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.cli import clean_env, run_cli

import connector.simulator.api_coql as sim_coql
from connector.simulator import Simulator

FAST_TUNING = {
    "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0.01",
    "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0.05",
    "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0",
    "ZOHO_CRM_TUNING_RETRY_MAX_WAIT": "0",
}
PLAN_ROW = re.compile(
    r"^(?P<module>\S+)\s+(?P<mode>full|incremental)\s+(?P<reader>bulk|coql|records)\s+"
    r"(?P<rows>[\d,]+|unknown)\s+(?P<credits>[\d,]+)\+?\s+(?P<others>-|\w+ [\d,]+(?:, \w+ [\d,]+)*)"
    r"\s+(?P<why>.+)$"
)
TOTAL = re.compile(
    r"^estimated total: (?P<total>[\d,]+) credits.*; making this plan spent (?P<spent>[\d,]+)$"
)


@dataclass
class PlanRow:
    """One module's line of the plan table."""

    module: str
    mode: str
    reader: str
    rows: int | None
    credits: int
    others: dict[str, int]
    why: str


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _others(text: str) -> dict[str, int]:
    """``bulk 54, records 2`` -> {"bulk": 54, "records": 2}; ``-`` -> {}."""
    if text == "-":
        return {}
    pairs = (item.split() for item in text.split(", "))
    return {reader: _int(credits) for reader, credits in pairs}


def parse_plan(stdout: str) -> tuple[dict[str, PlanRow], int, int]:
    """The rows by module, the estimated total and what making the plan spent."""
    rows: dict[str, PlanRow] = {}
    total = spent = -1
    for line in stdout.splitlines():
        if match := PLAN_ROW.match(line):
            rows[match["module"]] = PlanRow(
                module=match["module"],
                mode=match["mode"],
                reader=match["reader"],
                rows=None if match["rows"] == "unknown" else _int(match["rows"]),
                credits=_int(match["credits"]),
                others=_others(match["others"]),
                why=match["why"],
            )
        elif match := TOTAL.match(line):
            total, spent = _int(match["total"]), _int(match["spent"])
    assert rows and total >= 0, stdout
    return rows, total, spent


def cli_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no inherited ZOHO_CRM_* settings, a private token cache, tiny waits."""
    return clean_env(tmp_path, FAST_TUNING)


def run_ok(*args: str, env: dict[str, str]) -> str:
    """Run ``python -m connector ARGS``; assert a clean exit 0 and return stdout."""
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture
def coql_queries(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every COQL query the simulator answers, as ``is_count`` (True for ``select COUNT(…)``)."""
    seen: list[bool] = []
    original = sim_coql.coql_response

    def spy(org: Any, store: Any, query: Any) -> Any:
        seen.append(bool(query.is_count))
        return original(org, store, query)

    monkeypatch.setattr(sim_coql, "coql_response", spy)
    return seen


def _record_reads(sim: Simulator) -> list[str]:
    """Calls that read records: record lists, bulk jobs (COQL is checked through the spy)."""
    module_paths = {f"/crm/v8/{name}" for name in sim.org.modules}
    return [
        f"{r.method} {r.path}"
        for r in sim.requests
        if r.path.startswith("/crm/bulk/")
        or (r.method == "GET" and r.path in module_paths)
        or r.path.endswith("/deleted")
    ]


def test_plan_reads_no_records_and_prices_the_full_load_within_10_percent(
    make_simulator: Callable[..., Simulator], tmp_path: Path, coql_queries: list[bool]
) -> None:
    sim = make_simulator(records=300)
    env = cli_env(tmp_path)
    connection = sim.connection_string()
    out_dir = tmp_path / "out"

    before = sim.credits.total
    stdout = run_ok("plan", "--connection", connection, "--output", str(out_dir), env=env)
    rows, total, spent = parse_plan(stdout)
    plan_spent = sim.credits.total - before

    # Reading nothing: metadata and COQL counts only.
    assert _record_reads(sim) == []
    assert coql_queries and all(coql_queries)
    assert spent == plan_spent
    readable = [
        name
        for name, store in sim.org.modules.items()
        if store.meta.api_supported
        and store.meta.generated_type in ("default", "custom")
        and store.meta.refuse is None
    ]
    assert sorted(rows) == sorted(readable)
    # A small org: no module is worth a 50-credit Bulk job. Each module's reader is the cheapest
    # of those the settings allow, and the others are priced next to it.
    for name, row in rows.items():
        assert row.mode == "full"
        assert row.rows == sim.org.module(name).count(), row
        assert row.reader != "bulk", row
        # No other reader reads it for less (the row adds the fields call and the count).
        assert all(credits >= row.credits - 2 for credits in row.others.values()), row
    # Bulk Read cannot export Notes; Events and Quotes hold fields COQL refuses; Notes and Tasks
    # link polymorphic lookups, whose modules only the Records API names.
    assert {rows[m].reader for m in ("Notes", "Tasks", "Events", "Quotes")} == {"records"}
    assert (
        "bulk" not in rows["Notes"].others and "Bulk Read cannot export Notes" in rows["Notes"].why
    )
    assert rows["Leads"].reader == "coql" and rows["Leads"].others["bulk"] > 50
    assert rows["Events"].others == {} and "COQL refuses Participants" in rows["Events"].why
    skipped = [line for line in stdout.splitlines() if "skipped: " in line]
    assert sorted(line.split()[0] for line in skipped) == ["CTI_Entry", "Email_Analytics", "Visits"]
    assert total >= sum(row.credits for row in rows.values())
    assert not out_dir.exists()  # a dry run writes nothing

    coql_queries.clear()
    before = sim.credits.total
    run_ok("extract", "--connection", connection, "--output", str(out_dir), env=env)
    extract_spent = sim.credits.total - before
    assert abs(total - extract_spent) <= 0.10 * extract_spent, (total, extract_spent)
    manifest = json.loads(next((out_dir / "_runs").glob("*.json")).read_text())
    # The run chose what the plan said, and its manifest says why, with the prices.
    for report in manifest["modules"]:
        if report["module"] in rows:
            assert report["reader"] == rows[report["module"]].reader, report
            assert report["reason"], report
    assert manifest["modules"][0]["reader_prices"]

    # After one extract, nothing changed: an incremental plan finds 0 changes everywhere, and
    # prices a few credits per module.
    requests_before = len(sim.requests)
    before = sim.credits.total
    rows, total, spent = parse_plan(
        run_ok("plan", "--connection", connection, "--output", str(out_dir), env=env)
    )
    assert spent == sim.credits.total - before
    assert sorted(rows) == sorted(readable)
    for name, row in rows.items():
        assert row.mode == ("full" if name == "Actions_Performed" else "incremental"), row
        if row.mode == "incremental":
            assert row.rows == 0, row
        assert row.credits <= 10, row
    new_reads = [
        r
        for r in sim.requests[requests_before:]
        if r.path.startswith("/crm/bulk/") or r.path.endswith("/deleted")
    ]
    assert new_reads == []

    # --full-refresh prices full loads again, whatever the output holds.
    rows, _, _ = parse_plan(
        run_ok(
            "plan", "--connection", connection, "--output", str(out_dir), "--full-refresh", env=env
        )
    )
    assert {row.mode for row in rows.values()} == {"full"}
    assert rows["Leads"].rows == sim.org.module("Leads").count()


def test_plan_of_named_modules_reads_the_module_list_once(
    simulator: Simulator, tmp_path: Path, coql_queries: list[bool]
) -> None:
    rows, total, spent = parse_plan(
        run_ok(
            "plan",
            "--connection",
            simulator.connection_string(APIType="REST", UseCOQL="false"),
            "--modules",
            "Leads,Notes",
            env=cli_env(tmp_path),
        )
    )

    assert sorted(rows) == ["Leads", "Notes"]
    assert {row.reader for row in rows.values()} == {"records"}
    # One modules list: Zoho's spelling and availability of the named modules.
    assert len([r for r in simulator.requests if r.path.endswith("/settings/modules")]) == 1
    # Records API: one credit per page of 200 rows, plus the fields call.
    leads = simulator.org.module("Leads").count()
    assert rows["Leads"].rows == leads
    assert rows["Leads"].credits == 1 + -(-leads // 200)
    assert _record_reads(simulator) == []
    assert coql_queries and all(coql_queries)
    assert spent == simulator.credits.total
    assert total == 1 + sum(row.credits for row in rows.values())
