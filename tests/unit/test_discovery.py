"""Discovery (``connector.run.catalog.discover``): which modules a run extracts, from Zoho's
metadata (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import ConfigError, FatalAPIError, ModuleUnavailable
from connector.run.catalog import discover, discover_run
from connector.zoho.quirks import coql_refused, refused_column, refuses_module


class FakeClient:
    """Answers settings/modules and settings/fields like Zoho, and records the calls."""

    def __init__(self, modules: list[dict[str, Any]], fields: dict[str, list[dict[str, Any]]]):
        self.modules, self.fields = modules, fields
        self.calls: list[str] = []

    def get_json(self, path: str, *, params: Any = None, headers: Any = None) -> Any:
        self.calls.append(path if params is None else f"{path}?module={params['module']}")
        if path == "settings/modules":
            return {"modules": self.modules}
        name = params["module"]
        if name not in self.fields:
            raise ModuleUnavailable("invalid module", status=400, code="INVALID_MODULE")
        return {"fields": self.fields[name]}


MODULES = [
    {"api_name": "Leads", "api_supported": True, "generated_type": "default"},
    {"api_name": "Vendors_X", "api_supported": True, "generated_type": "custom"},
    {"api_name": "Visits", "api_supported": False, "generated_type": "default"},
    {"api_name": "Deals_Contacts", "api_supported": True, "generated_type": "linking"},
    {"api_name": "Web_Forms", "api_supported": True, "generated_type": "web"},
]
FIELDS = {"Leads": [{"api_name": "id", "data_type": "bigint"}]}


def test_discover_keeps_supported_default_and_custom_modules() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, None)  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads", "Vendors_X"]
    assert client.calls == ["settings/modules"]


def test_named_modules_skip_the_modules_list() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, ["Leads", "Leads"])  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads"]
    assert targets[0].fields is not None and targets[0].fields[0].api_name == "id"
    assert client.calls == ["settings/fields?module=Leads"]


@pytest.mark.parametrize(("name", "hint"), [("Leds", "Leads"), ("leads", "Leads")])
def test_unknown_module_is_a_config_error_with_close_matches(name: str, hint: str) -> None:
    client = FakeClient(MODULES, FIELDS)
    with pytest.raises(ConfigError, match=f"unknown module '{name}'; did you mean {hint}"):
        discover(client, [name])  # type: ignore[arg-type]
    assert client.calls == [f"settings/fields?module={name}", "settings/modules"]


def test_a_known_module_zoho_refuses_is_kept_as_unavailable() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, ["Visits"])  # type: ignore[arg-type]
    assert targets[0].error is not None and targets[0].error.code == "INVALID_MODULE"


ODD_MODULES = [
    *MODULES,
    {"api_name": "Email_Analytics", "api_supported": True, "generated_type": "default"},
    {"api_name": "CTI_Entry", "api_supported": True, "generated_type": "default"},
]


def test_a_run_skips_known_unreadable_and_closed_modules_with_reasons() -> None:
    client = FakeClient(ODD_MODULES, FIELDS)
    found = discover_run(client, None)  # type: ignore[arg-type]
    assert [t.meta.api_name for t in found.targets] == ["Leads", "Vendors_X", "Users"]
    reasons = {meta.api_name: why for meta, why in found.skipped}
    assert sorted(reasons) == ["CTI_Entry", "Email_Analytics", "Visits"]
    assert "api_supported: false" in reasons["Visits"]
    assert "INVALID_QUERY" in reasons["Email_Analytics"]
    assert "INVALID_MODULE" in reasons["CTI_Entry"]
    # Linking and web modules are not data of their own: neither read nor reported.
    assert client.calls == ["settings/modules"]


def test_named_users_and_unreadable_modules_cost_no_call(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient(ODD_MODULES, FIELDS)
    found = discover_run(client, ["users", "Email_Analytics"])  # type: ignore[arg-type]
    assert [t.meta.api_name for t in found.targets] == ["Users"]
    assert found.targets[0].fields is not None
    assert [meta.api_name for meta, _ in found.skipped] == ["Email_Analytics"]
    assert client.calls == []
    [line] = [r.getMessage() for r in caplog.records if "Email_Analytics" in r.getMessage()]
    assert "skipped" in line


def test_known_quirks_name_refused_columns_and_modules() -> None:
    column = FatalAPIError(
        "bad", code="INVALID_QUERY", details={"column_name": "participants", "reason": "x"}
    )
    assert refused_column(column, {"id", "Participants"}) == "Participants"
    assert refused_column(column, {"id", "Subject"}) is None
    assert not refuses_module(column)
    module = FatalAPIError("bad", code="INVALID_QUERY", details={"reason": "not supported"})
    assert refused_column(module, {"id"}) is None and refuses_module(module)
    assert not refuses_module(FatalAPIError("bad", code="SYNTAX_ERROR"))
    assert coql_refused("Quotes", frozenset({"id", "Product_Details", "Subject"})) == [
        "Product_Details"
    ]
    assert coql_refused("Leads", frozenset({"id", "Product_Details"})) == []
