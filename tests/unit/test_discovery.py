"""Discovery (``connector.run.catalog.discover``): which modules a run extracts, from Zoho's
metadata (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import ConfigError, ModuleUnavailable
from connector.run.catalog import discover


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
