"""Zoho values -> Arrow: JSON (Records, COQL) and Bulk CSV must give equal rows."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import DataError
from connector.lake.csvbatches import batches_from_csv
from connector.lake.raw_values import merge_raw_values, unfit_counts
from connector.lake.schema import (
    RAW_VALUES,
    TOMBSTONE_SCHEMA,
    ModuleSchema,
    batch_from_records,
    module_schema,
    parse_zoho_datetime,
    tombstones_from_json,
)
from connector.zoho.metadata import FieldMeta

UTC = timezone.utc
LONG_TEXT = ('Lorem, ipsum "dolor"\nsit amet; ' * 200)[:5000]


def _csv_bytes(header: list[str], rows: list[list[str | None]], *, newline: str = "\r\n") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode("utf-8")


def _read_csv(data: bytes, schema: ModuleSchema, **kwargs: Any) -> pa.Table:
    return pa.Table.from_batches(
        list(batches_from_csv(io.BytesIO(data), schema, **kwargs)), schema=schema.arrow
    )


def _one_field(data_type: str, **meta: Any) -> ModuleSchema:
    fields = [
        FieldMeta("F", data_type, **meta),
        FieldMeta("Modified_Time", "datetime"),
    ]
    return module_schema("Leads", fields)


MT_TEXT = "2024-06-05T02:04:09+05:30"
MT_UTC = datetime(2024, 6, 4, 20, 34, 9, tzinfo=UTC)

# (data_type, field metadata, JSON value, Bulk CSV cell text, expected Python value)
CASES: list[tuple[str, dict[str, Any], Any, str | None, Any]] = [
    ("text", {}, "hello", "hello", "hello"),
    ("text", {}, "a, b, c", "a, b, c", "a, b, c"),
    ("text", {}, 'say "hi", ok', 'say "hi", ok', 'say "hi", ok'),
    ("text", {}, "line1\r\nline2", "line1\r\nline2", "line1\r\nline2"),
    ("text", {}, "line1\nline2\n", "line1\nline2\n", "line1\nline2\n"),
    ("text", {}, "lone\rcr", "lone\rcr", "lone\rcr"),
    ("text", {}, "tab\there", "tab\there", "tab\there"),
    ("text", {}, "emoji 😀👍🏽 🇮🇳", "emoji 😀👍🏽 🇮🇳", "emoji 😀👍🏽 🇮🇳"),
    ("text", {}, "שלום עולם مرحبا", "שלום עולם مرحبا", "שלום עולם مرحبا"),
    ("text", {}, "  padded  ", "  padded  ", "  padded  "),
    ("text", {}, " ", " ", " "),
    ("text", {}, "NA", "NA", "NA"),
    ("text", {}, "null", "null", "null"),
    ("text", {}, "NULL", "NULL", "NULL"),
    ("text", {}, "N/A", "N/A", "N/A"),
    ("text", {}, "nan", "nan", "nan"),
    ("text", {}, "true", "true", "true"),
    ("text", {}, "0012", "0012", "0012"),
    ("text", {}, "ctrl\x01\x7f", "ctrl\x01\x7f", "ctrl\x01\x7f"),
    ("text", {}, "sep\u2028para\u2029", "sep\u2028para\u2029", "sep\u2028para\u2029"),
    ("text", {}, LONG_TEXT, LONG_TEXT, LONG_TEXT),
    ("text", {}, None, None, None),
    ("text", {}, "", None, None),
    ("textarea", {}, 'multi\nline, "text"', 'multi\nline, "text"', 'multi\nline, "text"'),
    ("email", {}, "a.b+c@example.com", "a.b+c@example.com", "a.b+c@example.com"),
    ("phone", {}, "+1 (555) 010-0000", "+1 (555) 010-0000", "+1 (555) 010-0000"),
    (
        "website",
        {},
        "https://x.example/?a=1,2",
        "https://x.example/?a=1,2",
        "https://x.example/?a=1,2",
    ),
    ("picklist", {}, "Closed Won", "Closed Won", "Closed Won"),
    ("profileimage", {}, "abc123/photo", "abc123/photo", "abc123/photo"),
    ("autonumber", {}, "LEAD-00001", "LEAD-00001", "LEAD-00001"),
    ("bigint", {}, "3652397000009851001", "3652397000009851001", "3652397000009851001"),
    ("bigint", {}, 3652397000009851001, "3652397000009851001", "3652397000009851001"),
    ("integer", {}, 42, "42", 42),
    ("integer", {}, -7, "-7", -7),
    ("integer", {}, 0, "0", 0),
    ("integer", {}, None, None, None),
    ("long", {}, 9007199254740993, "9007199254740993", 9007199254740993),
    ("double", {}, 0.1, "0.1", 0.1),
    ("double", {}, 1234.5678, "1234.5678", 1234.5678),
    ("double", {}, 1e-05, "1e-05", 1e-05),
    ("double", {}, 3, "3", 3.0),
    ("double", {}, -2.5, "-2.5", -2.5),
    ("percent", {}, 12.5, "12.5", 12.5),
    ("currency", {"decimal_place": 2}, 0.1, "0.10", Decimal("0.10")),
    ("currency", {"decimal_place": 2}, 1234.56, "1234.56", Decimal("1234.56")),
    ("currency", {"decimal_place": 2}, 100, "100", Decimal("100.00")),
    (
        "currency",
        {"decimal_place": 2},
        999999999999.99,
        "999999999999.99",
        Decimal("999999999999.99"),
    ),
    ("currency", {"decimal_place": 2}, -0.3, "-0.30", Decimal("-0.30")),
    ("currency", {"decimal_place": 0}, 5, "5", Decimal("5")),
    ("currency", {"decimal_place": 3}, 1.005, "1.005", Decimal("1.005")),
    ("currency", {}, 19.99, "19.99", Decimal("19.99")),
    ("currency", {"decimal_place": 2}, None, None, None),
    ("boolean", {}, True, "true", True),
    ("boolean", {}, False, "false", False),
    ("boolean", {}, None, None, None),
    ("date", {}, "2024-02-29", "2024-02-29", date(2024, 2, 29)),
    ("datetime", {}, MT_TEXT, MT_TEXT, MT_UTC),
    (
        "datetime",
        {},
        "2024-06-05T02:04:09-07:00",
        "2024-06-05T02:04:09-07:00",
        datetime(2024, 6, 5, 9, 4, 9, tzinfo=UTC),
    ),
    (
        "datetime",
        {},
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
        datetime(2024, 1, 1, tzinfo=UTC),
    ),
    ("multiselectpicklist", {}, ["b", "a"], "b;a", ["b", "a"]),
    ("multiselectpicklist", {}, ["only"], "only", ["only"]),
    ("multiselectpicklist", {}, ["x, y", 'z "q"'], 'x, y;z "q"', ["x, y", 'z "q"']),
    ("multiselectpicklist", {}, [], None, None),
    ("multiselectpicklist", {}, None, None, None),
    ("lookup", {}, {"name": "Zylker", "id": "111"}, "111", "111"),
    ("ownerlookup", {}, {"name": "P B", "id": "222", "email": "p@x.com"}, "222", "222"),
    ("userlookup", {}, {"name": "U", "id": "333"}, "333", "333"),
    ("layout", {}, {"name": "Standard", "id": "444"}, "444", "444"),
    ("lookup", {}, None, None, None),
    ("formula", {"return_type": "double"}, 1.5, "1.5", 1.5),
    ("formula", {"return_type": "currency", "decimal_place": 2}, 2.5, "2.50", Decimal("2.50")),
    ("formula", {"return_type": "boolean"}, True, "true", True),
    ("formula", {"return_type": "date"}, "2024-01-31", "2024-01-31", date(2024, 1, 31)),
    ("formula", {"return_type": "string"}, "x,y", "x,y", "x,y"),
    ("formula", {}, "plain", "plain", "plain"),
    ("rich_text", {}, "<b>bold</b>", "<b>bold</b>", "<b>bold</b>"),
    ("mystery_type", {}, "as text", "as text", "as text"),
    ("time_range", {}, [{"From": "10:00", "To": "19:00"}], "10:00-19:00", "10:00-19:00"),
    ("time_range", {}, None, None, None),
    # Zoho's own spellings of whole numbers and amounts: the same value, nothing rounded.
    ("integer", {}, Decimal("5.0"), "5.0", 5),
    ("integer", {}, Decimal("0.0"), "0.0", 0),
    ("long", {}, Decimal("-12.000"), "-12.000", -12),
    ("currency", {"decimal_place": 2}, Decimal("12.5000"), "12.5000", Decimal("12.50")),
    (
        "currency",
        {"decimal_place": 2, "currency_precision": 4},
        Decimal("0.1234"),
        "0.1234",
        Decimal("0.1234"),
    ),
    # Rollup summaries by their return type.
    ("rollup_summary", {"return_type": "integer"}, 7, "7", 7),
    ("rollup_summary", {"return_type": "integer"}, Decimal("7.0"), "7.0", 7),
    (
        "rollup_summary",
        {"return_type": "currency", "decimal_place": 2},
        Decimal("99999999999999.99"),
        "99999999999999.99",
        Decimal("99999999999999.99"),
    ),
    ("rollup_summary", {"return_type": "datetime"}, MT_TEXT, MT_TEXT, MT_UTC),
    # JSON-valued fields: compact JSON text, whether Zoho sends the object or its text.
    (
        "ALARM",
        {"json_type": "jsonobject"},
        {"ALARM": "FREQ=NONE;ACTION=EMAIL;TRIGGER=-PT15M"},
        '{"ALARM": "FREQ=NONE;ACTION=EMAIL;TRIGGER=-PT15M"}',
        '{"ALARM":"FREQ=NONE;ACTION=EMAIL;TRIGGER=-PT15M"}',
    ),
    (
        "RRULE",
        {},
        {"RRULE": "FREQ=DAILY;INTERVAL=1"},
        '{"RRULE":"FREQ=DAILY;INTERVAL=1"}',
        '{"RRULE":"FREQ=DAILY;INTERVAL=1"}',
    ),
    (
        "multireminder",
        {},
        [{"period": "minutes", "unit": 15}],
        '[ {"period": "minutes", "unit": 15} ]',
        '[{"period":"minutes","unit":15}]',
    ),
    ("event_reminder", {}, "plain text stays", "plain text stays", "plain text stays"),
    (
        "text",
        {"json_type": "jsonarray"},
        [{"name": "Ana", "Email": "a@x.com", "invited": True}],
        '[{"name":"Ana","Email":"a@x.com","invited":true}]',
        '[{"name":"Ana","Email":"a@x.com","invited":true}]',
    ),
    ("lineitem", {"json_type": "jsonarray"}, [{"qty": 2}], '[{"qty": 2}]', '[{"qty":2}]'),
    ("ALARM", {}, None, None, None),
]


@pytest.mark.parametrize(
    ("data_type", "meta", "json_value", "csv_text", "expected"),
    CASES,
    ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)],
)
def test_json_and_csv_give_equal_rows(
    data_type: str, meta: dict[str, Any], json_value: Any, csv_text: str | None, expected: Any
) -> None:
    schema = _one_field(data_type, **meta)
    from_json = pa.Table.from_batches(
        [batch_from_records([{"id": "1", "F": json_value, "Modified_Time": MT_TEXT}], schema)]
    )
    data = _csv_bytes(["id", "F", "Modified_Time"], [["1", csv_text, MT_TEXT]])
    from_csv = _read_csv(data, schema)
    assert from_json.schema == schema.arrow
    assert from_csv.schema == schema.arrow
    assert from_json.equals(from_csv), (from_json.to_pylist(), from_csv.to_pylist())
    assert from_json.column("F").to_pylist() == [expected]
    assert from_json.column("Modified_Time").to_pylist() == [MT_UTC]


@pytest.mark.parametrize(
    ("data_type", "meta", "arrow_type"),
    [
        ("text", {}, pa.string()),
        ("bigint", {}, pa.string()),
        ("autonumber", {}, pa.string()),
        ("integer", {}, pa.int64()),
        ("long", {}, pa.int64()),
        ("double", {}, pa.float64()),
        ("percent", {}, pa.float64()),
        ("currency", {"decimal_place": 4}, pa.decimal128(38, 4)),
        ("currency", {}, pa.decimal128(38, 2)),
        ("boolean", {}, pa.bool_()),
        ("date", {}, pa.date32()),
        ("datetime", {}, pa.timestamp("us", tz="UTC")),
        ("multiselectpicklist", {}, pa.list_(pa.string())),
        ("lookup", {}, pa.string()),
        ("ownerlookup", {}, pa.string()),
        ("formula", {"return_type": "integer"}, pa.int64()),
        ("formula", {"return_type": "datetime"}, pa.timestamp("us", tz="UTC")),
        ("formula", {"return_type": "text"}, pa.string()),
        ("currency", {"decimal_place": 2, "currency_precision": 5}, pa.decimal128(38, 5)),
        ("currency", {"decimal_place": 3, "currency_precision": 2}, pa.decimal128(38, 3)),
        ("rollup_summary", {"return_type": "currency"}, pa.decimal128(38, 2)),
        ("rollup_summary", {"return_type": "integer"}, pa.int64()),
        ("rollup_summary", {"return_type": "datetime"}, pa.timestamp("us", tz="UTC")),
        ("ALARM", {}, pa.string()),
        ("RRULE", {}, pa.string()),
        ("event_reminder", {}, pa.string()),
        ("multireminder", {}, pa.string()),
        ("text", {"json_type": "jsonarray"}, pa.string()),
        ("bigint", {"json_type": "jsonarray"}, pa.string()),
    ],
)
def test_arrow_types(data_type: str, meta: dict[str, Any], arrow_type: pa.DataType) -> None:
    schema = _one_field(data_type, **meta)
    assert schema.arrow.field("F").type == arrow_type
    assert schema.warnings == ()


def test_schema_order_id_first_and_modified_time_is_utc_timestamp() -> None:
    fields = [
        FieldMeta("Last_Name", "text"),
        FieldMeta("Modified_Time", "text"),  # metadata says otherwise: still a timestamp
        FieldMeta("id", "bigint"),
        FieldMeta("Custom_1", "integer", custom_field=True),
    ]
    schema = module_schema("Leads", fields)
    assert schema.arrow.names == ["id", "Last_Name", "Modified_Time", "Custom_1", RAW_VALUES]
    assert [f.api_name for f in schema.fields] == schema.arrow.names
    assert schema.derived == [RAW_VALUES]  # never asked of Zoho
    assert schema.arrow.field("Modified_Time").type == pa.timestamp("us", tz="UTC")
    assert schema.arrow.field("id").type == pa.string()


def test_id_is_added_when_metadata_lacks_it() -> None:
    schema = module_schema("Leads", [FieldMeta("Name", "text")])
    assert schema.arrow.names == ["id", "Name", RAW_VALUES]


def test_skipped_fields_are_reported_not_invented() -> None:
    fields = [
        FieldMeta("Name", "text"),
        FieldMeta("Items", "subform"),
        FieldMeta("Partners", "multiselectlookup"),
        FieldMeta("Reviewers", "multiuserlookup"),
        FieldMeta("Doc", "fileupload"),
        FieldMeta("Pic", "imageupload"),
        FieldMeta("Tag", "text", json_type="jsonarray"),
    ]
    schema = module_schema("Deals", fields)
    assert schema.arrow.names == ["id", "Name", RAW_VALUES]
    skipped = dict(schema.skipped)
    assert set(skipped) == {"Items", "Partners", "Reviewers", "Doc", "Pic", "Tag"}
    assert all(reason for reason in skipped.values())


def test_unknown_type_reads_as_text_with_warning_and_json_objects_as_compact_json() -> None:
    schema = module_schema("Leads", [FieldMeta("Odd", "space_time")])
    assert schema.arrow.field("Odd").type == pa.string()
    assert len(schema.warnings) == 1
    assert "Odd" in schema.warnings[0] and "space_time" in schema.warnings[0]
    rows: list[dict[str, Any]] = [
        {"id": "1", "Odd": {"a": [1, "é"], "b": None}},
        {"id": "2", "Odd": [1, 2]},
        {"id": "3", "Odd": 7},
        {"id": "4", "Odd": True},
    ]
    batch = batch_from_records(rows, schema)
    assert batch.column("Odd").to_pylist() == ['{"a":[1,"é"],"b":null}', "[1,2]", "7", "true"]


def test_missing_and_extra_json_keys() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text"), FieldMeta("B", "integer")])
    batch = batch_from_records(
        [{"id": "1", "A": "x", "Zzz": "ignored"}, {"id": "2", "B": 3}], schema
    )
    assert batch.to_pylist() == [
        {"id": "1", "A": "x", "B": None, RAW_VALUES: None},
        {"id": "2", "A": None, "B": 3, RAW_VALUES: None},
    ]


def test_empty_json_page_gives_empty_batch() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text")])
    batch = batch_from_records([], schema)
    assert batch.num_rows == 0
    assert batch.schema == schema.arrow


@pytest.mark.parametrize(
    ("data_type", "meta", "json_value", "csv_text"),
    [
        ("integer", {}, "abc", "abc"),
        ("integer", {}, 1.5, "1.5"),
        ("double", {}, "twelve", "twelve"),
        ("boolean", {}, "yes", "yes"),
        ("date", {}, "2024-13-01", "2024-13-01"),
        ("datetime", {}, "2024-06-05T02:04:09", "2024-06-05T02:04:09"),
        ("datetime", {}, "yesterday", "yesterday"),
        ("currency", {"decimal_place": 2}, 0.125, "0.125"),
        ("currency", {"decimal_place": 2}, "1,000.00", "1,000.00"),
        ("currency", {"decimal_place": 2}, Decimal("12.5001"), "12.5001"),
        ("integer", {}, Decimal("5.01"), "5.01"),
        ("integer", {}, Decimal("1E+2"), "1e2"),
    ],
)
def test_values_that_do_not_fit_their_column_are_kept_exactly_in_raw_values(
    data_type: str, meta: dict[str, Any], json_value: Any, csv_text: str
) -> None:
    # Never rounded, never a failed module: the typed cell is null and Zoho's text is kept.
    schema = _one_field(data_type, **meta)
    good = {"id": "100", "F": None, "Modified_Time": MT_TEXT}
    bad = {"id": "3652397000009851001", "F": json_value, "Modified_Time": MT_TEXT}
    from_json = pa.Table.from_batches([batch_from_records([good, bad], schema)])
    data = _csv_bytes(
        ["id", "F", "Modified_Time"], [["100", None, MT_TEXT], [bad["id"], csv_text, MT_TEXT]]
    )
    from_csv = _read_csv(data, schema)
    json_text = json_value if isinstance(json_value, str) else str(json_value)
    for table, text in ((from_json, json_text), (from_csv, csv_text)):
        assert table.schema == schema.arrow
        assert table.column("F").to_pylist() == [None, None]
        assert table.column(RAW_VALUES).to_pylist() == [
            None,
            json.dumps({"F": text}, separators=(",", ":")),
        ]
        assert unfit_counts(table.column(RAW_VALUES).combine_chunks()) == {"F": 1}


def test_an_unreadable_modified_time_still_fails_naming_module_field_and_id() -> None:
    # The watermark and the partitions hang on Modified_Time: no row may go without it.
    schema = _one_field("integer")
    bad = {"id": "3652397000009851001", "F": 1, "Modified_Time": "yesterday"}
    with pytest.raises(DataError) as error:
        batch_from_records([bad], schema)
    message = str(error.value)
    assert "Leads.Modified_Time" in message and "3652397000009851001" in message
    assert error.value.field == "Modified_Time" and "Traceback" not in message


def test_a_row_keeps_every_unfit_value_and_fitting_values_beside_them_stay_typed() -> None:
    schema = module_schema(
        "Deals",
        [
            FieldMeta("Qty", "integer"),
            FieldMeta("Amount", "currency", decimal_place=2),
            FieldMeta("Won", "boolean"),
        ],
    )
    rows = [
        {"id": "1", "Qty": 2.5, "Amount": Decimal("10.125"), "Won": True},
        {"id": "2", "Qty": 3, "Amount": Decimal("10.10"), "Won": "maybe"},
        {"id": "3", "Qty": 4.0, "Amount": Decimal("1.5"), "Won": False},
    ]
    table = pa.Table.from_batches([batch_from_records(rows, schema)])
    assert table.column("Qty").to_pylist() == [None, 3, 4]
    assert table.column("Amount").to_pylist() == [None, Decimal("10.10"), Decimal("1.50")]
    assert table.column("Won").to_pylist() == [True, None, False]
    assert [json.loads(v) if v else None for v in table.column(RAW_VALUES).to_pylist()] == [
        {"Qty": "2.5", "Amount": "10.125"},
        {"Won": "maybe"},
        None,
    ]


def test_raw_values_of_field_groups_are_joined_row_by_row() -> None:
    first = pa.array([None, '{"A":"1.5"}', None], pa.string())
    second = pa.array(['{"B":"x"}', '{"B":"y"}', None], pa.string())
    merged = merge_raw_values([first, second])
    assert merged.to_pylist() == ['{"B":"x"}', '{"A":"1.5","B":"y"}', None]
    assert merge_raw_values([first, pa.nulls(3, pa.string())]) is first


def test_csv_header_order_missing_and_extra_columns() -> None:
    schema = module_schema(
        "Leads",
        [FieldMeta("A", "text"), FieldMeta("B", "integer"), FieldMeta("C", "boolean")],
    )
    data = _csv_bytes(["Extra", "C", "id", "A"], [["zz", "true", "1", "x"], ["", "false", "2", ""]])
    table = _read_csv(data, schema)
    assert table.schema == schema.arrow
    assert table.to_pylist() == [
        {"id": "1", "A": "x", "B": None, "C": True, RAW_VALUES: None},
        {"id": "2", "A": None, "B": None, "C": False, RAW_VALUES: None},
    ]


def test_csv_with_bom_and_lf_newlines() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text")])
    data = b"\xef\xbb\xbf" + _csv_bytes(["id", "A"], [["1", "v"]], newline="\n")
    assert _read_csv(data, schema).to_pylist() == [{"id": "1", "A": "v", RAW_VALUES: None}]


def test_csv_without_id_column_is_a_data_error() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text")])
    with pytest.raises(DataError, match="'id'"):
        _read_csv(_csv_bytes(["A"], [["x"]]), schema)


@pytest.mark.parametrize("data", [b"", b"\n"])
def test_empty_csv_is_a_data_error(data: bytes) -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text")])
    with pytest.raises(DataError, match="no header"):
        _read_csv(data, schema)


def test_header_only_csv_gives_no_rows() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text")])
    assert _read_csv(b"id,A\r\n", schema).num_rows == 0


def test_truncated_csv_is_a_data_error() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text"), FieldMeta("B", "text")])
    data = b'id,A,B\r\n1,"open quote never closed\r\n2,x,y\r\n'
    with pytest.raises(DataError, match="cannot be parsed"):
        _read_csv(data, schema)


def test_csv_streams_in_several_batches() -> None:
    schema = module_schema("Leads", [FieldMeta("A", "text"), FieldMeta("N", "integer")])
    rows: list[list[str | None]] = [
        [str(i), f"value {i}, with\nnewline", str(i)] for i in range(3000)
    ]
    data = _csv_bytes(["id", "A", "N"], rows)
    batches = list(batches_from_csv(io.BytesIO(data), schema, block_size=16 << 10))
    assert len(batches) > 3
    table = pa.Table.from_batches(batches)
    assert table.column("N").to_pylist() == list(range(3000))
    assert table.column("A")[2999].as_py() == "value 2999, with\nnewline"


def test_big_header_beyond_first_read() -> None:
    names = [f"Field_{i:03d}" for i in range(400)]
    schema = module_schema("Leads", [FieldMeta(n, "text") for n in names])
    data = _csv_bytes(["id", *names], [["1", *names]])
    table = _read_csv(data, schema)
    assert table.column("Field_399").to_pylist() == ["Field_399"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
            min_size=1,
            max_size=40,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_text_survives_csv_and_json_alike(values: list[str]) -> None:
    schema = module_schema("Leads", [FieldMeta("T", "textarea")])
    rows = [{"id": str(i), "T": v} for i, v in enumerate(values)]
    data = _csv_bytes(["id", "T"], [[r["id"], r["T"]] for r in rows])
    from_csv = _read_csv(data, schema)
    from_json = pa.Table.from_batches([batch_from_records(rows, schema)])
    assert from_csv.equals(from_json)
    assert from_csv.column("T").to_pylist() == values


def test_tombstones_from_json() -> None:
    rows: list[dict[str, Any]] = [
        {
            "deleted_by": {"name": "Patricia", "id": "9"},
            "id": "111",
            "display_name": 'Acme, "Inc"',
            "type": "recycle",
            "created_by": {"name": "Ann", "id": "8"},
            "deleted_time": "2015-06-19T11:19:38+05:30",
        },
        {
            "deleted_by": None,
            "id": "112",
            "display_name": None,
            "type": "permanent",
            "created_by": None,
            "deleted_time": "2015-06-19T11:19:38-07:00",
        },
    ]
    batch = tombstones_from_json(rows)
    assert batch.schema == TOMBSTONE_SCHEMA
    assert batch.to_pylist() == [
        {
            "id": "111",
            "deleted_time": datetime(2015, 6, 19, 5, 49, 38, tzinfo=UTC),
            "type": "recycle",
            "display_name": 'Acme, "Inc"',
            "deleted_by_id": "9",
            "deleted_by_name": "Patricia",
            "created_by_id": "8",
            "created_by_name": "Ann",
        },
        {
            "id": "112",
            "deleted_time": datetime(2015, 6, 19, 18, 19, 38, tzinfo=UTC),
            "type": "permanent",
            "display_name": None,
            "deleted_by_id": None,
            "deleted_by_name": None,
            "created_by_id": None,
            "created_by_name": None,
        },
    ]


def test_tombstone_with_bad_time_is_data_error() -> None:
    with pytest.raises(DataError, match="113"):
        tombstones_from_json([{"id": "113", "deleted_time": "not a time"}])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-05T02:04:09+05:30", datetime(2024, 6, 4, 20, 34, 9, tzinfo=UTC)),
        ("2024-06-05T02:04:09-07:00", datetime(2024, 6, 5, 9, 4, 9, tzinfo=UTC)),
        ("2024-06-05T02:04:09Z", datetime(2024, 6, 5, 2, 4, 9, tzinfo=UTC)),
        ("2024-06-05T02:04:09.250+00:00", datetime(2024, 6, 5, 2, 4, 9, 250000, tzinfo=UTC)),
    ],
)
def test_parse_zoho_datetime(text: str, expected: datetime) -> None:
    parsed = parse_zoho_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["2024-06-05T02:04:09", "soon", ""])
def test_parse_zoho_datetime_rejects(text: str) -> None:
    with pytest.raises(DataError):
        parse_zoho_datetime(text)


def test_a_polymorphic_lookup_gets_its_module_next_to_it_never_asked_for() -> None:
    from connector.readers.base import field_names

    fields = [
        FieldMeta("What_Id", "lookup"),
        FieldMeta("Who_Id", "lookup"),
        FieldMeta("Modified_Time", "datetime"),
    ]
    schema = module_schema("Tasks", fields)
    assert schema.names == ["id", "What_Id", "$se_module", "Who_Id", "Modified_Time", RAW_VALUES]
    assert schema.derived == ["$se_module", RAW_VALUES]
    assert "$se_module" not in field_names(schema)
    row = {"id": "1", "What_Id": {"id": "9", "name": "D"}, "$se_module": "Deals"}
    batch = batch_from_records([{**row, "Modified_Time": MT_TEXT}], schema)
    assert batch.column("$se_module").to_pylist() == ["Deals"]
    assert module_schema("Notes", [FieldMeta("Parent_Id", "lookup")]).derived == [
        "$se_module",
        RAW_VALUES,
    ]
    assert module_schema("Deals", [FieldMeta("Account_Name", "lookup")]).derived == [RAW_VALUES]


def test_rich_text_fields_and_converting_modules() -> None:
    fields = [FieldMeta("Plan", "textarea", rich_text=True), FieldMeta("Notes", "textarea")]
    assert module_schema("Accounts", fields).rich_text == ["Plan"]
    assert module_schema("Leads", fields).hides_converted
    assert not module_schema("Accounts", fields).hides_converted
    assert module_schema("Custom", [FieldMeta("Converted__s", "boolean")]).hides_converted


def test_field_metadata_reads_rollups_rich_text_and_currency_precision() -> None:
    rollup = FieldMeta.from_api(
        {
            "api_name": "Won",
            "data_type": "rollup_summary",
            "decimal_place": 2,
            "currency": {"rounding_option": "normal", "precision": 4},
            "rollup_summary": {"return_type": "currency", "expression": {"function": "SUM"}},
        }
    )
    assert (rollup.return_type, rollup.currency_precision, rollup.rich_text) == (
        "currency",
        4,
        False,
    )
    rich = FieldMeta.from_api(
        {"api_name": "Plan", "data_type": "textarea", "textarea": {"type": "rich_text"}}
    )
    plain = FieldMeta.from_api(
        {"api_name": "Plan", "data_type": "textarea", "textarea": {"type": "large"}}
    )
    assert rich.rich_text and not plain.rich_text
