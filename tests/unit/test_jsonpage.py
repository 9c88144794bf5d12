"""JSON pages straight to Arrow: the fast path equals the shared normalisation, value for value."""

from __future__ import annotations

import io
import json
import string
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from connector.errors import DataError
from connector.lake.csvbatches import batches_from_csv
from connector.lake.schema import (
    ModuleSchema,
    batch_from_records,
    module_schema,
    parse_zoho_datetime,
)
from connector.readers import jsonpage
from connector.readers.base import zoho_time
from connector.readers.jsonpage import decode_page, stamps_of
from connector.zoho.metadata import FieldMeta

FIELDS = [
    FieldMeta("Modified_Time", "datetime"),
    FieldMeta("Name", "text"),
    FieldMeta("Owner", "ownerlookup"),
    FieldMeta("Pieces", "integer"),
    FieldMeta("Weight", "double"),
    FieldMeta("Amount", "currency", decimal_place=2),
    FieldMeta("Premium", "currency", decimal_place=3),
    FieldMeta("Insured", "boolean"),
    FieldMeta("Pickup", "date"),
    FieldMeta("Delivered_At", "datetime"),
    FieldMeta("Codes", "multiselectpicklist"),
]
SCHEMA = module_schema("Shipments", FIELDS)
COLUMNS = SCHEMA.names


def body_of(rows: list[Any], info: Any = None) -> bytes:
    answer: dict[str, Any] = {"data": rows}
    if info is not None:
        answer["info"] = info
    return json.dumps(answer, ensure_ascii=False).encode("utf-8")


def reference(body: bytes, columns: list[str] = COLUMNS) -> pa.Table:
    """What the shared normalisation makes of a body decoded by ``json``, numbers exactly."""
    rows = json.loads(body, parse_float=Decimal)["data"]
    return pa.Table.from_batches([batch_from_records(rows, SCHEMA.select(columns))])


def good_row(i: int) -> dict[str, Any]:
    return {
        "id": f"57257670000{i:08d}",
        "Modified_Time": f"2026-07-01T1{i % 10}:00:0{i % 10}+05:30",
        "Name": f'name, "{i}"\nline',
        "Owner": {"name": "Ann", "id": "57257670000000001"},
        "Pieces": i,
        "Weight": i / 3,
        "Amount": 12.5,
        "Premium": 0.125,
        "Insured": i % 2 == 0,
        "Pickup": "2026-06-30",
        "Delivered_At": None,
        "Codes": ["a", "b;c"] if i % 2 else [],
    }


def test_a_well_typed_page_takes_the_fast_path_and_equals_the_reference() -> None:
    body = body_of([good_row(i) for i in range(5)], {"more_records": True, "count": 5})
    fast = jsonpage._decode_with_arrow(body, SCHEMA)
    assert fast is not None
    assert fast.table.equals(reference(body))
    assert fast.info == {"more_records": True, "count": 5}
    assert fast.table.schema == SCHEMA.arrow


def test_zoho_conventions_hold_on_the_fast_path() -> None:
    row = good_row(1) | {"Name": "", "Codes": [], "Owner": None, "Pickup": ""}
    page = jsonpage._decode_with_arrow(body_of([row]), SCHEMA)
    assert page is not None
    got = page.table.to_pylist()[0]
    # Zoho has no empty strings and no empty multi-select lists: both are null in every reader.
    assert got["Name"] is None and got["Codes"] is None and got["Owner"] is None
    assert got["Pickup"] is None


def test_sixteen_digit_currency_keeps_its_last_digit_in_both_paths_and_matches_csv() -> None:
    row = good_row(1) | {"Amount": Decimal("99999999999999.99")}
    body = json.dumps({"data": [row]}, default=str).replace(
        '"99999999999999.99"', "99999999999999.99"
    )
    fast = decode_page(body.encode(), SCHEMA, COLUMNS, what="a test page")
    assert fast.table.column("Amount")[0].as_py() == Decimal("99999999999999.99")
    # The fallback (a number in a text field forces it) decodes numbers exactly too.
    slow_row = row | {"Name": 7}
    slow_body = json.dumps({"data": [slow_row]}, default=str).replace(
        '"99999999999999.99"', "99999999999999.99"
    )
    assert jsonpage._decode_with_arrow(slow_body.encode(), SCHEMA) is None
    slow = decode_page(slow_body.encode(), SCHEMA, COLUMNS, what="a test page")
    assert slow.table.column("Amount")[0].as_py() == Decimal("99999999999999.99")
    assert slow.table.column("Name")[0].as_py() == "7"
    csv_text = "id,Modified_Time,Amount\n1,2026-07-01T10:00:00+05:30,99999999999999.99\n"
    (csv_batch,) = list(batches_from_csv(io.BytesIO(csv_text.encode()), SCHEMA))
    assert csv_batch.column(csv_batch.schema.get_field_index("Amount"))[0].as_py() == Decimal(
        "99999999999999.99"
    )


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("Name", 5),  # a number in a text field
        ("Name", {"a": 1}),  # an object in a text field
        ("id", 5725767000000000001),  # an id as a number
        ("Pieces", "5"),  # a number as text
        ("Insured", 1),
        ("Owner", "57257670000000001"),  # a lookup as plain text
        ("Codes", "a;b"),  # a multi-select list as Bulk CSV text
        ("Codes", ["a", None]),  # a null inside a list
        ("Codes", ["a", 2]),
    ],
)
def test_unexpected_json_types_fall_back_and_equal_the_reference(
    field_name: str, value: Any
) -> None:
    body = body_of([good_row(1), good_row(2) | {field_name: value}])
    assert jsonpage._decode_with_arrow(body, SCHEMA) is None
    assert decode_page(body, SCHEMA, COLUMNS, what="a test page").table.equals(reference(body))


