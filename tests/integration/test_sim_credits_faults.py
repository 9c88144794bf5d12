"""Credits per call against Zoho's price table, the daily budget, and each injected fault."""

from __future__ import annotations

import io
import threading
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connector.simulator import Simulator
from connector.simulator.faults import FaultConfig


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "kind", "credits"),
    [
        ("GET", "/crm/v8/org", {}, "metadata", 1),
        ("GET", "/crm/v8/settings/modules", {}, "metadata", 1),
        ("GET", "/crm/v8/settings/fields", {"params": {"module": "Leads"}}, "metadata", 1),
        ("GET", "/crm/v8/users", {}, "metadata", 1),
        ("GET", "/crm/v8/Leads", {"params": {"fields": "Last_Name"}}, "records", 1),
        (
            "GET",
            "/crm/v8/Leads",
            {"params": {"fields": "Last_Name", "cvid": "1"}},
            "records_cvid",
            3,
        ),
        ("GET", "/crm/v8/Leads/deleted", {}, "deleted", 2),
        (
            "POST",
            "/crm/v8/coql",
            {"json": {"select_query": "select Last_Name from Leads limit 200"}},
            "coql",
            1,
        ),
        (
            "POST",
            "/crm/v8/coql",
            {"json": {"select_query": "select Last_Name from Leads limit 201"}},
            "coql",
            2,
        ),
        (
            "POST",
            "/crm/v8/coql",
            {"json": {"select_query": "select Last_Name from Leads limit 1001"}},
            "coql",
            3,
        ),
        (
            "POST",
            "/crm/bulk/v8/read",
            {"json": {"query": {"module": {"api_name": "Leads"}}}},
            "bulk_create",
            50,
        ),
        (
            "POST",
            "/crm/v8/Leads",
            {"json": {"data": [{"Last_Name": f"n{i}"} for i in range(11)]}},
            "write",
            2,
        ),
    ],
)
def test_price_table(
    simulator: Simulator,
    client: Any,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    kind: str,
    credits: int,
) -> None:
    if path.endswith("/deleted"):
        store = simulator.org.module("Leads")
        store.delete(store.select(["id"], limit=1).column("id")[0].as_py())
    resp = client.request(method, path, **kwargs)
    assert resp.status_code < 300, resp.text
    assert simulator.credits.total == credits
    assert simulator.credits.by_kind == {kind: credits}
    last = simulator.requests[-1]
    assert (last.kind, last.credits, last.status) == (kind, credits, resp.status_code)


def test_bulk_status_and_download_cost_one(simulator: Simulator, client: Any) -> None:
    job_id = client.post(
        "/crm/bulk/v8/read", json={"query": {"module": {"api_name": "Tasks"}}}
    ).json()["data"][0]["details"]["id"]
    for _ in range(2):
        job = client.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
    assert client.get(job["result"]["download_url"]).status_code == 200
    assert simulator.credits.by_kind == {"bulk_create": 50, "bulk_status": 2, "bulk_download": 1}


def test_refused_calls_cost_nothing(simulator: Simulator, client: Any) -> None:
    assert client.get("/crm/v8/Leads").status_code == 400
    assert client.get("/crm/v8/settings/fields", params={"module": "Nope"}).status_code == 400
    assert requests.get(simulator.url + "/crm/v8/org").status_code == 401
    assert simulator.credits.total == 0
    assert [r.credits for r in simulator.requests if r.path.startswith("/crm")] == [0, 0, 0]


