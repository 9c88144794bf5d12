"""What every endpoint shares: the incoming ``Call``, the ``Response``, Zoho's ``ApiError`` and
the checks several API families make (scopes, paging parameters, ``If-Modified-Since``).

Zoho error bodies are ``{"code","details","message","status":"error"}`` (zoho-api.md §7).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.simulator import render
from connector.simulator.oauth import scope_covers
from connector.simulator.query import QueryError, error_body

if TYPE_CHECKING:
    from connector.simulator.orgdef import SimModule
    from connector.simulator.store import Org

JSON_TYPE = "application/json;charset=UTF-8"
MAX_PER_PAGE = 200


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

    @classmethod
    def from_query_error(cls, err: QueryError) -> ApiError:
        """A refused query, criteria or write value, as the call's answer."""
        return cls(
            int(getattr(err, "status", 400) or 400), err.code, err.message, dict(err.details or {})
        )

    def body(self) -> dict[str, Any]:
        """Zoho's error body."""
        return error_body(self.code, self.message, self.details)


def invalid_data(details: Mapping[str, Any]) -> ApiError:
    """400 INVALID_DATA, Zoho's usual answer to a parameter it cannot use."""
    return ApiError(400, "INVALID_DATA", "invalid data", details)


def missing_param(details: Mapping[str, Any]) -> ApiError:
    """400 REQUIRED_PARAM_MISSING."""
    return ApiError(
        400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", details
    )


def url_not_found() -> ApiError:
    """404 INVALID_URL_PATTERN: no endpoint has this method and path."""
    return ApiError(
        404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
    )


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


def require_scope(call: Call, scope: str) -> None:
    """401 OAUTH_SCOPE_MISMATCH unless the token's scopes cover ``scope``."""
    if not scope_covers(call.scopes, scope):
        raise ApiError(
            401,
            "OAUTH_SCOPE_MISMATCH",
            "invalid oauth scope to access this URL",
            {"required_scope": scope},
        )


def int_param(q: Mapping[str, str], name: str, default: int) -> int:
    """An integer query parameter (``default`` when absent or empty)."""
    value = q.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise invalid_data({"param": name}) from exc


def check_per_page(per_page: int) -> None:
    """``per_page`` is 1 to 200."""
    if per_page < 1 or per_page > MAX_PER_PAGE:
        # Zoho's exact answer to per_page > 200 is undocumented; INVALID_DATA is its usual code.
        raise invalid_data({"param": "per_page", "maximum": MAX_PER_PAGE})


def page_params(q: Mapping[str, str]) -> tuple[int, int]:
    """``page`` and ``per_page`` of the page-numbered lists (users, deleted records)."""
    page = int_param(q, "page", 1)
    per_page = int_param(q, "per_page", 200)
    if page < 1:
        raise invalid_data({"param": "page"})
    check_per_page(per_page)
    return page, per_page


def if_modified_since(call: Call) -> datetime | None:
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
            raise invalid_data({"header": "If-Modified-Since"}) from exc
    if value.tzinfo is None:
        raise invalid_data({"header": "If-Modified-Since"})
    return value.astimezone(timezone.utc)


def render_records(
    org: Org, meta: Any, table: pa.Table, *, coql: bool = False
) -> list[dict[str, Any]]:
    """Canonical rows -> Zoho JSON records."""
    return render.records_to_json(table, meta.field_map, org.offset, coql=coql)


def refuse_data_call(meta: SimModule, api: str) -> None:
    """Refuse a data call (``api``: coql, records, deleted, bulk) to a module Zoho lists as
    API-supported but will not serve (``SimModule.refuse``).

    Assumption (peer connectors only; Zoho documents none of it): ``CTI_Entry`` answers 400
    ``INVALID_MODULE`` to every data call; ``Email_Analytics`` and the like answer COQL with 400
    ``INVALID_QUERY`` naming no column, and the other data APIs with 400 ``NOT_SUPPORTED``.
    Their ``settings/fields`` answers as for any module.
    """
    code = meta.refuse
    if code is None:
        return
    if code == "INVALID_MODULE":
        raise ApiError(
            400,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
            {"resource_path_index": 0},
        )
    if api == "coql":
        raise ApiError(
            400,
            "INVALID_QUERY",
            "invalid query formed",
            {"reason": "the module is not supported for this operation"},
        )
    raise ApiError(400, "NOT_SUPPORTED", "the module is not supported for this operation", {})