def test_time_range_fields_take_the_fast_path() -> None:
    schema = module_schema("Shifts", [*FIELDS[:1], FieldMeta("Hours", "time_range")])
    at = "2026-07-01T10:00:00Z"
    rows = [
        {
            "id": "1",
            "Modified_Time": at,
            "Hours": [{"From": "9", "To": "5"}, {"From": "", "To": "7"}],
        },
        {"id": "2", "Modified_Time": at, "Hours": []},
        {"id": "3", "Modified_Time": at},
    ]
    fast = jsonpage._decode_with_arrow(body_of(rows), schema)
    assert fast is not None
    assert fast.table.column("Hours").to_pylist() == ["9-5,-7", None, None]
    assert fast.table.equals(jsonpage._decode_with_json(body_of(rows), schema, "a page").table)


@pytest.mark.parametrize(
    "hours",
    [
        [{"From": "9"}],  # a missing end: empty in the normalisation
        [{"From": "9", "To": None}],  # a null end: spelled "None" there
        [None],
        ["9-5"],
        "9-5",
        [{"From": 9, "To": "5"}],
    ],
)
def test_time_ranges_arrow_cannot_spell_exactly_fall_back(hours: Any) -> None:
    schema = module_schema("Shifts", [*FIELDS[:1], FieldMeta("Hours", "time_range")])
    body = body_of([{"id": "1", "Modified_Time": "2026-07-01T10:00:00Z", "Hours": hours}])
    assert jsonpage._decode_with_arrow(body, schema) is None
    decode_page(body, schema, schema.names, what="a test page")  # the fallback reads it


def test_json_valued_fields_whole_numbers_and_se_module_equal_the_reference() -> None:
    fields = [
        *FIELDS[:1],
        FieldMeta("Remind_At", "ALARM", json_type="jsonobject"),
        FieldMeta("What_Id", "lookup"),
        FieldMeta("Pieces", "integer"),
    ]
    schema = module_schema("Tasks", fields)
    rows = [
        {
            "id": "1",
            "Modified_Time": "2026-07-01T10:00:00Z",
            "Remind_At": {"ALARM": "FREQ=NONE;ACTION=POPUP;TRIGGER=-PT5M"},
            "What_Id": {"name": "D", "id": "7"},
            "$se_module": "Deals",
            "Pieces": 5.0,
        },
        {"id": "2", "Modified_Time": "2026-07-01T10:00:00Z", "Pieces": 3},
    ]
    page = decode_page(body_of(rows), schema, schema.names, what="a test page")
    reference = batch_from_records(json.loads(body_of(rows), parse_float=Decimal)["data"], schema)
    assert page.table.equals(pa.Table.from_batches([reference]))
    assert page.table.column("Remind_At").to_pylist() == [
        '{"ALARM":"FREQ=NONE;ACTION=POPUP;TRIGGER=-PT5M"}',
        None,
    ]
    assert page.table.column("$se_module").to_pylist() == ["Deals", None]
    assert page.table.column("Pieces").to_pylist() == [5, 3]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>busy</html>", "is not JSON"),
        (b"[1, 2]", "is a JSON list, not an object"),
        (b'{"data": {"id": "1"}}', "'data' that is not a list"),
        (b'{"data": [1]}', "row that is not a record with an id"),
        (b'{"data": [{"Name": "x"}]}', "row that is not a record with an id"),
        (b'{"data": [], "info": [1]}', "'info' that is not an object"),
        (b'{"data": [{"id": "1", "Modified_Time": "soon"}]}', "Shipments.Modified_Time: cannot"),
    ],
)
def test_malformed_pages_raise_a_data_error_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        decode_page(body, SCHEMA, COLUMNS, what="a test page")


