"""The test-control surface (not Zoho; never needed by the connector): ``GET /_sim/credits``,
``GET /_sim/requests``, ``/_sim/faults`` (POST changes them, any method reads them) and
``POST /_sim/mutate``. These calls are never logged, charged or faulted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.simulator.replies import Call, Response

if TYPE_CHECKING:
    from connector.simulator.server import SimApp


def get_credits(app: SimApp, call: Call) -> Response:
    """``GET /_sim/credits``: the ledger's totals."""
    return Response.json(200, app.credits.snapshot())


def get_requests(app: SimApp, call: Call) -> Response:
    """``GET /_sim/requests``: the request log."""
    return Response.json(200, [r.__dict__ for r in app.request_log()])


def get_faults(app: SimApp, call: Call) -> Response:
    """The fault settings."""
    return Response.json(200, app.faults.as_dict())


def set_faults(app: SimApp, call: Call) -> Response:
    """``POST /_sim/faults``: change some settings; answers with them all."""
    app.faults.update(call.json() or {})
    return get_faults(app, call)


def mutate(app: SimApp, call: Call) -> Response:
    """``POST /_sim/mutate``: a list of inserts, updates and deletes, as another user would."""
    ops = call.json()
    if not isinstance(ops, list):
        raise ValueError("expected a JSON list of operations")
    return Response.json(200, {"results": [_mutate_one(app, op) for op in ops]})


def _mutate_one(app: SimApp, op: Mapping[str, Any]) -> dict[str, Any]:
    store = app.store(str(op["module"]))
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


def unknown(app: SimApp, call: Call) -> Response:
    """Any other control path."""
    return Response.json(404, {"error": "unknown control path"})
