"""Discovery (``connector.run.catalog.discover``): which modules a run extracts, from Zoho's
metadata (no sockets)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connector.errors import ConfigError, FatalAPIError, ModuleUnavailable
from connector.run.catalog import discover, discover_run, resolve_names, unavailable_reason
from connector.zoho.metadata import ModuleMeta
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
ODD_MODULES = [
    *MODULES,
    {"api_name": "Email_Analytics", "api_supported": True, "generated_type": "default"},
    {"api_name": "CTI_Entry", "api_supported": True, "generated_type": "default"},
]


def test_discover_keeps_supported_default_and_custom_modules() -> None:
    client = FakeClient(MODULES, FIELDS)
    targets = discover(client, None)  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads", "Vendors_X"]
    assert client.calls == ["settings/modules"]


def test_named_modules_are_matched_in_one_module_list_and_spelled_as_zoho_does() -> None:
    client = FakeClient(MODULES, FIELDS)
    # Case-insensitive: leads, LEADS and Leads are one module, named as Zoho names it.
    targets = discover(client, ["leads", "Leads", " LEADS "])  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads"]
    assert targets[0].fields is not None and targets[0].fields[0].api_name == "id"
    assert client.calls == ["settings/modules", "settings/fields?module=Leads"]


@pytest.mark.parametrize(("name", "hint"), [("Leds", "Leads"), ("Vendor_X", "Vendors_X")])
def test_unknown_module_is_a_config_error_with_close_matches(name: str, hint: str) -> None:
    client = FakeClient(MODULES, FIELDS)
    with pytest.raises(ConfigError, match=f"unknown module '{name}'; did you mean {hint}"):
        discover(client, [name])  # type: ignore[arg-type]
    assert client.calls == ["settings/modules"]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Visits", "not available through the API (api_supported: false)"),
        ("visits", "not available through the API (api_supported: false)"),
        ("Deals_Contacts", "linking module: read through its parent"),
        ("web_forms", "web module: read through its parent"),
        ("Email_Analytics", "INVALID_QUERY"),
        ("cti_entry", "INVALID_MODULE"),
    ],
)
def test_a_named_module_that_cannot_be_read_is_refused_before_any_fields_call(
    name: str, words: str
) -> None:
    client = FakeClient(ODD_MODULES, FIELDS)
    with pytest.raises(ConfigError, match=r"cannot be extracted: .*" + re.escape(words)):
        discover_run(client, ["Leads", name])  # type: ignore[arg-type]
    assert client.calls == ["settings/modules"]


def test_the_refusal_uses_the_words_of_the_catalogue() -> None:
    for raw in ODD_MODULES:
        meta = ModuleMeta.from_api(raw)
        why = unavailable_reason(meta)
        if why is None:
            continue
        with pytest.raises(ConfigError) as caught:
            resolve_names([meta.api_name.lower()], [meta])
        assert why in str(caught.value)


def test_two_modules_differing_only_in_case_need_the_exact_spelling() -> None:
    twins = [ModuleMeta("Visit_Log", "a"), ModuleMeta("Visit_LOG", "b")]
    assert [m.module_name for m in resolve_names(["Visit_LOG"], twins)] == ["b"]
    with pytest.raises(ConfigError, match="unknown module 'visit_log'"):
        resolve_names(["visit_log"], twins)


def test_a_listed_module_zoho_refuses_is_kept_as_unavailable() -> None:
    client = FakeClient(MODULES, {})
    targets = discover(client, ["Leads"])  # type: ignore[arg-type]
    assert targets[0].error is not None and targets[0].error.code == "INVALID_MODULE"


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


def test_named_users_alone_costs_no_call() -> None:
    client = FakeClient(ODD_MODULES, FIELDS)
    found = discover_run(client, ["users", "USERS"])  # type: ignore[arg-type]
    assert [t.meta.api_name for t in found.targets] == ["Users"]
    assert found.targets[0].fields is not None
    assert found.skipped == []
    assert client.calls == []


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


def test_named_modules_known_from_their_state_cost_no_module_list() -> None:
    client = FakeClient(MODULES, FIELDS)
    known = {"leads": ModuleMeta.from_api(MODULES[0])}
    targets = discover(client, ["leads"], known)  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads"]
    assert client.calls == ["settings/fields?module=Leads"]


def test_one_named_module_without_state_asks_for_the_module_list() -> None:
    client = FakeClient(MODULES, FIELDS)
    known = {"Leads": ModuleMeta.from_api(MODULES[0])}
    targets = discover(client, ["Leads", "Vendors_X"], known)  # type: ignore[arg-type]
    assert [t.meta.api_name for t in targets] == ["Leads", "Vendors_X"]
    assert client.calls[0] == "settings/modules"


def test_a_known_module_gone_from_the_org_fails_on_its_fields_call() -> None:
    client = FakeClient(MODULES, {})
    known = {"Leads": ModuleMeta.from_api(MODULES[0])}
    (target,) = discover(client, ["Leads"], known)  # type: ignore[arg-type]
    assert isinstance(target.error, ModuleUnavailable)
    assert "settings/modules" not in client.calls


def test_module_meta_survives_the_round_trip_through_state() -> None:
    meta = ModuleMeta.from_api({**MODULES[1], "module_name": "Vendors", "id": "42"})
    assert ModuleMeta.from_api(meta.to_api()) == meta


def test_named_modules_fields_calls_go_at_once_each_billed_to_its_module() -> None:
    import threading

    from connector.zoho.meter import BILLED_TO

    modules = [*MODULES, {"api_name": "Deals", "api_supported": True, "generated_type": "default"}]
    fields = {**FIELDS, "Deals": FIELDS["Leads"]}
    barrier = threading.Barrier(3, timeout=30)  # the three fields calls wait for each other

    class Together(FakeClient):
        def get_json(self, path: str, *, params: Any = None, headers: Any = None) -> Any:
            if params is not None:
                barrier.wait()
                self.calls.append(f"{BILLED_TO.get()} on {threading.current_thread().name[:4]}")
            return super().get_json(path, params=params, headers=headers)

    client = Together(modules, fields)
    targets = discover(client, ["deals", "Vendors_X", "leads"], workers=3)  # type: ignore[arg-type]
    # In the order named; Vendors_X has no fields answer: kept, as unavailable.
    assert [t.meta.api_name for t in targets] == ["Deals", "Vendors_X", "Leads"]
    assert targets[1].error is not None and targets[0].fields and targets[2].fields
    assert sorted(c for c in client.calls if " on " in c) == [
        "Deals on plan",
        "Leads on plan",
        "Vendors_X on plan",
    ]
