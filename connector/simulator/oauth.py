"""The simulated Zoho accounts server: clients, refresh tokens, access tokens, codes, throttles.

Facts modelled (zoho-api.md §1): access tokens live one hour by default; at most 10 new access
tokens per refresh token in 10 minutes; at most 15 live access tokens per refresh token, the 16th
invalidating the oldest; authorization codes are single-use and live 3 minutes; revoking a refresh
token kills its access tokens. Every expiry is decided by the injected clock.

Assumed, as the least convenient reading of the throttle's "You have made too many requests
continuously": once refused, every ask within 10 minutes of the last refused ask is refused too,
so a client that asks again within seconds only keeps itself throttled. (Whether the refusal is HTTP 200 or 400 is the server's ``oauth_throttle_status``.)
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from connector.simulator.clock import Clock, utc_now

THROTTLE_WINDOW = timedelta(minutes=10)
THROTTLE_MAX = 10
MAX_LIVE_TOKENS = 15
CODE_LIFETIME = timedelta(minutes=3)

THROTTLE_BODY: dict[str, str] = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}


class OAuthError(Exception):
    """A token-endpoint failure; ``body`` is what the accounts server answers."""

    def __init__(self, body: Mapping[str, str]) -> None:
        super().__init__(body.get("error", "oauth error"))
        self.body = dict(body)


def _err(code: str) -> OAuthError:
    return OAuthError({"error": code})


@dataclass
class OAuthClient:
    """A registered OAuth client (self client or server-based client)."""

    client_id: str
    client_secret: str


@dataclass
class RefreshTokenState:
    """A refresh token and what hangs off it."""

    token: str
    client_id: str
    scopes: tuple[str, ...]
    revoked: bool = False
    issued_at: deque[datetime] = field(default_factory=deque)  # for the 10-in-10-minutes throttle
    throttled: int = 0  # refreshes refused by the throttle
    throttled_until: datetime | None = None  # 10 minutes after the last refused ask
    live: deque[str] = field(default_factory=deque)  # access tokens, oldest first


@dataclass
class AccessTokenState:
    """An access token: its refresh token, expiry and whether it was pushed out or revoked."""

    token: str
    refresh_token: str
    scopes: tuple[str, ...]
    expires_at: datetime
    invalidated: bool = False  # pushed out by the 16th token
    revoked: bool = False


@dataclass
class AuthCode:
    """An authorization (grant) code."""

    code: str
    client_id: str
    scopes: tuple[str, ...]
    redirect_uri: str
    offline: bool
    created_at: datetime
    used: bool = False


class TokenCheck:
    """Outcome of checking an access token: the Zoho error code (None when valid) and scopes."""

    __slots__ = ("code", "scopes")

    def __init__(self, code: str | None, scopes: tuple[str, ...] = ()) -> None:
        self.code = code
        self.scopes = scopes


def _new_token() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


class OAuthServer:
    """State and rules of the accounts server. Thread-safe."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        token_lifetime: int = 3600,
        api_domain: str = "",
        accounts_server: str = "",
    ) -> None:
        self.clock: Clock = clock or utc_now
        self.token_lifetime = token_lifetime
        self.lifetime_override: Callable[[], int | None] = lambda: None
        self.api_domain = api_domain
        self.accounts_server = accounts_server
        self.clients: dict[str, OAuthClient] = {}
        self.refresh_tokens: dict[str, RefreshTokenState] = {}
        self.access_tokens: dict[str, AccessTokenState] = {}
        self.codes: dict[str, AuthCode] = {}
        self._lock = threading.Lock()

    # --- administration (tests, facade) ---------------------------------------------------
    def register_client(self, client_id: str, client_secret: str) -> None:
        """Register a client id/secret pair."""
        with self._lock:
            self.clients[client_id] = OAuthClient(client_id, client_secret)

    def issue_refresh_token(
        self, client_id: str, scopes: Sequence[str], token: str | None = None
    ) -> str:
        """Create a refresh token for ``client_id`` granting ``scopes`` (as a self client would)."""
        token = token or _new_token()
        with self._lock:
            self.refresh_tokens[token] = RefreshTokenState(token, client_id, tuple(scopes))
        return token

    def revoke(self, refresh_token: str) -> bool:
        """Revoke a refresh token and every access token issued from it."""
        with self._lock:
            state = self.refresh_tokens.get(refresh_token)
            if state is None or state.revoked:
                return False
            state.revoked = True
            for access in state.live:
                self.access_tokens[access].revoked = True
            state.live.clear()
            return True

    # --- grants ---------------------------------------------------------------------------
    def _client(self, params: Mapping[str, str]) -> OAuthClient:
        client = self.clients.get(params.get("client_id", ""))
        # Zoho answers invalid_client both for an unknown id and a wrong secret.
        if client is None or params.get("client_secret") != client.client_secret:
            raise _err("invalid_client")
        return client

    def _mint(self, rt: RefreshTokenState, now: datetime) -> dict[str, object]:
        while rt.issued_at and now - rt.issued_at[0] >= THROTTLE_WINDOW:
            rt.issued_at.popleft()
        locked = rt.throttled_until is not None and now < rt.throttled_until
        if locked or len(rt.issued_at) >= THROTTLE_MAX:
            # Refused; and asking again within the window keeps it so.
            rt.throttled += 1
            rt.throttled_until = now + THROTTLE_WINDOW
            raise OAuthError(THROTTLE_BODY)
        # Drop expired tokens from the live list, then push out the oldest beyond 15.
        while rt.live and self.access_tokens[rt.live[0]].expires_at <= now:
            rt.live.popleft()
        while len(rt.live) >= MAX_LIVE_TOKENS:
            self.access_tokens[rt.live.popleft()].invalidated = True
        lifetime = self.lifetime_override()
        if lifetime is None:
            lifetime = self.token_lifetime
        token = _new_token()
        self.access_tokens[token] = AccessTokenState(
            token, rt.token, rt.scopes, now + timedelta(seconds=lifetime)
        )
        rt.live.append(token)
        rt.issued_at.append(now)
        return {
            "access_token": token,
            "scope": " ".join(rt.scopes),
            "api_domain": self.api_domain,
            "token_type": "Bearer",
            "expires_in": lifetime,
        }

    def token(self, params: Mapping[str, str]) -> dict[str, object]:
        """Answer ``POST /oauth/v2/token``; raises :class:`OAuthError` with Zoho's error body."""
        grant = params.get("grant_type", "")
        if grant == "refresh_token":
            return self._refresh(params)
        if grant == "authorization_code":
            return self._exchange_code(params)
        raise _err("unsupported_grant_type")

    def _refresh(self, params: Mapping[str, str]) -> dict[str, object]:
        with self._lock:
            client = self._client(params)
            rt = self.refresh_tokens.get(params.get("refresh_token", ""))
            if rt is None or rt.revoked or rt.client_id != client.client_id:
                raise _err("invalid_code")
            return self._mint(rt, self.clock())

    def _exchange_code(self, params: Mapping[str, str]) -> dict[str, object]:
        with self._lock:
            client = self._client(params)
            now = self.clock()
            code = self.codes.get(params.get("code", ""))
            if (
                code is None
                or code.used
                or code.client_id != client.client_id
                or now - code.created_at > CODE_LIFETIME
            ):
                raise _err("invalid_code")
            if params.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
                raise _err("invalid_redirect_uri")
            code.used = True
            token = _new_token()
            rt = RefreshTokenState(token, client.client_id, code.scopes)
            self.refresh_tokens[token] = rt
            body = self._mint(rt, now)
            if code.offline:
                body["refresh_token"] = token
            else:
                # Without access_type=offline Zoho hands out no refresh token; keep it unusable.
                rt.revoked = True
            return body

    def authorize(self, params: Mapping[str, str]) -> str:
        """Auto-consent for ``GET /oauth/v2/auth``: the redirect URL carrying a fresh code.

        Raises :class:`OAuthError` for an unknown client or missing parameters.
        """
        with self._lock:
            client = self.clients.get(params.get("client_id", ""))
            if client is None:
                raise _err("invalid_client")
            if params.get("response_type") != "code":
                raise _err("unsupported_response_type")
            redirect_uri = params.get("redirect_uri", "")
            if not redirect_uri:
                raise _err("invalid_redirect_uri")
            scopes = tuple(s for s in params.get("scope", "").replace(" ", ",").split(",") if s)
            code = AuthCode(
                code=_new_token(),
                client_id=client.client_id,
                scopes=scopes,
                redirect_uri=redirect_uri,
                offline=params.get("access_type", "online") == "offline",
                created_at=self.clock(),
            )
            self.codes[code.code] = code
        query = {"code": code.code, "location": "us", "accounts-server": self.accounts_server}
        if "state" in params:
            query["state"] = params["state"]
        sep = "&" if "?" in redirect_uri else "?"
        return redirect_uri + sep + urlencode(query)

    # --- API side -------------------------------------------------------------------------
    def check(self, access_token: str) -> TokenCheck:
        """Validate an access token presented to the API."""
        with self._lock:
            state = self.access_tokens.get(access_token)
            if state is None or state.revoked or state.expires_at <= self.clock():
                return TokenCheck("INVALID_TOKEN")
            if state.invalidated:
                # zoho-api.md §1.3: a token pushed out by the 16th gets INVALID_OAUTHTOKEN.
                return TokenCheck("INVALID_OAUTHTOKEN")
            return TokenCheck(None, state.scopes)


def _scope_parts(scope: str) -> tuple[list[str], str]:
    parts = scope.split(".")
    return [p.lower() for p in parts[:-1]], parts[-1].upper()


def scope_covers(granted: Sequence[str], required: str) -> bool:
    """Whether any granted scope covers ``required``.

    Zoho scopes are ``Service.resource[.sub].OPERATION``; a scope covers every scope under its
    resource path with the same operation, and ``ALL`` covers every operation
    (``ZohoCRM.modules.ALL`` ⊇ ``ZohoCRM.modules.READ`` ⊇ ``ZohoCRM.modules.Leads.READ``).
    Names compare case-insensitively, as Zoho accepts ``ZohoCRM.modules.leads.READ``.
    """
    need_path, need_op = _scope_parts(required)
    for scope in granted:
        path, op = _scope_parts(scope.strip())
        if op not in ("ALL", need_op):
            continue
        if need_path[: len(path)] == path:
            return True
    return False