def test_daily_limit(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    sim = make_simulator(daily_credits=4)
    client = make_client(sim)
    first = client.get("/crm/v8/org")
    assert "X-API-CREDITS-REMAINING" not in first.headers
    second = client.get("/crm/v8/org")
    assert second.headers["X-API-CREDITS-REMAINING"] == "2"  # half the budget used
    deleted = client.get("/crm/v8/Leads/deleted")
    assert deleted.status_code in (200, 204)
    refused = client.get("/crm/v8/org")
    assert refused.status_code == 429
    assert refused.headers["X-API-CREDITS-REMAINING"] == "0"
    assert refused.json() == {
        "code": "LIMIT_REACHED",
        "details": {},
        "message": "API limit exceeded for the day",
        "status": "error",
    }
    assert sim.credits.total == 4


def test_daily_limit_rolls_over(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    from connector.simulator.clock import FakeClock

    clock = FakeClock()
    sim = make_simulator(daily_credits=1, clock=clock, token_lifetime=10**6)
    client = make_client(sim)
    assert client.get("/crm/v8/org").status_code == 200
    assert client.get("/crm/v8/org").status_code == 429
    clock.advance(24 * 3600 + 1)
    assert client.get("/crm/v8/org").status_code == 200


def test_rate_faults_are_seeded(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    outcomes = []
    for _ in range(2):
        sim = make_simulator(faults=FaultConfig(seed=3, rate_429=0.3, rate_5xx=0.3))
        client = make_client(sim)
        outcomes.append([client.get("/crm/v8/org").status_code for _ in range(40)])
    assert outcomes[0] == outcomes[1]
    assert {200, 429} <= set(outcomes[0]) and ({500, 503} & set(outcomes[0]))
    assert sim.credits.total == outcomes[1].count(200)


def test_fault_bodies(simulator: Simulator, client: Any) -> None:
    token = client.token
    simulator.faults.rate_429 = 1.0
    resp = client.get("/crm/v8/org")
    assert resp.status_code == 429 and resp.json()["code"] == "TOO_MANY_REQUESTS"
    assert "X-API-CREDITS-REMAINING" not in resp.headers
    # Faults never touch the accounts server or test control.
    assert client.new_token() != token
    assert requests.get(simulator.url + "/_sim/credits").status_code == 200
    simulator.faults.rate_429 = 0.0
    simulator.faults.rate_5xx = 1.0
    assert client.get("/crm/v8/org").status_code in (500, 503)


def test_429_wording_is_ambiguous_and_retry_after_opt_in(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    sim = make_simulator(faults=FaultConfig(rate_429=1.0))
    resp = make_client(sim).get("/crm/v8/org")
    assert resp.status_code == 429
    # A concurrency-style fault, worded as Zoho may word it: it speaks of credits.
    assert resp.json() == {
        "code": "TOO_MANY_REQUESTS",
        "details": {},
        "message": "You have exceeded the maximum number of API credits or concurrent requests.",
        "status": "error",
    }
    assert "Retry-After" not in resp.headers
    other = make_simulator(
        faults=FaultConfig(rate_429=1.0), throttle_message="Too many requests", retry_after=7
    )
    resp = make_client(other).get("/crm/v8/org")
    assert resp.json()["message"] == "Too many requests"
    assert resp.headers["Retry-After"] == "7"


def test_concurrency_cap(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    entered, release = threading.Event(), threading.Event()

    def blocking_sleep(seconds: float) -> None:
        entered.set()
        release.wait(10)

    sim = make_simulator(faults=FaultConfig(concurrency_cap=1), sleep=blocking_sleep)
    client = make_client(sim)
    token = client.token
    sim.faults.latency_ms = 50
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(client.get("/crm/v8/org").status_code))
    worker.start()
    assert entered.wait(10)
    sim.faults.latency_ms = 0
    other = requests.get(
        sim.url + "/crm/v8/org", headers={"Authorization": f"Zoho-oauthtoken {token}"}
    )
    release.set()
    worker.join(10)
    assert other.status_code == 429 and other.json()["code"] == "TOO_MANY_REQUESTS"
    assert results == [200]


def test_latency_uses_the_injected_sleep(
    make_simulator: Callable[..., Simulator], make_client: Callable[..., Any]
) -> None:
    slept: list[float] = []
    sim = make_simulator(faults=FaultConfig(latency_ms=250), sleep=slept.append)
    client = make_client(sim)
    assert client.get("/crm/v8/org").status_code == 200
    assert slept == [0.25, 0.25]  # the token call and the API call


def test_short_lived_tokens_fault(simulator: Simulator, client: Any) -> None:
    simulator.faults.token_lifetime = 3
    assert client.new_token()
    assert (
        client.http.post(
            simulator.url + "/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": simulator.client_id,
                "client_secret": simulator.client_secret,
                "refresh_token": simulator.refresh_token,
            },
        ).json()["expires_in"]
        == 3
    )


def test_expired_page_token_fault(simulator: Simulator, client: Any) -> None:
    params = {"fields": "Last_Name", "per_page": "50"}
    token = client.get("/crm/v8/Leads", params=params).json()["info"]["next_page_token"]
    simulator.faults.expire_page_token_next = True
    resp = client.get("/crm/v8/Leads", params={**params, "page_token": token})
    assert resp.status_code == 400 and resp.json()["code"] == "EXPIRED_VALUE"
    assert client.get("/crm/v8/Leads", params={**params, "page_token": token}).status_code == 200


def _completed_job(client: Any) -> str:
    job_id = client.post(
        "/crm/bulk/v8/read", json={"query": {"module": {"api_name": "Leads"}}}
    ).json()["data"][0]["details"]["id"]
    for _ in range(2):
        job = client.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
    assert job["state"] == "COMPLETED"
    return str(job["result"]["download_url"])


def test_truncated_download(simulator: Simulator, client: Any) -> None:
    url = _completed_job(client)
    simulator.faults.truncate_download_next = 1
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client.get(url)
    full = client.get(url)
    assert zipfile.ZipFile(io.BytesIO(full.content)).testzip() is None


def test_corrupt_download(simulator: Simulator, client: Any) -> None:
    url = _completed_job(client)
    simulator.faults.corrupt_download_next = 1
    resp = client.get(url)
    assert resp.status_code == 200
    with (
        pytest.raises((zipfile.BadZipFile, zlib.error)),
        zipfile.ZipFile(io.BytesIO(resp.content)) as zf,
    ):
        for name in zf.namelist():
            zf.read(name)
