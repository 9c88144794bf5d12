"""The run manifest: final status and exit codes, its JSON and summary lines, run ids."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from connector.lake.manifest import FileEntry, ModuleReport, RunManifest, new_run_id

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


def manifest(*statuses: str) -> RunManifest:
    m = RunManifest(run_id="r1", started_at=T0, output="/out")
    m.modules = [ModuleReport(f"M{i}", status=s) for i, s in enumerate(statuses)]
    return m


@pytest.mark.parametrize(
    ("statuses", "status", "code"),
    [
        (("ok", "ok"), "ok", 0),
        (("ok", "skipped"), "ok", 0),
        (("ok", "failed"), "failed", 1),
        (("failed", "locked"), "locked", 5),
        (("locked", "stopped: credits"), "stopped: credits", 4),
        (("ok", "stopped: budget", "not run"), "stopped: budget", 4),
    ],
)
def test_final_status_and_exit_code(statuses: tuple[str, ...], status: str, code: int) -> None:
    m = manifest(*statuses)
    m.finish(T0 + timedelta(seconds=2))
    assert (m.status, m.exit_code) == (status, code)
    if code == 4:
        assert m.message is not None and "rerun resumes" in m.message


def test_manifest_json_has_the_documented_content() -> None:
    m = manifest("ok")
    m.connection = {"region": "US", "api_type": "Bulk", "api_domain": "https://www.zohoapis.com"}
    report = m.modules[0]
    report.reader, report.mode, report.rows, report.tombstones = "bulk", "full", 10, 2
    report.files = [FileEntry("M0/modified_date=2026-07-01/part-r1-00000.parquet", 10, 999)]
    report.credits = {"bulk_create": 50, "metadata": 1}
    report.deferred_rows = 3
    report.duration_s = 1.25
    report.notes = ["3 rows modified in the last second(s) before the read are left for later"]
    m.credits = {"bulk_create": 50, "metadata": 2}
    m.calls, m.token_refreshes = 5, 1
    m.finish(T0 + timedelta(seconds=3))
    doc = json.loads(m.to_json())
    assert doc["duration_s"] == 3.0 and doc["exit_code"] == 0
    assert doc["started_at"] == "2026-07-01T12:00:00+00:00"
    module = doc["modules"][0]
    assert module["credits_total"] == 51 and module["files"][0]["bytes"] == 999
    assert doc["totals"] == {
        "rows": 10,
        "deferred_rows": 3,
        "tombstones": 2,
        "files": 1,
        "credits": 52,
        "credits_by_kind": {"bulk_create": 50, "metadata": 2},
        "discovery_credits": {},
        "calls": 5,
        "token_refreshes": 1,
    }
    lines = m.summary_lines()
    assert lines[0].split() == ["module", "status", "reader", "mode", "rows", "deleted", "credits"]
    assert lines[1].split() == ["M0", "ok", "bulk", "full", "10", "2", "51"]
    assert "M0: 3 rows modified in the last second(s) before the read are left for later" in lines
    assert module["deferred_rows"] == 3 and module["notes"] == report.notes
    assert module["duration_s"] == 1.25
    assert m.summary_events()[0]["duration_s"] == 1.25
    assert lines[-1].startswith("run r1: ok (exit 0), 10 rows, 52 credits, 5 calls")


def test_run_ids_sort_by_time_and_are_unique() -> None:
    a, b = new_run_id(T0), new_run_id(T0 + timedelta(milliseconds=1))
    assert a < b and new_run_id(T0) != new_run_id(T0)
    assert a.startswith("20260701T120000000Z-")
