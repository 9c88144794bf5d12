"""OAuth token manager: refresh grant, expiry margin, one refresh in flight, persisted token cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from connector.config import InstanceType, Settings
from connector.errors import AuthError
from connector.redact import redact, register_secret
from connector.zoho import limits
from connector.zoho.endpoints import Endpoints, region_for_api_domain
from connector.zoho.network import TRANSPORT_ERRORS, host_of, unreachable, what_failed
from connector.zoho.scopes import parse_granted

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "ZOHO_CRM_TOKEN_CACHE_DIR"
DEFAULT_LIFETIME = 3600.0  # Zoho access tokens live one hour.

_THROTTLE_MESSAGE = (
    "Zoho is throttling token refreshes (10 per 10 minutes per refresh token) and still refused "
    "after waiting {minutes:.0f} minutes: another process may be refreshing with the same "
    "refresh token; share one token cache between runs, and try again later"
)
_CREDENTIAL_ERRORS = frozenset({"invalid_client", "invalid_client_secret", "invalid_code"})
_OFF_MESSAGE = (
    "access token expired or invalid; supply a new OAuthAccessToken or set InitiateOAuth=REFRESH"
)


def default_cache_path(settings: Settings, environ: Mapping[str, str] | None = None) -> Path:
    """Where the token cache lives: ``OAuthSettingsLocation``, or a per-client file in the cache dir."""
    if settings.token_cache_path is not None:
        return settings.token_cache_path
    environ = os.environ if environ is None else environ
    override = environ.get(ENV_CACHE_DIR)
    directory = (
        Path(override).expanduser() if override else Path.home() / ".cache" / "zoho-crm-connector"
    )
    return directory / f"tokens-{_fingerprint(settings)}.json"


def _fingerprint(settings: Settings) -> str:
    """A short, non-reversible name for this client + refresh token (never the secret itself).

    The accounts server is part of it: the same client id and refresh token at another server
    (another data centre, or another local simulator) is another token family. So is the client
    secret: a token minted with the old secret must not hide a changed (mistyped) one until the
    token expires, hours later in a scheduled run.
    """
    refresh = settings.refresh_token.get_secret_value() if settings.refresh_token else ""
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    seed = "\n".join(
        (
            settings.client_id or "",
            refresh,
            secret,
            settings.accounts_server or "",
            settings.region.value,
        )
    )
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()
    return digest[:16]


class TokenManager:
    """Hands out a valid access token to many threads; refreshes it at most once at a time.

    With ``InitiateOAuth=REFRESH`` (or GETANDREFRESH) the first call uses a live token from the
    cache file or refreshes; a supplied ``OAuthAccessToken`` of unknown expiry is not used. With
    ``OFF`` the supplied access token is used as given and never refreshed or cached.
    """

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        session: requests.Session,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._endpoints = endpoints
        self._session = session
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None
        self._refresh_at: float | None = None
        self._rejected: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self.api_domain: str | None = None
        """The API host named with the token, when it is to be honoured (production, no APIDomain)."""
        self.granted_scopes: tuple[str, ...] | None = None
        """The scopes the token response listed, or None when Zoho did not say."""
        self.refresh_count = 0
        """How many refresh calls this manager made (successful or not)."""
        self.warnings: list[str] = []
        """Things worth telling the user (region mismatch, unreadable cache)."""
        self.cache_path: Path | None = None
        if settings.refreshes_tokens:
            self.cache_path = default_cache_path(settings, environ)
        elif settings.access_token is not None:
            self._token = settings.access_token.get_secret_value()
            register_secret(self._token)

    @property
    def accounts_host(self) -> str:
        """The accounts server's host name, for messages."""
        return urlsplit(self._endpoints.accounts_url).netloc or self._endpoints.accounts_url

    def add_refresh_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every refresh call to the accounts server."""
        self._listeners.append(callback)

    def access_token(self) -> str:
        """Return a valid access token, refreshing it first if needed (thread-safe)."""
        with self._lock:
            if not self._settings.refreshes_tokens:
                if self._token is None:
                    raise AuthError(_OFF_MESSAGE)
                return self._token
            if self._token is not None and self._is_live():
                return self._token
            # Another process may have refreshed since: a live cached token costs no refresh.
            if self._load_cache():
                assert self._token is not None
                return self._token
            self._refresh()
            assert self._token is not None
            return self._token

    def refresh_now(self) -> str:
        """Refresh once now, whatever the cache holds, and return the new token.

        ``check`` uses it to prove that the client id, secret and refresh token work today; a
        live cached token would prove nothing. One refresh of Zoho's ten per ten minutes.
        """
        with self._lock:
            if not self._settings.refreshes_tokens:
                if self._token is None:
                    raise AuthError(_OFF_MESSAGE)
                return self._token
            self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after Zoho refused it (401 INVALID_TOKEN).

        Only the token that failed is dropped: if another thread already replaced it, the next
        :meth:`access_token` returns the replacement without refreshing again.
        """
        with self._lock:
            self._rejected.add(token)
            if self._token == token:
                self._token = None
                self._expires_at = None
                self._refresh_at = None

    # ------------------------------------------------------------------------------------------

    def _is_live(self) -> bool:
        return self._refresh_at is not None and self._clock() < self._refresh_at

    def _adopt(self, token: str, expires_at: float, lifetime: float | None) -> None:
        margin = self._settings.tuning.token_expiry_margin
        if lifetime is not None and lifetime > 0:
            # A token shorter-lived than the margin would be refreshed on every call.
            margin = min(margin, lifetime / 2)
        register_secret(token)
        self._token = token
        self._expires_at = expires_at
        self._refresh_at = expires_at - margin

    def _load_cache(self) -> bool:
        path = self.cache_path
        if path is None or not path.exists():
            return False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            token = data["access_token"]
            expires_at = float(data["expires_at"])
            if not isinstance(token, str) or not token:
                raise ValueError("no access_token")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._warn(f"ignoring the unreadable token cache {path}: {type(exc).__name__}")
            return False
        if data.get("client") != _fingerprint(self._settings):
            return False  # another client, secret or refresh token minted it (or an old cache)
        if token in self._rejected:
            return False
        obtained = data.get("obtained_at")
        lifetime = expires_at - float(obtained) if isinstance(obtained, (int, float)) else None
        self._adopt(token, expires_at, lifetime)
        if not self._is_live():
            self._token = None
            self._refresh_at = None
            return False
        self._set_api_domain(data.get("api_domain"), warn=False)
        scope = data.get("scope")
        self.granted_scopes = parse_granted(scope)
        log.debug("using the cached access token from %s", path)
        return True

    def _write_cache(self, scope: str | None, obtained_at: float) -> None:
        path = self.cache_path
        if path is None or self._token is None or self._expires_at is None:
            return
        payload = {
            "access_token": self._token,
            "expires_at": self._expires_at,
            "obtained_at": obtained_at,
            "api_domain": self.api_domain,
            "scope": scope,
            "client": _fingerprint(self._settings),
        }
        tmp: Path | None = None
        try:
            directory = path.parent
            if not directory.exists():
                directory.mkdir(parents=True, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)
            tmp = directory / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            # Owner-only from creation: the file holds a live access token.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, json.dumps(payload).encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            self._warn(f"could not write the token cache {path}: {exc.strerror or exc}")
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _warn(self, message: str) -> None:
        message = redact(message)
        self.warnings.append(message)
        log.warning("%s", message)

    def _set_api_domain(self, domain: Any, *, warn: bool) -> None:
        # Zoho names production's host in the token response even for a sandbox or developer
        # org, and an explicit APIDomain (a proxy, the simulator) must win.
        if (
            not isinstance(domain, str)
            or not re.match(r"https?://[^\s/]+", domain)
            or self._settings.api_domain is not None
            or self._settings.instance_type is not InstanceType.PRODUCTION
        ):
            self.api_domain = None
            return
        domain = domain.rstrip("/")
        region = region_for_api_domain(domain)
        if warn and region is not None and region is not self._settings.region:
            self._warn(
                f"the token was issued for the {region.value} data centre ({domain}) but "
                f"Region={self._settings.region.value}; using {domain}: set Region={region.value}"
            )
        self.api_domain = domain

    def _backoff(self, attempt: int) -> float:
        tuning = self._settings.tuning
        return float(min(tuning.retry_max_wait, tuning.retry_initial_wait * (2**attempt)))

    def _refresh(self) -> None:
        settings = self._settings
        if (
            settings.client_id is None
            or settings.client_secret is None
            or settings.refresh_token is None
        ):
            raise AuthError(
                "cannot refresh the access token: OAuthClientId, OAuthClientSecret and "
                "OAuthRefreshToken are required"
            )
        url = f"{self._endpoints.accounts_url}/oauth/v2/token"
        form = {
            "grant_type": "refresh_token",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "refresh_token": settings.refresh_token.get_secret_value(),
        }
        host = self.accounts_host
        timeout = (settings.tuning.http_connect_timeout, settings.tuning.http_read_timeout)
        attempts = settings.tuning.max_attempts
        failures = throttled = 0
        while True:
            started = self._clock()
            self.refresh_count += 1
            for listener in self._listeners:
                listener()
            try:
                response = self._session.post(
                    url, data=form, headers={"Accept": "application/json"}, timeout=timeout
                )
            except TRANSPORT_ERRORS as exc:
                # The network, not the credentials: retried like a 5xx, then exit 6, not 3.
                if failures + 1 < attempts:
                    self._sleep(self._backoff(failures))
                    failures += 1
                    continue
                raise unreachable(
                    host_of(url),
                    what_failed(exc),
                    attempts=failures + 1,
                    check="Region (or AccountsServer)",
                ) from None
            except requests.RequestException as exc:
                raise AuthError(
                    f"could not reach the Zoho accounts server {host} ({type(exc).__name__}): "
                    "check Region (or AccountsServer) and the network"
                ) from None
            try:
                body = response.json()
            except ValueError:
                body = None
            # Zoho may answer 200 with an error body (or 400 for the throttle): the body decides.
            token = body.get("access_token") if isinstance(body, dict) else None
            if isinstance(token, str) and token:
                assert isinstance(body, dict)
                self._accept(body, token, started)
                return
            if isinstance(body, dict) and _is_throttle(body):
                throttled += 1
                if self._wait_out_throttle(throttled):
                    return
                continue
            transient = response.status_code >= 500 and not _names_credential(body)
            if transient and failures + 1 < attempts:
                self._sleep(self._backoff(failures))
                failures += 1
                continue
            raise _refusal(body, response.status_code, host)

    def _wait_out_throttle(self, throttled: int) -> bool:
        """Wait a whole throttle window; True if another process has left a live token since.

        Zoho counts 10 new tokens per refresh token in 10 minutes, and may count refused asks
        too: asking again within seconds never helps, so wait the window out (a bounded number
        of times, then give up with a clear line).
        """
        wait = limits.TOKEN_REFRESH_WINDOW + limits.TOKEN_THROTTLE_MARGIN
        if throttled > limits.TOKEN_THROTTLE_WAITS:
            raise AuthError(_THROTTLE_MESSAGE.format(minutes=(throttled - 1) * wait / 60))
        log.warning(
            "Zoho is throttling token refreshes (10 per refresh token in 10 minutes); waiting "
            "%.0f s for the window to pass (wait %d of %d)",
            wait,
            throttled,
            limits.TOKEN_THROTTLE_WAITS,
        )
        self._sleep(wait)
        return self._load_cache()

    def _accept(self, body: dict[str, Any], token: str, started: float) -> None:
        raw = body.get("expires_in")
        try:
            lifetime = float(raw) if raw is not None else DEFAULT_LIFETIME
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        # Like Zoho's SDK: with expires_in_sec present, expires_in is in milliseconds.
        if "expires_in_sec" in body:
            lifetime /= 1000.0
        if lifetime <= 0:
            lifetime = DEFAULT_LIFETIME
        self._rejected.discard(token)
        self._adopt(token, started + lifetime, lifetime)
        self._set_api_domain(body.get("api_domain"), warn=True)
        scope = body.get("scope")
        self.granted_scopes = parse_granted(scope)
        log.info("obtained a new access token from %s", self.accounts_host)
        self._write_cache(scope if isinstance(scope, str) else None, started)


