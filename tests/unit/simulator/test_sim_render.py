"""Rendering canonical rows as Zoho JSON and as Bulk Read CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from connector.simulator.orgdef import SimField
from connector.simulator.render import csv_bytes, csv_table, json_value, records_to_json, write_csv
from connector.simulator.store import Org
from connector.simulator.words import NASTY

IST = timedelta(hours=5, minutes=30)
ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30$")


@pytest.fixture(scope="module")
def deals_org() -> Org:
    org = Org.build(records=300, clock=lambda: datetime(2026, 7, 1, tzinfo=timezone.utc))
    leads = org.module("Leads")
    for i, text in enumerate(NASTY):
        leads.insert(
            {
                "Last_Name": text,
                "Description": text,
                "City": text,
                "Interests": ["Logistics", "Cold chain"] if i % 2 else None,
            }
        )
    return org


def test_json_value_shapes(deals_org: Org) -> None:
    f = deals_org.module("Leads").meta.field_map
    assert (
        json_value(datetime(2024, 6, 4, 20, 34, 9, tzinfo=timezone.utc), f["Modified_Time"], IST)
        == "2024-06-05T02:04:09+05:30"
    )
    assert json_value(date(2024, 2, 29), f["Preferred_Call_Date"], IST) == "2024-02-29"
    assert json_value("1234.50", f["Annual_Revenue"]) == 1234.5
    assert json_value(["a", "b"], f["Interests"]) == ["a", "b"]
    owner = {"id": "1", "name": "P B", "email": "p@x"}
    assert json_value(owner, f["Owner"]) == {"name": "P B", "id": "1", "email": "p@x"}
    assert json_value(owner, f["Owner"], coql=True) == {"name": "P B", "id": "1"}
    assert json_value(None, f["Owner"]) is None
    contact = deals_org.module("Contacts").meta.field_map["Account_Name"]
    assert json_value({"id": "9", "name": "Zylker"}, contact) == {"name": "Zylker", "id": "9"}


def test_records_to_json(deals_org: Org) -> None:
    deals = deals_org.module("Deals")
    table = deals.select([f.api_name for f in deals.meta.fields], limit=50)
    records = records_to_json(table, deals.meta.field_map, IST)
    assert len(records) == 50
    first = records[0]
    assert next(iter(first)) == "id" and isinstance(first["id"], str) and len(first["id"]) == 19
    assert (
        "Line_Items" not in first
        and "Related_Vendors" not in first
        and "Contract_File" not in first
    )
    assert ZONED.match(first["Modified_Time"]) and ZONED.match(first["Created_Time"])
    assert set(first["Owner"]) == {"name", "id", "email"}
    lookups = [r["Account_Name"] for r in records if r["Account_Name"] is not None]
    assert lookups and all(set(v) == {"name", "id"} for v in lookups)
    amounts = [r["Amount"] for r in records if r["Amount"] is not None]
    assert amounts and all(isinstance(a, float) for a in amounts)
    assert all(
        re.match(r"^\d{4}-\d\d-\d\d$", r["Closing_Date"]) for r in records if r["Closing_Date"]
    )
    assert (
        first["Support_Hours"] == [{"From": "10:00", "To": "19:00"}]
        or first["Support_Hours"] is None
    )
    assert isinstance(first["Weighted_Amount"], float)
    # the JSON time is the same instant as the canonical one
    canonical = table.column("Modified_Time")[0].as_py()
    assert datetime.fromisoformat(first["Modified_Time"]) == canonical
    coql = records_to_json(table, deals.meta.fields, IST, coql=True)
    assert set(coql[0]["Owner"]) == {"name", "id"}


def _read_back(data: bytes) -> pa.Table:
    return pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={"id": pa.string(), "Last_Name": pa.string()},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            auto_dict_encode=False,
        ),
        read_options=pacsv.ReadOptions(),
    )


def test_csv_round_trip_keeps_nasty_text(deals_org: Org) -> None:
    leads = deals_org.module("Leads")
    columns = [
        "Last_Name",
        "id",
        "Description",
        "City",
        "Interests",
        "Owner",
        "Email_Opt_Out",
        "Annual_Revenue",
        "Modified_Time",
        "Preferred_Call_Date",
        "Lead_Score",
        "Conversion_Chance",
    ]
    table = leads.select(columns)
    data = csv_bytes(table, leads.meta.field_map, IST)
    expected = csv_table(table, leads.meta.field_map, IST)
    assert expected.column_names[0] == "id"
    names = expected.column_names
    string_types = {n: pa.string() for n in names}
    back = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=string_types, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    assert back.column_names == names
    assert back.equals(expected)
    texts = set(back.column("Last_Name").to_pylist())
    assert set(NASTY) <= texts  # CRLF, quotes, leading spaces, "NULL"... all intact
    by_id = {r["id"]: r for r in back.to_pylist()}
    canonical = {r["id"]: r for r in table.to_pylist()}
    some = next(i for i, r in canonical.items() if r["Interests"] and len(r["Interests"]) > 1)
    assert by_id[some]["Interests"] == ";".join(canonical[some]["Interests"])
    assert by_id[some]["Owner"] == canonical[some]["Owner"]["id"]
    assert by_id[some]["Email_Opt_Out"] in ("true", "false")
    # Amounts and whole numbers keep their value; some are spelled oddly ("12.5000", "5.0").
    for rid, row in canonical.items():
        got, want = by_id[rid]["Annual_Revenue"], row["Annual_Revenue"]
        assert (got is None) == (want is None)
        assert got is None or Decimal(got) == Decimal(want)
        score = by_id[rid]["Lead_Score"]
        assert score is None or Decimal(score) == row["Lead_Score"]
    revenues = [r["Annual_Revenue"] for r in by_id.values() if r["Annual_Revenue"]]
    assert any(len(v.split(".")[1]) > 2 for v in revenues)
    assert any(len(v.split(".")[1]) == 2 for v in revenues)
    assert any(str(r["Lead_Score"]).endswith(".0") for r in by_id.values())
    assert ZONED.match(by_id[some]["Modified_Time"])
    nulls = [i for i, r in canonical.items() if r["Description"] is None]
    assert nulls and all(by_id[i]["Description"] is None for i in nulls)
    # and the standard library's RFC 4180 reader agrees
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[0] == names and len(rows) == table.num_rows + 1
    assert {r[names.index("Last_Name")] for r in rows[1:]} >= set(NASTY)


def test_csv_leaves_out_unreadable_fields_and_renders_lookups_as_ids(deals_org: Org) -> None:
    deals = deals_org.module("Deals")
    table = deals.select(["Deal_Name", "Line_Items", "Account_Name", "id"], limit=20)
    out = csv_table(table, deals.meta.field_map, IST)
    assert out.column_names == ["id", "Deal_Name", "Account_Name"]
    accounts = [v["id"] if v else None for v in table.column("Account_Name").to_pylist()]
    assert out.column("Account_Name").to_pylist() == accounts


def test_streaming_writer_writes_one_header(deals_org: Org) -> None:
    leads = deals_org.module("Leads")
    sink = io.BytesIO()
    rows = write_csv(
        leads.iter_tables(["id", "Last_Name"], chunk_rows=64), leads.meta.field_map, sink, IST
    )
    assert rows == leads.count()
    back = _read_back(sink.getvalue())
    assert back.num_rows == rows and back.column("id").to_pylist() == leads.current_ids()
    empty = io.BytesIO()
    assert write_csv(iter(()), leads.meta.field_map, empty, columns=["id", "Last_Name"]) == 0
    assert empty.getvalue().decode().strip() == '"id","Last_Name"'


def test_unknown_column_is_stringified() -> None:
    table = pa.table({"id": ["1"], "extra": [5]})
    assert csv_table(table, [], IST).column("extra").to_pylist() == ["5"]
    assert records_to_json(
        table, [SimField(api_name="id", data_type="bigint", field_label="id", id="1")]
    ) == [{"id": "1", "extra": 5}]
