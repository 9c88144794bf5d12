"""auth url / auth exchange: URL building, code exchange against a fake accounts server, output."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from connector.config import Region, parse_connection_string
from connector.errors import AuthError, ConfigError
from connector.zoho.oauth_setup import (
    DEFAULT_REDIRECT_URI,
    ExchangeResult,
    authorization_url,
    check_accounts_server,
    connection_string_for,
    exchange_code,
    parse_redirect,
    scopes_for,
)
from connector.zoho.scopes import READ_SCOPES

SECRET = "client-secret-0123456789abcdef"
REFRESH = "1000.refresh0123456789.abcdef0123456789"
ACCESS = "1000.access0123456789.abcdef0123456789"


class FakeAccounts(BaseAdapter):
    """Answers every request with a scripted (status, body) and records what was sent."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response._content = (
            self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        )
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


class Broken(BaseAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise requests.ConnectionError(f"cannot connect to {request.url}")

    def close(self) -> None:
        pass


def session_with(adapter: BaseAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def form(request: requests.PreparedRequest) -> dict[str, str]:
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {k: v[0] for k, v in parse_qs(text).items()}


SUCCESS = {
    "access_token": ACCESS,
    "refresh_token": REFRESH,
    "scope": "ZohoCRM.modules.READ ZohoCRM.org.READ",
    "api_domain": "https://www.zohoapis.eu",
    "token_type": "Bearer",
    "expires_in": 3600,
}


# --- authorization_url -----------------------------------------------------------------------


def test_authorization_url_has_every_parameter_zoho_needs() -> None:
    url = authorization_url("1000.CLIENT", "EU")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://accounts.zoho.eu/oauth/v2/auth"
    )
    assert query == {
        "scope": ",".join(READ_SCOPES),
        "client_id": "1000.CLIENT",
        "response_type": "code",
        "access_type": "offline",
        "prompt": "consent",
        "redirect_uri": DEFAULT_REDIRECT_URI,
    }


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("US", "accounts.zoho.com"),
        ("us", "accounts.zoho.com"),
        (Region.AU, "accounts.zoho.com.au"),
        ("CN", "accounts.zoho.com.cn"),
        ("CA", "accounts.zohocloud.ca"),
        ("SA", "accounts.zoho.sa"),
        ("UK", "accounts.zoho.uk"),
    ],
)
def test_authorization_url_goes_to_the_region_accounts_server(region: Any, host: str) -> None:
    assert urlsplit(authorization_url("id", region)).netloc == host


def test_authorization_url_custom_scopes_redirect_state_and_server() -> None:
    url = authorization_url(
        "id",
        "US",
        scopes=["ZohoCRM.modules.Leads.READ"],
        redirect_uri="https://example.org/cb?x=1",
        accounts_server="http://127.0.0.1:8765",
        state="s1",
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("http://127.0.0.1:8765/oauth/v2/auth?")
    assert query["scope"] == "ZohoCRM.modules.Leads.READ"
    assert query["redirect_uri"] == "https://example.org/cb?x=1"
    assert query["state"] == "s1"


def test_authorization_url_rejects_bad_region_and_empty_client() -> None:
    with pytest.raises(ConfigError, match="Region='Mars' is not valid"):
        authorization_url("id", "Mars")
    # The Loome guide's names work as well as the codes.
    assert authorization_url("id", "Europe").startswith("https://accounts.zoho.eu/")
    with pytest.raises(ConfigError, match="client id"):
        authorization_url("  ", "US")


def test_scopes_for_api_types() -> None:
    assert scopes_for("Bulk") == list(READ_SCOPES)
    assert "ZohoCRM.bulk.READ" not in scopes_for("REST")
    assert "ZohoCRM.coql.READ" in scopes_for("rest")
    with pytest.raises(ConfigError):
        scopes_for("SOAP")


# --- accounts server allow-list --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://accounts.zoho.eu", "https://accounts.zoho.eu"),
        ("https://accounts.zoho.eu/", "https://accounts.zoho.eu"),
        ("https://ACCOUNTS.ZOHO.COM:443", "https://accounts.zoho.com"),
        ("https://accounts.zoho.ca", "https://accounts.zoho.ca"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:9", "http://localhost:9"),
        ("http://[::1]:80", "http://[::1]:80"),
    ],
)
def test_known_and_loopback_accounts_servers_are_accepted(given: str, expected: str) -> None:
    assert check_accounts_server(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "http://accounts.zoho.eu",  # a code never travels in clear text to a real host
        "https://accounts.zoho.eu.evil.example",
        "https://evil.example",
        "https://accounts.zoho.com@evil.example",
        "https://accounts.zoho.com/oauth?x=1",
        "https://accounts.zoho.com:8443",
        "ftp://127.0.0.1",
        "http://10.0.0.1",
        "not a url",
        "",
    ],
)
def test_other_accounts_servers_are_refused(given: str) -> None:
    with pytest.raises(ConfigError, match="refusing"):
        check_accounts_server(given)


