"""The Records API: ``GET /crm/v8/{Module}`` (page or page_token paging, If-Modified-Since, ``ids``,
``converted``), ``GET /crm/v8/{Module}/actions/fetch_full_data`` (whole rich-text values) and the
writes ``POST`` (insert), ``PUT`` (update), ``DELETE ?ids=`` (zoho-api.md §5, §11).

Converted leads are left out of every list answer unless ``converted=both`` (or ``true``) is
asked: Zoho's default is ``false``. Rich text is cut to 500 characters in list answers."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from connector.simulator.credits import PRICES, write_price
from connector.simulator.orgdef import SimField, format_zoho_datetime
from connector.simulator.query import And, Comparison, QueryError, error_body
from connector.simulator.replies import (
    ApiError,
    Call,
    Response,
    check_per_page,
    if_modified_since,
    int_param,
    invalid_data,
    missing_param,
    refuse_data_call,
    render_records,
    require_scope,
)
from connector.simulator.store import with_converted

if TYPE_CHECKING:
    from connector.simulator.server import SimApp
    from connector.simulator.store import ModuleStore

DISCRETE_LIMIT = 2_000
TOKEN_LIMIT = 100_000
PAGE_TOKEN_LIFETIME = timedelta(hours=24)
MAX_FIELDS = 50
# ``ids`` of a list read (Zoho's Get Records page: up to 100) and of fetch_full_data (up to 200).
MAX_LIST_IDS = 100
MAX_FULL_DATA_IDS = 200
CONVERTED_VALUES = ("false", "true", "both")
MAX_WRITE_RECORDS = 100
SORT_FIELDS = ("id", "Created_Time", "Modified_Time")


@dataclass
class PageState:
    """Where a ``page_token`` continues: the request it is bound to and how many rows it served.

    Not a cursor (docs/simulator.md, Assumptions): Zoho documents a token as bound to the query's
    parameters, never as a snapshot or as the position of the last row served, so the next page is
    the same query run again from row ``served``. Rows that tie on the sort key come in a new order
    on each call, and a change between calls shifts rows across the page boundary.
    """

    binding: tuple[Any, ...]
    served: int
    expires_at: datetime
    previous: str | None


def _ambiguity(*params: str) -> ApiError:
    return ApiError(
        400,
        "AMBIGUITY_DURING_PROCESSING",
        "ambiguity while processing the request",
        {"ambiguity_due_to": list(params)},
    )


def list_records(app: SimApp, call: Call, module: str) -> Response:
    """``GET /crm/v8/{Module}`` (zoho-api.md §5)."""
    store = app.api_store(module)
    meta = store.meta
    require_scope(call, f"ZohoCRM.modules.{meta.api_name}.READ")
    refuse_data_call(meta, "records")
    q = call.query
    fields = _requested_fields(meta, q.get("fields"))
    per_page = int_param(q, "per_page", 200)
    check_per_page(per_page)
    sort_by = q.get("sort_by", "id")
    if sort_by not in SORT_FIELDS:
        raise invalid_data({"param": "sort_by"})
    sort_order = q.get("sort_order", "desc")  # Zoho's default is id descending
    if sort_order not in ("asc", "desc"):
        raise invalid_data({"param": "sort_order"})
    cvid = q.get("cvid")
    if cvid and "sort_by" in q:
        raise _ambiguity("cvid", "sort_by")
    since = if_modified_since(call)
    converted = q.get("converted", "false")
    if converted not in CONVERTED_VALUES:
        raise invalid_data({"param": "converted"})
    ids = _ids_param(q, MAX_LIST_IDS) if "ids" in q else None
    token = q.get("page_token")
    if token and "page" in q:
        raise _ambiguity("page", "page_token")
    binding = (
        meta.api_name,
        tuple(f.api_name for f in fields),
        sort_by,
        sort_order,
        per_page,
        since.isoformat() if since else None,
        cvid,
        converted,
        ids,
    )
    where_items: list[Any] = []
    if ids is not None:
        where_items.append(Comparison("id", "in", ids))
    if since is not None:
        where_items.append(Comparison("Modified_Time", ">=", _utc_literal(since)))
    if token:
        state = _page_state(app, token, binding)
        served_before, page = state.served, state.served // per_page + 1
        offset, previous = state.served, state.previous
    else:
        page = _discrete_page(q, per_page)
        served_before, offset, previous = (page - 1) * per_page, (page - 1) * per_page, None
    kind = "records_cvid" if cvid else "records"
    app.charge(call, kind, PRICES[kind])
    limit = min(per_page, TOKEN_LIMIT - served_before)
    columns = ["id"] + [f.api_name for f in fields if f.api_name != "id"]
    # Sorted by `sort_by` alone: rows tied on Created_Time or Modified_Time come in a new order
    # on every call, and Zoho's API has no second sort key to fix it (docs/simulator.md).
    table = store.select(
        columns,
        where=with_converted(meta, _conj(where_items), converted),
        order_by=[(sort_by, sort_order)],
        offset=offset,
        limit=limit + 1,
    )
    more = table.num_rows > limit
    table = table.slice(0, limit)
    if table.num_rows == 0:
        # Zoho: 304 when nothing changed since If-Modified-Since, 204 (empty body) otherwise.
        return Response.empty(304 if since is not None else 204)
    next_token = None
    expiry = app.clock() + PAGE_TOKEN_LIFETIME
    if more:
        next_token = secrets.token_hex(24)
        with app.page_token_lock:
            app.page_tokens[next_token] = PageState(
                binding=binding,
                served=served_before + table.num_rows,
                expires_at=expiry,
                previous=token,
            )
    data = render_records(app.org, meta, table.select(columns))
    info = {
        "call": False,
        "per_page": per_page,
        "next_page_token": next_token,
        "count": len(data),
        "sort_by": sort_by,
        "page": page,
        "previous_page_token": previous,
        "page_token_expiry": format_zoho_datetime(expiry, app.org.offset) if next_token else None,
        "sort_order": sort_order,
        "email": False,
        "more_records": more,
    }
    return Response.json(200, {"data": data, "info": info})


def _ids_param(q: Mapping[str, str], most: int) -> tuple[str, ...]:
    """The ``ids`` parameter: comma-separated record ids, at least one, at most ``most``."""
    ids = tuple(dict.fromkeys(i.strip() for i in q.get("ids", "").split(",") if i.strip()))
    if not ids:
        raise missing_param({"param": "ids"})
    if len(ids) > most:
        raise ApiError(
            400, "LIMIT_EXCEEDED", "the number of ids exceeds the limit", {"limit": most}
        )
    return ids


def fetch_full_data(app: SimApp, call: Call, module: str) -> Response:
    """``GET /crm/v8/{Module}/actions/fetch_full_data?ids=…&fields=…``: whole rich-text values.

    Zoho's Get Rich Text Fields page: up to 200 ids; ``fields`` is mandatory with several ids and
    takes rich-text fields only; the answer is ``{"data": [{<field>: <html>, "id": …}]}``. Its
    price is not documented: the simulator charges a records call (1 credit). Assumed: ids Zoho
    does not have are left out of the answer (204 when none is left), and converted leads are
    served (the call names its records by id; it has no ``converted`` parameter).
    """
    store = app.api_store(module)
    meta = store.meta
    require_scope(call, f"ZohoCRM.modules.{meta.api_name}.READ")
    ids = _ids_param(call.query, MAX_FULL_DATA_IDS)
    raw_fields = call.query.get("fields")
    if not raw_fields:
        raise missing_param({"param": "fields"})
    fields = [_readable_field(meta, n.strip()) for n in raw_fields.split(",") if n.strip()]
    for f in fields:
        if not f.rich_text:
            # "This API exclusively fetches rich text fields and their data."
            raise invalid_data({"api_name": f.api_name, "reason": "not a rich text field"})
    app.charge(call, "records", PRICES["records"])
    names = [f.api_name for f in fields if f.api_name != "id"]
    table = store.select(["id", *names], where=Comparison("id", "in", ids))
    if table.num_rows == 0:
        return Response.empty(204)
    data = [
        {**{name: row[name] for name in names}, "id": str(row["id"])} for row in table.to_pylist()
    ]
    return Response.json(200, {"data": data})


def _requested_fields(meta: Any, raw_fields: str | None) -> list[SimField]:
    """The ``fields`` parameter: required, at most 50, each a field the list API returns."""
    if not raw_fields:
        raise missing_param({"param": "fields"})
    names = [n.strip() for n in raw_fields.split(",") if n.strip()]
    if len(names) > MAX_FIELDS:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            "the number of fields exceeds the limit",
            {"limit": MAX_FIELDS, "param": "fields"},
        )
    return [_readable_field(meta, n) for n in names]


def _readable_field(meta: Any, name: str) -> SimField:
    f = meta.find_field(name)
    if f is None:
        # Zoho documents no code for an unknown name in `fields`; INVALID_DATA naming the
        # field is what it answers for unknown api names elsewhere, so the simulator says that.
        raise invalid_data({"api_name": name})
    return f


def _discrete_page(q: Mapping[str, str], per_page: int) -> int:
    """``page`` without a page_token: only the first 2,000 records can be reached this way."""
    page = int_param(q, "page", 1)
    if page < 1:
        raise invalid_data({"param": "page"})
    if page * per_page > DISCRETE_LIMIT:
        raise ApiError(
            400,
            "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "You can only get the first 2000 records without using page_token param",
            {"limit": DISCRETE_LIMIT},
        )
    return page


def _page_state(app: SimApp, token: str, binding: tuple[Any, ...]) -> PageState:
    with app.page_token_lock:
        state = app.page_tokens.get(token)
    if state is None:
        raise invalid_data({"param": "page_token"})
    if app.injector.take_page_token_expiry() or state.expires_at <= app.clock():
        raise ApiError(400, "EXPIRED_VALUE", "the page_token has expired", {"param": "page_token"})
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


def _utc_literal(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _conj(items: Sequence[Any]) -> Any:
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return And(tuple(items))


# --- writes -----------------------------------------------------------------------------------


def write_records(app: SimApp, call: Call, module: str) -> Response:
    """``POST`` (insert), ``PUT`` (update), ``DELETE ?ids=`` on ``/crm/v8/{Module}``."""
    store = app.api_store(module)
    op = {"POST": "CREATE", "PUT": "UPDATE", "DELETE": "DELETE"}[call.method]
    require_scope(call, f"ZohoCRM.modules.{store.meta.api_name}.{op}")
    if call.method == "DELETE":
        return _delete_records(app, call, store)
    body = call.json()
    rows = body.get("data") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows:
        raise missing_param({"param": "data"})
    if len(rows) > MAX_WRITE_RECORDS:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            "the number of records exceeds the limit",
            {"limit": MAX_WRITE_RECORDS},
        )
    app.charge(call, "write", write_price(len(rows)))
    results: list[dict[str, Any]] = []
    for row in rows:
        try:
            results.append(_write_row(app, store, call.method, row))
        except (ApiError, QueryError) as err:
            results.append(error_body(err.code, err.message, err.details))
    return _multi_status(results, 201 if call.method == "POST" else 200)


def _delete_records(app: SimApp, call: Call, store: ModuleStore) -> Response:
    ids = [i for i in call.query.get("ids", "").split(",") if i]
    if not ids:
        raise missing_param({"param": "ids"})
    app.charge(call, "write", write_price(len(ids)))
    results: list[dict[str, Any]] = []
    for record_id in ids:
        if store.get(record_id) is None:
            results.append(
                error_body(
                    "INVALID_DATA", "the related id given seems to be invalid", {"id": record_id}
                )
            )
            continue
        store.delete(record_id, permanent=call.query.get("permanent") == "true")
        results.append(_write_ok("record deleted", {"id": record_id}))
    return _multi_status(results, 200)


def _write_row(app: SimApp, store: ModuleStore, method: str, row: Any) -> dict[str, Any]:
    """Insert (POST) or update (PUT) one record; its entry in the answer's ``data``."""
    if not isinstance(row, dict):
        raise invalid_data({})
    values = {k: v for k, v in row.items() if k != "id"}
    if method == "POST":
        record_id = store.insert(values)
        message = "record added"
    else:
        record_id = str(row.get("id") or "")
        if not record_id or store.get(record_id) is None:
            raise ApiError(
                400, "INVALID_DATA", "the id given seems to be invalid", {"api_name": "id"}
            )
        store.update(record_id, values)
        message = "record updated"
    current = store.get(record_id) or {}
    details: dict[str, Any] = {"id": record_id}
    for key in ("Modified_Time", "Created_Time"):
        if isinstance(current.get(key), datetime):
            details[key] = format_zoho_datetime(current[key], app.org.offset)
    return _write_ok(message, details)


def _write_ok(message: str, details: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": "SUCCESS", "details": dict(details), "message": message, "status": "success"}


def _multi_status(results: list[dict[str, Any]], ok_status: int) -> Response:
    failed = sum(1 for r in results if r["status"] != "success")
    # Zoho: 207 when some records of a multi-record write failed, 400 when all did.
    status = ok_status if failed == 0 else (400 if failed == len(results) else 207)
    return Response.json(status, {"data": results})
