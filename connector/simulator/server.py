"""The simulator's HTTP server: the route table, the checks every API call passes (faults, auth,
credits), the request log, and the HTTP layer that parses requests and writes responses.

One ``ThreadingHTTPServer`` on loopback serves the accounts server (``/oauth/v2/...``), the API
domain (``/crm/...``) and a test-control surface (``/_sim/...``, not Zoho). The endpoints live in
one module per API family (``api_*.py``); what they share is in ``replies.py``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connector.simulator import (
    api_bulk,
    api_control,
    api_coql,
    api_deleted,
    api_metadata,
    api_oauth,
    api_records,
)
from connector.simulator.bulk import BulkError, BulkManager
from connector.simulator.credits import LIMIT_REACHED_BODY, CreditLedger
from connector.simulator.faults import (
    DEFAULT_THROTTLE_MESSAGE,
    INTERNAL_ERROR_BODY,
    FaultConfig,
    FaultInjector,
    too_many_requests_body,
)
from connector.simulator.oauth import OAuthServer
from connector.simulator.query import Comparison, QueryError
from connector.simulator.replies import ApiError, Call, Response, url_not_found
from connector.simulator.store import ModuleStore, Org

__all__ = ["ApiError", "Call", "RequestRecord", "Response", "Route", "SimApp", "SimHTTPServer"]

API_VERSIONS = ("v8", "v7", "v6", "v5", "v4", "v3")
# Never echoed into the request log (it is served by /_sim/requests).
SECRET_PARAMS = frozenset({"client_secret", "refresh_token", "code", "token", "access_token"})

# --- the route table --------------------------------------------------------------------------

Handler = Callable[..., Response]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _path_pattern(template: str) -> re.Pattern[str]:
    """``/crm/{version}/{module}`` as a regex: ``{version}`` is one of API_VERSIONS, any other
    placeholder one path segment, captured under its name."""
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        name = m.group(1)
        parts.append(
            "(?:" + "|".join(API_VERSIONS) + ")" if name == "version" else f"(?P<{name}>[^/]+)"
        )
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


@dataclass(frozen=True)
class Route:
    """One endpoint: a method (``*`` for any), a path template and the handler that answers."""

    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _path_pattern(self.template))

    @property
    def name(self) -> str:
        """The handler's name (the key in ``SimApp.endpoints``)."""
        return self.handler.__name__

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path's placeholders when this route answers ``method path``, else None."""
        if self.method not in ("*", method):
            return None
        found = self.pattern.fullmatch(path)
        return None if found is None else found.groupdict()


def find_route(
    routes: Sequence[Route], method: str, path: str
) -> tuple[Route, dict[str, str]] | None:
    """The first route that answers ``method path``, with the path's placeholders."""
    for route in routes:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None


def _reserved_word(app: SimApp, call: Call) -> Response:
    raise url_not_found()


