"""The simulator's HTTP server: routing, auth checks, every endpoint, the request log.

One ``ThreadingHTTPServer`` on loopback serves the accounts server (``/oauth/v2/...``), the API
domain (``/crm/...``) and a test-control surface (``/_sim/...``, not Zoho). Zoho error bodies are
``{"code","details","message","status":"error"}`` (zoho-api.md §7).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

from connector.simulator import coql as coql_mod
from connector.simulator import criteria as criteria_mod
from connector.simulator import render
from connector.simulator.bulk import (
    COMPLETED,
    FAILURE,
    BulkError,
    BulkJob,
    BulkManager,
    BulkQuery,
)
from connector.simulator.coql import CoqlQuery
from connector.simulator.credits import (
    LIMIT_REACHED_BODY,
    PRICES,
    CreditLedger,
    coql_price,
    write_price,
)
from connector.simulator.faults import (
    INTERNAL_ERROR_BODY,
    TOO_MANY_REQUESTS_BODY,
    FaultConfig,
    FaultInjector,
)
from connector.simulator.oauth import OAuthError, OAuthServer, scope_covers
from connector.simulator.orgdef import SimField, format_zoho_datetime
from connector.simulator.query import And, Comparison, Or, QueryError
from connector.simulator.store import ModuleStore, Org

JSON_TYPE = "application/json;charset=UTF-8"
API_VERSIONS = ("v8", "v7", "v6", "v5", "v4", "v3")
MAX_PER_PAGE = 200
DISCRETE_LIMIT = 2_000
TOKEN_LIMIT = 100_000
PAGE_TOKEN_LIFETIME = timedelta(hours=24)
BULK_MAX_FIELDS = 200
# Never echoed into the request log (it is served by /_sim/requests).
SECRET_PARAMS = frozenset({"client_secret", "refresh_token", "code", "token", "access_token"})


class ApiError(Exception):
    """A Zoho error answer: status, code, message, details (and extra headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Zoho's error body."""
        return {
            "code": self.code,
            "details": self.details,
            "message": self.message,
            "status": "error",
        }


@dataclass
class Response:
    """What the handler writes back."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # streamed from disk (bulk downloads)
    truncate: bool = False
    corrupt: bool = False
    code: str | None = None  # the Zoho code, for the request log

    @classmethod
    def json(cls, status: int, payload: Any, code: str | None = None) -> Response:
        """A JSON response."""
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return cls(status, data, code=code)

    @classmethod
    def error(cls, err: ApiError) -> Response:
        """A Zoho error response."""
        resp = cls.json(err.status, err.body(), code=err.code)
        resp.headers.update(err.headers)
        return resp

    @classmethod
    def empty(cls, status: int) -> Response:
        """204 / 304: no body at all (Zoho sends an empty body, not an empty list)."""
        return cls(status, b"", content_type="")


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


@dataclass
class Call:
    """An incoming request, plus what handling it charged."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    scopes: tuple[str, ...] = ()
    charges: list[Any] = field(default_factory=list)
    kind: str | None = None
    credits: int = 0

    def json(self) -> Any:
        """The body parsed as JSON (400 INVALID_DATA when it is not)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, "INVALID_DATA", "body is not valid JSON", {}) from exc

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


class SimApp:
    """Everything the server knows; ``handle`` turns a request into a response."""

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
    ) -> None:
        self.org = org
        self.oauth = oauth
        self.credits = credits
        self.faults = faults
        self.injector = FaultInjector(faults)
        self.oauth.lifetime_override = lambda: self.faults.token_lifetime
        self.sleep = sleep
        self.clock = org.clock
        self.requests: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self.page_tokens: dict[str, _PageState] = {}
        self._token_lock = threading.Lock()
        self.bulk = BulkManager(
            stores=org.module,
            csv_writer=_csv_writer(org),
            id_after=lambda last: Comparison("id", ">", last),
            clock=org.clock,
            workdir=workdir,
            faults=self.injector,
            page_size=bulk_page_size,
            polls=bulk_polls,
            download_limit_per_minute=download_limit_per_minute,
        )

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
            resp = self._oauth(call)
        else:
            resp = self._api(call)
        self._log(call, resp)
        return resp

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

    def _api(self, call: Call) -> Response:
        allowed = self.injector.enter()
        try:
            if not allowed:
                return Response.json(429, TOO_MANY_REQUESTS_BODY, code="TOO_MANY_REQUESTS")
            self._latency()  # while counted in flight, so slow calls fill the concurrency cap
            fault = self.injector.roll()
            if fault == 429:
                return Response.json(429, TOO_MANY_REQUESTS_BODY, code="TOO_MANY_REQUESTS")
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
            return Response.error(_query_error(err))
        except BulkError as err:
            return Response.error(ApiError(err.status, err.code, err.message, err.details))

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

    @staticmethod
    def require(call: Call, scope: str) -> None:
        """401 OAUTH_SCOPE_MISMATCH unless the token's scopes cover ``scope``."""
        if not scope_covers(call.scopes, scope):
            raise ApiError(
                401,
                "OAUTH_SCOPE_MISMATCH",
                "invalid oauth scope to access this URL",
                {"required_scope": scope},
            )

    def _route(self, call: Call) -> Response:
        parts = [p for p in call.path.split("/") if p]
        method = call.method
        if (
            len(parts) >= 3
            and parts[0] == "crm"
            and parts[1] == "bulk"
            and parts[2] in API_VERSIONS
        ):
            rest = parts[3:]
            if rest == ["read"] and method == "POST":
                return self.bulk_create(call)
            if len(rest) == 2 and rest[0] == "read" and method == "GET":
                return self.bulk_status(call, rest[1])
            if len(rest) == 3 and rest[0] == "read" and rest[2] == "result" and method == "GET":
                return self.bulk_download(call, rest[1])
        elif len(parts) >= 3 and parts[0] == "crm" and parts[1] in API_VERSIONS:
            rest = parts[2:]
            if rest == ["org"] and method == "GET":
                return self.get_org(call)
            if rest == ["users"] and method == "GET":
                return self.get_users(call)
            if rest == ["settings", "modules"] and method == "GET":
                return self.get_modules(call)
            if rest == ["settings", "fields"] and method == "GET":
                return self.get_fields(call)
            if rest == ["coql"] and method == "POST":
                return self.coql(call)
            if len(rest) == 1 and rest[0] not in ("settings", "coql", "org", "users"):
                if method == "GET":
                    return self.list_records(call, rest[0])
                if method in ("POST", "PUT", "DELETE"):
                    return self.write_records(call, rest[0])
            if len(rest) == 2 and rest[1] == "deleted" and method == "GET":
                return self.deleted_records(call, rest[0])
        raise ApiError(
            404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
        )

    # --- metadata ---------------------------------------------------------------------------
    def get_org(self, call: Call) -> Response:
        """``GET /crm/v8/org``."""
        self.require(call, "ZohoCRM.org.READ")
        self.charge(call, "metadata", PRICES["metadata"])
        return Response.json(200, {"org": [self.org.org_json()]})

    def get_users(self, call: Call) -> Response:
        """``GET /crm/v8/users?type=&page=&per_page=``."""
        self.require(call, "ZohoCRM.users.READ")
        kind = call.query.get("type", "AllUsers")
        page, per_page = _page_params(call.query)
        users = list(self.org.users)
        if kind in ("ActiveUsers", "ActiveConfirmedUsers"):
            users = [u for u in users if u.active]
        elif kind == "DeactiveUsers":
            users = [u for u in users if not u.active]
        elif kind == "CurrentUser":
            users = users[:1]
        elif kind == "AdminUsers":
            users = [u for u in users if "admin" in str(u.profile.get("name", "")).lower()]
        elif kind not in ("AllUsers", "ConfirmedUsers", "NotConfirmedUsers"):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "type"})
        self.charge(call, "metadata", PRICES["metadata"])
        chunk = users[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response.empty(204)
        more = page * per_page < len(users)
        return Response.json(
            200,
            {
                "users": [u.to_api() for u in chunk],
                "info": {
                    "per_page": per_page,
                    "count": len(chunk),
                    "page": page,
                    "more_records": more,
                },
            },
        )

    def get_modules(self, call: Call) -> Response:
        """``GET /crm/v8/settings/modules``."""
        self.require(call, "ZohoCRM.settings.modules.READ")
        self.charge(call, "metadata", PRICES["metadata"])
        return Response.json(200, {"modules": [s.meta.to_api() for s in self.org.modules.values()]})

    def get_fields(self, call: Call) -> Response:
        """``GET /crm/v8/settings/fields?module=``."""
        self.require(call, "ZohoCRM.settings.fields.READ")
        name = call.query.get("module")
        if not name:
            raise ApiError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "module"},
            )
        store = self._store(name)
        self.charge(call, "metadata", PRICES["metadata"])
        return Response.json(200, {"fields": [f.to_api() for f in store.meta.fields]})

    def _store(self, name: str) -> ModuleStore:
        store = self.org.find_module(name)
        if store is not None:
            return store
        raise ApiError(
            400,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
            {"resource_path_index": 0},
        )

    def _api_store(self, name: str) -> ModuleStore:
        store = self._store(name)
        if not store.meta.api_supported:
            # Zoho's code for a module that exists but is closed to the API is not documented;
            # NOT_SUPPORTED (400) is the nearest code in its published list (zoho-api.md §7).
            raise ApiError(
                400, "NOT_SUPPORTED", "the module is not supported in API", {"module": name}
            )
        return store

    # --- records ----------------------------------------------------------------------------
    def list_records(self, call: Call, module: str) -> Response:
        """``GET /crm/v8/{Module}`` (zoho-api.md §5)."""
        store = self._api_store(module)
        meta = store.meta
        self.require(call, f"ZohoCRM.modules.{meta.api_name}.READ")
        q = call.query
        raw_fields = q.get("fields")
        if not raw_fields:
            raise ApiError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "fields"},
            )
        names = [n.strip() for n in raw_fields.split(",") if n.strip()]
        if len(names) > 50:
            raise ApiError(
                400,
                "LIMIT_EXCEEDED",
                "the number of fields exceeds the limit",
                {"limit": 50, "param": "fields"},
            )
        fields = [self._readable_field(meta, n) for n in names]
        per_page = _int_param(q, "per_page", 200)
        if per_page < 1 or per_page > MAX_PER_PAGE:
            # Zoho's exact answer to per_page > 200 is undocumented; INVALID_DATA is its usual code.
            raise ApiError(
                400, "INVALID_DATA", "invalid data", {"param": "per_page", "maximum": MAX_PER_PAGE}
            )
        sort_by = q.get("sort_by", "id")
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param": "sort_by"})
        sort_order = q.get("sort_order", "desc")  # Zoho's default is id descending
        if sort_order not in ("asc", "desc"):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param": "sort_order"})
        cvid = q.get("cvid")
        if cvid and "sort_by" in q:
            raise ApiError(
                400,
                "AMBIGUITY_DURING_PROCESSING",
                "ambiguity while processing the request",
                {"ambiguity_due_to": ["cvid", "sort_by"]},
            )
        since = _if_modified_since(call)
        token = q.get("page_token")
        if token and "page" in q:
            raise ApiError(
                400,
                "AMBIGUITY_DURING_PROCESSING",
                "ambiguity while processing the request",
                {"ambiguity_due_to": ["page", "page_token"]},
            )
        binding = (
            meta.api_name,
            tuple(f.api_name for f in fields),
            sort_by,
            sort_order,
            per_page,
            since.isoformat() if since else None,
            cvid,
        )
        where_items: list[Any] = []
        if since is not None:
            where_items.append(Comparison("Modified_Time", ">=", _utc_literal(since)))
        if token:
            state = self._page_state(token, binding)
            served_before, offset, page = state.served, 0, state.served // per_page + 1
            where_items.extend(_keyset(sort_by, sort_order, state.last_sort, state.last_id))
            previous: str | None = state.previous
        else:
            page = _int_param(q, "page", 1)
            if page < 1:
                raise ApiError(400, "INVALID_DATA", "invalid data", {"param": "page"})
            if page * per_page > DISCRETE_LIMIT:
                raise ApiError(
                    400,
                    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                    "You can only get the first 2000 records without using page_token param",
                    {"limit": DISCRETE_LIMIT},
                )
            served_before, offset, previous = (page - 1) * per_page, (page - 1) * per_page, None
        self.charge(
            call,
            "records_cvid" if cvid else "records",
            PRICES["records_cvid" if cvid else "records"],
        )
        where = _conj(where_items)
        limit = min(per_page, TOKEN_LIMIT - served_before)
        columns = ["id"] + [f.api_name for f in fields if f.api_name != "id"]
        select_cols = columns if sort_by in columns else [*columns, sort_by]
        order = (
            [(sort_by, sort_order)]
            if sort_by == "id"
            else [(sort_by, sort_order), ("id", sort_order)]
        )
        table = store.select(
            select_cols, where=where, order_by=order, offset=offset, limit=limit + 1
        )
        more = table.num_rows > limit
        table = table.slice(0, limit)
        if table.num_rows == 0:
            # Zoho: 304 when nothing changed since If-Modified-Since, 204 (empty body) otherwise.
            return Response.empty(304 if since is not None else 204)
        next_token = None
        now = self.clock()
        expiry = now + PAGE_TOKEN_LIFETIME
        if more:
            last_sort = table.column(sort_by)[-1].as_py()
            next_token = _new_page_token()
            with self._token_lock:
                self.page_tokens[next_token] = _PageState(
                    binding=binding,
                    served=served_before + table.num_rows,
                    last_sort=last_sort,
                    last_id=str(table.column("id")[-1].as_py()),
                    expires_at=expiry,
                    previous=token,
                )
        data = render_records(self.org, meta, table.select(columns))
        info = {
            "call": False,
            "per_page": per_page,
            "next_page_token": next_token,
            "count": len(data),
            "sort_by": sort_by,
            "page": page,
            "previous_page_token": previous,
            "page_token_expiry": format_zoho_datetime(expiry, self.org.offset)
            if next_token
            else None,
            "sort_order": sort_order,
            "email": False,
            "more_records": more,
        }
        return Response.json(200, {"data": data, "info": info})

    def _readable_field(self, meta: Any, name: str) -> SimField:
        f = meta.find_field(name)
        if f is None:
            # Zoho documents no code for an unknown name in `fields`; INVALID_DATA naming the
            # field is what it answers for unknown api names elsewhere, so the simulator says that.
            raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": name})
        return f

    def _page_state(self, token: str, binding: tuple[Any, ...]) -> _PageState:
        with self._token_lock:
            state = self.page_tokens.get(token)
        if state is None:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param": "page_token"})
        if self.injector.take_page_token_expiry() or state.expires_at <= self.clock():
            raise ApiError(
                400, "EXPIRED_VALUE", "the page_token has expired", {"param": "page_token"}
            )
        if state.binding != binding:
            raise ApiError(
                400,
                "TOKEN_BOUND_DATA_MISMATCH",
                "the page_token is bound to other parameters",
                {"param": "page_token"},
            )
        if state.served >= TOKEN_LIMIT:
            raise ApiError(
                400,
                "PAGINATION_LIMIT_EXCEEDED",
                "You can only get the first 100000 records using page_token param",
                {"limit": TOKEN_LIMIT},
            )
        return state

    def write_records(self, call: Call, module: str) -> Response:
        """``POST`` (insert), ``PUT`` (update), ``DELETE ?ids=`` on ``/crm/v8/{Module}``."""
        store = self._api_store(module)
        meta = store.meta
        op = {"POST": "CREATE", "PUT": "UPDATE", "DELETE": "DELETE"}[call.method]
        self.require(call, f"ZohoCRM.modules.{meta.api_name}.{op}")
        results: list[dict[str, Any]] = []
        if call.method == "DELETE":
            ids = [i for i in call.query.get("ids", "").split(",") if i]
            if not ids:
                raise ApiError(
                    400,
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param": "ids"},
                )
            self.charge(call, "write", write_price(len(ids)))
            for record_id in ids:
                if store.get(record_id) is None:
                    results.append(
                        _write_error(
                            "INVALID_DATA",
                            "the related id given seems to be invalid",
                            {"id": record_id},
                        )
                    )
                    continue
                store.delete(record_id, permanent=call.query.get("permanent") == "true")
                results.append(_write_ok("record deleted", {"id": record_id}))
            return _multi_status(results, 200)
        body = call.json()
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise ApiError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "data"},
            )
        if len(rows) > 100:
            raise ApiError(
                400, "LIMIT_EXCEEDED", "the number of records exceeds the limit", {"limit": 100}
            )
        self.charge(call, "write", write_price(len(rows)))
        for row in rows:
            try:
                if not isinstance(row, dict):
                    raise ApiError(400, "INVALID_DATA", "invalid data", {})
                values = {k: v for k, v in row.items() if k != "id"}
                if call.method == "POST":
                    record_id = store.insert(values)
                    message = "record added"
                else:
                    record_id = str(row.get("id") or "")
                    if not record_id or store.get(record_id) is None:
                        raise ApiError(
                            400,
                            "INVALID_DATA",
                            "the id given seems to be invalid",
                            {"api_name": "id"},
                        )
                    store.update(record_id, values)
                    message = "record updated"
                current = store.get(record_id) or {}
                details: dict[str, Any] = {"id": record_id}
                for key in ("Modified_Time", "Created_Time"):
                    if isinstance(current.get(key), datetime):
                        details[key] = format_zoho_datetime(current[key], self.org.offset)
                results.append(_write_ok(message, details))
            except (ApiError, QueryError) as err:
                results.append(_write_error(err.code, err.message, err.details))
        return _multi_status(results, 201 if call.method == "POST" else 200)

    def deleted_records(self, call: Call, module: str) -> Response:
        """``GET /crm/v8/{Module}/deleted?type=&page=&per_page=``."""
        store = self._api_store(module)
        self.require(call, f"ZohoCRM.modules.{store.meta.api_name}.READ")
        kind = call.query.get("type", "all")
        if kind not in ("all", "recycle", "permanent"):
            raise ApiError(
                400,
                "PATTERN_NOT_MATCHED",
                "Please check whether the input values are correct",
                {"param_name": "type"},
            )
        page, per_page = _page_params(call.query)
        since = _if_modified_since(call)
        self.charge(call, "deleted", PRICES["deleted"])
        rows = store.deleted(kind=kind, since=since)
        chunk = rows[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response.empty(304 if since is not None and not rows else 204)
        offset = self.org.offset

        def user(u: Any) -> dict[str, str] | None:
            return None if u is None else {"name": u.full_name, "id": u.id}

        data = [
            {
                "deleted_by": user(r.deleted_by),
                "id": r.id,
                "display_name": r.display_name,
                "type": r.type,
                "created_by": user(r.created_by),
                "deleted_time": format_zoho_datetime(r.deleted_time, offset),
            }
            for r in chunk
        ]
        info = {
            "per_page": per_page,
            "count": len(data),
            "page": page,
            "more_records": page * per_page < len(rows),
        }
        return Response.json(200, {"data": data, "info": info})

    # --- COQL -------------------------------------------------------------------------------
    def coql(self, call: Call) -> Response:
        """``POST /crm/v8/coql`` (zoho-api.md §4)."""
        self.require(call, "ZohoCRM.coql.READ")
        body = call.json()
        text = body.get("select_query") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ApiError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "select_query"},
            )
        parsed = coql_mod.parse_coql(text)
        try:
            store = self._api_store(parsed.module)
        except ApiError as err:
            # COQL reports an unknown module as a query error, not as a bad URL.
            raise ApiError(
                400,
                "INVALID_QUERY",
                "invalid query formed",
                {"reason": "the module name given seems to be invalid", "module": parsed.module},
            ) from err
        self.require(call, f"ZohoCRM.modules.{store.meta.api_name}.READ")
        query = coql_mod.validate(parsed, store.meta.field_map)
        self.charge(call, "coql", coql_price(query.effective_limit))
        return coql_response(self.org, store, query)

    # --- Bulk Read --------------------------------------------------------------------------
    def bulk_create(self, call: Call) -> Response:
        """``POST /crm/bulk/v8/read``."""
        self.require(call, "ZohoCRM.bulk.READ")
        ctype = (call.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(
                415, "MEDIA_TYPE_NOT_SUPPORTED", "the given media type is not supported", {}
            )
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
            raise ApiError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"api_name": "query"},
            )
        if body.get("file_type", "csv") != "csv":
            raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": "file_type"})
        query = self._bulk_query(body["query"])
        self.require(call, f"ZohoCRM.modules.{query.module}.READ")
        self.charge(call, "bulk_create", PRICES["bulk_create"])
        job = self.bulk.create(query, self._current_user())
        details = {
            "id": job.id,
            "operation": "read",
            "state": "ADDED",
            "created_by": job.created_by,
            "created_time": format_zoho_datetime(job.created_time, self.org.offset),
        }
        payload = {
            "data": [
                {
                    "status": "success",
                    "code": "ADDED_SUCCESSFULLY",
                    "message": "Added successfully.",
                    "details": details,
                }
            ],
            "info": {},
        }
        return Response.json(201, payload)

    def _current_user(self) -> dict[str, str]:
        user = self.org.users[0]
        return {"id": user.id, "name": user.full_name}

    def _bulk_query(self, raw: dict[str, Any]) -> BulkQuery:
        token = raw.get("page_token")
        if token:
            state = self.bulk.resolve_token(str(token))
            base = state.query
            return BulkQuery(
                module=base.module,
                columns=base.columns,
                fields_echo=base.fields_echo,
                criteria=base.criteria,
                where=base.where,
                page=state.page,
                after_id=state.after_id,
            )
        module_obj = raw.get("module")
        name = module_obj.get("api_name") if isinstance(module_obj, dict) else module_obj
        if not name:
            raise ApiError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"api_name": "module"},
            )
        store = self._store(str(name))
        meta = store.meta
        if not meta.bulk_supported or not meta.api_supported:
            raise ApiError(
                400,
                "MODULE_NOT_SUPPORTED",
                "the module is not supported for bulk read",
                {"api_name": "module"},
            )
        if raw.get("cvid"):
            # The simulated org has no custom views.
            raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": "cvid"})
        names = raw.get("fields") or []
        if not isinstance(names, list):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": "fields"})
        if not names or len(names) > BULK_MAX_FIELDS:
            # Zoho: an empty list, or more than 200 fields, exports every field.
            columns = [f.api_name for f in meta.fields if f.list_readable]
        else:
            columns = []
            for i, n in enumerate(names):
                if "." in str(n):
                    raise ApiError(
                        400, "FIELD_NOT_SUPPORTED", "the field is not supported", {"api_name": n}
                    )
                f = meta.find_field(str(n))
                if f is None:
                    raise ApiError(
                        400,
                        "INVALID_DATA",
                        "invalid data",
                        {"api_name": n, "json_path": f"$.query.fields[{i}]"},
                    )
                if not f.list_readable:
                    raise ApiError(
                        400, "FIELD_NOT_SUPPORTED", "the field is not supported", {"api_name": n}
                    )
                columns.append(f.api_name)
        columns = ["id"] + [c for c in dict.fromkeys(columns) if c != "id"]
        criteria = raw.get("criteria")
        where = parse_criteria(meta, criteria) if criteria else None
        page = raw.get("page", 1)
        if not isinstance(page, int) or page < 1:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": "page"})
        return BulkQuery(
            module=meta.api_name,
            columns=columns,
            fields_echo=[str(n) for n in names],
            criteria=criteria,
            where=where,
            page=page,
            skip_rows=(page - 1) * self.bulk.page_size,
        )

    def bulk_status(self, call: Call, job_id: str) -> Response:
        """``GET /crm/bulk/v8/read/{id}``: each call moves the job one step."""
        self.require(call, "ZohoCRM.bulk.READ")
        self.bulk.get(job_id)
        self.charge(call, "bulk_status", PRICES["bulk_status"])
        job = self.bulk.poll(job_id)
        return Response.json(200, {"data": [self._job_json(job)]})

    def _job_json(self, job: BulkJob) -> dict[str, Any]:
        store = self.org.module(job.query.module)
        query: dict[str, Any] = {
            "module": {"id": store.meta.id, "api_name": job.query.module},
            "page": job.query.page,
        }
        if job.query.fields_echo:
            query["fields"] = job.query.fields_echo
        if job.query.criteria:
            query["criteria"] = job.query.criteria
        out: dict[str, Any] = {
            "id": job.id,
            "operation": "read",
            "state": job.state,
            "query": query,
            "created_by": job.created_by,
            "created_time": format_zoho_datetime(job.created_time, self.org.offset),
            "file_type": "csv",
        }
        if job.state == COMPLETED:
            result: dict[str, Any] = {
                "page": job.query.page,
                "per_page": self.bulk.page_size,
                "count": job.count,
                "download_url": f"/crm/bulk/v8/read/{job.id}/result",
                "more_records": job.more_records,
            }
            if job.more_records:
                result["next_page_token"] = job.next_page_token
            out["result"] = result
        elif job.state == FAILURE:
            out["result"] = {
                "error_message": {
                    "status": "error",
                    "code": "INTERNAL_SERVER_ERROR",
                    "message": "Internal server error occurred while processing the request",
                    "details": {},
                }
            }
        return out

    def bulk_download(self, call: Call, job_id: str) -> Response:
        """``GET /crm/bulk/v8/read/{id}/result``: the ZIP, streamed from disk."""
        self.require(call, "ZohoCRM.bulk.READ")
        path = self.bulk.result_file(job_id)
        wait = self.bulk.take_download_slot()
        if wait is not None:
            # Zoho documents 429 after 10 downloads a minute but no Retry-After header; the
            # simulator adds one (seconds until a slot frees) as a courtesy to clients.
            raise ApiError(
                429,
                "TOO_MANY_REQUESTS",
                "too many download requests, try again after a minute",
                {},
                headers={"Retry-After": str(wait)},
            )
        self.charge(call, "bulk_download", PRICES["bulk_download"])
        return Response(
            200,
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{job_id}.zip"'},
            file=path,
            truncate=self.injector.take_truncate(),
            corrupt=self.injector.take_corrupt(),
        )

    # --- accounts server --------------------------------------------------------------------
    def _oauth(self, call: Call) -> Response:
        params = dict(call.query)
        ctype = (call.header("Content-Type") or "").lower()
        if call.body and "application/x-www-form-urlencoded" in ctype:
            params.update(parse_qsl(call.body.decode("utf-8"), keep_blank_values=True))
        elif call.body and "multipart/form-data" in ctype:
            params.update(_multipart_fields(call.body, ctype))
        try:
            if call.path == "/oauth/v2/token" and call.method == "POST":
                # Kaizen #43: token-endpoint errors, the throttle included, keep HTTP 200.
                return Response.json(200, self.oauth.token(params))
            if call.path == "/oauth/v2/token/revoke" and call.method == "POST":
                self.oauth.revoke(params.get("token", ""))
                return Response.json(200, {"status": "success"})
            if call.path == "/oauth/v2/auth" and call.method == "GET":
                location = self.oauth.authorize(params)
                resp = Response(302, b"", content_type="")
                resp.headers["Location"] = location
                return resp
        except OAuthError as err:
            if call.path == "/oauth/v2/auth":
                page = f"<html><body><h1>Invalid request</h1><p>{err.body.get('error')}</p></body></html>"
                return Response(
                    400,
                    page.encode(),
                    content_type="text/html;charset=UTF-8",
                    code=err.body.get("error"),
                )
            return Response.json(200, err.body, code=str(err.body.get("error")))
        return Response.json(404, {"error": "invalid_request"}, code="invalid_request")

    # --- test control -----------------------------------------------------------------------
    def _control(self, call: Call) -> Response:
        if call.path == "/_sim/credits" and call.method == "GET":
            return Response.json(200, self.credits.snapshot())
        if call.path == "/_sim/requests" and call.method == "GET":
            with self._log_lock:
                records = [r.__dict__ for r in self.requests]
            return Response.json(200, records)
        if call.path == "/_sim/faults":
            if call.method == "POST":
                values = call.json() or {}
                self.faults.update(values)
            return Response.json(200, self.faults.as_dict())
        if call.path == "/_sim/mutate" and call.method == "POST":
            ops = call.json()
            if not isinstance(ops, list):
                raise ValueError("expected a JSON list of operations")
            return Response.json(200, {"results": [self._mutate(op) for op in ops]})
        return Response.json(404, {"error": "unknown control path"})

    def _mutate(self, op: Mapping[str, Any]) -> dict[str, Any]:
        store = self._store(str(op["module"]))
        kind = op["op"]
        if kind == "insert":
            return {"id": store.insert(op.get("values") or {})}
        if kind == "update":
            store.update(str(op["id"]), op.get("values") or {})
            return {"id": str(op["id"])}
        if kind == "delete":
            store.delete(str(op["id"]), permanent=bool(op.get("permanent", False)))
            return {"id": str(op["id"])}
        raise ValueError(f"unknown op {kind!r}")


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class _PageState:
    binding: tuple[Any, ...]
    served: int
    last_sort: Any
    last_id: str
    expires_at: datetime
    previous: str | None


