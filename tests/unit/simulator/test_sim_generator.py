"""The fixture and the deterministic, lazy generator."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connector.simulator.generator import BASE_END, OrgGenerator, generate, module_size
from connector.simulator.orgdef import load_orgdef
from connector.simulator.store import Org
from connector.simulator.words import NASTY

LIST_READ_TYPES = {
    "text",
    "textarea",
    "email",
    "phone",
    "website",
    "picklist",
    "multiselectpicklist",
    "integer",
    "bigint",
    "double",
    "currency",
    "percent",
    "boolean",
    "date",
    "datetime",
    "lookup",
    "ownerlookup",
    "autonumber",
}


@pytest.fixture(scope="module")
def orgdef():  # type: ignore[no-untyped-def]
    return load_orgdef()


def test_fixture_has_every_type_and_the_special_modules(orgdef) -> None:  # type: ignore[no-untyped-def]
    types = {f.data_type for m in orgdef.modules for f in m.fields}
    assert types >= LIST_READ_TYPES
    assert {"subform", "multiselectlookup", "fileupload"} <= types
    assert {"formula", "time_range"} <= types
    by_name = {m.api_name: m for m in orgdef.modules}
    assert {"Leads", "Contacts", "Accounts", "Deals", "Notes"} <= set(by_name)
    assert by_name["Notes"].bulk_supported is False
    assert any(not m.api_supported for m in orgdef.modules)
    assert any(m.generated_type == "linking" for m in orgdef.modules)
    big = [m for m in orgdef.modules if m.generated_type == "custom" and len(m.fields) > 50]
    assert big and sum(f.custom_field for f in big[0].fields) >= 64
    # The odd modules of a real org (zoho-api.md §11).
    assert "Modified_Time" not in by_name["Actions_Performed"].field_map
    assert by_name["Actions_Performed"].field("Action_Performed_Time").data_type == "datetime"
    assert by_name["Events"].field("Participants").coql_refused
    assert by_name["Quotes"].field("Product_Details").coql_refused
    assert by_name["Email_Analytics"].refuse == "INVALID_QUERY"
    assert by_name["CTI_Entry"].refuse == "INVALID_MODULE"
    assert len(orgdef.users) > 200 > len(orgdef.record_users)
    for module in orgdef.modules:
        names = [f.api_name for f in module.fields]
        assert names[0] == "id"
        if module.api_name == "Actions_Performed":
            continue
        assert {"Created_Time", "Modified_Time", "Created_By", "Modified_By"} <= set(names)
        assert module.field("Modified_Time").data_type == "datetime"
        assert module.field("Created_By").data_type == "ownerlookup"
        ids = [f.id for f in module.fields]
        assert len(set(ids)) == len(ids)
    assert orgdef.time_zone == "Asia/Kolkata"
    assert orgdef.offset.total_seconds() == 5.5 * 3600


def test_field_metadata_hides_the_generation_hints(orgdef) -> None:  # type: ignore[no-untyped-def]
    for module in orgdef.modules:
        assert "sim" not in module.to_api() and "fields" not in module.to_api()
        for f in module.fields:
            api = f.to_api()
            assert "sim" not in api
            assert {"api_name", "data_type", "json_type", "field_label", "id"} <= set(api)
        picks = [p for f in module.fields for p in f.pick_list_values]
        assert all(";" not in p for p in picks)  # ';' separates multi-select values in Bulk CSV


def test_module_sizes_scale_with_records() -> None:
    gen = OrgGenerator(load_orgdef(), records=1000)
    assert gen.module("Leads").size == 1000
    assert gen.module("Notes").size == 200
    assert gen.module("Shipments").size == 500
    assert module_size(3, 0.1) == 1
    assert module_size(0, 1.0) == 0


def test_generation_is_deterministic_per_seed() -> None:
    a = generate("Leads", 100, 160, seed=3)
    b = generate("Leads", 100, 160, seed=3)
    c = generate("Leads", 100, 160, seed=4)
    assert a.equals(b)
    assert not a.drop_columns(["id", "Modified_Time"]).equals(
        c.drop_columns(["id", "Modified_Time"])
    )


def test_random_access_equals_contiguous_generation() -> None:
    gen = OrgGenerator(load_orgdef(), seed=5, records=500).module("Deals")
    whole = gen.generate(0, gen.size)
    parts = pa.concat_tables(
        [gen.generate(s, min(s + 37, gen.size)) for s in range(0, gen.size, 37)]
    )
    assert parts.equals(whole)
    pick = np.array([7, 3, 200, 3])
    assert gen.rows(pick).to_pylist() == [whole.slice(i, 1).to_pylist()[0] for i in pick]


def test_ids_are_unique_19_digit_and_increasing() -> None:
    org = OrgGenerator(load_orgdef(), records=3000)
    seen: set[str] = set()
    for name in ("Leads", "Contacts", "Shipments"):
        m = org.module(name)
        ids = m.id_strings(np.arange(m.size)).to_pylist()
        assert all(len(i) == 19 and i.isdigit() for i in ids)
        numbers = [int(i) for i in ids]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        assert not seen & set(ids)
        seen |= set(ids)
        for index in (0, 1, m.size // 2, m.size - 1):
            assert m.index_of_id(ids[index]) == index
        assert m.index_of_id(str(numbers[0] + 1 if numbers[1] != numbers[0] + 1 else 5)) is None


def test_id_and_time_bounds_match_brute_force() -> None:
    m = OrgGenerator(load_orgdef(), records=700).module("Leads")
    ids = m.id_numbers(np.arange(m.size))
    secs = m.modified_seconds(np.arange(m.size))
    for probe in [int(ids[0]) - 5, int(ids[10]), int(ids[10]) + 1, int(ids[-1]), int(ids[-1]) + 9]:
        assert m.first_index_with_id_at_least(probe) == int(np.sum(ids < probe))
        assert m.end_index_with_id_at_most(probe) == int(np.sum(ids <= probe))
    for probe in [int(secs[0]) - 1, int(secs[50]), int(secs[50]) + 1, int(secs[-1]), 2**40]:
        assert m.first_index_modified_at_least(probe) == int(np.sum(secs < probe))
        assert m.end_index_modified_at_most(probe) == int(np.sum(secs <= probe))


def test_times_are_monotone_with_ties_and_before_base_end() -> None:
    table = generate("Leads", 0, 3000, records=3000, columns=["Created_Time", "Modified_Time"])
    modified = table.column("Modified_Time").to_pylist()
    created = table.column("Created_Time").to_pylist()
    assert table.schema.field("Modified_Time").type == pa.timestamp("s", tz="UTC")
    assert modified == sorted(modified)
    assert len(set(modified)) < len(modified) * 0.6  # several records share each second
    per_second = np.unique(np.array([m.timestamp() for m in modified]), return_counts=True)[1]
    assert per_second.max() <= 5 and per_second.min() >= 1
    assert max(modified) < BASE_END
    assert all(c <= m for c, m in zip(created, modified, strict=True))
    assert any(c < m for c, m in zip(created, modified, strict=True))


def test_text_has_nasty_values_and_never_empty_strings() -> None:
    table = generate("Leads", 0, 6000, records=6000)
    strings: list[str] = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type):
            values = [v for v in col.to_pylist() if v is not None]
            assert "" not in values, name
            strings.extend(values)
    joined = "\x00".join(strings)
    for needle in [",", '"', "'", "\n", "\r\n", "\t", ";", "😀", "東京", "مرحبا", "ü", "NULL"]:
        assert needle in joined, needle
    assert any(s != s.strip() for s in strings)
    assert max(len(s) for s in table.column("Description").to_pylist() if s) >= 2000
    assert set(NASTY) & set(strings)


def test_nulls_follow_mandatory_flags(shared_org: Org) -> None:
    leads = shared_org.module("Leads")
    table = leads.current_table()
    for f in leads.meta.fields:
        nulls = table.column(f.api_name).null_count
        if f.system_mandatory or f.api_name in ("id", "Owner", "Modified_Time", "Created_Time"):
            assert nulls == 0, f.api_name
        elif f.sim.get("null_rate", 0.1) >= 0.05:
            assert nulls > 0, f.api_name


def test_number_shapes(shared_org: Org) -> None:
    leads = shared_org.module("Leads").current_table()
    score = leads.column("Lead_Score").to_pylist()
    assert min(v for v in score if v is not None) < 0
    assert max(abs(v) for v in score if v is not None) >= 1_000_000_000
    percent = [v for v in leads.column("Conversion_Chance").to_pylist() if v is not None]
    assert min(percent) >= 0 and max(percent) <= 100 and any(v != int(v) for v in percent)
    ship = shared_org.module("Shipments")
    table = ship.current_table()
    for name in ("Declared_Value", "Insurance_Premium", "Duty_Amount"):
        dp = ship.meta.field(name).decimal_place
        pattern = re.compile(rf"^-?\d+\.\d{{{dp}}}$")
        values = [v for v in table.column(name).to_pylist() if v is not None]
        assert values and all(pattern.match(v) for v in values), name
    assert any(v.startswith("-") for v in table.column("Duty_Amount").to_pylist() if v)
    weights = [v for v in table.column("Gross_Weight_kg").to_pylist() if v is not None]
    assert any(v != int(v) for v in weights)
    autonumbers = table.column("Shipment_Number").to_pylist()
    assert len(set(autonumbers)) == len(autonumbers) and autonumbers[0] == "ZT-1000"


def test_lookups_reference_existing_records(shared_org: Org) -> None:
    contacts = shared_org.module("Contacts").current_table(["Account_Name", "Owner"])
    accounts = shared_org.module("Accounts").current_table(["id", "Account_Name"])
    names = dict(
        zip(
            accounts.column("id").to_pylist(),
            accounts.column("Account_Name").to_pylist(),
            strict=True,
        )
    )
    refs = [v for v in contacts.column("Account_Name").to_pylist() if v is not None]
    assert refs
    for ref in refs:
        assert ref["id"] in names and ref["name"] == names[ref["id"]]
    active = {u.id: u for u in shared_org.users if u.active}
    for owner in contacts.column("Owner").to_pylist():
        user = active[owner["id"]]
        assert owner == {"id": user.id, "name": user.full_name, "email": user.email}


def test_unreadable_fields_are_null_and_unknown_types_are_strings(shared_org: Org) -> None:
    deals = shared_org.module("Deals").current_table()
    for name in ("Line_Items", "Related_Vendors", "Contract_File"):
        assert deals.column(name).null_count == deals.num_rows
    assert pa.types.is_string(deals.column("Support_Hours").type)
    assert deals.schema.field("Weighted_Amount").type == pa.float64()
    assert pc.min(deals.column("Modified_Time")).as_py() > datetime(2020, 1, 1, tzinfo=timezone.utc)
