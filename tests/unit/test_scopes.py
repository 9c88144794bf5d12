"""Zoho's scopes: coverage, what each API and setting needs, and what a token response grants."""

from __future__ import annotations

import pytest

from connector.config import Settings, load_settings
from connector.zoho.scopes import (
    BULK_READ,
    COQL_READ,
    READ_SCOPES,
    bulk_allowed,
    coql_allowed,
    missing_scopes,
    parse_granted,
    required_scopes,
    scope_covers,
    scope_for_call,
    scope_reason,
)

BASE = "Region=EU;OAuthClientId=1000.CID;OAuthClientSecret=s3cr3t;OAuthRefreshToken=1000.r.abc;"


def load(text: str) -> Settings:
    return load_settings(text, environ={}).settings


@pytest.mark.parametrize(
    ("granted", "required", "covered"),
    [
        (["ZohoCRM.modules.ALL"], "ZohoCRM.modules.READ", True),
        (["ZohoCRM.modules.ALL"], "ZohoCRM.modules.Leads.READ", True),
        (["zohocrm.modules.all"], "ZohoCRM.modules.Leads.READ", True),
        (["ZohoCRM.modules.READ"], "ZohoCRM.modules.Leads.READ", True),
        (["ZohoCRM.modules.Leads.READ"], "ZohoCRM.modules.READ", False),
        (["ZohoCRM.modules.CREATE"], "ZohoCRM.modules.READ", False),
        (["ZohoCRM.settings.ALL"], "ZohoCRM.settings.fields.READ", True),
        (["ZohoCRM.settings.READ"], "ZohoCRM.settings.modules.READ", True),
        (["ZohoCRM.settings.fields.ALL"], "ZohoCRM.settings.modules.READ", False),
        (["ZohoCRM.org.ALL"], "ZohoCRM.org.READ", True),
        (["ZohoCRM.bulk.ALL"], "ZohoCRM.bulk.READ", True),
        (["ZohoCRM.coql.READ"], "ZohoCRM.bulk.READ", False),
        (["ZohoBooks.modules.ALL"], "ZohoCRM.modules.READ", False),
        ([], "ZohoCRM.org.READ", False),
    ],
)
def test_scope_covers(granted: list[str], required: str, covered: bool) -> None:
    assert scope_covers(granted, required) is covered


@pytest.mark.parametrize(
    ("granted", "ok"),
    [
        (["ZohoCRM.coql.READ"], True),
        (["zohocrm.COQL.read"], True),
        (["ZohoCRM.coql.ALL"], True),
        (["ZohoCRM.ALL"], True),
        (["ZohoCRM.modules.ALL", "ZohoCRM.bulk.READ"], False),
    ],
)
def test_scope_covers_coql(granted: list[str], ok: bool) -> None:
    assert scope_covers(granted, "ZohoCRM.coql.READ") is ok


def test_missing_scopes_keeps_the_required_order() -> None:
    granted = ["ZohoCRM.modules.ALL", "ZohoCRM.settings.ALL"]
    required = ["ZohoCRM.org.READ", "ZohoCRM.modules.READ", "ZohoCRM.bulk.READ"]
    assert missing_scopes(granted, required) == ["ZohoCRM.org.READ", "ZohoCRM.bulk.READ"]


def test_required_scopes() -> None:
    bulk = load(BASE)
    assert "ZohoCRM.bulk.READ" in required_scopes(bulk)
    assert "ZohoCRM.coql.READ" in required_scopes(bulk)
    rest = load(BASE + "APIType=REST")
    assert "ZohoCRM.bulk.READ" not in required_scopes(rest)
    assert "ZohoCRM.coql.READ" not in required_scopes(rest)
    assert "ZohoCRM.coql.READ" in required_scopes(load(BASE + "APIType=REST;UseCOQL=true"))
    for scope in ("ZohoCRM.modules.READ", "ZohoCRM.settings.fields.READ", "ZohoCRM.org.READ"):
        assert scope in required_scopes(rest)


def test_read_scopes_cover_every_required_scope() -> None:
    for text in (BASE, BASE + "APIType=REST", BASE + "APIType=REST;UseCOQL=true"):
        assert missing_scopes(READ_SCOPES, required_scopes(load(text))) == []


def test_scope_reason() -> None:
    assert scope_reason(BULK_READ) == "APIType=Bulk"
    assert scope_reason("ZohoCRM.users.READ") == "the chosen APIs"


def test_coql_allowed_when_asked_or_unknown() -> None:
    assert coql_allowed(True, ["ZohoCRM.bulk.READ"])
    assert coql_allowed(False, None)
    assert not coql_allowed(False, ["ZohoCRM.bulk.READ"])


@pytest.mark.parametrize(
    ("granted", "allowed"),
    [
        (None, True),
        (["ZohoCRM.bulk.READ"], True),
        (["ZohoCRM.bulk.ALL"], True),
        (["ZohoCRM.modules.ALL", "ZohoCRM.coql.READ"], False),
    ],
)
def test_bulk_allowed(granted: list[str] | None, allowed: bool) -> None:
    assert bulk_allowed(granted) is allowed


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "Leads", "ZohoCRM.modules.Leads.READ (or ZohoCRM.modules.READ)"),
        (
            "GET",
            "https://www.zohoapis.eu/crm/v8/Leads/deleted?type=all",
            "ZohoCRM.modules.Leads.READ (or ZohoCRM.modules.READ)",
        ),
        ("POST", "Leads", "ZohoCRM.modules.Leads.ALL"),
        ("POST", "coql", COQL_READ),
        ("POST", "/crm/bulk/v8/read", BULK_READ),
        ("GET", "/crm/bulk/v8/read/123/result", BULK_READ),
        ("GET", "settings/fields", "ZohoCRM.settings.fields.READ"),
        ("GET", "settings", "ZohoCRM.settings.ALL.READ"),
        ("GET", "/crm/v8/org", "ZohoCRM.org.READ"),
        ("GET", "users", "ZohoCRM.users.READ"),
    ],
)
def test_scope_for_call(method: str, path: str, scope: str) -> None:
    assert scope_for_call(method, path) == scope


@pytest.mark.parametrize(
    ("value", "granted"),
    [
        ("ZohoCRM.modules.ALL ZohoCRM.org.READ", ("ZohoCRM.modules.ALL", "ZohoCRM.org.READ")),
        ("ZohoCRM.modules.ALL,ZohoCRM.org.READ", ("ZohoCRM.modules.ALL", "ZohoCRM.org.READ")),
        (" a ,\n b ", ("a", "b")),
        ("", None),
        (None, None),
        (["ZohoCRM.org.READ"], None),
    ],
)
def test_parse_granted(value: object, granted: tuple[str, ...] | None) -> None:
    assert parse_granted(value) == granted
