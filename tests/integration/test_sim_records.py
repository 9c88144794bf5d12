"""Records API list reads: fields, paging by page and page_token, caps, sorting, 204/304, writes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from connector.simulator import Simulator
from connector.simulator.clock import FakeClock


def _ids(resp: Any) -> list[str]:
    return [r["id"] for r in resp.json()["data"]]


def test_list_defaults_and_info(client: Any) -> None:
    resp = client.get(
        "/crm/v8/Leads", params={"fields": "Last_Name,Owner,Modified_Time", "converted": "both"}
    )
    assert resp.status_code == 200
    body = resp.json()
    info = body["info"]
    assert info["per_page"] == 200 and info["count"] == 200 and info["page"] == 1
    assert info["sort_by"] == "id" and info["sort_order"] == "desc"
    assert info["more_records"] is False and info["next_page_token"] is None
    assert {"call", "email", "previous_page_token", "page_token_expiry"} <= set(info)
    ids = [r["id"] for r in body["data"]]
    assert ids == sorted(ids, reverse=True)
    row = body["data"][0]
    assert set(row) >= {"id", "Last_Name", "Owner", "Modified_Time"}
    assert row["Modified_Time"].endswith("+05:30")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "REQUIRED_PARAM_MISSING"),
        ({"fields": ",".join(f"F{i}" for i in range(51))}, "LIMIT_EXCEEDED"),
        ({"fields": "No_Such_Field"}, "INVALID_DATA"),
        ({"fields": "Last_Name", "per_page": "201"}, "INVALID_DATA"),
        ({"fields": "Last_Name", "sort_by": "Last_Name"}, "INVALID_DATA"),
        ({"fields": "Last_Name", "page": "11"}, "DISCRETE_PAGINATION_LIMIT_EXCEEDED"),
        ({"fields": "Last_Name", "page": "1", "page_token": "abc"}, "AMBIGUITY_DURING_PROCESSING"),
        ({"fields": "Last_Name", "page_token": "abc"}, "INVALID_DATA"),
    ],
)
def test_list_errors(client: Any, params: dict[str, str], code: str) -> None:
    resp = client.get("/crm/v8/Leads", params=params)
    assert resp.status_code == 400
    assert resp.json()["code"] == code


def test_discrete_limit_body_is_zohos(client: Any) -> None:
    resp = client.get(
        "/crm/v8/Leads", params={"fields": "Last_Name", "page": "11", "per_page": "200"}
    )
    assert resp.json() == {
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error",
    }


def test_unknown_and_api_unsupported_modules(client: Any) -> None:
    assert client.get("/crm/v8/Nope", params={"fields": "id"}).json()["code"] == "INVALID_MODULE"
    visits = client.get("/crm/v8/Visits", params={"fields": "Name"})
    assert visits.status_code == 400 and visits.json()["code"] == "NOT_SUPPORTED"


def test_notes_are_listed_through_records_api(client: Any) -> None:
    resp = client.get("/crm/v8/Notes", params={"fields": "Note_Title,Parent_Id"})
    assert resp.status_code == 200 and resp.json()["data"]


def test_page_then_page_token_past_2000(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    sim = make_simulator(records=2300)
    client = make_client(sim)
    # By id, the one order without ties: sorted by Modified_Time alone, ties may come in another
    # order on each page (tests/integration/test_ties.py).
    base = {
        "fields": "Last_Name",
        "sort_by": "id",
        "sort_order": "asc",
        "per_page": "200",
        "converted": "both",
    }
    seen: list[str] = []
    token = None
    for page in range(1, 11):
        body = client.get("/crm/v8/Leads", params={**base, "page": str(page)}).json()
        assert body["info"]["page"] == page and body["info"]["more_records"] is True
        seen += [r["id"] for r in body["data"]]
        token = body["info"]["next_page_token"]
    assert token
    while token:
        resp = client.get("/crm/v8/Leads", params={**base, "page_token": token})
        assert resp.status_code == 200
        body = resp.json()
        seen += [r["id"] for r in body["data"]]
        token = body["info"]["next_page_token"]
        assert (token is None) == (not body["info"]["more_records"])
    assert len(seen) == 2300 == len(set(seen))
    assert set(seen) == set(sim.org.module("Leads").select(["id"]).column("id").to_pylist())


def test_sort_orders(client: Any) -> None:
    asc = client.get(
        "/crm/v8/Leads",
        params={"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"},
    )
    times = [datetime.fromisoformat(r["Modified_Time"]) for r in asc.json()["data"]]
    assert times == sorted(times)
    ids = _ids(
        client.get(
            "/crm/v8/Leads", params={"fields": "Last_Name", "sort_by": "id", "sort_order": "asc"}
        )
    )
    assert ids == sorted(ids)


def test_page_token_is_bound_to_its_query(client: Any) -> None:
    first = client.get("/crm/v8/Leads", params={"fields": "Last_Name", "per_page": "50"}).json()
    token = first["info"]["next_page_token"]
    assert token and first["info"]["page_token_expiry"]
    other = client.get(
        "/crm/v8/Leads", params={"fields": "Last_Name,Email", "per_page": "50", "page_token": token}
    )
    assert other.status_code == 400 and other.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    same = client.get(
        "/crm/v8/Leads", params={"fields": "Last_Name", "per_page": "50", "page_token": token}
    )
    assert same.status_code == 200
    assert not set(_ids(same)) & {r["id"] for r in first["data"]}


def test_page_token_expires(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock, token_lifetime=10**6)
    client = make_client(sim)
    params = {"fields": "Last_Name", "per_page": "50"}
    token = client.get("/crm/v8/Leads", params=params).json()["info"]["next_page_token"]
    clock.advance(24 * 3600 + 1)
    resp = client.get("/crm/v8/Leads", params={**params, "page_token": token})
    assert resp.status_code == 400 and resp.json()["code"] == "EXPIRED_VALUE"


def test_hundred_thousand_cap(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    sim = make_simulator(records=100_300)
    client = make_client(sim)
    params = {
        "fields": "id",
        "per_page": "200",
        "sort_by": "id",
        "sort_order": "asc",
        "converted": "both",  # every lead: the cap counts the rows of the query
    }
    body = client.get("/crm/v8/Leads", params=params).json()
    token = body["info"]["next_page_token"]
    # Walk a few real token pages, then jump the token to the cap (500 calls would be slow).
    for _ in range(3):
        body = client.get("/crm/v8/Leads", params={**params, "page_token": token}).json()
        token = body["info"]["next_page_token"]
    assert body["info"]["page"] == 4
    state = sim.app.page_tokens[token]
    ids = sim.org.module("Leads").select(["id"], offset=99_799, limit=1).column("id").to_pylist()
    state.served, state.last_id = 99_800, ids[0]
    body = client.get("/crm/v8/Leads", params={**params, "page_token": token}).json()
    assert body["info"]["count"] == 200 and body["info"]["more_records"] is True
    assert body["info"]["page"] == 500
    token = body["info"]["next_page_token"]
    resp = client.get("/crm/v8/Leads", params={**params, "page_token": token})
    assert resp.status_code == 400 and resp.json()["code"] == "PAGINATION_LIMIT_EXCEEDED"


def test_if_modified_since_inclusive_and_304(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    clock = FakeClock(datetime(2026, 8, 1, tzinfo=timezone.utc))
    sim = make_simulator(clock=clock)
    client = make_client(sim)
    params = {"fields": "Last_Name,Modified_Time"}
    future = "2026-09-01T00:00:00+05:30"
    resp = client.get("/crm/v8/Leads", params=params, headers={"If-Modified-Since": future})
    assert resp.status_code == 304 and resp.content == b""
    store = sim.org.module("Leads")
    some_id = store.select(["id"], limit=1).column("id")[0].as_py()
    store.update(some_id, {"Last_Name": "Changed"})
    stamp = clock.now().replace(microsecond=0)
    local = stamp.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    resp = client.get("/crm/v8/Leads", params=params, headers={"If-Modified-Since": local})
    assert resp.status_code == 200
    assert _ids(resp) == [some_id]  # inclusive: the record modified at that very second
    rfc = stamp.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert _ids(client.get("/crm/v8/Leads", params=params, headers={"If-Modified-Since": rfc})) == [
        some_id
    ]


def test_empty_module_is_204(client: Any, simulator: Simulator) -> None:
    store = simulator.org.module("Contacts_X_Deals")
    for record_id in store.select(["id"]).column("id").to_pylist():
        store.delete(record_id)
    resp = client.get("/crm/v8/Contacts_X_Deals", params={"fields": "Contact"})
    assert resp.status_code == 204 and resp.content == b""


def test_insert_update_delete_over_http(client: Any, simulator: Simulator) -> None:
    created = client.post(
        "/crm/v8/Leads", json={"data": [{"Last_Name": 'Zed, "Q"', "Company": "Acme"}]}
    )
    assert created.status_code == 201
    result = created.json()["data"][0]
    assert result["code"] == "SUCCESS" and result["status"] == "success"
    assert result["message"] == "record added"
    new_id = result["details"]["id"]
    assert result["details"]["Modified_Time"].endswith("+05:30")
    assert simulator.org.module("Leads").get(new_id)["Last_Name"] == 'Zed, "Q"'
    updated = client.request(
        "PUT", "/crm/v8/Leads", json={"data": [{"id": new_id, "Company": "Beta"}]}
    )
    assert updated.status_code == 200 and updated.json()["data"][0]["message"] == "record updated"
    assert simulator.org.module("Leads").get(new_id)["Company"] == "Beta"
    deleted = client.request("DELETE", "/crm/v8/Leads", params={"ids": new_id})
    assert deleted.status_code == 200 and deleted.json()["data"][0]["details"]["id"] == new_id
    assert simulator.org.module("Leads").get(new_id) is None
    bad = client.request("PUT", "/crm/v8/Leads", json={"data": [{"id": "1", "Company": "x"}]})
    assert bad.status_code == 400 and bad.json()["data"][0]["code"] == "INVALID_DATA"


# --- records a default call does not return; whole rich text ----------------------------------


def test_converted_leads_only_when_asked(client: Any, simulator: Simulator) -> None:
    from connector.simulator.query import Comparison

    leads = simulator.org.module("Leads")
    converted = set(
        leads.select(["id"], where=Comparison("Converted__s", "=", "true")).column("id").to_pylist()
    )
    base = {"fields": "Last_Name,Converted__s", "per_page": "200"}
    default = set(_ids(client.get("/crm/v8/Leads", params=base)))
    only = set(_ids(client.get("/crm/v8/Leads", params={**base, "converted": "true"})))
    both = set(_ids(client.get("/crm/v8/Leads", params={**base, "converted": "both"})))
    assert converted and only == converted and not default & converted
    assert both == default | converted and len(both) == leads.count()
    bad = client.get("/crm/v8/Leads", params={**base, "converted": "yes"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_DATA"
    some = sorted(converted)[:3]
    by_id = client.get("/crm/v8/Leads", params={**base, "ids": ",".join(some)})
    assert by_id.status_code == 204  # converted leads are hidden by id too
    asked = {**base, "ids": ",".join(some), "converted": "both"}
    assert sorted(_ids(client.get("/crm/v8/Leads", params=asked))) == some


def test_fetch_full_data_serves_whole_rich_text(client: Any, simulator: Simulator) -> None:
    accounts = simulator.org.module("Accounts")
    rows = accounts.select(["id", "Account_Plan"]).to_pylist()
    long_rows = [r for r in rows if len(r["Account_Plan"] or "") > 500][:3]
    assert long_rows
    ids = ",".join(r["id"] for r in long_rows)
    listed = client.get("/crm/v8/Accounts", params={"fields": "Account_Plan", "ids": ids})
    assert all(len(r["Account_Plan"]) == 500 for r in listed.json()["data"])
    full = client.get(
        "/crm/v8/Accounts/actions/fetch_full_data", params={"ids": ids, "fields": "Account_Plan"}
    )
    assert full.status_code == 200
    got = {r["id"]: r["Account_Plan"] for r in full.json()["data"]}
    assert got == {r["id"]: r["Account_Plan"] for r in long_rows}
    assert simulator.requests[-1].credits == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"fields": "Account_Plan"}, "REQUIRED_PARAM_MISSING"),
        ({"ids": "1"}, "REQUIRED_PARAM_MISSING"),
        ({"ids": "1", "fields": "Account_Name"}, "INVALID_DATA"),
        ({"ids": ",".join(str(i) for i in range(201)), "fields": "Account_Plan"}, "LIMIT_EXCEEDED"),
    ],
)
def test_fetch_full_data_errors(client: Any, params: dict[str, str], code: str) -> None:
    resp = client.get("/crm/v8/Accounts/actions/fetch_full_data", params=params)
    assert resp.status_code == 400 and resp.json()["code"] == code


def test_fields_outside_layouts_only_with_type_all(client: Any) -> None:
    def names(**params: str) -> list[str]:
        resp = client.get("/crm/v8/settings/fields", params={"module": "Contacts", **params})
        return [f["api_name"] for f in resp.json()["fields"]]

    default, every, unused = names(), names(type="all"), names(type="unused")
    assert "Legacy_Region" not in default and unused == ["Legacy_Region"]
    assert every == [
        *default[: every.index("Legacy_Region")],
        "Legacy_Region",
        *default[every.index("Legacy_Region") :],
    ]
    bad = client.get("/crm/v8/settings/fields", params={"module": "Contacts", "type": "x"})
    assert bad.status_code == 400
