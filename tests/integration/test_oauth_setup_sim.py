"""The authorization-code flow end to end against the simulator's accounts server."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from typer.testing import CliRunner, Result

from connector.cli import app
from connector.config import load_settings, parse_connection_string
from connector.errors import AuthError
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.endpoints import resolve_endpoints
from connector.zoho.oauth_setup import (
    RedirectParams,
    authorization_url,
    connection_string_for,
    exchange_code,
    parse_redirect,
)
from connector.zoho.scopes import READ_SCOPES

REDIRECT = "https://localhost/callback"


def consent(sim: Simulator, *, redirect_uri: str = REDIRECT) -> str:
    """Open the authorization URL as a browser would, without following the redirect."""
    url = authorization_url(sim.client_id, "US", accounts_server=sim.url, redirect_uri=redirect_uri)
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    return location


def test_url_consent_exchange_then_refresh_and_call_the_api(simulator: Simulator) -> None:
    redirect = parse_redirect(consent(simulator))
    assert redirect.accounts_server == simulator.url
    assert redirect.location == "us"

    result = exchange_code(
        redirect.code,
        simulator.client_id,
        simulator.client_secret,
        "US",
        accounts_server=redirect.accounts_server,
    )
    assert result.accounts_server == simulator.url
    assert result.api_domain == simulator.url
    assert set(result.scopes) == set(READ_SCOPES)

    line = connection_string_for(
        result,
        client_id=simulator.client_id,
        client_secret=simulator.client_secret,
        region="US",
        include_secrets=True,
    )
    values, warnings = parse_connection_string(line)
    assert warnings == []
    assert values["AccountsServer"] == simulator.url
    assert values["APIDomain"] == simulator.url

    # The printed refresh token mints an access token that the API accepts.
    token = requests.post(
        simulator.url + "/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": values["OAuthClientId"],
            "client_secret": values["OAuthClientSecret"],
            "refresh_token": values["OAuthRefreshToken"],
        },
        timeout=10,
    ).json()
    assert "access_token" in token, token
    org = requests.get(
        simulator.url + "/crm/v8/org",
        headers={"Authorization": f"Zoho-oauthtoken {token['access_token']}"},
        timeout=10,
    )
    assert org.status_code == 200
    assert org.json()["org"]

    # And the connector itself loads it and points at the simulator.
    settings = load_settings(line, None, {}).settings
    assert settings.refresh_token is not None
    assert settings.refresh_token.get_secret_value() == result.refresh_token
    assert resolve_endpoints(settings).accounts_url == simulator.url


def test_whole_redirect_address_can_be_pasted_as_the_code(simulator: Simulator) -> None:
    location = consent(simulator)
    result = exchange_code(location, simulator.client_id, simulator.client_secret, "EU")
    assert result.accounts_server == simulator.url
    assert result.refresh_token


def test_a_code_works_once(simulator: Simulator) -> None:
    code = parse_redirect(consent(simulator)).code
    exchange_code(
        code, simulator.client_id, simulator.client_secret, "US", accounts_server=simulator.url
    )
    with pytest.raises(AuthError, match="codes live 3 minutes"):
        exchange_code(
            code, simulator.client_id, simulator.client_secret, "US", accounts_server=simulator.url
        )


def test_a_code_expires_after_three_minutes(make_simulator: Callable[..., Simulator]) -> None:
    clock = FakeClock()
    sim = make_simulator(clock=clock.now)
    code = parse_redirect(consent(sim)).code
    clock.advance(181)
    with pytest.raises(AuthError, match="expired or was already used"):
        exchange_code(code, sim.client_id, sim.client_secret, "US", accounts_server=sim.url)


def test_wrong_secret_and_wrong_redirect_uri(simulator: Simulator) -> None:
    code = parse_redirect(consent(simulator)).code
    with pytest.raises(AuthError, match="rejected the client id/secret") as info:
        exchange_code(
            code, simulator.client_id, "wrong-secret-value", "US", accounts_server=simulator.url
        )
    assert "wrong-secret-value" not in str(info.value)
    with pytest.raises(AuthError, match="redirect URI does not match"):
        exchange_code(
            code,
            simulator.client_id,
            simulator.client_secret,
            "US",
            redirect_uri="https://localhost/other",
            accounts_server=simulator.url,
        )


def _consent(runner: CliRunner, simulator: Simulator) -> RedirectParams:
    """`zoho-crm auth url`, then the browser's consent: the redirect Zoho sends back."""
    shown = runner.invoke(
        app, ["auth", "url", "--client-id", simulator.client_id, "--accounts-server", simulator.url]
    )
    assert shown.exit_code == 0, shown.output
    url = shown.output.strip().splitlines()[-1]
    assert parse_qs(urlsplit(url).query)["access_type"] == ["offline"]
    location = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    return parse_redirect(location)


def _exchange(
    runner: CliRunner, simulator: Simulator, code: str, accounts_server: str, *extra: str
) -> Result:
    """`zoho-crm auth exchange` with the simulator's client credentials."""
    return runner.invoke(
        app,
        [
            "auth",
            "exchange",
            "--code",
            code,
            "--client-id",
            simulator.client_id,
            "--client-secret",
            simulator.client_secret,
            "--accounts-server",
            accounts_server,
            *extra,
        ],
    )


def test_cli_auth_url_and_exchange(simulator: Simulator) -> None:
    runner = CliRunner()
    redirect = _consent(runner, simulator)

    hidden = _exchange(runner, simulator, redirect.code, str(redirect.accounts_server))
    assert hidden.exit_code == 0, hidden.output
    assert "OAuthRefreshToken=<OAuthRefreshToken>;" in hidden.output
    assert simulator.client_secret not in hidden.output
    assert "--show-secrets" in hidden.output

    again = _exchange(runner, simulator, redirect.code, simulator.url)
    assert again.exit_code == 3
    assert "codes live 3 minutes" in again.output


def test_cli_auth_exchange_writes_the_full_string_to_an_owner_only_file(
    simulator: Simulator, tmp_path: Path
) -> None:
    runner = CliRunner()
    redirect = _consent(runner, simulator)
    target = tmp_path / "connection.txt"
    result = _exchange(
        runner, simulator, redirect.code, str(redirect.accounts_server), "--write", str(target)
    )
    assert result.exit_code == 0, result.output
    assert simulator.client_secret not in result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    written = target.read_text(encoding="utf-8")
    assert f"OAuthClientSecret={simulator.client_secret};" in written
    refresh = re.search(r"OAuthRefreshToken=([^;]+);", written)
    assert refresh is not None and not refresh.group(1).startswith("<")
    # The written string works: it loads and refreshes a token against the simulator.
    settings = load_settings(connection=written.strip(), environ={}).settings
    assert settings.refresh_token is not None
