"""Bulk Read: create, status machine, ZIP download, pages, criteria, errors, limits, failures."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from typing import Any

from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.simulator.query import Comparison


def _create(client: Any, query: dict[str, Any]) -> Any:
    return client.post("/crm/bulk/v8/read", json={"query": query})


def _run(client: Any, query: dict[str, Any], polls: int = 2) -> dict[str, Any]:
    created = _create(client, query)
    assert created.status_code == 201, created.text
    job_id = created.json()["data"][0]["details"]["id"]
    states = []
    for _ in range(polls):
        job = client.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
        states.append(job["state"])
    assert states[-1] in ("COMPLETED", "FAILURE"), states
    job["_states"] = states
    return job


def _download(client: Any, job: dict[str, Any]) -> list[dict[str, str]]:
    resp = client.get(job["result"]["download_url"])
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/zip"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{job["id"]}.zip"'
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert zf.namelist() == [f"{job['id']}.csv"]
        text = zf.read(f"{job['id']}.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_lifecycle(client: Any, simulator: Simulator) -> None:
    created = _create(
        client, {"module": {"api_name": "Leads"}, "fields": ["Last_Name", "Email", "Modified_Time"]}
    )
    assert created.status_code == 201
    body = created.json()
    entry = body["data"][0]
    assert entry["code"] == "ADDED_SUCCESSFULLY" and entry["status"] == "success"
    assert entry["message"] == "Added successfully."
    details = entry["details"]
    assert details["operation"] == "read" and details["state"] == "ADDED"
    assert set(details["created_by"]) == {"id", "name"}
    job_id = details["id"]
    first = client.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
    assert first["state"] == "IN PROGRESS" and "result" not in first
    done = client.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
    assert done["state"] == "COMPLETED"
    assert done["query"]["module"]["api_name"] == "Leads"
    result = done["result"]
    # A job that does not name Converted__s leaves converted leads out (assumed, like Records).
    leads = simulator.org.module("Leads")
    visible = leads.select(["id"], where=Comparison("Converted__s", "=", "false"))
    assert 0 < visible.num_rows < leads.count() == 200
    assert result == {
        "page": 1,
        "per_page": 200_000,
        "count": visible.num_rows,
        "download_url": f"/crm/bulk/v8/read/{job_id}/result",
        "more_records": False,
    }
    rows = _download(client, done)
    assert list(rows[0]) == ["id", "Last_Name", "Email", "Modified_Time"]
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(ids) == visible.num_rows
    assert ids == visible.column("id").to_pylist()


def test_states_walk_through_queued(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    sim = make_simulator(bulk_polls=3)
    job = _run(make_client(sim), {"module": {"api_name": "Accounts"}}, polls=4)
    assert job["_states"] == ["QUEUED", "IN PROGRESS", "COMPLETED", "COMPLETED"]


def test_all_fields_when_fields_empty(client: Any, simulator: Simulator) -> None:
    job = _run(client, {"module": {"api_name": "Accounts"}})
    rows = _download(client, job)
    readable = [f.api_name for f in simulator.org.module("Accounts").meta.fields if f.list_readable]
    assert set(rows[0]) == set(readable)
    assert next(iter(rows[0])) == "id"


def test_pages_by_token_and_by_page(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    sim = make_simulator(bulk_page_size=70)
    client = make_client(sim)
    query = {"module": {"api_name": "Leads"}, "fields": ["Last_Name"], "criteria": EVERY_LEAD}
    job = _run(client, query)
    assert job["result"]["count"] == 70 and job["result"]["more_records"] is True
    seen = [r["id"] for r in _download(client, job)]
    while job["result"]["more_records"]:
        token = job["result"]["next_page_token"]
        job = _run(client, {"page_token": token})
        seen += [r["id"] for r in _download(client, job)]
    assert job["result"]["page"] == 3 and job["result"]["count"] == 60
    assert "next_page_token" not in job["result"]
    assert seen == sim.org.module("Leads").select(["id"]).column("id").to_pylist()
    page2 = _run(client, {**query, "page": 2})
    assert [r["id"] for r in _download(client, page2)] == seen[70:140]
    assert sim.credits.by_kind["bulk_create"] == 4 * 50


# Naming Converted__s both ways exports converted leads too, which a job leaves out by default.
EVERY_LEAD = {
    "group_operator": "or",
    "group": [
        {"field": {"api_name": "Converted__s"}, "comparator": "equal", "value": flag}
        for flag in (True, False)
    ],
}


def test_criteria_nested_groups(client: Any, simulator: Simulator) -> None:
    store = simulator.org.module("Leads")
    times = store.select(["Modified_Time"]).column("Modified_Time").to_pylist()
    middle = times[len(times) // 2].strftime("%Y-%m-%dT%H:%M:%S+00:00")
    criteria = {
        "group_operator": "and",
        "group": [
            {
                "field": {"api_name": "Modified_Time"},
                "comparator": "greater_equal",
                "value": middle,
            },
            {
                "group_operator": "or",
                "group": [
                    {
                        "field": {"api_name": "Last_Name"},
                        "comparator": "not_equal",
                        "value": "zzz-none",
                    },
                    {
                        "field": {"api_name": "Last_Name"},
                        "comparator": "equal",
                        "value": "zzz-none",
                    },
                ],
            },
            EVERY_LEAD,
        ],
    }
    job = _run(
        client, {"module": {"api_name": "Leads"}, "fields": ["Modified_Time"], "criteria": criteria}
    )
    rows = _download(client, job)
    expected = sum(1 for t in times if t >= times[len(times) // 2])
    assert 0 < len(rows) == expected == job["result"]["count"]


def test_create_errors(client: Any) -> None:
    resp = client.post(
        "/crm/bulk/v8/read",
        data='{"query":{"module":{"api_name":"Leads"}}}',
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 415 and resp.json()["code"] == "MEDIA_TYPE_NOT_SUPPORTED"
    notes = _create(client, {"module": {"api_name": "Notes"}})
    assert notes.status_code == 400 and notes.json()["code"] == "MODULE_NOT_SUPPORTED"
    missing = _create(client, {"fields": ["Last_Name"]})
    assert missing.status_code == 400 and missing.json()["code"] == "REQUIRED_PARAM_MISSING"
    unknown = _create(client, {"module": {"api_name": "Leads"}, "fields": ["Nope"]})
    assert unknown.status_code == 400 and unknown.json()["code"] == "INVALID_DATA"
    assert client.get("/crm/bulk/v8/read/123").json()["code"] == "RESOURCE_NOT_FOUND"
    assert client.get("/crm/bulk/v8/read/123").status_code == 404


def test_more_than_200_fields_means_all(client: Any, simulator: Simulator) -> None:
    names = [f"X{i}" for i in range(201)]
    job = _run(client, {"module": {"api_name": "Deals"}, "fields": names})
    rows = _download(client, job)
    assert len(rows[0]) == len(
        [f for f in simulator.org.module("Deals").meta.fields if f.list_readable]
    )


def test_download_limit(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock, download_limit_per_minute=3)
    client = make_client(sim)
    job = _run(client, {"module": {"api_name": "Accounts"}, "fields": ["Account_Name"]})
    for _ in range(3):
        assert client.get(job["result"]["download_url"]).status_code == 200
    refused = client.get(job["result"]["download_url"])
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert "credits" in refused.json()["message"]  # the wording says nothing reliable
    assert "Retry-After" not in refused.headers  # Zoho documents none
    # Asking again within the minute is refused and starts the minute again.
    clock.advance(30)
    assert client.get(job["result"]["download_url"]).status_code == 429
    clock.advance(59)
    assert client.get(job["result"]["download_url"]).status_code == 429
    clock.advance(60)
    assert client.get(job["result"]["download_url"]).status_code == 200
    assert sim.app is not None and sim.app.bulk.downloads_refused == 3


def test_download_limit_retry_after_is_opt_in(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock, download_limit_per_minute=1, retry_after=5)
    client = make_client(sim)
    job = _run(client, {"module": {"api_name": "Accounts"}, "fields": ["Account_Name"]})
    assert client.get(job["result"]["download_url"]).status_code == 200
    refused = client.get(job["result"]["download_url"])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"  # the true wait, when opted in


def test_failure_fault(simulator: Simulator, client: Any) -> None:
    simulator.faults.bulk_fail_next = 1
    job = _run(client, {"module": {"api_name": "Leads"}})
    assert job["state"] == "FAILURE"
    assert job["result"]["error_message"]["code"] == "INTERNAL_SERVER_ERROR"
    assert _run(client, {"module": {"api_name": "Leads"}})["state"] == "COMPLETED"


def test_snapshot_at_creation_and_mutations_after(client: Any, simulator: Simulator) -> None:
    store = simulator.org.module("Accounts")
    new_id = store.insert({"Account_Name": 'Fresh, "quoted"\nline'})
    job = _run(client, {"module": {"api_name": "Accounts"}, "fields": ["Account_Name"]})
    rows = {r["id"]: r for r in _download(client, job)}
    assert rows[new_id]["Account_Name"] == 'Fresh, "quoted"\nline'


def test_a_job_is_gone_a_day_after_its_creation(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    # The result is downloadable for one day (zoho-api.md §3); after that Zoho knows the job no
    # more: its status and its result answer as for an id it never issued.
    clock = FakeClock()
    sim = make_simulator(clock=clock)
    job = _run(make_client(sim), {"module": {"api_name": "Accounts"}, "fields": ["Account_Name"]})
    clock.advance(24 * 3600 - 1)
    client = make_client(sim)  # a new access token: the first one lived an hour
    assert client.get(f"/crm/bulk/v8/read/{job['id']}").json()["data"][0]["state"] == "COMPLETED"
    assert client.get(job["result"]["download_url"]).status_code == 200
    clock.advance(1)
    for path in (f"/crm/bulk/v8/read/{job['id']}", job["result"]["download_url"]):
        gone = client.get(path)
        assert gone.status_code == 404, path
        assert gone.json()["code"] == "RESOURCE_NOT_FOUND"