def _is_throttle(body: Mapping[str, Any]) -> bool:
    """Whether a token-endpoint answer is Zoho's "too many requests" throttle."""
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")
    return error.lower() == "access denied" or "too many requests" in description.lower()


def _names_credential(body: Any) -> bool:
    """Whether Zoho refused the client or the refresh token itself (retrying cannot help)."""
    return isinstance(body, dict) and body.get("error") in _CREDENTIAL_ERRORS


def _refusal(body: Any, status: int, host: str) -> AuthError:
    """The one-line AuthError for a refused refresh (never echoing a secret)."""
    if not isinstance(body, dict):
        return AuthError(
            f"the Zoho accounts server {host} answered HTTP {status} "
            "without a JSON token response: check Region (or AccountsServer)"
        )
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")
    if error in ("invalid_client", "invalid_client_secret"):
        return AuthError(
            f"Zoho rejected the client id/secret at {host} ({error}): check OAuthClientId/"
            "OAuthClientSecret, and that Region matches the data centre where the client "
            "was registered"
        )
    if error == "invalid_code":
        return AuthError(
            "the refresh token was refused (invalid_code: revoked or mistyped): generate a new "
            "OAuthRefreshToken"
        )
    what = redact(error or description or f"HTTP {status}")[:120]
    return AuthError(f"Zoho refused the token refresh at {host} ({what}): check the OAuth settings")
