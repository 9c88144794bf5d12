"""The SDK's OAuth flows against the simulated accounts server: refresh, code grant, revoke,
throttle, and the API's answers to expired, revoked and under-scoped tokens."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.coql import APIException as CoqlAPIException
from zohocrmsdk.src.com.zoho.crm.api.coql import BodyWrapper, CoqlOperations
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.org import APIException as OrgAPIException
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations
from zohocrmsdk.src.com.zoho.crm.api.org import ResponseWrapper as OrgWrapper

from connector.simulator.clock import FakeClock

if TYPE_CHECKING:
    from conftest import SdkSession

TOKEN_PATH = "/oauth/v2/token"


def _org(session: SdkSession) -> object:
    response = OrgOperations().get_organization()
    assert response is not None, session.problems()
    return response.get_object()


def test_initialize_refreshes_and_identifies_the_user(sdk: SdkSession) -> None:
    """Initialising refreshes once (form body, grant_type=refresh_token), then the SDK names the
    token owner from ``users?type=CurrentUser`` and ``org`` (``email:zgid``) and stores it."""
    sim = sdk.sim
    calls = [(r.method, r.path, r.query) for r in sim.requests]
    assert calls[0] == ("POST", TOKEN_PATH, {})
    assert calls[1] == ("GET", "/crm/v8/users", {"type": "CurrentUser"})
    assert calls[2] == ("GET", "/crm/v8/org", {})
    token = sdk.token
    assert token.get_access_token().startswith("1000.")
    assert token.get_api_domain() == sim.url
    # expires_in is read as seconds (no expires_in_sec): about an hour from now, in ms.
    remaining_ms = int(token.get_expires_in()) - int(time.time() * 1000)
    assert 3_500_000 < remaining_ms <= 3_600_000
    first_user = sim.org.users[0]
    zgid = sim.org.info["zgid"]
    assert token.get_user_signature().get_name() == f"{first_user.email}:{zgid}"
    with open(sdk.store_path, newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    assert rows[1][1] == f"{first_user.email}:{zgid}"
    assert rows[1][5] == token.get_access_token()
    sdk.assert_clean()


def test_short_lived_tokens_are_refreshed_before_each_call(
    make_sdk: Callable[..., SdkSession],
) -> None:
    """The SDK refreshes when under 5 s of life remain; a 4-second token is refreshed before every
    call, and each refreshed token is accepted by the API."""
    session = make_sdk(records=20, token_lifetime=4)
    minted = session.sim.oauth.access_tokens
    before = len(minted)
    for _ in range(3):
        assert isinstance(_org(session), OrgWrapper)
    assert len(minted) == before + 3
    calls = [r.path for r in session.sim.requests][-6:]
    assert calls == [TOKEN_PATH, "/crm/v8/org"] * 3
    assert all(r.status == 200 for r in session.sim.requests)
    # The SDK keeps the newest token in its store (the FileStore's access_token column).
    with open(session.store_path, newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    newest = list(minted)[-1]
    assert rows[1][5] == newest
    session.assert_clean()


def test_throttle_body_is_an_sdk_error(make_sdk: Callable[..., SdkSession]) -> None:
    """The 11th token in ten minutes gets Zoho's throttle body (HTTP 200, no access_token); the
    SDK decides by the body and raises with the ``error`` text."""
    session = make_sdk(records=20)
    url = session.environment.accounts_url
    token = session.token
    for _ in range(9):  # initialisation already minted one
        token.refresh_access_token(token, url)
    with pytest.raises(SDKException) as info:
        token.refresh_access_token(token, url)
    assert "Access Denied" in str(info.value)
    assert session.paths().count(TOKEN_PATH) == 11


def test_expired_token_gets_invalid_token(make_sdk: Callable[..., SdkSession]) -> None:
    """An access token past its hour on the server's clock: 401 INVALID_TOKEN, which the SDK
    parses into its APIException with the code and message."""
    clock = FakeClock()
    session = make_sdk(records=20, clock=clock)
    clock.advance(3601)
    response = OrgOperations().get_organization()
    assert response is not None and response.get_status_code() == 401
    error = response.get_object()
    assert isinstance(error, OrgAPIException)
    assert error.get_code().get_value() == "INVALID_TOKEN"
    assert error.get_status().get_value() == "error"
    assert session.plain(error.get_message()) == "invalid oauth token"


def test_revoke_then_refresh_fails(make_sdk: Callable[..., SdkSession]) -> None:
    """The SDK's revoke posts ``token=`` to ``<token url>/revoke`` and wants
    ``{"status":"success"}``; afterwards the old access token is dead and a refresh with the
    revoked token gets ``invalid_code``."""
    session = make_sdk(records=20)
    # OAuthToken.revoke(id) looks the token up by id through find_token, which never matches an
    # id-only token in the SDK's FileStore; the HTTP half of it is this static method.
    revoke_url = session.environment.accounts_url + "/revoke"
    assert OAuthToken.revoke_refresh_token(session.sim.refresh_token, revoke_url) is True
    assert session.sim.requests[-1].path == TOKEN_PATH + "/revoke"
    response = OrgOperations().get_organization()
    assert response is not None and response.get_status_code() == 401
    assert response.get_object().get_code().get_value() == "INVALID_TOKEN"
    fresh = session.new_token()
    with pytest.raises(SDKException) as info:
        fresh.refresh_access_token(fresh, session.environment.accounts_url)
    assert "invalid_code" in str(info.value)


def test_authorization_code_grant(make_sdk: Callable[..., SdkSession]) -> None:
    """A grant token (from the simulator's consent redirect) exchanged by the SDK: the response
    carries a refresh token (access_type=offline) that the SDK keeps and can refresh with."""
    session = make_sdk(records=20)
    sim = session.sim
    redirect = "http://127.0.0.1/callback"
    consent = requests.get(
        sim.url + "/oauth/v2/auth",
        params={
            "client_id": sim.client_id,
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": ",".join(sim.scopes),
            "access_type": "offline",
        },
        allow_redirects=False,
    )
    assert consent.status_code == 302
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    granted = OAuthToken(
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        grant_token=code,
        redirect_url=redirect,
    )
    Initializer.switch_user(token=granted)
    refresh_token = granted.get_refresh_token()
    assert refresh_token and refresh_token != sim.refresh_token
    assert isinstance(_org(session), OrgWrapper)
    # The code is single-use; the refresh token it produced works on its own.
    url = session.environment.accounts_url
    again = OAuthToken(
        client_id=sim.client_id, client_secret=sim.client_secret, refresh_token=refresh_token
    )
    again.refresh_access_token(again, url)
    assert again.get_access_token() not in (None, granted.get_access_token())
    session.assert_clean()


def test_scope_mismatch_is_an_api_exception(make_sdk: Callable[..., SdkSession]) -> None:
    """A refresh token without ZohoCRM.coql.READ: COQL answers 401 OAUTH_SCOPE_MISMATCH, parsed
    by the SDK's COQL APIException."""
    session = make_sdk(records=20)
    narrow = session.sim.issue_refresh_token(
        ["ZohoCRM.modules.ALL", "ZohoCRM.users.READ", "ZohoCRM.org.READ"]
    )
    Initializer.switch_user(token=session.new_token(refresh_token=narrow))
    body = BodyWrapper()
    body.set_select_query("select Last_Name from Leads limit 5")
    response = CoqlOperations().get_records(body)
    assert response is not None and response.get_status_code() == 401
    error = response.get_object()
    assert isinstance(error, CoqlAPIException)
    assert error.get_code().get_value() == "OAUTH_SCOPE_MISMATCH"
    # The SDK keeps only the detail keys its COQL spec lists; the raw body has the scope.
    assert response.get_response_json()["details"]["required_scope"] == "ZohoCRM.coql.READ"
    # The same token still reads what it was granted.
    assert isinstance(_org(session), OrgWrapper)
