"""The simulated accounts server: refresh grant, errors, throttle, live-token cap, codes, revoke."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from connector.simulator import Simulator
from connector.simulator.clock import FakeClock


def _refresh(sim: Simulator, **overrides: str) -> tuple[int, dict[str, Any]]:
    params = {
        "grant_type": "refresh_token",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "refresh_token": sim.refresh_token,
        **overrides,
    }
    resp = requests.post(sim.url + "/oauth/v2/token", data=params)
    return resp.status_code, resp.json()


def _org(sim: Simulator, token: str) -> requests.Response:
    return requests.get(
        sim.url + "/crm/v8/org", headers={"Authorization": f"Zoho-oauthtoken {token}"}
    )


def test_refresh_grant_returns_a_working_token(simulator: Simulator) -> None:
    status, body = _refresh(simulator)
    assert status == 200
    assert body["access_token"].startswith("1000.")
    assert body["api_domain"] == simulator.url
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "ZohoCRM.modules.ALL" in body["scope"].split(" ")
    assert _org(simulator, body["access_token"]).status_code == 200


def test_refresh_params_in_query_string_work_too(simulator: Simulator) -> None:
    params = {
        "grant_type": "refresh_token",
        "client_id": simulator.client_id,
        "client_secret": simulator.client_secret,
        "refresh_token": simulator.refresh_token,
    }
    body = requests.post(simulator.url + "/oauth/v2/token", params=params).json()
    assert "access_token" in body
    logged = simulator.requests[-1].query
    assert logged["client_secret"] == "***" and logged["refresh_token"] == "***"
    assert logged["client_id"] == simulator.client_id


def test_wrong_secret_and_unknown_client_are_invalid_client(simulator: Simulator) -> None:
    # Kaizen #43: the token endpoint keeps HTTP 200 and reports the error in the body.
    assert _refresh(simulator, client_secret="nope") == (200, {"error": "invalid_client"})
    assert _refresh(simulator, client_id="1000.unknown") == (200, {"error": "invalid_client"})


def test_unknown_or_revoked_refresh_token_is_invalid_code(simulator: Simulator) -> None:
    assert _refresh(simulator, refresh_token="1000.bogus.bogus")[1] == {"error": "invalid_code"}
    other = simulator.issue_refresh_token(["ZohoCRM.modules.READ"])
    _status, body = _refresh(simulator, refresh_token=other)
    assert "access_token" in body
    simulator.revoke(other)
    assert _refresh(simulator, refresh_token=other)[1] == {"error": "invalid_code"}
    # Revoking kills the access tokens too.
    assert _org(simulator, body["access_token"]).json()["code"] == "INVALID_TOKEN"


def test_revoke_endpoint(simulator: Simulator) -> None:
    other = simulator.issue_refresh_token(["ZohoCRM.org.READ"])
    token = _refresh(simulator, refresh_token=other)[1]["access_token"]
    resp = requests.post(simulator.url + "/oauth/v2/token/revoke", params={"token": other})
    assert resp.status_code == 200
    assert _org(simulator, token).status_code == 401
    assert _refresh(simulator, refresh_token=other)[1] == {"error": "invalid_code"}


def test_throttle_after_ten_tokens_in_ten_minutes(make_simulator: Callable[..., Simulator]) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock)
    for _ in range(10):
        assert "access_token" in _refresh(sim)[1]
    status, body = _refresh(sim)
    assert status == 200
    assert body == {
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "error": "Access Denied",
        "status": "failure",
    }
    clock.advance(601)
    assert "access_token" in _refresh(sim)[1]


def test_throttle_counts_refused_asks(make_simulator: Callable[..., Simulator]) -> None:
    """Asking again within the window keeps the throttle on; it clears 10 minutes after the last."""
    clock = FakeClock()
    sim = make_simulator(clock=clock, oauth_throttle_status=400)
    for _ in range(10):
        assert "access_token" in _refresh(sim)[1]
    clock.advance(300)
    status, body = _refresh(sim)  # refused, and counted
    assert status == 400 and body["error"] == "Access Denied"
    clock.advance(301)  # the ten tokens have left the window, the refused ask has not
    assert "access_token" not in _refresh(sim)[1]
    clock.advance(601)
    assert "access_token" in _refresh(sim)[1]


def test_sixteenth_token_invalidates_the_oldest(make_simulator: Callable[..., Simulator]) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock)
    tokens = []
    for i in range(16):
        if i == 10:
            clock.advance(601)  # stay under the 10-per-10-minutes throttle
        tokens.append(_refresh(sim)[1]["access_token"])
    first = _org(sim, tokens[0])
    assert first.status_code == 401
    assert first.json()["code"] == "INVALID_OAUTHTOKEN"
    assert all(_org(sim, t).status_code == 200 for t in tokens[1:])


def test_access_token_expires_by_the_clock(make_simulator: Callable[..., Simulator]) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock, token_lifetime=5)
    body = _refresh(sim)[1]
    assert body["expires_in"] == 5
    assert _org(sim, body["access_token"]).status_code == 200
    clock.advance(5)
    expired = _org(sim, body["access_token"])
    assert expired.status_code == 401
    assert expired.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


def test_authorization_code_flow(make_simulator: Callable[..., Simulator]) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock)
    redirect = "http://127.0.0.1:9/callback"
    auth = requests.get(
        sim.url + "/oauth/v2/auth",
        params={
            "response_type": "code",
            "client_id": sim.client_id,
            "scope": "ZohoCRM.modules.ALL,ZohoCRM.org.READ",
            "redirect_uri": redirect,
            "access_type": "offline",
        },
        allow_redirects=False,
    )
    assert auth.status_code == 302
    location = urlsplit(auth.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    query = parse_qs(location.query)
    assert query["location"] == ["us"]
    assert query["accounts-server"] == [sim.url]
    code = query["code"][0]
    grant = {
        "grant_type": "authorization_code",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "redirect_uri": redirect,
        "code": code,
    }
    body = requests.post(sim.url + "/oauth/v2/token", data=grant).json()
    assert body["refresh_token"] and body["access_token"]
    assert _org(sim, body["access_token"]).status_code == 200
    # Codes are single-use.
    assert requests.post(sim.url + "/oauth/v2/token", data=grant).json() == {
        "error": "invalid_code"
    }
    # The refresh token works for the refresh grant.
    assert "access_token" in _refresh(sim, refresh_token=body["refresh_token"])[1]


def test_authorization_code_expires_after_three_minutes(
    make_simulator: Callable[..., Simulator],
) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock)
    auth = requests.get(
        sim.url + "/oauth/v2/auth",
        params={
            "response_type": "code",
            "client_id": sim.client_id,
            "scope": "ZohoCRM.org.READ",
            "redirect_uri": "http://127.0.0.1:9/cb",
        },
        allow_redirects=False,
    )
    code = parse_qs(urlsplit(auth.headers["Location"]).query)["code"][0]
    clock.advance(181)
    body = requests.post(
        sim.url + "/oauth/v2/token",
        data={
            "grant_type": "authorization_code",
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "redirect_uri": "http://127.0.0.1:9/cb",
            "code": code,
        },
    ).json()
    assert body == {"error": "invalid_code"}


def test_authorization_page_refuses_unknown_client(simulator: Simulator) -> None:
    resp = requests.get(
        simulator.url + "/oauth/v2/auth",
        params={
            "response_type": "code",
            "client_id": "1000.nobody",
            "scope": "ZohoCRM.org.READ",
            "redirect_uri": "http://127.0.0.1:9/cb",
        },
        allow_redirects=False,
    )
    assert resp.status_code == 400
