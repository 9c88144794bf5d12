"""Getting the first tokens: the authorization URL, the code exchange and a ready connection string.

Zoho's flow for a "Server-based Application" client (api-console.zoho.com):

1. open :func:`authorization_url` in a browser, sign in and accept; Zoho redirects to the client's
   registered redirect URI with ``code=…&location=…&accounts-server=…`` in the query string (the
   page itself may fail to load: only the address matters);
2. within 3 minutes (a code is single-use and short-lived), :func:`exchange_code` trades the code
   for a refresh token at the accounts server the redirect named (an org may live in another data
   centre than the one the user guessed);
3. :func:`connection_string_for` prints the connection string the extractor reads.

``DEFAULT_REDIRECT_URI`` is ``https://localhost/callback``, the URI the common setup guides tell
users to register. Zoho's "Self Client" needs none of this: it shows a code in the API console,
which :func:`exchange_code` also accepts (its redirect URI is ignored by Zoho).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from connector.config import InstanceType, Region
from connector.config import parse_region as config_parse_region
from connector.errors import AuthError, ConfigError
from connector.redact import redact, register_secret
from connector.zoho.endpoints import ACCOUNTS_SERVERS, API_DOMAINS
from connector.zoho.scopes import BULK_READ, READ_SCOPES, parse_granted

DEFAULT_REDIRECT_URI = "https://localhost/callback"

# Zoho accounts hosts that may receive a grant code: every data centre's, plus accounts.zoho.ca,
# which the Loome guide names for Canada (Zoho's SDK uses accounts.zohocloud.ca).
KNOWN_ACCOUNTS_HOSTS: frozenset[str] = frozenset(
    {urlsplit(url).hostname or "" for url in ACCOUNTS_SERVERS.values()} | {"accounts.zoho.ca"}
)
_LOOPBACK_NAMES = frozenset({"localhost"})

SECRET_PLACEHOLDER = "<OAuthClientSecret>"
REFRESH_PLACEHOLDER = "<OAuthRefreshToken>"

_TIMEOUT = (10.0, 60.0)


@dataclass(frozen=True)
class ExchangeResult:
    """Tokens from an authorization-code exchange. ``repr`` never shows a token."""

    refresh_token: str = field(repr=False)
    access_token: str = field(repr=False)
    api_domain: str | None
    expires_in: int | None
    scopes: tuple[str, ...]
    accounts_server: str


@dataclass(frozen=True)
class RedirectParams:
    """What Zoho's redirect after consent carries."""

    code: str = field(repr=False)
    accounts_server: str | None = None
    location: str | None = None
    state: str | None = None


def parse_region(value: str | Region) -> Region:
    """``"us"``/``"EU"``/:class:`Region` → :class:`Region`; anything else is a ConfigError."""
    if isinstance(value, Region):
        return value
    return config_parse_region(value)


def scopes_for(api_type: str = "Bulk") -> list[str]:
    """The scopes to ask for: everything read-only the connector uses; REST drops Bulk Read."""
    if api_type.strip().lower() == "rest":
        return [s for s in READ_SCOPES if s != BULK_READ]
    if api_type.strip().lower() != "bulk":
        raise ConfigError(f"API type {api_type!r} is not valid: use Bulk or REST")
    return list(READ_SCOPES)


