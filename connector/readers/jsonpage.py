"""Zoho's JSON pages (Records API, COQL) straight into Arrow.

A page is one JSON object, ``{"data": [{...}, ...], "info": {...}}``. Arrow's JSON reader parses
it in C++ into the columns' types, so no Python object is made per value: the page's ``data``
becomes one struct column whose children are the module's columns. Dates and datetimes arrive as
text and go through the same cast as every other reader's (:func:`connector.lake.schema.from_text`),
empty strings and empty multi-select lists become null, lookups keep their related id.

The fast path only answers when it is sure to give exactly what the shared normalisation,
:func:`connector.lake.schema.batch_from_records`, gives. Anything else falls back to that path, page by
page: a value of an unexpected JSON type (a number in a text field, an id as a number, a string
in a number field), a null inside a multi-select list or a time range, a field kind Arrow cannot
parse into (JSON objects or arrays kept as text), a body that is not exactly one JSON object.
The fallback decodes JSON numbers exactly (as :class:`decimal.Decimal`, never through a binary
float), like the fast path and like Bulk Read's CSV text, so a currency of 16 significant digits
keeps its last digit whichever reader reads it. It also raises the
:class:`~connector.errors.DataError` that names a bad value. A ``time_range`` value parses as a
list of ``{From, To}`` structs, joined in Arrow into the text Bulk Read's CSV holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from connector.errors import DataError
from connector.lake.schema import (
    ID,
    LIST_KIND,
    LOOKUP_KIND,
    MODIFIED_TIME,
    RAW_KIND,
    TIME_RANGE_KIND,
    ModuleSchema,
    assemble,
    batch_from_records,
    cast_text,
    parse_kind,
)
from connector.redact import redact

# The ``info`` keys the readers use; others are ignored.
_INFO_TYPE = pa.struct(
    [
        pa.field("more_records", pa.bool_()),
        pa.field("next_page_token", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("page", pa.int64()),
        pa.field("per_page", pa.int64()),
    ]
)
_SECONDS = pa.timestamp("s", tz="UTC")
# Python's datetime (which the readers' cursors and watermarks use) spans years 1 to 9999.
_FIRST_SECOND = -62135596800
_LAST_SECOND = 253402300799


@dataclass(frozen=True)
class JsonPage:
    """One decoded page: its rows as a table of the requested columns, and its ``info``."""

    table: pa.Table
    """The requested columns, typed as in the module's schema, in the order asked for."""
    info: dict[str, Any] = field(default_factory=dict)
    """The page's ``info`` object (``more_records``, ``next_page_token``, …); empty for 204/304."""

    @property
    def num_rows(self) -> int:
        """How many rows the page holds."""
        return self.table.num_rows

    def ids(self) -> list[str]:
        """The rows' ids, in page order."""
        return ids_of(self.table)

    def stamps(self) -> list[str]:
        """Each row's ``Modified_Time`` as Zoho criteria text (UTC, whole seconds, ``+00:00``).

        The same text :func:`connector.readers.base.zoho_time` gives, computed by Arrow.
        """
        return stamps_of(self.table.column(MODIFIED_TIME), self.table.column(ID))


def ids_of(table: pa.Table) -> list[str]:
    """The ids of ``table``'s rows, in order."""
    return [str(v) for v in table.column(ID).to_pylist()]


def row_keys(table: pa.Table) -> tuple[list[str], list[str]]:
    """Each row's ``(Modified_Time`` criteria text, ``id)``, as two lists in row order: what the
    ordered readers' cursors and seen-id sets need, the only values that reach Python per row."""
    return stamps_of(table.column(MODIFIED_TIME), table.column(ID)), ids_of(table)


def stamps_of(times: pa.ChunkedArray | pa.Array, ids: pa.ChunkedArray | pa.Array) -> list[str]:
    """``Modified_Time`` values as Zoho criteria text; a null or out-of-range one is a DataError."""
    if times.null_count:
        position = pc.index(pc.is_null(times), True).as_py()
        raise DataError("a record has no Modified_Time", record_id=str(ids[position].as_py()))
    seconds = pc.cast(pc.floor_temporal(times, unit="second"), _SECONDS)
    if len(seconds):
        bounds = pc.min_max(seconds.cast(pa.int64()))
        if bounds["min"].as_py() < _FIRST_SECOND or bounds["max"].as_py() > _LAST_SECOND:
            raise DataError("a record has a Modified_Time outside the years 1 to 9999")
    text = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S+00:00")
    return [str(v) for v in text.to_pylist()]


