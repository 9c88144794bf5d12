"""zoho-crm modules: the catalogue against the simulator, and its text table."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connector.config import load_settings
from connector.run.catalog import ModuleInfo, build_catalog, format_catalog
from connector.simulator import Simulator
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import BULK_UNSUPPORTED_MODULES


def client_for(sim: Simulator, **overrides: str) -> ZohoClient:
    return ZohoClient(load_settings(sim.connection_string(**overrides), None, {}).settings)


def test_catalog_lists_every_module_with_fields_and_readers(simulator: Simulator) -> None:
    with client_for(simulator) as client:
        rows = build_catalog(client, counts=False)
        spent = client.meter.total

    by_name = {row.api_name: row for row in rows}
    # Every module, then the Users dataset (read by its own reader, no metadata call).
    assert list(by_name) == [*simulator.org.modules, "Users"]
    users = by_name.pop("Users")
    assert users.readers == ["users"] and users.record_count is None
    rows = [row for row in rows if row is not users]
    api_rows = [row for row in rows if row.readers]
    # settings/modules once, settings/fields once per readable module, nothing else.
    assert spent == 1 + len(api_rows)
    assert by_name["Email_Analytics"].readers == [] and "INVALID_QUERY" in (
        by_name["Email_Analytics"].note
    )
    assert by_name["CTI_Entry"].readers == [] and "INVALID_MODULE" in by_name["CTI_Entry"].note
    assert "no Modified_Time: read in full every run" in by_name["Actions_Performed"].note
    assert "COQL refuses Participants: Records API instead" in by_name["Events"].note
    assert "COQL refuses Product_Details" in by_name["Quotes"].note
    for row in rows:
        store = simulator.org.modules[row.api_name]
        assert row.module_name == store.meta.module_name
        assert row.api_supported == store.meta.api_supported
        assert row.record_count is None
        if row.readers:
            assert row.field_count == len(store.meta.fields)
            assert row.readable_field_count is not None
            assert 1 <= row.readable_field_count <= row.field_count + 1
            assert row.readers[-2:] == ["coql", "records"]
            assert ("bulk" in row.readers) == (row.api_name not in BULK_UNSUPPORTED_MODULES)
    assert by_name["Leads"].readers == ["bulk", "coql", "records"]


def test_catalog_counts_records_with_one_coql_call_each(simulator: Simulator) -> None:
    with client_for(simulator) as client:
        rows = build_catalog(client, counts=True)
    users = rows.pop()
    assert users.api_name == "Users" and users.record_count == len(simulator.org.users)
    counted = [row for row in rows if row.readers]
    assert counted
    for row in counted:
        assert row.record_count == simulator.org.modules[row.api_name].count(), row
    coql_calls = [r for r in simulator.requests if r.path.endswith("/coql")]
    assert len(coql_calls) == len(counted)
    # Two pages of users (more than 200), 1 credit each.
    assert len([r for r in simulator.requests if r.path.endswith("/users")]) == 2


def test_counts_stop_cleanly_without_the_coql_scope(
    make_simulator: Callable[..., Simulator],
) -> None:
    sim = make_simulator()
    token = sim.issue_refresh_token(["ZohoCRM.modules.READ", "ZohoCRM.settings.ALL"])
    with client_for(sim, OAuthRefreshToken=token, Scope="ZohoCRM.modules.READ") as client:
        rows = build_catalog(client, counts=True)
    readable = [row for row in rows if row.readers and row.api_name != "Users"]
    assert readable
    assert all(row.record_count is None for row in readable)
    assert all("not counted" in row.note for row in readable)
    assert len([r for r in sim.requests if r.path.endswith("/coql")]) == 1


def test_format_catalog_is_an_aligned_table() -> None:
    rows = [
        ModuleInfo("Leads", "Leads", True, "default", 40, 38, 12345, ["bulk", "coql", "records"]),
        ModuleInfo("Events", "Meetings", True, "default", 9, 9, None, ["bulk", "coql", "records"]),
        ModuleInfo(
            "Notes",
            "Notes",
            True,
            "default",
            5,
            5,
            3,
            ["coql", "records"],
            "Bulk Read cannot export it",
        ),
        ModuleInfo(
            "Visits",
            "Visits",
            False,
            "default",
            None,
            None,
            None,
            [],
            "not available through the API",
        ),
    ]
    text = format_catalog(rows)
    lines = text.splitlines()
    assert lines[0].split() == [
        "Module",
        "Name",
        "Type",
        "Fields",
        "Readable",
        "Records",
        "Readers",
        "Note",
    ]
    assert len(lines) == 6
    assert lines[-1] == "4 modules, 3 readable through the API"
    leads, events, notes, visits = lines[1:5]
    assert "12,345" in leads and "bulk,coql,records" in leads
    assert "Meetings" in events
    assert notes.rstrip().endswith("Bulk Read cannot export it")
    assert "  -  " in visits
    # Right-aligned numbers end in the same column.
    column_end = lines[0].index("Records") + len("Records")
    assert leads[:column_end].endswith("12,345")
    assert notes[:column_end].endswith("3")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": [{"COUNT(id)": 42}], "info": {"count": 1}}, 42),
        ({"data": [{"count": "7"}]}, 7),
        (None, 0),
        ({"data": []}, 0),
    ],
)
def test_count_answers(body: dict[str, object] | None, expected: int) -> None:
    from connector.run.catalog import _parse_count

    assert _parse_count(body) == expected  # type: ignore[arg-type]
