"""Auth checks on /crm calls, and the metadata endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from connector.simulator import Simulator


def test_missing_or_garbled_header_is_authentication_failure(simulator: Simulator) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Zoho-oauthtoken "}):
        resp = requests.get(simulator.url + "/crm/v8/org", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["code"] == "AUTHENTICATION_FAILURE"
        assert resp.json()["status"] == "error"


def test_unknown_token_is_invalid_token(simulator: Simulator) -> None:
    resp = requests.get(
        simulator.url + "/crm/v8/org", headers={"Authorization": "Zoho-oauthtoken 1000.x.y"}
    )
    assert resp.status_code == 401
    assert resp.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


@pytest.mark.parametrize(
    ("scopes", "path", "allowed"),
    [
        (["ZohoCRM.modules.Leads.READ"], "/crm/v8/Leads?fields=Last_Name", True),
        (["ZohoCRM.modules.leads.READ"], "/crm/v8/Leads?fields=Last_Name", True),
        (["ZohoCRM.modules.Contacts.READ"], "/crm/v8/Leads?fields=Last_Name", False),
        (["ZohoCRM.modules.READ"], "/crm/v8/Leads?fields=Last_Name", True),
        (["ZohoCRM.settings.fields.READ"], "/crm/v8/settings/fields?module=Leads", True),
        (["ZohoCRM.settings.ALL"], "/crm/v8/settings/modules", True),
        (["ZohoCRM.settings.fields.READ"], "/crm/v8/settings/modules", False),
        (["ZohoCRM.modules.ALL"], "/crm/v8/org", False),
        (["ZohoCRM.users.READ"], "/crm/v8/users", True),
    ],
)
def test_scope_checks(
    simulator: Simulator,
    make_client: Callable[..., Any],
    scopes: list[str],
    path: str,
    allowed: bool,
) -> None:
    client = make_client(simulator, simulator.issue_refresh_token(scopes))
    resp = client.get(path)
    if allowed:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 401
        assert resp.json()["code"] == "OAUTH_SCOPE_MISMATCH"


def test_coql_and_bulk_need_their_scopes(
    simulator: Simulator, make_client: Callable[..., Any]
) -> None:
    client = make_client(simulator, simulator.issue_refresh_token(["ZohoCRM.modules.ALL"]))
    coql = client.post("/crm/v8/coql", json={"select_query": "select Last_Name from Leads limit 5"})
    assert coql.status_code == 401 and coql.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    bulk = client.post("/crm/bulk/v8/read", json={"query": {"module": {"api_name": "Leads"}}})
    assert bulk.status_code == 401 and bulk.json()["code"] == "OAUTH_SCOPE_MISMATCH"


def test_unknown_path_is_invalid_url_pattern(client: Any) -> None:
    resp = client.get("/crm/v8/settings/nothing")
    assert resp.status_code == 404
    assert resp.json()["code"] == "INVALID_URL_PATTERN"


def test_org(client: Any) -> None:
    resp = client.get("/crm/v8/org")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    org = resp.json()["org"][0]
    assert org["type"] == "production"
    assert org["time_zone"] == "Asia/Kolkata"
    assert not any(k.startswith("sim") for k in org)


def test_users_paging(client: Any) -> None:
    resp = client.get("/crm/v8/users", params={"type": "AllUsers", "per_page": 2, "page": 1})
    body = resp.json()
    assert len(body["users"]) == 2
    assert body["info"] == {"per_page": 2, "count": 2, "page": 1, "more_records": True}
    assert {"id", "full_name", "email", "status"} <= set(body["users"][0])
    too_many = client.get("/crm/v8/users", params={"per_page": 201})
    assert too_many.status_code == 400


def test_modules(client: Any) -> None:
    modules = client.get("/crm/v8/settings/modules").json()["modules"]
    by_name = {m["api_name"]: m for m in modules}
    assert {"Leads", "Contacts", "Accounts", "Deals", "Notes"} <= set(by_name)
    assert by_name["Leads"]["api_supported"] is True
    assert by_name["Visits"]["api_supported"] is False
    assert all("sim" not in m and "fields" not in m for m in modules)


def test_fields(client: Any) -> None:
    fields = client.get("/crm/v8/settings/fields", params={"module": "Leads"}).json()["fields"]
    names = {f["api_name"]: f for f in fields}
    assert names["Owner"]["data_type"] == "ownerlookup"
    assert "Modified_Time" in names
    assert all("sim" not in f for f in fields)


def test_fields_errors(client: Any) -> None:
    missing = client.get("/crm/v8/settings/fields")
    assert missing.status_code == 400 and missing.json()["code"] == "REQUIRED_PARAM_MISSING"
    unknown = client.get("/crm/v8/settings/fields", params={"module": "Nope"})
    assert unknown.status_code == 400
    assert unknown.json() == {
        "code": "INVALID_MODULE",
        "details": {"resource_path_index": 0},
        "message": "the module name given seems to be invalid",
        "status": "error",
    }