def decode_page(
    body: bytes | None, schema: ModuleSchema, columns: Sequence[str], *, what: str
) -> JsonPage:
    """Decode a Records API or COQL answer into the rows of ``columns`` and the ``info`` object.

    ``body`` None (204, 304) is an empty page. ``what`` names the answer in error messages ("a
    COQL answer"). A body that is not a JSON object with a list of records that each have an id
    raises :class:`~connector.errors.DataError`.
    """
    part = schema.select(columns)
    if not body:
        return JsonPage(part.arrow.empty_table(), {})
    fast = _decode_with_arrow(body, part)
    if fast is not None:
        return fast
    return _decode_with_json(body, part, what)


# --- the fast path ---------------------------------------------------------------------------


def _decode_with_arrow(body: bytes, part: ModuleSchema) -> JsonPage | None:
    """The page through Arrow's JSON reader, or None when only the fallback can be exact."""
    # Only a JSON object goes to Arrow: pyarrow's reader crashes the process (SIGSEGV, pyarrow
    # 26) on a body that starts with a top-level null, and anything but an object is an error.
    if body.lstrip()[:1] != b"{":
        return None
    parse_fields = []
    for arrow_field, kind in zip(part.arrow, part.kinds, strict=True):
        if kind == RAW_KIND:
            continue  # built from the other columns, never read from the answer
        parse_type = parse_kind(kind, arrow_field.type)
        if parse_type is None:
            return None
        parse_fields.append(pa.field(arrow_field.name, parse_type))
    explicit = pa.schema(
        [pa.field("data", pa.list_(pa.struct(parse_fields))), pa.field("info", _INFO_TYPE)]
    )
    try:
        parsed = pajson.read_json(
            pa.BufferReader(body),
            # One block holds the whole answer: a page is a single JSON object.
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(body) + 1),
            parse_options=pajson.ParseOptions(
                explicit_schema=explicit,
                # A raw line break can only stand between tokens (one inside a string is
                # escaped); only then must the reader look past it for the object's end.
                newlines_in_values=b"\n" in body,
                unexpected_field_behavior="ignore",
            ),
        )
        # The reader does not check that text is UTF-8; a full validation does.
        parsed.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if parsed.num_rows != 1:
        return None
    data = parsed.column("data").combine_chunks()
    if not isinstance(data, pa.ListArray):
        return None
    rows = data.flatten()
    if rows.null_count:
        return None  # a row that is not an object: the fallback names it
    raw_columns = rows.flatten()
    # Zoho seldom sends an empty string or an empty list: when the body holds none, the columns
    # need no look for them (a compute call per column and page, a third of the decoding).
    gates = _Gates(
        empty_text=_has_empty_string(body),
        empty_list=_EMPTY_LIST.search(body) is not None,
    )
    ids = None
    if ID in part.names:
        ids = gates.text(raw_columns[part.names.index(ID)])
        if ids.null_count:
            return None
    columns: dict[str, pa.Array] = {}
    unfit: dict[str, pa.Array] = {}
    read = [(f, k) for f, k in zip(part.arrow, part.kinds, strict=True) if k != RAW_KIND]
    for raw, (arrow_field, kind) in zip(raw_columns, read, strict=True):
        finished = _finish(raw, kind, arrow_field, part.module, ids, gates)
        if finished is None:
            return None
        columns[arrow_field.name], leftover = finished
        if leftover is not None:
            unfit[arrow_field.name] = leftover
    info = parsed.column("info")[0].as_py() or {}
    return JsonPage(
        pa.Table.from_batches([assemble(part, columns, unfit, len(rows))]),
        {key: value for key, value in info.items() if value is not None},
    )


def _has_empty_string(body: bytes) -> bool:
    """Whether ``body`` holds an empty JSON string (a value, a list item or a key).

    In valid JSON a closing quote is never followed by a quote, so a ``""`` is either an empty
    string or an escaped quote ending a string (``\\""``). Counting both takes two C-speed
    scans; a regular expression over a 3 MB page cost ~13 ms, and a Python loop over the
    ``\\""`` of text full of quotes a tenth of the decoding. Invalid JSON never gets this far:
    Arrow refuses it and the page takes the fallback.
    """
    return body.count(b'""') > body.count(b'\\""')


