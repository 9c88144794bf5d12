"""Run manifest, final status and exit codes, progress, and module discovery (no sockets)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest

from connector.errors import ConfigError, ModuleUnavailable
from connector.lake.manifest import FileEntry, ModuleReport, RunManifest, new_run_id
from connector.run.progress import LogProgress, Progress
from connector.run.sync import discover

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
    assert lines[-1].startswith("run r1: ok (exit 0), 10 rows, 52 credits, 5 calls")


def test_run_ids_sort_by_time_and_are_unique() -> None:
    a, b = new_run_id(T0), new_run_id(T0 + timedelta(milliseconds=1))
    assert a < b and new_run_id(T0) != new_run_id(T0)
    assert a.startswith("20260701T120000000Z-")


def test_log_progress_throttles_lines(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = LogProgress(interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="connector.run.progress"):
        progress.start_module("Leads", "coql")
        progress.update("Leads", rows=200, pages=1, credits=1)  # within 10 s of the start
        now[0] = 11
        progress.update("Leads", rows=2200, pages=2, credits=4)
        progress.finish_module("Leads", "ok")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Leads: reading with coql",
        "Leads: 2,200 rows, 2 pages, 4 credits so far",
        "Leads: ok, 2,200 rows, 2 pages, 4 credits",
    ]
    assert progress.modules["Leads"].status == "ok"


def test_base_progress_keeps_totals_silently() -> None:
    progress = Progress()
    progress.update("Deals", rows=5)
    progress.update("Deals", credits=3)
    assert (progress.modules["Deals"].rows, progress.modules["Deals"].credits) == (5, 3)


class FakeClient:
    """Answers settings/modules and settings/fields like Zoho, and records the calls."""

    def __init__(self, modules: list[dict[str, Any]], fields: dict[str, list[dict[str, Any]]]):
        self.modules, self.fields = modules, fields
        self.calls: list[str] = []

    def get_json(self, path: str, *, params: Any = None, headers: Any = None) -> Any:
        self.calls.append(path if params is None else f"{path}?module={params['module']}")
        if path == "settings/modules":
            return {"modules": self.modules}
        name = params["module"]
        if name not in self.fields:
            raise ModuleUnavailable("invalid module", status=400, code="INVALID_MODULE")
        return {"fields": self.fields[name]}


MODULES = [
    {"api_name": "Leads", "api_supported": True, "generated_type": "default"},
    {"api_name": "Vendors_X", "api_supported": True, "generated_type": "custom"},
    {"api_name": "Visits", "api_supported": False, "generated_type": "default"},
    {"api_name": "Deals_Contacts", "api_supported": True, "generated_type": "linking"},
    {"api_name": "Web_Forms", "api_supported": True, "generated_type": "web"},
]
FIELDS = {"Leads": [{"api_name": "id", "data_type": "bigint"}]}


def test_discover_keeps_supported_default_and_custom_modules() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, None)  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads", "Vendors_X"]
    assert client.calls == ["settings/modules"]


def test_named_modules_skip_the_modules_list() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, ["Leads", "Leads"])  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads"]
    assert targets[0].fields is not None and targets[0].fields[0].api_name == "id"
    assert client.calls == ["settings/fields?module=Leads"]


@pytest.mark.parametrize(("name", "hint"), [("Leds", "Leads"), ("leads", "Leads")])
def test_unknown_module_is_a_config_error_with_close_matches(name: str, hint: str) -> None:
    client = FakeClient(MODULES, FIELDS)
    with pytest.raises(ConfigError, match=f"unknown module '{name}'; did you mean {hint}"):
        discover(client, [name])  # type: ignore[arg-type]
    assert client.calls == [f"settings/fields?module={name}", "settings/modules"]


def test_a_known_module_zoho_refuses_is_kept_as_unavailable() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, ["Visits"])  # type: ignore[arg-type]
    assert targets[0].error is not None and targets[0].error.code == "INVALID_MODULE"


def test_rows_at_or_after_the_cap_are_deferred_rows_without_time_kept() -> None:
    from connector.run.sync import _defer_live_edge

    utc_us = pa.timestamp("us", tz="UTC")
    cap = T0
    times = [
        T0 - timedelta(seconds=1),
        T0,
        None,
        T0 + timedelta(seconds=3),
        T0 - timedelta(0, 0, 1),
    ]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["a", "b", "c", "d", "e"]), pa.array(times, utc_us)], ["id", "Modified_Time"]
    )
    kept, deferred = _defer_live_edge(batch, cap)
    assert kept.column("id").to_pylist() == ["a", "c", "e"] and deferred == 2
    assert _defer_live_edge(batch, None) == (batch, 0)
    older = batch.filter(pa.array([True, False, True, False, True]))
    same, none = _defer_live_edge(older, cap)
    assert same is older and none == 0