def test_exchange_never_contacts_a_refused_server() -> None:
    adapter = FakeAccounts(200, SUCCESS)
    with pytest.raises(ConfigError):
        exchange_code(
            "code",
            "id",
            SECRET,
            "US",
            accounts_server="https://evil.example",
            session=session_with(adapter),
        )
    assert adapter.sent == []


# --- exchange_code ---------------------------------------------------------------------------


def test_exchange_posts_the_grant_and_returns_tokens() -> None:
    adapter = FakeAccounts(200, SUCCESS)
    result = exchange_code(
        " the-code ",
        "1000.CLIENT",
        SECRET,
        "US",
        redirect_uri="https://example.org/cb",
        accounts_server="https://accounts.zoho.eu",
        session=session_with(adapter),
    )
    assert result == ExchangeResult(
        refresh_token=REFRESH,
        access_token=ACCESS,
        api_domain="https://www.zohoapis.eu",
        expires_in=3600,
        scopes=("ZohoCRM.modules.READ", "ZohoCRM.org.READ"),
        accounts_server="https://accounts.zoho.eu",
    )
    (request,) = adapter.sent
    assert request.method == "POST"
    assert request.url == "https://accounts.zoho.eu/oauth/v2/token"
    assert form(request) == {
        "grant_type": "authorization_code",
        "client_id": "1000.CLIENT",
        "client_secret": SECRET,
        "redirect_uri": "https://example.org/cb",
        "code": "the-code",
    }
    assert REFRESH not in repr(result)
    assert ACCESS not in repr(result)


def test_exchange_uses_the_region_server_by_default() -> None:
    adapter = FakeAccounts(200, SUCCESS)
    result = exchange_code("c", "id", SECRET, "IN", session=session_with(adapter))
    assert adapter.sent[0].url == "https://accounts.zoho.in/oauth/v2/token"
    assert result.accounts_server == "https://accounts.zoho.in"
    assert form(adapter.sent[0])["redirect_uri"] == DEFAULT_REDIRECT_URI


def test_exchange_accepts_the_whole_redirect_address() -> None:
    adapter = FakeAccounts(200, SUCCESS)
    redirect = (
        "https://localhost/callback?code=1000.abc.def&location=eu"
        "&accounts-server=https%3A%2F%2Faccounts.zoho.eu"
    )
    exchange_code(redirect, "id", SECRET, "US", session=session_with(adapter))
    assert adapter.sent[0].url == "https://accounts.zoho.eu/oauth/v2/token"
    assert form(adapter.sent[0])["code"] == "1000.abc.def"


def test_legacy_expiry_in_milliseconds() -> None:
    body = {**SUCCESS, "expires_in": 3_600_000, "expires_in_sec": 3600}
    result = exchange_code("c", "id", SECRET, "US", session=session_with(FakeAccounts(200, body)))
    assert result.expires_in == 3600


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            200,
            {"error": "invalid_code"},
            "the grant code expired or was already used: codes live 3 minutes; run `zoho-crm auth url` again",
        ),
        (400, {"error": "invalid_code"}, "codes live 3 minutes"),
        (
            200,
            {"error": "invalid_client"},
            "Zoho rejected the client id/secret at accounts.zoho.com",
        ),
        (200, {"error": "invalid_redirect_uri"}, "--redirect-uri"),
        (200, {"error": "Access Denied", "error_description": "too many"}, "throttling"),
        (
            200,
            {"error": "something_new"},
            "refused the code exchange at accounts.zoho.com: something_new",
        ),
        (502, b"<html>bad gateway</html>", "without a JSON object"),
        (200, ["not", "an", "object"], "without a JSON object"),
        (200, {"access_token": ACCESS}, "no refresh token"),
        (500, {}, "HTTP 500 without tokens"),
    ],
)
def test_exchange_errors_are_one_line_auth_errors(status: int, body: Any, expected: str) -> None:
    with pytest.raises(AuthError) as info:
        exchange_code(
            "c0de-value", "id", SECRET, "US", session=session_with(FakeAccounts(status, body))
        )
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert SECRET not in message
    assert ACCESS not in message
    assert "c0de-value" not in message