def check_accounts_server(url: str) -> str:
    """Return ``url`` as ``scheme://host[:port]`` if it is a Zoho accounts server or loopback.

    A grant code and the client secret must never be sent to an arbitrary host, even when a
    pasted redirect names it: anything but a known Zoho accounts host over HTTPS, or a loopback
    address (the local simulator), is refused with a :class:`ConfigError`.
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        host, port, parts = "", None, urlsplit("")
    clean = not (parts.username or parts.password or parts.query or parts.fragment)
    clean = clean and parts.path in ("", "/")
    if clean and parts.scheme == "https" and host in KNOWN_ACCOUNTS_HOSTS and port in (None, 443):
        return f"https://{host}"
    if clean and parts.scheme in ("http", "https") and _is_loopback(host):
        netloc = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")
    known = ", ".join(sorted(f"https://{h}" for h in KNOWN_ACCOUNTS_HOSTS))
    raise ConfigError(
        f"refusing to use {redact(url.strip())!r} as the accounts server: it is not a Zoho "
        f"accounts server ({known}) nor a loopback address"
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _accounts(region: str | Region, accounts_server: str | None) -> str:
    if accounts_server:
        return check_accounts_server(accounts_server)
    return ACCOUNTS_SERVERS[parse_region(region)]


def authorization_url(
    client_id: str,
    region: str | Region,
    *,
    scopes: Sequence[str] = READ_SCOPES,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    accounts_server: str | None = None,
    state: str | None = None,
) -> str:
    """The URL to open in a browser to consent and get a grant code (zoho-api.md §1).

    ``access_type=offline`` makes Zoho return a refresh token, and ``prompt=consent`` makes it
    return one even when the user consented to this client before. ``redirect_uri`` must be the
    client's registered redirect URI, exactly.
    """
    if not client_id.strip():
        raise ConfigError("a client id is required: copy it from the Zoho API console")
    if not scopes:
        raise ConfigError("at least one scope is required")
    query = {
        "scope": ",".join(scopes),
        "client_id": client_id.strip(),
        "response_type": "code",
        "access_type": "offline",
        "prompt": "consent",
        "redirect_uri": redirect_uri,
    }
    if state is not None:
        query["state"] = state
    return f"{_accounts(region, accounts_server)}/oauth/v2/auth?{urlencode(query)}"


def parse_redirect(url: str) -> RedirectParams:
    """Read ``code``, ``accounts-server``, ``location`` and ``state`` from the redirect's address."""
    query = parse_qs(urlsplit(url.strip()).query)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    code = one("code")
    if not code:
        error = one("error")
        if error:
            raise AuthError(f"Zoho did not grant access: {error}")
        raise ConfigError("the address has no code= parameter: paste the whole redirect address")
    register_secret(code)
    return RedirectParams(
        code=code,
        accounts_server=one("accounts-server"),
        location=one("location"),
        state=one("state"),
    )


def _error_message(error: str, host: str) -> str:
    if error == "invalid_code":
        return (
            "the grant code expired or was already used: codes live 3 minutes; "
            "run `zoho-crm auth url` again"
        )
    if error in ("invalid_client", "invalid_client_secret"):
        return (
            f"Zoho rejected the client id/secret at {host}: check them, and that the region "
            "(or accounts server) is the data centre where the client was registered"
        )
    if error == "invalid_redirect_uri":
        return (
            "the redirect URI does not match the one registered for this client and used in the "
            "authorization URL: pass the same --redirect-uri to `auth url` and `auth exchange`"
        )
    if error.lower() == "access denied":
        return "Zoho is throttling token requests for this client: wait a few minutes and retry"
    return f"Zoho refused the code exchange at {host}: {error}"


