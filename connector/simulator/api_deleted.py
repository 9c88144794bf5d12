"""Deleted records: ``GET /crm/v8/{Module}/deleted?type=&page=&per_page=`` (zoho-api.md §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.simulator.credits import PRICES
from connector.simulator.orgdef import SimUser, format_zoho_datetime
from connector.simulator.replies import (
    ApiError,
    Call,
    Response,
    if_modified_since,
    page_params,
    refuse_data_call,
    require_scope,
)

if TYPE_CHECKING:
    from connector.simulator.server import SimApp

DELETED_TYPES = ("all", "recycle", "permanent")


def deleted_records(app: SimApp, call: Call, module: str) -> Response:
    """``GET /crm/v8/{Module}/deleted``: newest first, page-numbered."""
    store = app.api_store(module)
    refuse_data_call(store.meta, "deleted")
    require_scope(call, f"ZohoCRM.modules.{store.meta.api_name}.READ")
    kind = call.query.get("type", "all")
    if kind not in DELETED_TYPES:
        raise ApiError(
            400,
            "PATTERN_NOT_MATCHED",
            "Please check whether the input values are correct",
            {"param_name": "type"},
        )
    page, per_page = page_params(call.query)
    since = if_modified_since(call)
    app.charge(call, "deleted", PRICES["deleted"])
    rows = store.deleted(kind=kind, since=since)
    chunk = rows[(page - 1) * per_page : page * per_page]
    if not chunk:
        return Response.empty(304 if since is not None and not rows else 204)
    offset = app.org.offset
    data = [
        {
            "deleted_by": _user(r.deleted_by),
            "id": r.id,
            "display_name": r.display_name,
            "type": r.type,
            "created_by": _user(r.created_by),
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


def _user(u: SimUser | None) -> dict[str, Any] | None:
    return None if u is None else {"name": u.full_name, "id": u.id}
