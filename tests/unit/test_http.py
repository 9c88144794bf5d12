"""ZohoClient: headers, retries with injected sleep, error mapping, credits, downloads."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from typing import Any

import pytest
import requests
from support.fakehttp import broken_stream, fake_session, path_of, response, token_ok

from connector.config import APIType, InitiateOAuth, Region, Settings, Tuning
from connector.errors import (
    AuthError,
    BudgetExceeded,
    CreditsExhausted,
    DataError,
    FatalAPIError,
    ModuleUnavailable,
    RetriableAPIError,
)
from connector.zoho.auth import TokenManager
from connector.zoho.endpoints import resolve_endpoints
from connector.zoho.http import (
    ApiRequest,
    CreditMeter,
    ZohoClient,
    call_cost,
    coql_query_credits,
)

ACCESS = "1000.access-token-for-tests.abc"
TUNING = Tuning(
    retry_initial_wait=0.01, retry_max_wait=0.08, max_attempts=4, rate_limit_initial_wait=0.01
)


def off_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "region": Region.US,
        "initiate_oauth": InitiateOAuth.OFF,
        "access_token": ACCESS,
        "tuning": TUNING,
    }
    values.update(overrides)
    return Settings(**values)


def client_for(
    script: list[Any] | None = None,
    *,
    handler: Any = None,
    settings: Settings | None = None,
    meter: CreditMeter | None = None,
) -> tuple[ZohoClient, Any, list[float]]:
    session, adapter = fake_session(script, handler)
    waits: list[float] = []
    client = ZohoClient(
        settings or off_settings(), session=session, meter=meter, sleep=waits.append
    )
    return client, adapter, waits


def zoho_error(
    status: int, code: str, message: str = "msg", details: Any = None, **headers: str
) -> requests.Response:
    body = {"code": code, "details": details or {}, "message": message, "status": "error"}
    return response(status, body, headers=headers)


# -- requests as sent ---------------------------------------------------------------------------


def test_get_json_url_headers_and_timeouts() -> None:
    client, adapter, _ = client_for([response(200, {"modules": []})])
    assert client.get_json("settings/modules", params={"status": "visible"}) == {"modules": []}
    (req,) = adapter.requests
    assert req.url == "https://www.zohoapis.com/crm/v8/settings/modules?status=visible"
    assert req.headers["Authorization"] == f"Zoho-oauthtoken {ACCESS}"
    assert req.headers["Accept"] == "application/json"


def test_post_json_sets_content_type() -> None:
    client, adapter, _ = client_for([response(201, {"data": [{"status": "success"}]})])
    body = {"query": {"module": {"api_name": "Leads"}}, "file_type": "csv"}
    assert client.post_json("/crm/bulk/v8/read", body) == {"data": [{"status": "success"}]}
    (req,) = adapter.requests
    assert req.url == "https://www.zohoapis.com/crm/bulk/v8/read"
    assert req.headers["Content-Type"] == "application/json"
    assert json.loads(req.body or b"") == body


def test_url_building() -> None:
    client, _, _ = client_for(
        [], settings=off_settings(api_domain="http://127.0.0.1:9", api_version="v7")
    )
    assert client.url("Leads/deleted") == "http://127.0.0.1:9/crm/v7/Leads/deleted"
    assert (
        client.url("/crm/bulk/v7/read/1/result") == "http://127.0.0.1:9/crm/bulk/v7/read/1/result"
    )
    assert client.url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"
    assert client.url("https://www.zohoapis.eu/crm/x") == "https://www.zohoapis.eu/crm/x"
    for bad in ("https://evil.example/steal", "https://www.zohoapis.com.evil.example/x"):
        with pytest.raises(FatalAPIError, match="refusing to send the access token"):
            client.url(bad)


@pytest.mark.parametrize("status", [204, 304])
def test_empty_statuses_are_none(status: int) -> None:
    client, _, _ = client_for([response(status)])
    assert client.get_json("Leads", params={"fields": "id"}) is None
    assert client.meter.total == 1


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (response(200, body="<html>proxy error</html>"), "not JSON"),
        (response(200, body=""), "not JSON"),
        (response(200, [1, 2]), "JSON list, not an object"),
    ],
)
def test_malformed_success_body(reply: requests.Response, needle: str) -> None:
    client, adapter, _ = client_for([reply])
    with pytest.raises(DataError, match=needle):
        client.get_json("org")
    assert len(adapter.requests) == 1


# -- retries ------------------------------------------------------------------------------------


def test_retry_after_is_honoured() -> None:
    client, adapter, waits = client_for(
        [
            zoho_error(429, "TOO_MANY_REQUESTS", "too many concurrent", **{"Retry-After": "5"}),
            response(200, {"org": []}),
        ]
    )
    assert client.get_json("org") == {"org": []}
    assert waits == [5.0]
    assert len(adapter.requests) == 2


@pytest.mark.parametrize(
    "first",
    [
        zoho_error(500, "INTERNAL_ERROR"),
        zoho_error(503, "SERVICE_UNAVAILABLE"),
        zoho_error(429, "TOO_MANY_REQUESTS", "concurrency limit"),
        requests.ConnectionError("reset"),
        requests.Timeout("slow"),
    ],
)
def test_transient_failures_are_retried(first: Any) -> None:
    client, _, waits = client_for([first, response(200, {"ok": True})])
    assert client.get_json("org") == {"ok": True}
    assert len(waits) == 1
    assert 0.01 <= waits[0] <= 0.08
    assert client.meter.total == 1  # the refused call is not billed


def test_attempts_are_bounded_and_backoff_grows() -> None:
    client, adapter, waits = client_for([zoho_error(500, "INTERNAL_ERROR")] * 10)
    with pytest.raises(RetriableAPIError) as info:
        client.get_json("org")
    assert info.value.status == 500
    assert len(adapter.requests) == 4
    assert len(waits) == 3
    assert all(w <= 0.08 for w in waits)
    assert waits[2] >= 0.04  # 0.01 * 2**2


def test_retry_is_logged_without_token(caplog: pytest.LogCaptureFixture) -> None:
    client, _, _ = client_for([zoho_error(429, "TOO_MANY_REQUESTS", "busy"), response(200, {})])
    with caplog.at_level(logging.INFO, logger="connector.zoho.http"):
        client.get_json("Leads", params={"fields": "id", "secret_param": "x"})
    assert "HTTP 429 TOO_MANY_REQUESTS" in caplog.text
    assert ACCESS not in caplog.text
    assert "secret_param" not in caplog.text


# -- error mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "needle"),
    [
        (zoho_error(400, "INVALID_MODULE"), ModuleUnavailable, "INVALID_MODULE"),
        (zoho_error(400, "MODULE_NOT_SUPPORTED"), ModuleUnavailable, "MODULE_NOT_SUPPORTED"),
        (zoho_error(400, "FEATURE_NOT_SUPPORTED"), ModuleUnavailable, "FEATURE_NOT_SUPPORTED"),
        (zoho_error(403, "NO_PERMISSION"), ModuleUnavailable, "NO_PERMISSION"),
        (zoho_error(403, "NOT_SUPPORTED"), ModuleUnavailable, "NOT_SUPPORTED"),
        (
            zoho_error(400, "INVALID_DATA", "invalid data", {"api_name": "Email"}),
            FatalAPIError,
            '"api_name": "Email"',
        ),
        (zoho_error(404, "INVALID_URL_PATTERN"), FatalAPIError, "HTTP 404"),
        (zoho_error(415, "MEDIA_TYPE_NOT_SUPPORTED"), FatalAPIError, "415"),
        (response(400, body="plain text"), FatalAPIError, "plain text"),
        (zoho_error(401, "AUTHENTICATION_FAILURE"), AuthError, "AUTHENTICATION_FAILURE"),
        (zoho_error(401, "OAUTH_SCOPE_MISMATCH"), AuthError, r"ZohoCRM\.modules\.Leads\.READ"),
        (zoho_error(403, "OAUTH_SCOPE_MISMATCH"), AuthError, "ZohoCRM.modules"),
        (
            zoho_error(429, "LIMIT_REACHED", "API limit exceeded for the day"),
            CreditsExhausted,
            "credits",
        ),
        (
            zoho_error(429, "TOO_MANY_REQUESTS", "x", **{"X-API-CREDITS-REMAINING": "0"}),
            CreditsExhausted,
            "429",
        ),
    ],
)
def test_error_mapping(reply: requests.Response, error: type[Exception], needle: str) -> None:
    client, adapter, waits = client_for([reply])
    with pytest.raises(error, match=needle) as info:
        client.get_json("Leads", params={"fields": "id"})
    assert type(info.value) is error
    assert len(adapter.requests) == 1  # not retried
    assert waits == []
    assert ACCESS not in str(info.value)


def test_fatal_error_keeps_status_code_url_details() -> None:
    client, _, _ = client_for([zoho_error(400, "INVALID_DATA", "bad", {"api_name": "Email"})])
    with pytest.raises(FatalAPIError) as info:
        client.get_json("Leads", params={"fields": "id"})
    assert info.value.status == 400
    assert info.value.code == "INVALID_DATA"
    assert info.value.url == "https://www.zohoapis.com/crm/v8/Leads"
    assert info.value.details == {"api_name": "Email"}


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/crm/bulk/v8/read", "ZohoCRM.bulk.READ"),
        ("coql", "ZohoCRM.coql.READ"),
        ("settings/fields", "ZohoCRM.settings.fields.READ"),
    ],
)
def test_scope_mismatch_names_scope(path: str, scope: str) -> None:
    client, _, _ = client_for([zoho_error(401, "OAUTH_SCOPE_MISMATCH")])
    with pytest.raises(AuthError, match=scope.replace(".", r"\.")):
        client.post_json(path, {"select_query": "select id from Leads"})


def test_credits_exhausted_with_simulator_body() -> None:
    reply = response(
        429,
        {
            "code": "LIMIT_REACHED",
            "details": {},
            "message": "API limit exceeded for the day",
            "status": "error",
        },
        headers={"X-API-CREDITS-REMAINING": "0"},
    )
    client, _, waits = client_for([reply])
    with pytest.raises(CreditsExhausted) as info:
        client.get_json("org")
    assert info.value.exit_code == 4
    assert waits == []


# -- 401 and tokens -------------------------------------------------------------------------------


def refresh_settings(tmp_path: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "region": Region.US,
        "client_id": "1000.CLIENT",
        "client_secret": "client-secret-abcdef",
        "refresh_token": "1000.refresh.zzzzzz",
        "token_cache_path": tmp_path / "tokens.json",
        "tuning": Tuning(retry_initial_wait=0.01, retry_max_wait=0.08, max_attempts=1),
    }
    values.update(overrides)
    return Settings(**values)


def test_401_invalid_token_refreshes_once_then_succeeds(tmp_path: Any) -> None:
    tokens = iter(["1000.first.aaa", "1000.second.bbb"])
    api_calls: list[str] = []

    def handler(req: requests.PreparedRequest) -> requests.Response:
        if path_of(req) == "/oauth/v2/token":
            return token_ok(next(tokens))
        api_calls.append(req.headers["Authorization"])
        if req.headers["Authorization"].endswith("first.aaa"):
            return zoho_error(401, "INVALID_TOKEN", "invalid oauth token")
        return response(200, {"org": [{"id": "1"}]})

    client, _, waits = client_for(handler=handler, settings=refresh_settings(tmp_path))
    assert client.get_json("org") == {"org": [{"id": "1"}]}
    assert api_calls == ["Zoho-oauthtoken 1000.first.aaa", "Zoho-oauthtoken 1000.second.bbb"]
    assert waits == []  # max_attempts=1 yet it worked: the token retry is not an attempt
    assert client.meter.token_refreshes == 2
    assert client.meter.total == 1


@pytest.mark.parametrize("code", ["INVALID_TOKEN", "INVALID_OAUTHTOKEN"])
def test_second_401_is_auth_error(tmp_path: Any, code: str) -> None:
    def handler(req: requests.PreparedRequest) -> requests.Response:
        if path_of(req) == "/oauth/v2/token":
            return token_ok()
        return zoho_error(401, code)

    client, adapter, _ = client_for(handler=handler, settings=refresh_settings(tmp_path))
    with pytest.raises(AuthError, match="freshly obtained"):
        client.get_json("org")
    assert len(adapter.requests) == 4  # refresh, call, refresh, call


def test_token_expiring_twice_within_one_calls_retries_is_refreshed_each_time(
    tmp_path: Any,
) -> None:
    """A 401 after a 429 retry is a new expiry, not a refused fresh token."""
    tokens = iter(["1000.t1.aaa", "1000.t2.bbb", "1000.t3.ccc"])
    script = iter(
        [
            zoho_error(401, "INVALID_TOKEN"),  # t1 expired
            zoho_error(429, "TOO_MANY_REQUESTS"),  # t2 works, but Zoho is busy
            zoho_error(401, "INVALID_TOKEN"),  # t2 expired during the wait
            response(200, {"org": [{"id": "1"}]}),  # t3
        ]
    )

    def handler(req: requests.PreparedRequest) -> requests.Response:
        if path_of(req) == "/oauth/v2/token":
            return token_ok(next(tokens))
        return next(script)

    settings = refresh_settings(
        tmp_path, tuning=Tuning(retry_initial_wait=0.01, retry_max_wait=0.08, max_attempts=3)
    )
    client, _, waits = client_for(handler=handler, settings=settings)
    assert client.get_json("org") == {"org": [{"id": "1"}]}
    assert len(waits) == 1
    assert client.meter.token_refreshes == 3


def test_401_in_off_mode() -> None:
    client, adapter, _ = client_for([zoho_error(401, "INVALID_TOKEN")])
    with pytest.raises(AuthError, match="supply a new OAuthAccessToken"):
        client.get_json("org")
    assert len(adapter.requests) == 1


def test_shared_token_manager() -> None:
    settings = off_settings()
    session, _ = fake_session([response(200, {})])
    tokens = TokenManager(settings, resolve_endpoints(settings), session)
    client = ZohoClient(settings, session=session, tokens=tokens)
    assert client.tokens is tokens
    assert client.get_json("org") == {}


# -- credits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "expected"),
    [
        ("GET", "settings/modules", None, None, ("metadata", 1)),
        ("GET", "settings/fields", {"module": "Leads"}, None, ("metadata", 1)),
        ("GET", "users", {"type": "AllUsers"}, None, ("metadata", 1)),
        ("GET", "org", None, None, ("metadata", 1)),
        ("GET", "/crm/v8/org", None, None, ("metadata", 1)),
        ("GET", "Leads", {"fields": "id"}, None, ("records", 1)),
        ("GET", "Leads", {"fields": "id", "cvid": "123"}, None, ("records", 3)),
        ("GET", "Leads/deleted", {"type": "all"}, None, ("deleted", 2)),
        ("GET", "/crm/v8/Leads/deleted", None, None, ("deleted", 2)),
        ("POST", "coql", None, {"select_query": "select id from Leads"}, ("coql", 1)),
        ("POST", "coql", None, {"select_query": "select id from Leads LIMIT 200"}, ("coql", 1)),
        ("POST", "coql", None, {"select_query": "select id from Leads limit 201"}, ("coql", 2)),
        ("POST", "coql", None, {"select_query": "select id from Leads limit 1000"}, ("coql", 2)),
        ("POST", "coql", None, {"select_query": "select id from Leads limit 2000"}, ("coql", 3)),
        (
            "POST",
            "coql",
            None,
            {"select_query": "select id from Leads limit 4000, 2000"},
            ("coql", 3),
        ),
        (
            "POST",
            "coql",
            None,
            {"select_query": "select id from Leads limit 2000, 100"},
            ("coql", 1),
        ),
        ("POST", "/crm/bulk/v8/read", None, {"query": {}}, ("bulk_create", 50)),
        ("GET", "/crm/bulk/v8/read/5725767000000859031", None, None, ("bulk_status", 1)),
        ("GET", "/crm/bulk/v8/read/5725767000000859031/result", None, None, ("bulk_download", 1)),
        ("POST", "Leads", None, {"data": [{}] * 10}, ("write", 1)),
        ("POST", "Leads", None, {"data": [{}] * 11}, ("write", 2)),
        ("PUT", "Leads", None, {"data": [{}] * 100}, ("write", 10)),
        ("DELETE", "Leads", {"ids": "1,2,3"}, None, ("write", 1)),
        ("GET", "Leads/123", None, None, ("records", 1)),
    ],
)
def test_call_cost(
    method: str, path: str, params: Any, body: Any, expected: tuple[str, int]
) -> None:
    assert call_cost(method, path, params, body) == expected


def test_coql_query_credits_default_limit() -> None:
    assert coql_query_credits("SELECT Last_Name FROM Contacts WHERE id > '1'") == 1


def test_meter_totals_by_kind() -> None:
    client, _, _ = client_for(
        [
            response(200, {}),
            response(201, {}),
            zoho_error(429, "TOO_MANY_REQUESTS", "busy"),
            response(200, {}),
        ]
    )
    client.get_json("org")
    client.post_json("/crm/bulk/v8/read", {"query": {}})
    client.post_json("coql", {"select_query": "select id from Leads limit 2000"})
    assert client.meter.total == 1 + 50 + 3
    assert client.meter.calls == 3
    assert client.meter.by_kind == {"metadata": 1, "bulk_create": 50, "coql": 3}
    assert client.meter.snapshot()["total"] == 54


def test_budget_stops_before_the_call() -> None:
    meter = CreditMeter(budget=60)
    client, adapter, _ = client_for([response(201, {}), response(201, {})], meter=meter)
    client.post_json("/crm/bulk/v8/read", {"query": {}})
    with pytest.raises(BudgetExceeded) as info:
        client.post_json("/crm/bulk/v8/read", {"query": {}})
    assert "budget is 60" in str(info.value) and "50 are spent" in str(info.value)
    assert len(adapter.requests) == 1
    assert meter.total == 50
    meter.reserve(10)  # exactly at the budget is allowed
    with pytest.raises(BudgetExceeded):
        meter.reserve(1)
    meter.release(10)
    meter.reserve(10)


# -- download -------------------------------------------------------------------------------------


def test_download_streams_into_dest() -> None:
    payload = b"PK\x03\x04" + b"x" * (3 * 1024 * 1024)
    client, adapter, _ = client_for([response(200, body=payload)])
    dest = io.BytesIO()
    assert client.download("/crm/bulk/v8/read/1/result", dest) == len(payload)
    assert dest.getvalue() == payload
    assert adapter.requests[0].headers["Authorization"] == f"Zoho-oauthtoken {ACCESS}"
    assert client.meter.by_kind == {"bulk_download": 1}


def test_download_retry_truncates_and_starts_over() -> None:
    client, adapter, waits = client_for(
        [broken_stream(chunks=[b"first-part-that-breaks"]), response(200, body=b"whole file")]
    )
    dest = io.BytesIO()
    assert client.download("/crm/bulk/v8/read/1/result", dest) == len(b"whole file")
    assert dest.getvalue() == b"whole file"
    assert len(adapter.requests) == 2
    assert len(waits) == 1


def test_download_error_mapping() -> None:
    client, _, _ = client_for([zoho_error(404, "RESOURCE_NOT_FOUND")])
    with pytest.raises(FatalAPIError, match="RESOURCE_NOT_FOUND"):
        client.download("/crm/bulk/v8/read/1/result", io.BytesIO())


def test_context_manager_closes_owned_session() -> None:
    settings = off_settings(api_type=APIType.REST)
    with ZohoClient(settings) as client:
        assert isinstance(client.session, requests.Session)
    closed: list[bool] = []
    session, _ = fake_session([])
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with ZohoClient(settings, session=session):
        pass
    assert closed == []  # a session passed in belongs to the caller


def test_credit_meter_tells_listeners_on_the_calling_thread() -> None:
    meter = CreditMeter()
    seen: list[tuple[str, int]] = []
    meter.add_listener(lambda kind, credits: seen.append((kind, credits)))
    meter.record("coql", 3)
    meter.record("metadata", 1)
    assert seen == [("coql", 3), ("metadata", 1)]
    assert meter.total == 4
    meter.remove_listener(meter._listeners[0])
    meter.record("coql", 1)
    assert len(seen) == 2


def test_api_request_is_priced_once_and_encodes_headers_and_body() -> None:
    query = {"select_query": "select id from Leads limit 2000"}
    request = ApiRequest("POST", "coql", json_body=query, headers={"X-Test": "1"})
    assert (request.kind, request.credits) == ("coql", 3)
    headers, data = request.encode(ACCESS)
    assert headers == {
        "Authorization": f"Zoho-oauthtoken {ACCESS}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "X-Test": "1",
    }
    assert data is not None and json.loads(data) == query
    page = ApiRequest("GET", "Leads", {"fields": "id", "cvid": "9"})
    assert (page.kind, page.credits) == ("records", 3)
    assert page.encode(ACCESS)[1] is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.credits = 1  # type: ignore[misc]