def test_no_body_is_an_empty_page_of_the_columns() -> None:
    page = decode_page(None, SCHEMA, ["id", "Modified_Time", "Pieces"], what="a test page")
    assert page.num_rows == 0 and page.info == {}
    assert page.table.schema.names == ["id", "Modified_Time", "Pieces", "$raw_values"]


def test_a_value_that_does_not_fit_its_column_is_kept_in_raw_values() -> None:
    body = b'{"data": [{"id": "1", "Pieces": 1.5}, {"id": "2", "Pieces": 2}]}'
    page = decode_page(body, SCHEMA, ["id", "Pieces"], what="a test page")
    assert page.table.column("Pieces").to_pylist() == [None, 2]
    assert page.table.column("$raw_values").to_pylist() == ['{"Pieces":"1.5"}', None]


def test_a_group_of_columns_comes_back_in_the_order_asked() -> None:
    columns = ["id", "Modified_Time", "Weight", "Name"]
    body = body_of([good_row(i) for i in range(3)])
    page = decode_page(body, SCHEMA, columns, what="a test page")
    assert page.table.schema.names == [*columns, "$raw_values"]  # never asked, always there
    assert page.table.equals(reference(body, columns))


def test_stamps_are_the_readers_criteria_text() -> None:
    rows = [
        good_row(i) | {"Modified_Time": t}
        for i, t in enumerate(
            ["2026-07-01T10:00:00+05:30", "2026-07-01T00:00:59.900-02:00", "1999-12-31T23:59:59Z"]
        )
    ]
    page = decode_page(body_of(rows), SCHEMA, COLUMNS, what="a test page")
    assert page.stamps() == [zoho_time(parse_zoho_datetime(r["Modified_Time"])) for r in rows]
    assert page.ids() == [r["id"] for r in rows]


def test_a_missing_modified_time_is_a_data_error_naming_the_record() -> None:
    page = decode_page(body_of([good_row(1) | {"Modified_Time": None}]), SCHEMA, COLUMNS, what="p")
    with pytest.raises(DataError, match="no Modified_Time"):
        page.stamps()
    times = pa.array([None], pa.timestamp("us", tz="UTC"))
    with pytest.raises(DataError) as caught:
        stamps_of(times, pa.array(["42"]))
    assert caught.value.record_id == "42"


# --- generated pages: both paths always agree ---------------------------------------------------

texts = st.one_of(
    st.text(alphabet=string.printable + "é😀\u2028\x00", max_size=12),
    st.sampled_from(["", " ", "NA", "null", "a;b", '"', "\\"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(10**20), max_value=10**20, places=3, allow_nan=False),
)
any_scalar = st.one_of(st.none(), st.booleans(), texts, numbers)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=0).isoformat() + "+05:30"
)

# Per field: mostly well-typed values (the fast path), sometimes anything (the fallback).
VALUES: dict[str, Any] = {
    "Modified_Time": times,
    "Name": st.one_of(st.none(), texts),
    "Owner": st.one_of(
        st.none(), st.fixed_dictionaries({"id": st.one_of(st.none(), texts), "name": texts})
    ),
    "Pieces": st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    "Weight": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    "Amount": st.one_of(
        st.none(), st.decimals(min_value=-(10**16), max_value=10**16, places=2, allow_nan=False)
    ),
    "Premium": st.one_of(st.none(), st.integers(-1000, 1000), st.just(Decimal("0.125"))),
    "Insured": st.one_of(st.none(), st.booleans()),
    "Pickup": st.one_of(st.none(), st.just(""), st.dates().map(str)),
    "Delivered_At": st.one_of(st.none(), times),
    "Codes": st.one_of(st.none(), st.lists(texts, max_size=3)),
}


def draw_row(
    draw: st.DrawFn,
    values: dict[str, Any],
    unusual: Callable[[str, Any], st.SearchStrategy[Any] | None],
) -> dict[str, Any]:
    """A record with an id and, per field, mostly ``values[field]``, one time in twenty the
    field's ``unusual`` values (when it has any), one time in ten no key at all."""
    row: dict[str, Any] = {"id": draw(st.text(alphabet="0123456789", min_size=1, max_size=19))}
    for name, usual in values.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # a key left out reads as null
        rare = unusual(name, usual)
        row[name] = draw(rare if rare is not None and draw(st.integers(0, 19)) == 0 else usual)
    return row


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    return draw_row(draw, VALUES, lambda _, usual: st.one_of(usual, any_scalar))


def encode(value: Any) -> Any:
    """Decimals as JSON numbers with their own digits."""
    return (
        json.dumps(value, ensure_ascii=False, default=lambda d: f"@@{d}@@")
        .replace('"@@', "")
        .replace('@@"', "")
    )


@seed(20261129)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), max_size=6))
def test_fast_path_and_fallback_agree_on_generated_pages(page_rows: list[dict[str, Any]]) -> None:
    assert_both_paths_agree(page_rows, SCHEMA)


