"""Zoho's OAuth scopes: their names, which one each API needs, and when a granted scope covers one.

Zoho names a scope ``Service.path….OPERATION`` (``ZohoCRM.settings.fields.READ``) and lets a
broader one stand for the narrower ones (``ZohoCRM.modules.ALL`` covers
``ZohoCRM.modules.Leads.READ``). Each API page of Zoho's CRM documentation names the scope it
needs: the Records and Deleted Records APIs ``ZohoCRM.modules.{Module}.READ`` (or
``ZohoCRM.modules.READ``), the metadata APIs ``ZohoCRM.settings.{modules|fields}.READ``, the org
and users APIs ``ZohoCRM.org.READ`` and ``ZohoCRM.users.READ``, COQL ``ZohoCRM.coql.READ`` and
Bulk Read ``ZohoCRM.bulk.READ``. A call without its scope is refused with OAUTH_SCOPE_MISMATCH.

A token response lists the scopes granted in ``scope`` (:func:`parse_granted`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from connector.config import APIType, Settings, split_scopes
from connector.zoho.endpoints import relative_path

__all__ = [
    "BULK_READ",
    "COQL_READ",
    "MODULES_READ",
    "ORG_READ",
    "READ_SCOPES",
    "SCOPE_REASONS",
    "SETTINGS_FIELDS_READ",
    "SETTINGS_MODULES_READ",
    "USERS_READ",
    "bulk_allowed",
    "coql_allowed",
    "missing_scopes",
    "parse_granted",
    "required_scopes",
    "scope_covers",
    "scope_for_call",
    "scope_reason",
]

MODULES_READ = "ZohoCRM.modules.READ"
SETTINGS_MODULES_READ = "ZohoCRM.settings.modules.READ"
SETTINGS_FIELDS_READ = "ZohoCRM.settings.fields.READ"
ORG_READ = "ZohoCRM.org.READ"
USERS_READ = "ZohoCRM.users.READ"
COQL_READ = "ZohoCRM.coql.READ"
BULK_READ = "ZohoCRM.bulk.READ"

# Read-only scopes for every API the connector may call: what the OAuth setup asks for.
READ_SCOPES: tuple[str, ...] = (
    MODULES_READ,
    SETTINGS_MODULES_READ,
    SETTINGS_FIELDS_READ,
    ORG_READ,
    USERS_READ,
    COQL_READ,
    BULK_READ,
)

# Why each scope is needed, for the warning about a missing one.
SCOPE_REASONS: dict[str, str] = {
    MODULES_READ: "reading records",
    SETTINGS_MODULES_READ: "listing modules",
    SETTINGS_FIELDS_READ: "reading field metadata",
    ORG_READ: "reading the org",
    BULK_READ: "APIType=Bulk",
    COQL_READ: "COQL reads (UseCOQL=true, or incremental reads with APIType=Bulk)",
}


def parse_granted(value: object) -> tuple[str, ...] | None:
    """The scopes a token response's ``scope`` lists, or None when it lists none.

    Zoho separates them with spaces (commas are accepted too, as in the ``Scope`` setting).
    """
    return split_scopes(value) if isinstance(value, str) and value else None


def required_scopes(settings: Settings) -> list[str]:
    """The OAuth scopes the APIs chosen by ``settings`` need."""
    scopes = [MODULES_READ, SETTINGS_MODULES_READ, SETTINGS_FIELDS_READ, ORG_READ]
    if settings.api_type is APIType.BULK:
        scopes.append(BULK_READ)
    # Bulk plans may still read incremental changes through COQL.
    if settings.use_coql or settings.api_type is APIType.BULK:
        scopes.append(COQL_READ)
    return scopes


def scope_reason(scope: str) -> str:
    """What ``scope`` is needed for, in words (for the warning about a missing one)."""
    return SCOPE_REASONS.get(scope, "the chosen APIs")


def scope_covers(granted: Iterable[str], required: str) -> bool:
    """Whether any of the ``granted`` scopes covers ``required``.

    Zoho scopes read ``Service.path….OPERATION``: a granted scope covers a required one when the
    service matches, its path is a prefix of the required path, and its operation is ``ALL`` or the
    same operation (``ZohoCRM.modules.ALL`` covers ``ZohoCRM.modules.Leads.READ``;
    ``ZohoCRM.settings.ALL`` covers ``ZohoCRM.settings.fields.READ``). Case is ignored.
    """
    want = required.lower().split(".")
    if len(want) < 2:
        return required.lower() in (g.lower() for g in granted)
    for scope in granted:
        have = scope.strip().lower().split(".")
        if len(have) < 2 or have[0] != want[0]:
            continue
        have_path, have_op = have[1:-1], have[-1]
        want_path, want_op = want[1:-1], want[-1]
        if have_op not in ("all", want_op):
            continue
        if want_path[: len(have_path)] == have_path:
            return True
    return False


def missing_scopes(granted: Iterable[str], required: Iterable[str]) -> list[str]:
    """The ``required`` scopes that no ``granted`` scope covers."""
    granted = list(granted)
    return [scope for scope in required if not scope_covers(granted, scope)]


def coql_allowed(use_coql: bool, granted_scopes: Sequence[str] | None) -> bool:
    """COQL may be used when asked for, or when its scope is granted or not known to be missing."""
    if use_coql or granted_scopes is None:
        return True
    return scope_covers(granted_scopes, COQL_READ)


def bulk_allowed(granted_scopes: Sequence[str] | None) -> bool:
    """Bulk Read may be used unless the token is known to lack its scope."""
    return granted_scopes is None or scope_covers(granted_scopes, BULK_READ)


def scope_for_call(method: str, path: str) -> str:
    """The scope a call needs, for the message of an OAUTH_SCOPE_MISMATCH."""
    rel, is_bulk = relative_path(path)
    if is_bulk:
        return BULK_READ
    parts = rel.split("/")
    first = parts[0].lower()
    if first == "coql":
        return COQL_READ
    if first == "settings":
        return f"ZohoCRM.settings.{parts[1] if len(parts) > 1 else 'ALL'}.READ"
    if first in ("org", "users"):
        return f"ZohoCRM.{first}.READ"
    if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
        return f"ZohoCRM.modules.{parts[0]}.ALL"
    return f"ZohoCRM.modules.{parts[0]}.READ (or {MODULES_READ})"
