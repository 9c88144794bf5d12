"""COQL over HTTP: happy path, paging by LIMIT/OFFSET, count(id), 204, and each error code."""

from __future__ import annotations

from typing import Any

import pytest

from connector.simulator import Simulator
from connector.simulator.query import Comparison


def _coql(client: Any, query: str) -> Any:
    return client.post("/crm/v8/coql", json={"select_query": query})


def test_happy_path(client: Any, simulator: Simulator) -> None:
    resp = _coql(
        client,
        "select Last_Name, Owner, Modified_Time from Leads where Last_Name is not null order by id asc limit 50",
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["info"] == {"count": 50, "more_records": True}
    ids = [r["id"] for r in body["data"]]
    expected = simulator.org.module("Leads").select(["id"], limit=200).column("id").to_pylist()
    assert ids == sorted(ids) and set(ids) <= set(expected)
    owner = body["data"][0]["Owner"]
    assert set(owner) >= {"id", "name"}


# Naming Converted__s includes converted leads, which COQL leaves out by default (assumed).
EVERY_LEAD = "(Converted__s = true or Converted__s = false)"


def test_default_limit_and_offset(client: Any) -> None:
    everything = _coql(client, f"select Last_Name from Leads where {EVERY_LEAD}").json()
    assert everything["info"] == {"count": 200, "more_records": False}
    page = _coql(client, f"select Last_Name from Leads where {EVERY_LEAD} limit 20 offset 190")
    page = page.json()
    assert page["info"] == {"count": 10, "more_records": False}
    assert [r["id"] for r in page["data"]] == [r["id"] for r in everything["data"]][190:]


def test_where_with_groups(client: Any, simulator: Simulator) -> None:
    store = simulator.org.module("Leads")
    times = sorted(store.select(["Modified_Time"]).column("Modified_Time").to_pylist())
    cut = times[100].strftime("%Y-%m-%dT%H:%M:%S+00:00")
    query = (
        f"select id from Leads where (((Modified_Time >= '{cut}') and "
        f"(Last_Name is not null or Last_Name is null)) and {EVERY_LEAD}) limit 2000"
    )
    body = _coql(client, query).json()
    assert body["info"]["count"] == sum(1 for t in times if t >= times[100])


def test_count(client: Any, simulator: Simulator) -> None:
    resp = _coql(client, f"select COUNT(id) from Leads where {EVERY_LEAD}")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert list(data[0].values()) == [200]
    # Without naming Converted__s, converted leads are left out.
    hidden = _coql(client, "select COUNT(id) from Leads").json()["data"]
    converted = simulator.org.module("Leads").count(Comparison("Converted__s", "=", "true"))
    assert converted > 0 and list(hidden[0].values()) == [200 - converted]


def test_empty_is_204(client: Any) -> None:
    resp = _coql(client, "select Last_Name from Leads where Last_Name = 'no such name at all'")
    assert resp.status_code == 204 and resp.content == b""


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("select from Leads", "SYNTAX_ERROR"),
        ("select Last_Name Leads where", "SYNTAX_ERROR"),
        ("select Nope from Leads", "INVALID_QUERY"),
        ("select Last_Name from Nowhere", "INVALID_QUERY"),
        ("select Last_Name from Leads where Last_Name > 5", "INVALID_QUERY"),
        ("select Last_Name from Leads limit 2001", "LIMIT_EXCEEDED"),
        ("select Last_Name from Leads limit 2000 offset 99000", "LIMIT_EXCEEDED"),
        ("select Last_Name from Leads order by id, id", "DUPLICATE_DATA"),
    ],
)
def test_errors(client: Any, simulator: Simulator, query: str, code: str) -> None:
    resp = _coql(client, query)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == code and body["status"] == "error"
    assert simulator.credits.total == 0


def test_missing_select_query(client: Any) -> None:
    resp = client.post("/crm/v8/coql", json={})
    assert resp.status_code == 400 and resp.json()["code"] == "REQUIRED_PARAM_MISSING"
