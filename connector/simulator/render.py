"""Canonical values -> what Zoho sends: JSON values (Records, COQL) and Bulk Read CSV text.

House rules for the CSV (zoho-api.md §10): a header of api_names with ``id`` first; multi-select
values joined with ``;``; booleans ``true``/``false``; nulls empty; lookups as the related id;
datetimes ISO 8601 with the org's offset; currency as its exact decimal text. Every non-null
value is quoted (RFC 4180 quoting, embedded quotes doubled), which is how Zoho's exports look.
Fields that list reads do not return (subform, multi-select lookup, file upload…) are left out.

Zoho's quirks modelled here (zoho-api.md §11; docs/simulator.md, "Assumptions"):

* Rich-text fields are cut to their first 500 characters in list answers (Records, COQL) and, by
  assumption (undocumented), in the Bulk CSV too; ``fetch_full_data`` gives the whole value.
* A Records answer names a polymorphic lookup's module in ``$se_module`` (COQL and Bulk do not).
* The Bulk CSV writes some whole numbers of integer fields as ``5.0`` and some currency amounts
  with more decimals than ``decimal_place`` (``12.5000``): the values are the same.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connector.simulator.orgdef import SimField, format_offset, format_zoho_datetime
from connector.simulator.query import category

DEFAULT_OFFSET = timedelta(hours=5, minutes=30)
# List answers give a rich-text field's first 500 characters (zoho-api.md §5).
RICH_TEXT_LIST_CHARS = 500
# The record key that names a polymorphic lookup's module (Notes.Parent_Id, Tasks.What_Id).
SE_MODULE = "$se_module"

FieldsArg = Mapping[str, SimField] | Sequence[SimField]


def _field_map(fields: FieldsArg) -> dict[str, SimField]:
    if isinstance(fields, Mapping):
        return dict(fields)
    return {f.api_name: f for f in fields}


def json_value(
    value: Any, field: SimField, offset: timedelta = DEFAULT_OFFSET, *, coql: bool = False
) -> Any:
    """One canonical value as Zoho's JSON value."""
    if value is None:
        return None
    t = field.value_type
    if t == "datetime" and isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return format_zoho_datetime(value, offset)
    if t == "date" and isinstance(value, date):
        return value.isoformat()
    if t == "currency":
        return float(value)  # Zoho sends currency as a JSON number
    if t == "multiselectpicklist":
        return list(value)
    if t in ("lookup", "userlookup"):
        return {"name": value.get("name"), "id": str(value.get("id"))}
    if t == "ownerlookup":
        if coql:
            return {"name": value.get("name"), "id": str(value.get("id"))}
        return {"name": value.get("name"), "id": str(value.get("id")), "email": value.get("email")}
    if t == "bigint":
        return str(value)
    if (field.json_valued or field.json_array) and isinstance(value, str):
        # ALARM, RRULE, line items, participants: the store keeps compact JSON text; Zoho sends
        # the object or array.
        return json.loads(value)
    if t == "time_range" and isinstance(value, str):
        # Real Zoho sends a time range as a JSON array of {"From", "To"} objects (its SDK models
        # the field as list<record.TimeRange>), not as text; the store keeps "HH:MM-HH:MM".
        start, _, end = value.partition("-")
        return [{"From": start, "To": end}]
    return value


def _datetime_text(column: Any, offset: timedelta) -> Any:
    """timestamp(s, UTC) column -> ``YYYY-MM-DDTHH:MM:SS+05:30`` strings (nulls stay null)."""
    seconds = pc.cast(pc.cast(column, pa.timestamp("s", tz="UTC")), pa.int64())
    local = pc.add(seconds, int(offset.total_seconds()))
    naive = pc.cast(local, pa.timestamp("s"))
    text = pc.strftime(naive, format="%Y-%m-%dT%H:%M:%S")
    return pc.binary_join_element_wise(text, format_offset(offset), "")


def records_to_json(
    table: pa.Table,
    fields: FieldsArg,
    offset: timedelta = DEFAULT_OFFSET,
    *,
    coql: bool = False,
) -> list[dict[str, Any]]:
    """Rows as Zoho's JSON records, keys in the table's column order; fields that list reads do
    not return are left out."""
    by_name = _field_map(fields)
    columns: list[tuple[str, list[Any]]] = []
    for name in table.column_names:
        f = by_name.get(name)
        if f is None:
            columns.append((name, table.column(name).to_pylist()))
            continue
        if not f.list_readable:
            continue
        col = table.column(name)
        t = f.value_type
        if f.rich_text:
            col = cut_rich_text(col)
        if t == "datetime":
            values = _datetime_text(col, offset).to_pylist()
        elif t == "date":
            values = pc.cast(col, pa.string()).to_pylist()
        else:
            values = [json_value(v, f, offset, coql=coql) for v in col.to_pylist()]
        columns.append((name, values))
        if f.sim.get("se_module") and not coql:
            # Records answers only: the lookup's module, next to it (one key per record).
            module = f.lookup_module
            columns.append((SE_MODULE, [None if v is None else module for v in values]))
    names = [n for n, _ in columns]
    return (
        [dict(zip(names, row, strict=True)) for row in zip(*(v for _, v in columns), strict=True)]
        if columns
        else [{} for _ in range(table.num_rows)]
    )