def test_unreachable_accounts_server_names_the_host() -> None:
    with pytest.raises(AuthError) as info:
        exchange_code("c", "id", SECRET, "JP", session=session_with(Broken()))
    assert "accounts.zoho.jp" in str(info.value)
    assert SECRET not in str(info.value)


def test_parse_redirect_reads_every_parameter() -> None:
    params = parse_redirect(
        "https://localhost/callback?state=s&code=1000.x.y&location=in"
        "&accounts-server=https%3A%2F%2Faccounts.zoho.in"
    )
    assert (params.code, params.accounts_server, params.location, params.state) == (
        "1000.x.y",
        "https://accounts.zoho.in",
        "in",
        "s",
    )
    assert "1000.x.y" not in repr(params)
    with pytest.raises(AuthError, match="access_denied"):
        parse_redirect("https://localhost/callback?error=access_denied")
    with pytest.raises(ConfigError, match="code="):
        parse_redirect("https://localhost/callback")


# --- connection_string_for -------------------------------------------------------------------


def result_for(accounts: str, api_domain: str | None) -> ExchangeResult:
    return ExchangeResult(
        refresh_token=REFRESH,
        access_token=ACCESS,
        api_domain=api_domain,
        expires_in=3600,
        scopes=("ZohoCRM.modules.READ", "ZohoCRM.org.READ"),
        accounts_server=accounts,
    )


def test_connection_string_with_secrets_parses_back() -> None:
    text = connection_string_for(
        result_for("https://accounts.zoho.com", "https://www.zohoapis.com"),
        client_id="1000.CLIENT",
        client_secret=SECRET,
        region="US",
        include_secrets=True,
    )
    values, warnings = parse_connection_string(text)
    assert warnings == []
    assert values == {
        "Region": "US",
        "InstanceType": "Production",
        "InitiateOAuth": "REFRESH",
        "OAuthClientId": "1000.CLIENT",
        "OAuthClientSecret": SECRET,
        "OAuthRefreshToken": REFRESH,
        "Scope": "ZohoCRM.modules.READ,ZohoCRM.org.READ",
    }


def test_connection_string_without_secrets_uses_placeholders_and_a_note() -> None:
    text = connection_string_for(
        result_for("https://accounts.zoho.com", "https://www.zohoapis.com"),
        client_id="1000.CLIENT",
        client_secret=SECRET,
        region="US",
        include_secrets=False,
    )
    line, note = text.split("\n")
    assert "OAuthClientSecret=<OAuthClientSecret>;" in line
    assert "OAuthRefreshToken=<OAuthRefreshToken>;" in line
    assert SECRET not in text
    assert REFRESH not in text
    assert ACCESS not in text
    assert "--show-secrets" in note


def test_connection_string_follows_the_data_centre_that_issued_the_token() -> None:
    text = connection_string_for(
        result_for("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        client_id="id",
        client_secret=SECRET,
        region="US",
        include_secrets=True,
    )
    values, _ = parse_connection_string(text)
    assert values["Region"] == "EU"
    assert "AccountsServer" not in values
    assert "APIDomain" not in values


def test_connection_string_keeps_non_default_hosts() -> None:
    text = connection_string_for(
        result_for("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        client_id="id",
        client_secret=SECRET,
        region="US",
        include_secrets=True,
    )
    values, _ = parse_connection_string(text)
    assert values["Region"] == "US"
    assert values["AccountsServer"] == "http://127.0.0.1:8765"
    assert values["APIDomain"] == "http://127.0.0.1:8765"


def test_connection_string_quotes_values_with_separators() -> None:
    text = connection_string_for(
        result_for("https://accounts.zoho.com", None),
        client_id="id",
        client_secret='a;b="c"',
        region="US",
        include_secrets=True,
    )
    values, _ = parse_connection_string(text)
    assert values["OAuthClientSecret"] == 'a;b="c"'


def test_pasted_redirect_naming_a_foreign_server_is_refused() -> None:
    adapter = FakeAccounts(200, SUCCESS)
    redirect = "https://localhost/callback?code=c&accounts-server=https%3A%2F%2Fevil.example"
    with pytest.raises(ConfigError, match="refusing"):
        exchange_code(redirect, "id", SECRET, "US", session=session_with(adapter))
    assert adapter.sent == []


def test_pasted_redirect_with_only_a_location_uses_that_data_centre() -> None:
    adapter = FakeAccounts(200, SUCCESS)
    exchange_code(
        "https://localhost/callback?code=c&location=au",
        "id",
        SECRET,
        "US",
        session=session_with(adapter),
    )
    assert adapter.sent[0].url == "https://accounts.zoho.com.au/oauth/v2/token"
