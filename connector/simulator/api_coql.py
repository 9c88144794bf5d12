"""COQL: ``POST /crm/v8/coql`` (zoho-api.md §4). Parsing and validation are ``coql.py``'s; this
module checks the request, charges by the query's LIMIT and builds Zoho's answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.simulator import coql as coql_mod
from connector.simulator.coql import CoqlQuery
from connector.simulator.credits import coql_price
from connector.simulator.query import comparisons
from connector.simulator.replies import (
    ApiError,
    Call,
    Response,
    missing_param,
    refuse_data_call,
    render_records,
    require_scope,
)
from connector.simulator.store import with_converted

if TYPE_CHECKING:
    from connector.simulator.server import SimApp
    from connector.simulator.store import ModuleStore, Org


def run_coql(app: SimApp, call: Call) -> Response:
    """``POST /crm/v8/coql``."""
    require_scope(call, "ZohoCRM.coql.READ")
    body = call.json()
    text = body.get("select_query") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise missing_param({"param": "select_query"})
    parsed = coql_mod.parse_coql(text)
    try:
        store = app.api_store(parsed.module)
    except ApiError as err:
        # COQL reports an unknown module as a query error, not as a bad URL.
        raise ApiError(
            400,
            "INVALID_QUERY",
            "invalid query formed",
            {"reason": "the module name given seems to be invalid", "module": parsed.module},
        ) from err
    require_scope(call, f"ZohoCRM.modules.{store.meta.api_name}.READ")
    refuse_data_call(store.meta, "coql")
    query = coql_mod.validate(parsed, store.meta.field_map)
    refuse_columns(store, query)
    app.charge(call, "coql", coql_price(query.effective_limit))
    return coql_response(app.org, store, query)


def refuse_columns(store: ModuleStore, query: CoqlQuery) -> None:
    """400 INVALID_QUERY naming the first column COQL does not support (zoho-api.md §11: Events'
    Participants, line items such as Product_Details): in the select list, where or order by.

    Assumption: Zoho names the column in ``details.column_name``, as for any invalid column.
    """
    used = list(query.select)
    if query.where is not None:
        used.extend(c.field for c in comparisons(query.where))
    used.extend(name for name, _ in query.order_by)
    for name in used:
        f = store.meta.find_field(name)
        if f is not None and f.coql_refused:
            raise ApiError(
                400,
                "INVALID_QUERY",
                "invalid query formed",
                {"column_name": f.api_name, "reason": "the field is not supported in COQL"},
            )


def coql_response(org: Org, store: ModuleStore, query: CoqlQuery) -> Response:
    """Run a validated COQL query and build Zoho's answer.

    Assumed (the COQL pages are silent): like the Records API, COQL leaves converted leads out
    unless the query names ``Converted__s`` (``with_converted``); rich text is cut to 500
    characters as in every list answer.
    """
    where = with_converted(store.meta, query.where)
    if query.is_count:
        count = store.count(where)
        label = query.select[0]
        return Response.json(
            200, {"data": [{label: count}], "info": {"count": 1, "more_records": False}}
        )
    limit, offset = query.effective_limit, query.effective_offset
    # Zoho returns `id` with every COQL row, selected or not.
    columns = ["id"] + [c for c in query.select if c != "id"]
    table = store.select(
        columns,
        where=where,
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
