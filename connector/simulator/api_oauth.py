"""The accounts server: ``POST /oauth/v2/token`` (refresh_token and authorization_code grants),
``POST /oauth/v2/token/revoke`` and ``GET /oauth/v2/auth`` (the authorization page). The rules
(clients, tokens, throttles) are ``oauth.py``'s; this module speaks the HTTP side."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from connector.simulator.oauth import THROTTLE_BODY, OAuthError
from connector.simulator.replies import Call, Response

if TYPE_CHECKING:
    from connector.simulator.server import SimApp


def form_params(call: Call) -> dict[str, str]:
    """The query string plus a form body (url-encoded or multipart); the body wins."""
    params = dict(call.query)
    ctype = (call.header("Content-Type") or "").lower()
    if call.body and "application/x-www-form-urlencoded" in ctype:
        params.update(parse_qsl(call.body.decode("utf-8"), keep_blank_values=True))
    elif call.body and "multipart/form-data" in ctype:
        params.update(_multipart_fields(call.body, ctype))
    return params


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


def token(app: SimApp, call: Call, form: dict[str, str]) -> Response:
    """``POST /oauth/v2/token``."""
    try:
        return Response.json(200, app.oauth.token(form))
    except OAuthError as err:
        # Kaizen #43: token-endpoint errors, the throttle included, keep HTTP 200; Singer's
        # tap matches the throttle as 400, so the throttle's status is a setting.
        status = app.oauth_throttle_status if err.body == THROTTLE_BODY else 200
        return Response.json(status, err.body, code=str(err.body.get("error")))


def revoke(app: SimApp, call: Call, form: dict[str, str]) -> Response:
    """``POST /oauth/v2/token/revoke``."""
    app.oauth.revoke(form.get("token", ""))
    return Response.json(200, {"status": "success"})


def authorize(app: SimApp, call: Call, form: dict[str, str]) -> Response:
    """``GET /oauth/v2/auth``: redirect with a code, or an HTML error page."""
    try:
        location = app.oauth.authorize(form)
    except OAuthError as err:
        page = f"<html><body><h1>Invalid request</h1><p>{err.body.get('error')}</p></body></html>"
        return Response(
            400,
            page.encode(),
            content_type="text/html;charset=UTF-8",
            code=err.body.get("error"),
        )
    resp = Response(302, b"", content_type="")
    resp.headers["Location"] = location
    return resp


def unknown(app: SimApp, call: Call, form: dict[str, str]) -> Response:
    """Any other accounts path or method."""
    return Response.json(404, {"error": "invalid_request"}, code="invalid_request")
