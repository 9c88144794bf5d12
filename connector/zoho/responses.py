"""Zoho's answers mapped to the error hierarchy: which status and code mean retry, stop or skip.

Zoho answers an error with a JSON body ``{"code", "message", "details", "status": "error"}`` (for a
multi-record call, one such object per element of ``data``). 429 and 5xx are retried, except a
429 that says for certain that the day's credits are spent (never decided by its message); a missing scope, a refused token and bad credentials
are auth errors; a module the org cannot serve is skipped; any other 4xx is fatal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from connector.errors import (
    AuthError,
    CreditsExhausted,
    FatalAPIError,
    ModuleUnavailable,
    RetriableAPIError,
)
from connector.redact import redact
from connector.zoho import limits
from connector.zoho.scopes import scope_for_call

# Codes of a 401 that mean the access token expired or was revoked: refresh it and send again.
INVALID_TOKEN_CODES = frozenset({"INVALID_TOKEN", "INVALID_OAUTHTOKEN"})
# Codes that mean the org cannot serve this module to this user: skip it, go on with the rest.
_UNAVAILABLE_CODES = frozenset(
    {
        "NO_PERMISSION",
        "NOT_SUPPORTED",
        "INVALID_MODULE",
        "MODULE_NOT_SUPPORTED",
        "FEATURE_NOT_SUPPORTED",
    }
)


def parse_error_body(response: requests.Response) -> tuple[str | None, str, Any]:
    """(code, message, details) of a Zoho error body, tolerating any shape."""
    try:
        body = response.json()
    except ValueError:
        return None, (response.text or "")[:200].strip(), None
    if isinstance(body, Mapping):
        if "code" not in body and isinstance(body.get("data"), list) and body["data"]:
            first = body["data"][0]
            if isinstance(first, Mapping):
                body = first
        code = body.get("code")
        return (
            str(code) if code is not None else None,
            str(body.get("message") or ""),
            body.get("details"),
        )
    return None, str(body)[:200], None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: rare, and the backoff still applies
    return max(0.0, seconds)


def _credits_spent(response: requests.Response, code: str | None) -> bool:
    """Whether a 429 says for certain that the org's daily credits are spent.

    Zoho answers 429 TOO_MANY_REQUESTS both when the credits are spent and when too many calls
    run at once, and its message is not a contract: it may speak of credits either way. So only
    ``X-API-CREDITS-REMAINING: 0`` (the header appears once half the day's credits are used) or
    the code ``LIMIT_REACHED`` count; any other 429 is waited out (:mod:`connector.zoho.retry`),
    and only 429s that persist through the rate-limit budget are taken as spent credits.
    """
    remaining = response.headers.get(limits.CREDITS_REMAINING_HEADER, "").strip()
    try:
        if remaining and float(remaining) <= 0:
            return True
    except ValueError:
        pass
    return code == limits.CREDITS_SPENT_CODE


def _describe(
    method: str, url: str, status: int, code: str | None, message: str, details: Any
) -> str:
    text = f"Zoho answered HTTP {status}{' ' + code if code else ''} to {method} {url}"
    if message:
        text += f": {message}"
    if details:
        try:
            shown = json.dumps(details, sort_keys=True, default=str)
        except (TypeError, ValueError):
            shown = str(details)
        text += f" {shown[:300]}"
    return redact(text)


def raise_for_response(method: str, url: str, response: requests.Response) -> None:
    """Raise the error Zoho's answer means, or return when it is a success (2xx or 304)."""
    status = response.status_code
    if 200 <= status < 300 or status == 304:
        return
    code, message, details = parse_error_body(response)
    text = _describe(method, url, status, code, message, details)
    common: dict[str, Any] = {"status": status, "code": code, "url": url, "details": details}
    if status == 429:
        if _credits_spent(response, code):
            raise CreditsExhausted(
                text + " (the org's daily API credits are spent: run again when they renew)",
                **common,
            )
        raise RetriableAPIError(text, retry_after=_retry_after(response), **common)
    if status >= 500:
        raise RetriableAPIError(text, retry_after=_retry_after(response), **common)
    if code == "OAUTH_SCOPE_MISMATCH" and status in (401, 403):
        raise AuthError(
            f"the token lacks the scope this call needs ({scope_for_call(method, url)} for "
            f"{method} {urlsplit(url).path}): generate a refresh token whose Scope includes it"
        )
    if status == 401:
        if code == "AUTHENTICATION_FAILURE":
            raise AuthError(
                "Zoho did not accept the credentials (AUTHENTICATION_FAILURE): check the "
                "OAuth settings and that Region/InstanceType match the org"
            )
        raise AuthError(
            f"Zoho refused the access token ({code or 'HTTP 401'}): check the OAuth settings"
        )
    if code in _UNAVAILABLE_CODES:
        raise ModuleUnavailable(text, **common)
    raise FatalAPIError(text, **common)