def assert_both_paths_agree(page_rows: list[dict[str, Any]], schema: ModuleSchema) -> None:
    """The page decodes to the same table (or a DataError) through ``decode_page`` as through
    the fallback alone, and through the fast path too whenever it answers."""
    body = encode({"data": page_rows, "info": {"more_records": False}}).encode("utf-8")
    try:
        want: pa.Table | DataError = jsonpage._decode_with_json(body, schema, "a test page").table
    except DataError as exc:
        want = exc
    try:
        got: pa.Table | DataError = decode_page(body, schema, schema.names, what="a").table
    except DataError as exc:
        got = exc
    if isinstance(want, DataError):
        assert isinstance(got, DataError)
        return
    assert isinstance(got, pa.Table) and got.equals(want), (got.to_pylist(), want.to_pylist())
    fast = jsonpage._decode_with_arrow(body, schema)
    if fast is not None:
        assert fast.table.equals(want), (fast.table.to_pylist(), want.to_pylist())


@pytest.mark.parametrize("body", [b"null", b" null{}", b"\nnull", b"1", b'"x"', b"[]"])
def test_bodies_that_are_not_one_object_never_reach_arrow(body: bytes) -> None:
    # pyarrow's JSON reader crashes the process on a top-level null; the guard keeps it away.
    assert jsonpage._decode_with_arrow(body, SCHEMA) is None
    with pytest.raises(DataError):
        decode_page(body, SCHEMA, COLUMNS, what="a test page")


def test_text_that_is_not_utf8_is_a_data_error_not_a_column() -> None:
    body = body_of([good_row(1)]).replace(b"Ann", b"A\xffn").replace(b"name, ", b"nam\xff, ")
    assert jsonpage._decode_with_arrow(body, SCHEMA) is None
    with pytest.raises(DataError, match="is not JSON"):
        decode_page(body, SCHEMA, COLUMNS, what="a test page")


def test_empty_values_are_found_in_pretty_printed_bodies_too() -> None:
    rows = [good_row(1) | {"Name": "", "Codes": []}, good_row(2)]
    body = json.dumps({"data": rows}, indent=2).replace("[]", "[ \n ]").encode()
    page = jsonpage._decode_with_arrow(body, SCHEMA)
    assert page is not None
    assert page.table.equals(reference(body))
    assert page.table.column("Name")[0].as_py() is None
    assert page.table.column("Codes")[0].as_py() is None


def _holds_empty_string(value: Any) -> bool:
    if value == "":
        return True
    if isinstance(value, dict):
        return any(k == "" or _holds_empty_string(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_empty_string(v) for v in value)
    return False


json_trees = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='a"\\ :,[]{}', max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(alphabet='a"\\', max_size=3), inner, max_size=4),
    ),
    max_leaves=10,
)


@seed(20261129)
@settings(max_examples=500, deadline=None)
@given(json_trees, st.sampled_from([None, 2]))
def test_the_empty_string_gate_is_exact_on_valid_json(tree: Any, indent: int | None) -> None:
    body = json.dumps({"data": tree}, indent=indent).encode()
    assert jsonpage._has_empty_string(body) == _holds_empty_string(tree)


# --- generated pages with time ranges ---------------------------------------------------------

SHIFT_SCHEMA = module_schema("Shifts", [*FIELDS[:4], FieldMeta("Hours", "time_range")])
clock = st.sampled_from(["09:00", "17:30", "", "9", "é"])
spans = st.one_of(
    st.fixed_dictionaries({"From": clock, "To": clock}),
    st.fixed_dictionaries({"From": clock, "To": clock, "Day": clock}),
    st.fixed_dictionaries({}, optional={"From": st.one_of(st.none(), clock), "To": clock}),
    any_scalar,
)
SHIFT_VALUES: dict[str, Any] = {
    "Modified_Time": times,
    "Name": VALUES["Name"],
    "Owner": VALUES["Owner"],
    "Pieces": VALUES["Pieces"],
    "Hours": st.one_of(
        st.none(), st.lists(st.fixed_dictionaries({"From": clock, "To": clock}), max_size=3)
    ),
}
# Now and then, time ranges the fast path must leave to the fallback.
ODD_HOURS = st.one_of(st.lists(spans, min_size=1, max_size=3), any_scalar)


@st.composite
def shift_rows(draw: st.DrawFn) -> dict[str, Any]:
    return draw_row(draw, SHIFT_VALUES, lambda name, _: ODD_HOURS if name == "Hours" else None)


@seed(20261207)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shift_rows(), max_size=6))
def test_time_ranges_agree_with_the_fallback(page_rows: list[dict[str, Any]]) -> None:
    assert_both_paths_agree(page_rows, SHIFT_SCHEMA)