def cut_rich_text(column: Any) -> Any:
    """A rich-text column as list answers give it: each value's first 500 characters."""
    return pc.utf8_slice_codeunits(column, 0, RICH_TEXT_LIST_CHARS)


def _odd_numbers(text: Any, t: str) -> Any:
    """Whole numbers and amounts as Bulk CSV sometimes spells them (zoho-api.md §11: peers see
    ``0.0`` in integer fields): integers that end in 0 or 5 as ``5.0``, amounts whose unit digit
    is even with two more zeros (``12.5000`` for ``12.50``). Same values, odder text."""
    if t in ("integer", "long"):
        return pc.replace_substring_regex(text, pattern=r"^(-?[0-9]*[05])$", replacement=r"\1.0")
    if t == "currency":
        return pc.replace_substring_regex(
            text, pattern=r"^(-?[0-9]*[02468]\.[0-9]+)$", replacement=r"\100"
        )
    return text


def _csv_column(column: Any, f: SimField | None, offset: timedelta) -> Any:
    if f is None:
        return pc.cast(column, pa.string())
    t = f.value_type
    cat = category(f)
    if t == "datetime":
        return _datetime_text(column, offset)
    if cat == "lookup":
        return pc.struct_field(column, "id")
    if t == "multiselectpicklist":
        return pc.binary_join(column, ";")
    if f.rich_text:
        # Assumed (undocumented): Bulk Read cuts rich text like the list APIs do.
        return cut_rich_text(column)
    return _odd_numbers(pc.cast(column, pa.string()), t)


def csv_table(table: pa.Table, fields: FieldsArg, offset: timedelta = DEFAULT_OFFSET) -> pa.Table:
    """The rows as an all-string table in Bulk CSV column order (``id`` first)."""
    by_name = _field_map(fields)
    names = [n for n in table.column_names if by_name.get(n) is None or by_name[n].list_readable]
    if "id" in names:
        names.remove("id")
        names.insert(0, "id")
    arrays = [_csv_column(table.column(n), by_name.get(n), offset) for n in names]
    return pa.Table.from_arrays(arrays, schema=pa.schema([pa.field(n, pa.string()) for n in names]))


_WRITE_OPTIONS = {"quoting_style": "needed"}


def csv_bytes(
    table: pa.Table,
    fields: FieldsArg,
    offset: timedelta = DEFAULT_OFFSET,
    *,
    header: bool = True,
) -> bytes:
    """The rows as Bulk Read CSV bytes (UTF-8), with the header row unless ``header=False``."""
    out = io.BytesIO()
    pacsv.write_csv(
        csv_table(table, fields, offset),
        out,
        write_options=pacsv.WriteOptions(include_header=header, **_WRITE_OPTIONS),
    )
    return out.getvalue()


def write_csv(
    tables: Iterable[pa.Table],
    fields: FieldsArg,
    sink: BinaryIO,
    offset: timedelta = DEFAULT_OFFSET,
    *,
    columns: Sequence[str] | None = None,
) -> int:
    """Stream tables (e.g. ``ModuleStore.iter_tables``) into ``sink`` as one CSV with one header;
    returns the number of data rows. ``columns`` gives the header when there may be no rows."""
    by_name = _field_map(fields)
    writer: pacsv.CSVWriter | None = None
    rows = 0
    for table in tables:
        text = csv_table(table, by_name, offset)
        if writer is None:
            writer = pacsv.CSVWriter(
                sink, text.schema, write_options=pacsv.WriteOptions(**_WRITE_OPTIONS)
            )
        writer.write_table(text)
        rows += text.num_rows
    if writer is None:
        names = list(columns or ["id"])
        empty = pa.Table.from_pylist(
            [],
            schema=pa.schema(
                [pa.field(n, by_name[n].arrow_type if n in by_name else pa.string()) for n in names]
            ),
        )
        writer = pacsv.CSVWriter(
            sink,
            csv_table(empty, by_name, offset).schema,
            write_options=pacsv.WriteOptions(**_WRITE_OPTIONS),
        )
    writer.close()
    return rows