# API handlers take (app, call, **placeholders). Paths are matched with empty segments dropped
# (``/crm/v8/org/`` is ``/crm/v8/org``); the first route that fits answers, none is a 404.
API_ROUTES: tuple[Route, ...] = (
    Route("POST", "/crm/bulk/{version}/read", api_bulk.bulk_create),
    Route("GET", "/crm/bulk/{version}/read/{job_id}", api_bulk.bulk_status),
    Route("GET", "/crm/bulk/{version}/read/{job_id}/result", api_bulk.bulk_download),
    Route("GET", "/crm/{version}/org", api_metadata.get_org),
    Route("GET", "/crm/{version}/users", api_metadata.get_users),
    Route("GET", "/crm/{version}/settings/modules", api_metadata.get_modules),
    Route("GET", "/crm/{version}/settings/fields", api_metadata.get_fields),
    Route("POST", "/crm/{version}/coql", api_coql.run_coql),
    # The API's own words are never module names: POST /crm/v8/org is a 404, not a write.
    *(
        Route("*", f"/crm/{{version}}/{word}", _reserved_word)
        for word in ("settings", "coql", "org", "users")
    ),
    Route("GET", "/crm/{version}/{module}", api_records.list_records),
    Route("POST", "/crm/{version}/{module}", api_records.write_records),
    Route("PUT", "/crm/{version}/{module}", api_records.write_records),
    Route("DELETE", "/crm/{version}/{module}", api_records.write_records),
    Route("GET", "/crm/{version}/{module}/deleted", api_deleted.deleted_records),
    Route("GET", "/crm/{version}/{module}/actions/fetch_full_data", api_records.fetch_full_data),
)
# Accounts handlers take (app, call, form=the query plus the form body); exact paths.
ACCOUNTS_ROUTES: tuple[Route, ...] = (
    Route("POST", "/oauth/v2/token", api_oauth.token),
    Route("POST", "/oauth/v2/token/revoke", api_oauth.revoke),
    Route("GET", "/oauth/v2/auth", api_oauth.authorize),
)
# Control handlers take (app, call); exact paths.
CONTROL_ROUTES: tuple[Route, ...] = (
    Route("GET", "/_sim/credits", api_control.get_credits),
    Route("GET", "/_sim/requests", api_control.get_requests),
    Route("POST", "/_sim/faults", api_control.set_faults),
    Route("*", "/_sim/faults", api_control.get_faults),
    Route("POST", "/_sim/mutate", api_control.mutate),
)