# An empty JSON array, whitespace allowed inside.
_EMPTY_LIST = re.compile(rb"\[\s*\]")


@dataclass(frozen=True)
class _Gates:
    """Whether the page's body holds an empty string or an empty array anywhere (a ``[]`` inside
    a string is a false alarm that only costs a look)."""

    empty_text: bool
    empty_list: bool

    def text(self, column: pa.Array) -> pa.Array:
        """``column`` with empty strings as null (Zoho has no empty strings)."""
        if not self.empty_text:
            return column
        empty = pc.equal(column, "")
        if empty.true_count:
            return pc.if_else(empty, pa.scalar(None, column.type), column)
        return column

    def lists(self, column: pa.Array) -> pa.Array:
        """``column`` with empty lists as null (Zoho has no empty multi-select lists)."""
        if not self.empty_list:
            return column
        empty = pc.equal(pc.list_value_length(column), 0)
        if empty.true_count:
            return pc.if_else(empty, pa.scalar(None, column.type), column)
        return column


def _finish(
    raw: pa.Array,
    kind: str,
    arrow_field: pa.Field,
    module: str,
    ids: pa.Array | None,
    gates: _Gates,
) -> tuple[pa.Array, pa.Array | None] | None:
    """One parsed column in its schema type, as the shared normalisation would give it, with
    Zoho's text of the values that do not fit it (see :func:`cast_text`)."""
    if kind == LOOKUP_KIND:
        # The related record's id; an empty id stays empty text, as in batch_from_records.
        return raw.flatten()[0], None
    if kind == LIST_KIND:
        if raw.flatten().null_count:
            return None  # batch_from_records spells a null item "null"
        return gates.lists(raw), None
    if kind == TIME_RANGE_KIND:
        text = _time_range_text(raw)
        if text is None:
            return None
        return cast_text(module, arrow_field.name, kind, arrow_field.type, text, ids)
    if pa.types.is_string(raw.type):
        return cast_text(module, arrow_field.name, kind, arrow_field.type, gates.text(raw), ids)
    return raw, None


def _time_range_text(ranges: pa.ListArray) -> pa.Array | None:
    """Lists of ``{"From": "10:00", "To": "19:00"}`` as ``10:00-19:00,…`` text, the Bulk CSV
    spelling the shared normalisation writes, and an empty list as null. None when a span or one
    of its ends is null: the normalisation spells a missing end and a null one differently, and
    Arrow reads both as null."""
    spans = ranges.values
    starts, ends = spans.field("From"), spans.field("To")
    if spans.null_count or starts.null_count or ends.null_count:
        return None
    joined = pc.binary_join_element_wise(starts, ends, "-")
    text = pc.binary_join(
        pa.ListArray.from_arrays(ranges.offsets, joined, mask=ranges.is_null()), ","
    )
    empty = pc.equal(pc.list_value_length(ranges), 0)
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


# --- the fallback ----------------------------------------------------------------------------


def _decode_with_json(body: bytes, part: ModuleSchema, what: str) -> JsonPage:
    """The page through ``json`` and :func:`batch_from_records`, with the readers' checks."""
    try:
        # Numbers exactly as written: Decimal keeps every digit a float would round away.
        decoded = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        start = redact(body[:40].decode("utf-8", "replace"))
        raise DataError(f"{what} is not JSON (it starts {start!r})") from None
    if not isinstance(decoded, dict):
        raise DataError(f"{what} is a JSON {type(decoded).__name__}, not an object")
    data = decoded.get("data") or []
    if not isinstance(data, list):
        raise DataError(f"{what} has a 'data' that is not a list", module=part.module)
    if not all(isinstance(row, dict) and row.get(ID) is not None for row in data):
        raise DataError(f"{what} has a row that is not a record with an id", module=part.module)
    info = decoded.get("info") or {}
    if not isinstance(info, dict):
        raise DataError(f"{what} has an 'info' that is not an object", module=part.module)
    batch = batch_from_records(data, part)
    return JsonPage(pa.Table.from_batches([batch], schema=part.arrow), info)
