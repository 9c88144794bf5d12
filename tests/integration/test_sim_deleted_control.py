"""Deleted records, the /_sim control surface, the connection string and serve_forever."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import requests

from connector.simulator import Simulator, serve_forever
from connector.simulator.clock import FakeClock


def test_deleted_records(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    clock = FakeClock(datetime(2026, 8, 1, tzinfo=timezone.utc))
    sim = make_simulator(clock=clock)
    client = make_client(sim)
    store = sim.org.module("Leads")
    ids = store.select(["id"], limit=3).column("id").to_pylist()
    store.delete(ids[0])
    clock.advance(10)
    store.delete(ids[1], permanent=True)
    clock.advance(10)
    store.delete(ids[2])
    body = client.get("/crm/v8/Leads/deleted", params={"type": "all"}).json()
    assert [r["id"] for r in body["data"]] == [ids[2], ids[1], ids[0]]
    assert body["info"] == {"per_page": 200, "count": 3, "page": 1, "more_records": False}
    row = body["data"][0]
    assert set(row) == {"deleted_by", "id", "display_name", "type", "created_by", "deleted_time"}
    assert row["deleted_time"].endswith("+05:30")
    recycle = client.get("/crm/v8/Leads/deleted", params={"type": "recycle"}).json()["data"]
    assert {r["id"] for r in recycle} == {ids[0], ids[2]}
    permanent = client.get("/crm/v8/Leads/deleted", params={"type": "permanent"}).json()["data"]
    assert [r["id"] for r in permanent] == [ids[1]]
    paged = client.get("/crm/v8/Leads/deleted", params={"per_page": 2, "page": 2}).json()
    assert paged["info"] == {"per_page": 2, "count": 1, "page": 2, "more_records": False}
    since = "2026-08-01T05:30:15+05:30"  # 00:00:15 UTC: only the third deletion
    recent = client.get("/crm/v8/Leads/deleted", headers={"If-Modified-Since": since}).json()[
        "data"
    ]
    assert [r["id"] for r in recent] == [ids[2]]


def test_deleted_errors_and_empty(client: Any) -> None:
    bad = client.get("/crm/v8/Leads/deleted", params={"type": "gone"})
    assert bad.status_code == 400 and bad.json()["code"] == "PATTERN_NOT_MATCHED"
    too_many = client.get("/crm/v8/Leads/deleted", params={"per_page": 201})
    assert too_many.status_code == 400
    empty = client.get("/crm/v8/Leads/deleted")
    assert empty.status_code == 204 and empty.content == b""


def test_control_endpoints(simulator: Simulator, client: Any) -> None:
    client.get("/crm/v8/org")
    credits = requests.get(simulator.url + "/_sim/credits").json()
    assert credits["total"] == 1 and credits["by_kind"] == {"metadata": 1}
    log = requests.get(simulator.url + "/_sim/requests").json()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/oauth/v2/token", 200),
        ("GET", "/crm/v8/org", 200),
    ]
    faults = requests.post(simulator.url + "/_sim/faults", json={"rate_429": 1.0}).json()
    assert faults["rate_429"] == 1.0 and simulator.faults.rate_429 == 1.0
    assert client.get("/crm/v8/org").status_code == 429
    assert requests.post(simulator.url + "/_sim/faults", json={"nonsense": 1}).status_code == 400
    requests.post(simulator.url + "/_sim/faults", json={"rate_429": 0.0})
    store = simulator.org.module("Leads")
    existing = store.select(["id"], limit=1).column("id")[0].as_py()
    result = requests.post(
        simulator.url + "/_sim/mutate",
        json=[
            {"op": "insert", "module": "Leads", "values": {"Last_Name": "Inserted"}},
            {"op": "update", "module": "Leads", "id": existing, "values": {"Last_Name": "Updated"}},
        ],
    ).json()["results"]
    assert store.get(result[0]["id"])["Last_Name"] == "Inserted"
    assert store.get(existing)["Last_Name"] == "Updated"
    requests.post(
        simulator.url + "/_sim/mutate", json=[{"op": "delete", "module": "Leads", "id": existing}]
    )
    assert store.get(existing) is None


def test_connection_string(simulator: Simulator) -> None:
    text = simulator.connection_string(APIType="REST", UseCOQL="true")
    pairs = dict(p.strip().split("=", 1) for p in text.split(";") if p.strip())
    assert pairs["AccountsServer"] == simulator.url == pairs["APIDomain"]
    assert pairs["APIType"] == "REST" and pairs["UseCOQL"] == "true"
    assert pairs["OAuthClientId"] == simulator.client_id
    assert pairs["OAuthRefreshToken"] == simulator.refresh_token
    assert "ZohoCRM.bulk.READ" in pairs["Scope"].split(",")


def test_serve_forever_prints_url_and_connection() -> None:
    lines: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("connection: "):
            ready.set()

    thread = threading.Thread(
        target=lambda: serve_forever(port=0, records=20, echo=echo, stop=stop)
    )
    thread.start()
    try:
        assert ready.wait(30)
        url = lines[0].rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:")
        assert f"AccountsServer={url};" in lines[1]
        assert requests.get(url + "/_sim/credits").status_code == 200
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