@dataclass(frozen=True)
class RequestRecord:
    """One API or accounts call as the simulator saw it (``/_sim`` calls are not logged)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    code: str | None
    credits: int
    kind: str | None = None


class SimApp:
    """Everything the server knows; ``handle`` turns a request into a response.

    The API families' handlers (``api_*.py``) read and change the org's state through it:
    ``org``, ``oauth``, ``credits`` (via ``charge``), ``faults``/``injector``, ``bulk`` (the
    Bulk Read jobs) and ``page_tokens`` (where each Records ``page_token`` continues).
    """

    def __init__(
        self,
        *,
        org: Org,
        oauth: OAuthServer,
        credits: CreditLedger,
        faults: FaultConfig,
        workdir: Path,
        bulk_page_size: int,
        bulk_polls: int,
        download_limit_per_minute: int,
        sleep: Callable[[float], None] = time.sleep,
        throttle_message: str = DEFAULT_THROTTLE_MESSAGE,
        retry_after: int | None = None,
        oauth_throttle_status: int = 200,
    ) -> None:
        self.org = org
        self.oauth = oauth
        self.credits = credits
        self.faults = faults
        self.injector = FaultInjector(faults)
        self.oauth.lifetime_override = lambda: self.faults.token_lifetime
        self.sleep = sleep
        self.clock = org.clock
        # How a 429 reads: its message (by default one that speaks of credits, whatever the
        # cause) and whether a Retry-After is sent (Zoho documents none; opt-in only).
        self.throttle_message = throttle_message
        self.retry_after = retry_after
        self.oauth_throttle_status = oauth_throttle_status
        self.requests: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self.page_tokens: dict[str, api_records.PageState] = {}
        self.page_token_lock = threading.Lock()
        self.bulk = BulkManager(
            stores=org.module,
            csv_writer=api_bulk.csv_writer(org),
            id_after=lambda last: Comparison("id", ">", last),
            clock=org.clock,
            workdir=workdir,
            faults=self.injector,
            page_size=bulk_page_size,
            polls=bulk_polls,
            download_limit_per_minute=download_limit_per_minute,
        )
        # Every handler by name; a test may wrap one to act just before it answers.
        self.endpoints: dict[str, Handler] = {
            route.name: route.handler for route in (*API_ROUTES, *ACCOUNTS_ROUTES, *CONTROL_ROUTES)
        }

    # --- dispatch ---------------------------------------------------------------------------
    def handle(self, call: Call) -> Response:
        """Answer one request (and log it unless it is test control)."""
        if call.path.startswith("/_sim/"):
            try:
                return self._control(call)
            except (ValueError, KeyError, TypeError, QueryError) as exc:
                return Response.json(400, {"error": str(exc)})
        if call.path.startswith("/oauth/"):
            self._latency()
            resp = self._accounts(call)
        else:
            resp = self._api(call)
        self._log(call, resp)
        return resp

    def _control(self, call: Call) -> Response:
        found = find_route(CONTROL_ROUTES, call.method, call.path)
        if found is None:
            return api_control.unknown(self, call)
        return self.endpoints[found[0].name](self, call)

    def _accounts(self, call: Call) -> Response:
        form = api_oauth.form_params(call)
        found = find_route(ACCOUNTS_ROUTES, call.method, call.path)
        if found is None:
            return api_oauth.unknown(self, call, form)
        return self.endpoints[found[0].name](self, call, form=form)

    def _latency(self) -> None:
        if self.faults.latency_ms:
            self.sleep(self.faults.latency_ms / 1000)

    def _log(self, call: Call, resp: Response) -> None:
        record = RequestRecord(
            method=call.method,
            path=call.path,
            query={k: ("***" if k in SECRET_PARAMS else v) for k, v in call.query.items()},
            status=resp.status,
            code=resp.code,
            credits=call.credits,
            kind=call.kind,
        )
        with self._log_lock:
            self.requests.append(record)

    def request_log(self) -> list[RequestRecord]:
        """A copy of the request log so far."""
        with self._log_lock:
            return list(self.requests)

    def _api(self, call: Call) -> Response:
        allowed = self.injector.enter()
        try:
            if not allowed:
                return Response.error(self.too_many_requests())
            self._latency()  # while counted in flight, so slow calls fill the concurrency cap
            fault = self.injector.roll()
            if fault == 429:
                return Response.error(self.too_many_requests())
            if fault == 500:
                return Response.json(500, INTERNAL_ERROR_BODY, code="INTERNAL_ERROR")
            if fault == 503:
                # A 503 typically comes from the load balancer, as HTML rather than Zoho JSON.
                body = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
                return Response(503, body, content_type="text/html", code="SERVICE_UNAVAILABLE")
            resp = self._authenticated(call)
            if resp.status >= 400:
                for entry in call.charges:
                    self.credits.refund(entry)
                call.credits = 0
            remaining = self.credits.header_value()
            if remaining is not None:
                resp.headers.setdefault("X-API-CREDITS-REMAINING", remaining)
            return resp
        finally:
            self.injector.leave()

    def _authenticated(self, call: Call) -> Response:
        try:
            auth = call.header("Authorization") or ""
            prefix, _, token = auth.partition(" ")
            if prefix != "Zoho-oauthtoken" or not token.strip():
                raise ApiError(401, "AUTHENTICATION_FAILURE", "Authentication failed")
            check = self.oauth.check(token.strip())
            if check.code is not None:
                raise ApiError(401, check.code, "invalid oauth token")
            call.scopes = check.scopes
            return self._route(call)
        except ApiError as err:
            return Response.error(err)
        except QueryError as err:
            return Response.error(ApiError.from_query_error(err))
        except BulkError as err:
            return Response.error(ApiError(err.status, err.code, err.message, err.details))

    def _route(self, call: Call) -> Response:
        path = "/" + "/".join(p for p in call.path.split("/") if p)
        found = find_route(API_ROUTES, call.method, path)
        if found is None:
            raise url_not_found()
        route, params = found
        return self.endpoints[route.name](self, call, **params)

    # --- what the handlers share ------------------------------------------------------------
    def too_many_requests(self, retry_after: int | None = None) -> ApiError:
        """A 429 TOO_MANY_REQUESTS with the configured message; ``Retry-After`` only when opted
        in (``retry_after`` seconds, or the configured figure)."""
        body = too_many_requests_body(self.throttle_message)
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(
                retry_after if retry_after is not None else self.retry_after
            )
        return ApiError(429, str(body["code"]), str(body["message"]), {}, headers=headers)

    def charge(self, call: Call, kind: str, credits: int) -> None:
        """Charge a call before doing its work; 429 LIMIT_REACHED when the budget is spent."""
        entry = self.credits.charge(kind, credits, call.method, call.path)
        if entry is None:
            raise ApiError(
                429,
                str(LIMIT_REACHED_BODY["code"]),
                str(LIMIT_REACHED_BODY["message"]),
                headers={"X-API-CREDITS-REMAINING": "0"},
            )
        call.charges.append(entry)
        call.kind = kind
        call.credits += credits

    def store(self, name: str) -> ModuleStore:
        """A module by api name (any case); 400 INVALID_MODULE when the org has none."""
        store = self.org.find_module(name)
        if store is not None:
            return store
        raise ApiError(
            400,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
            {"resource_path_index": 0},
        )

    def api_store(self, name: str) -> ModuleStore:
        """A module the API may read and write; 400 NOT_SUPPORTED for one closed to it."""
        store = self.store(name)
        if not store.meta.api_supported:
            # Zoho's code for a module that exists but is closed to the API is not documented;
            # NOT_SUPPORTED (400) is the nearest code in its published list (zoho-api.md §7).
            raise ApiError(
                400, "NOT_SUPPORTED", "the module is not supported in API", {"module": name}
            )
        return store


# --- the HTTP layer ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: SimHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus delayed ACKs
    # add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server_version = "ZohoCRMSimulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log (the app keeps its own)."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, read from the org's clock (injectable), not ``time.time()``.

        Real Zoho answers every call with a ``Date`` header; the connector takes it as the
        server's time when a read starts, so it must agree with the clock that stamps
        ``Modified_Time`` here. Whole seconds, truncated, like the header itself.
        """
        if timestamp is None:
            timestamp = self.server.app.clock().timestamp()
        return super().date_time_string(timestamp)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        call = Call(self.command, split.path, query, dict(self.headers.items()), body)
        try:
            resp = self.server.app.handle(call)
        except Exception as exc:  # an unexpected simulator bug must still answer as Zoho would
            self.server.errors.append(repr(exc))
            resp = Response.json(500, INTERNAL_ERROR_BODY, code="INTERNAL_ERROR")
        self._write(resp)

    def _write(self, resp: Response) -> None:
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        if resp.file is None:
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.body and self.command != "HEAD":
                self.wfile.write(resp.body)
            return
        size = resp.file.stat().st_size
        self.send_header("Content-Length", str(size))
        if resp.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        for chunk in _file_chunks(resp.file, size, truncate=resp.truncate, corrupt=resp.corrupt):
            self.wfile.write(chunk)
        if resp.truncate:
            self.wfile.flush()
            self.close_connection = True

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
    do_PATCH = _dispatch


def _file_chunks(path: Path, size: int, *, truncate: bool, corrupt: bool) -> Iterator[bytes]:
    """The file's bytes in 1 MiB chunks; half of them when truncated; garbled mid-file when corrupt."""
    limit = size // 2 if truncate else size
    middle = size // 2
    sent = 0
    with path.open("rb") as fh:
        while sent < limit:
            chunk = fh.read(min(1 << 20, limit - sent))
            if not chunk:
                break
            if corrupt and sent <= middle < sent + len(chunk):
                data = bytearray(chunk)
                for i in range(middle - sent, min(len(data), middle - sent + 64)):
                    data[i] ^= 0xFF
                chunk = bytes(data)
            sent += len(chunk)
            yield chunk


class SimHTTPServer(ThreadingHTTPServer):
    """The threading HTTP server carrying the app."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SimApp) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.errors: list[str] = []
