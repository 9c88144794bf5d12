"""Metadata endpoints: ``/crm/v8/org``, ``/crm/v8/users``, ``/crm/v8/settings/modules`` and
``/crm/v8/settings/fields``. Each costs one credit (zoho-api.md §7)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from connector.simulator.credits import PRICES
from connector.simulator.orgdef import SimUser
from connector.simulator.replies import (
    Call,
    Response,
    invalid_data,
    missing_param,
    page_params,
    require_scope,
)

if TYPE_CHECKING:
    from connector.simulator.server import SimApp


def get_org(app: SimApp, call: Call) -> Response:
    """``GET /crm/v8/org``."""
    require_scope(call, "ZohoCRM.org.READ")
    app.charge(call, "metadata", PRICES["metadata"])
    return Response.json(200, {"org": [app.org.org_json()]})


def _every(users: Sequence[SimUser]) -> list[SimUser]:
    return list(users)


def _active(users: Sequence[SimUser]) -> list[SimUser]:
    return [u for u in users if u.active]


def _inactive(users: Sequence[SimUser]) -> list[SimUser]:
    return [u for u in users if not u.active]


def _current(users: Sequence[SimUser]) -> list[SimUser]:
    return list(users[:1])


def _admins(users: Sequence[SimUser]) -> list[SimUser]:
    return [u for u in users if "admin" in str(u.profile.get("name", "")).lower()]


# ``type`` of GET /users -> which users it lists. Every simulated user is confirmed, and the
# token's owner (CurrentUser) is the first one.
USER_TYPES: dict[str, Callable[[Sequence[SimUser]], list[SimUser]]] = {
    "AllUsers": _every,
    "ConfirmedUsers": _every,
    "NotConfirmedUsers": _every,
    "ActiveUsers": _active,
    "ActiveConfirmedUsers": _active,
    "DeactiveUsers": _inactive,
    "CurrentUser": _current,
    "AdminUsers": _admins,
}


def get_users(app: SimApp, call: Call) -> Response:
    """``GET /crm/v8/users?type=&page=&per_page=``."""
    require_scope(call, "ZohoCRM.users.READ")
    kind = call.query.get("type", "AllUsers")
    page, per_page = page_params(call.query)
    select = USER_TYPES.get(kind)
    if select is None:
        raise invalid_data({"param_name": "type"})
    users = select(app.org.users)
    app.charge(call, "metadata", PRICES["metadata"])
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


def get_modules(app: SimApp, call: Call) -> Response:
    """``GET /crm/v8/settings/modules``."""
    require_scope(call, "ZohoCRM.settings.modules.READ")
    app.charge(call, "metadata", PRICES["metadata"])
    return Response.json(200, {"modules": [s.meta.to_api() for s in app.org.modules.values()]})


def get_fields(app: SimApp, call: Call) -> Response:
    """``GET /crm/v8/settings/fields?module=&type=``.

    Without ``type`` Zoho lists the fields in use (in some layout); ``type=all`` lists every
    field, those removed from every layout too, and ``type=unused`` only those (zoho-api.md §11).
    A fixture field with ``sim.outside_layouts`` is such a field: it holds data that every read
    returns, but the default listing leaves it out.
    """
    require_scope(call, "ZohoCRM.settings.fields.READ")
    name = call.query.get("module")
    if not name:
        raise missing_param({"param": "module"})
    kind = call.query.get("type")
    if kind not in (None, "all", "unused"):
        raise invalid_data({"param_name": "type"})
    store = app.store(name)
    app.charge(call, "metadata", PRICES["metadata"])
    fields = [
        f
        for f in store.meta.fields
        if kind == "all" or bool(f.sim.get("outside_layouts")) == (kind == "unused")
    ]
    return Response.json(200, {"fields": [f.to_api() for f in fields]})