def exchange_code(
    code: str,
    client_id: str,
    client_secret: str,
    region: str | Region,
    *,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    accounts_server: str | None = None,
    session: requests.Session | None = None,
) -> ExchangeResult:
    """Trade a grant code for a refresh token at ``{accounts}/oauth/v2/token``.

    ``code`` may also be the whole redirect address; its ``accounts-server`` (else its
    ``location``) is then used unless ``accounts_server`` is given. The accounts server given back with the code wins over the
    region's, and must pass :func:`check_accounts_server`. Success is decided by the body (a
    ``refresh_token``), never by the status alone; failures raise :class:`AuthError` with one line
    that names no secret.
    """
    register_secret(client_secret)
    if code.strip().lower().startswith(("http://", "https://")):
        redirect = parse_redirect(code)
        code = redirect.code
        accounts_server = accounts_server or redirect.accounts_server
        if not accounts_server and redirect.location:
            # location=<dc> names the data centre when accounts-server is absent.
            region = parse_region(redirect.location)
    code = code.strip()
    register_secret(code)
    if not code:
        raise ConfigError("a grant code is required: run `zoho-crm auth url` and consent first")
    accounts = _accounts(region, accounts_server)
    host = urlsplit(accounts).netloc
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id.strip(),
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "code": code,
    }
    own = session is None
    http = session or requests.Session()
    try:
        response = http.post(f"{accounts}/oauth/v2/token", data=form, timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise AuthError(
            f"could not reach the accounts server {host} ({type(exc).__name__}): "
            "check the region or the accounts server"
        ) from None
    finally:
        if own:
            http.close()
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AuthError(
            f"the accounts server {host} answered HTTP {response.status_code} without a JSON "
            "object: check the region or the accounts server"
        )
    for key in ("access_token", "refresh_token"):
        if isinstance(body.get(key), str):
            register_secret(body[key])
    # Zoho answers errors with HTTP 200 too: the body decides (zoho-api.md §1.4).
    if isinstance(body.get("refresh_token"), str) and body["refresh_token"]:
        return ExchangeResult(
            refresh_token=body["refresh_token"],
            access_token=str(body.get("access_token") or ""),
            api_domain=body.get("api_domain") or None,
            expires_in=_expires_in(body),
            scopes=parse_granted(body.get("scope")) or (),
            accounts_server=accounts,
        )
    if "access_token" in body:
        raise AuthError(
            "Zoho returned no refresh token: the authorization URL must carry "
            "access_type=offline and prompt=consent; use `zoho-crm auth url` to build it"
        )
    error = str(body.get("error") or f"HTTP {response.status_code} without tokens")
    raise AuthError(redact(_error_message(error, host)))


def _expires_in(body: dict[str, Any]) -> int | None:
    try:
        # Legacy answers give milliseconds in expires_in next to expires_in_sec (as Zoho's SDK reads).
        if body.get("expires_in_sec") is not None:
            return int(body["expires_in_sec"])
        return int(body["expires_in"]) if body.get("expires_in") is not None else None
    except (TypeError, ValueError):
        return None


def _region_of_accounts(url: str) -> Region | None:
    for region, known in ACCOUNTS_SERVERS.items():
        if known == url:
            return region
    return None


def _quote(value: str) -> str:
    """Quote a connection-string value when it holds a separator."""
    if any(c in value for c in ";=\"'") or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def connection_string_for(
    result: ExchangeResult,
    *,
    client_id: str,
    client_secret: str,
    region: str | Region,
    include_secrets: bool,
    accounts_server: str | None = None,
    api_domain: str | None = None,
) -> str:
    """A ready connection string for ``result`` (one line, plus a note when secrets are hidden).

    The Region is the data centre of the accounts server that issued the token when it is a known
    one (so a code given back by another data centre gives the right Region); ``AccountsServer=``
    and ``APIDomain=`` appear only when they differ from that Region's defaults (the local
    simulator, for one). Without ``include_secrets`` the client secret and the refresh token are
    replaced by ``<OAuthClientSecret>`` and ``<OAuthRefreshToken>``.
    """
    accounts = check_accounts_server(accounts_server or result.accounts_server)
    chosen = _region_of_accounts(accounts) or parse_region(region)
    pairs: list[tuple[str, str]] = [
        ("Region", chosen.value),
        ("InstanceType", "Production"),
        ("InitiateOAuth", "REFRESH"),
        ("OAuthClientId", client_id.strip()),
        ("OAuthClientSecret", client_secret if include_secrets else SECRET_PLACEHOLDER),
        ("OAuthRefreshToken", result.refresh_token if include_secrets else REFRESH_PLACEHOLDER),
    ]
    if result.scopes:
        pairs.append(("Scope", ",".join(result.scopes)))
    if accounts != ACCOUNTS_SERVERS[chosen]:
        pairs.append(("AccountsServer", accounts))
    domain = (api_domain or result.api_domain or "").rstrip("/")
    if domain and domain != API_DOMAINS[(chosen, InstanceType.PRODUCTION)]:
        pairs.append(("APIDomain", domain))
    line = "".join(f"{key}={_quote(value)};" for key, value in pairs)
    if include_secrets:
        return line
    return (
        f"{line}\n"
        f"# {SECRET_PLACEHOLDER} and {REFRESH_PLACEHOLDER} stand for your client secret and the "
        "new refresh token. A grant code works once: to print them, get a new code with "
        "`zoho-crm auth url` and run `zoho-crm auth exchange` again with --show-secrets or --write FILE."
    )