def _new_page_token() -> str:
    import secrets

    return secrets.token_hex(24)


def _int_param(q: Mapping[str, str], name: str, default: int) -> int:
    value = q.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ApiError(400, "INVALID_DATA", "invalid data", {"param": name}) from exc


def _page_params(q: Mapping[str, str]) -> tuple[int, int]:
    page = _int_param(q, "page", 1)
    per_page = _int_param(q, "per_page", 200)
    if page < 1:
        raise ApiError(400, "INVALID_DATA", "invalid data", {"param": "page"})
    if per_page < 1 or per_page > MAX_PER_PAGE:
        raise ApiError(
            400, "INVALID_DATA", "invalid data", {"param": "per_page", "maximum": MAX_PER_PAGE}
        )
    return page, per_page


def _if_modified_since(call: Call) -> datetime | None:
    """Parse ``If-Modified-Since``: ISO 8601 with an offset (documented) or RFC 1123."""
    raw = call.header("If-Modified-Since")
    if not raw:
        return None
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            value = parsedate_to_datetime(text)
        except (TypeError, ValueError) as exc:
            raise ApiError(
                400, "INVALID_DATA", "invalid data", {"header": "If-Modified-Since"}
            ) from exc
    if value.tzinfo is None:
        raise ApiError(400, "INVALID_DATA", "invalid data", {"header": "If-Modified-Since"})
    return value.astimezone(timezone.utc)


def _utc_literal(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _sort_literal(value: Any) -> str:
    if isinstance(value, datetime):
        return _utc_literal(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return str(value)


def _keyset(sort_by: str, order: str, last_sort: Any, last_id: str) -> list[Any]:
    """Rows strictly after (last_sort, last_id) in the page order, as top-level AND items."""
    strict, loose = (">", ">=") if order == "asc" else ("<", "<=")
    if sort_by == "id":
        return [Comparison("id", strict, last_id)]
    if last_sort is None:
        return [Comparison("id", strict, last_id)]
    value = _sort_literal(last_sort)
    return [
        Comparison(sort_by, loose, value),
        Or((Comparison(sort_by, strict, value), Comparison("id", strict, last_id))),
    ]


def _conj(items: Sequence[Any]) -> Any:
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return And(tuple(items))


def _write_ok(message: str, details: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": "SUCCESS", "details": dict(details), "message": message, "status": "success"}


def _write_error(code: str, message: str, details: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": code, "details": dict(details), "message": message, "status": "error"}


def _multi_status(results: list[dict[str, Any]], ok_status: int) -> Response:
    failed = sum(1 for r in results if r["status"] != "success")
    # Zoho: 207 when some records of a multi-record write failed, 400 when all did.
    status = ok_status if failed == 0 else (400 if failed == len(results) else 207)
    return Response.json(status, {"data": results})


def _query_error(err: QueryError) -> ApiError:
    return ApiError(
        int(getattr(err, "status", 400) or 400), err.code, err.message, dict(err.details or {})
    )


def _multipart_fields(body: bytes, ctype: str) -> dict[str, str]:
    match = re.search(r"boundary=\"?([^\";]+)\"?", ctype)
    if not match:
        return {}
    out: dict[str, str] = {}
    for part in body.split(b"--" + match.group(1).encode()):
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            out[name.group(1).decode()] = value.rstrip(b"\r\n").decode("utf-8")
    return out


# --- glue to the data layer (store / render / coql / criteria) -------------------------------


def _csv_writer(org: Org) -> Callable[[str, pa.Table, bool], bytes]:
    def write(module: str, table: pa.Table, header: bool) -> bytes:
        fields = org.module(module).meta.field_map
        return render.csv_bytes(table, fields, org.offset, header=header)

    return write


def render_records(
    org: Org, meta: Any, table: pa.Table, *, coql: bool = False
) -> list[dict[str, Any]]:
    """Canonical rows -> Zoho JSON records."""
    return render.records_to_json(table, meta.field_map, org.offset, coql=coql)


def parse_criteria(meta: Any, criteria: Any) -> Any:
    """Bulk Read criteria JSON -> the filter AST."""
    if not isinstance(criteria, Mapping):
        raise ApiError(400, "INVALID_CRITERIA", "invalid criteria", {"api_name": "criteria"})
    return criteria_mod.criteria_to_expr(criteria, meta.field_map)


def coql_response(org: Org, store: ModuleStore, query: CoqlQuery) -> Response:
    """Run a validated COQL query and build Zoho's answer."""
    if query.is_count:
        count = store.count(query.where)
        label = query.select[0]
        return Response.json(
            200, {"data": [{label: count}], "info": {"count": 1, "more_records": False}}
        )
    limit, offset = query.effective_limit, query.effective_offset
    # Zoho returns `id` with every COQL row, selected or not.
    columns = ["id"] + [c for c in query.select if c != "id"]
    table = store.select(
        columns,
        where=query.where,
        order_by=list(query.order_by) or [("id", "asc")],
        offset=offset,
        limit=limit + 1,
    )
    more = table.num_rows > limit
    table = table.slice(0, limit)
    if table.num_rows == 0:
        return Response.empty(204)
    data = render_records(org, store.meta, table, coql=True)
    return Response.json(200, {"data": data, "info": {"count": len(data), "more_records": more}})


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
