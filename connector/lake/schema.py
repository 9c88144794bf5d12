"""Zoho field types -> Arrow types, and the value normalisation every reader shares.

Records and COQL answer JSON; Bulk Read answers CSV. Both go through the same path here: each value
is first turned into its canonical text (JSON numbers through their shortest ``repr``, so ``0.1``
stays ``0.1``; lookups to the related id; booleans to ``true``/``false``) and then one Arrow cast
per column turns the text into the column's type. A record read by JSON or by CSV therefore gives
an equal Arrow row.

Rules worth knowing:

* Zoho has no empty strings: an empty Bulk CSV cell is null, and so is an empty JSON string or an
  empty multi-select list, so that every reader agrees.
* Text is kept exactly (commas, quotes, CR/LF, tabs, leading and trailing spaces, unicode).
  ``"NA"``, ``"null"`` and the like are text, never null.
* Fields that no list or bulk API returns (subforms, multi-select lookups, uploads) are left out of
  the schema and reported in :attr:`ModuleSchema.skipped`; they are never invented as null columns.
* JSON-valued fields (``event_reminder``, ``ALARM``, ``RRULE``, ``multireminder``, any
  ``jsonobject``/``jsonarray`` field of a text-like or unknown type: line items, ``Participants``)
  are compact JSON text (Zoho's key order) from JSON and CSV alike; a plain string stays as it is.
* An unknown ``data_type`` is read as text with a warning (objects as compact JSON text).
* ``formula`` and ``rollup_summary`` fields take the type they return (``*.return_type``).
* ``5.0`` in an integer field is 5; a currency column's scale is the larger of ``decimal_place``
  and ``currency.precision``, so ``12.5000`` is exact. Nothing is rounded.
* A polymorphic lookup (``What_Id``, ``Parent_Id``) gets a ``$se_module`` column next to it.
* A value that cannot be represented exactly in its column (a fraction in an integer field, more
  decimals than a currency's scale, a date that is no date) is never rounded and never fails the
  module: the typed column holds null and the last column, ``$raw_values``, holds a JSON object of
  Zoho's text for each such field of the row (``{"Quantity":"2.5"}``); it is null in every other
  row. ``id`` and ``Modified_Time`` stay strict: a record without a readable id or time raises
  :class:`~connector.errors.DataError` naming the module, the field and the record id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.errors import DataError
from connector.lake.raw_values import RAW_VALUES, raw_values_column
from connector.zoho.metadata import FieldMeta

ID = "id"
MODIFIED_TIME = "Modified_Time"
TIMESTAMP = pa.timestamp("us", tz="UTC")
DEFAULT_CURRENCY_SCALE = 2
# Bulk CSV joins multi-select picklist values with ";" (house rule, zoho-api.md section 10).
MULTISELECT_SEPARATOR = ";"

STRING_TYPES = frozenset(
    {
        "text",
        "textarea",
        "mediumtext",
        "rich_text",
        "email",
        "phone",
        "website",
        "picklist",
        "profileimage",
        "autonumber",
        "bigint",
        "id",
    }
)
LOOKUP_TYPES = frozenset(
    {"lookup", "ownerlookup", "userlookup", "layout", "consent_lookup", "multi_module_lookup"}
)
# Types whose values list reads (Records, COQL) and Bulk Read leave out or cannot express.
SKIPPED_TYPES: Mapping[str, str] = {
    "subform": "subform rows are not returned by list or bulk reads",
    "multiselectlookup": "multi-select lookups are not returned by list reads nor supported by COQL",
    "multiuserlookup": "multi-user lookups are not returned by list reads",
    "fileupload": "file uploads are not returned by list or bulk reads",
    "imageupload": "image uploads are not returned by list reads nor supported by COQL",
}
# Zoho's Tag field is data_type "text" with json_type "jsonarray"; list reads return tag objects
# while Bulk Read does not document it, so the readers could not agree on its value.
_SKIPPED_NAMES: Mapping[str, str] = {"Tag": "tags are not returned the same way by every reader"}
_FORMULA_TYPES = frozenset({"formula", "rollup_summary"})
# Types whose values are JSON objects or arrays (reminders, recurrence rules); a field of another
# text-like or unknown data_type whose json_type is jsonobject/jsonarray is read the same way.
JSON_TYPES = frozenset({"event_reminder", "ALARM", "RRULE", "multireminder"})
_JSON_SHAPES = frozenset({"jsonobject", "jsonarray"})
# Zoho names the module of these polymorphic lookups in a ``$se_module`` key of each record.
SE_MODULE = "$se_module"
POLYMORPHIC_LOOKUPS = frozenset({"What_Id", "Parent_Id"})
# Leads keep converted records, which Zoho's reads leave out unless asked (zoho-api.md §11).
CONVERTED_FIELD = "Converted__s"
CONVERTING_MODULES = frozenset({"Leads"})

# Logical kinds: how a value is turned into text (JSON) and which Arrow type the text is cast to.
_STRING, _JSON, _LOOKUP, _TIME_RANGE, _INT, _FLOAT, _DECIMAL, _BOOL, _DATE, _DATETIME, _LIST = (
    "string",
    "json",
    "lookup",
    "time_range",
    "int",
    "float",
    "decimal",
    "bool",
    "date",
    "datetime",
    "list",
)
# The kind of ``$raw_values``: built from the other columns' leftovers, never read from Zoho.
_RAW = "raw"
LOOKUP_KIND, LIST_KIND, RAW_KIND, TIME_RANGE_KIND = _LOOKUP, _LIST, _RAW, _TIME_RANGE
"""The kinds whose JSON value is an object (lookup) or an array (multi-select list, time range)."""
# A time range's JSON value, as Arrow's JSON reader parses it: a list of {From, To} objects.
_TIME_RANGE_PARSE = pa.list_(
    pa.struct([pa.field("From", pa.string()), pa.field("To", pa.string())])
)
_FIXED_KINDS: Mapping[str, str] = {
    "integer": _INT,
    "long": _INT,
    "double": _FLOAT,
    "decimal": _FLOAT,
    "percent": _FLOAT,
    "currency": _DECIMAL,
    "boolean": _BOOL,
    "date": _DATE,
    "datetime": _DATETIME,
    "multiselectpicklist": _LIST,
    "time_range": _TIME_RANGE,
}


@dataclass(frozen=True)
class ModuleSchema:
    """The Arrow schema of one module and how each of its fields is read."""

    module: str
    arrow: pa.Schema
    """``id`` first, then the readable fields in metadata order."""
    fields: tuple[FieldMeta, ...]
    """The readable fields, in the order of :attr:`arrow` (``id`` included)."""
    skipped: tuple[tuple[str, str], ...] = ()
    """``(api_name, reason)`` of the fields no list or bulk API returns."""
    warnings: tuple[str, ...] = ()
    kinds: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """The normalisation kind of each field, parallel to :attr:`fields` (internal)."""

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return list(self.arrow.names)

    @property
    def derived(self) -> list[str]:
        """Columns that are no Zoho field: never asked for by name (``$se_module``,
        ``$raw_values``)."""
        return [name for name in self.arrow.names if name in (SE_MODULE, RAW_VALUES)]

    @property
    def rich_text(self) -> list[str]:
        """The rich-text fields, whose values list answers cut to 500 characters."""
        return [meta.api_name for meta in self.fields if meta.rich_text]

    @property
    def hides_converted(self) -> bool:
        """Whether Zoho's reads of this module leave converted records out unless asked."""
        return self.module in CONVERTING_MODULES or CONVERTED_FIELD in self.arrow.names

    def select(self, names: Sequence[str]) -> ModuleSchema:
        """This schema restricted to ``names``, in that order (a field group of a read).

        ``$raw_values`` comes along at the end even when not named: every part of a read keeps
        the values of its own fields that do not fit their columns.
        """
        if RAW_VALUES in self.arrow.names and RAW_VALUES not in names:
            names = [*names, RAW_VALUES]
        if list(names) == self.names:
            return self
        position = {name: i for i, name in enumerate(self.arrow.names)}
        missing = [name for name in names if name not in position]
        if missing:
            raise ValueError(f"{self.module}: no field {missing[0]!r} in the schema")
        picked = [position[name] for name in names]
        return ModuleSchema(
            module=self.module,
            arrow=pa.schema([self.arrow.field(i) for i in picked]),
            fields=tuple(self.fields[i] for i in picked),
            kinds=tuple(self.kinds[i] for i in picked),
        )


def _kind_and_type(meta: FieldMeta) -> tuple[str, pa.DataType] | None:
    """Return (kind, arrow type) for a field, or None for a data_type this module does not know."""
    data_type = meta.data_type
    if meta.api_name == ID:
        return _STRING, pa.string()
    if meta.api_name == MODIFIED_TIME:
        return _DATETIME, TIMESTAMP
    if data_type in _FORMULA_TYPES:
        data_type = (meta.return_type or "text").lower()
        if data_type not in _FIXED_KINDS or data_type == "multiselectpicklist":
            return _STRING, pa.string()
    if data_type in LOOKUP_TYPES:
        return _LOOKUP, pa.string()
    kind = _FIXED_KINDS.get(data_type)
    if data_type in JSON_TYPES or (kind is None and meta.json_type in _JSON_SHAPES):
        return _JSON, pa.string()
    if data_type in STRING_TYPES:
        return _STRING, pa.string()
    if kind is None:
        return None
    arrow_type: pa.DataType = {
        _INT: pa.int64(),
        _FLOAT: pa.float64(),
        _BOOL: pa.bool_(),
        _DATE: pa.date32(),
        _DATETIME: TIMESTAMP,
        _LIST: pa.list_(pa.string()),
    }.get(kind, pa.string())
    if kind == _DECIMAL:
        arrow_type = pa.decimal128(38, currency_scale(meta))
    return kind, arrow_type


def currency_scale(meta: FieldMeta) -> int:
    """A currency column's scale: the larger of ``decimal_place`` and ``currency.precision``
    (an amount may carry either; 2 when the metadata gives neither)."""
    places = [p for p in (meta.decimal_place, meta.currency_precision) if p is not None]
    scale = max(places) if places else DEFAULT_CURRENCY_SCALE
    return min(max(scale, 0), 38)


def module_schema(module: str, fields: Sequence[FieldMeta]) -> ModuleSchema:
    """Build the Arrow schema of ``module`` from its field metadata (Zoho's order kept)."""
    readable: list[FieldMeta] = []
    arrow_fields: list[pa.Field] = []
    kinds: list[str] = []
    skipped: list[tuple[str, str]] = []
    warnings: list[str] = []
    seen: set[str] = set()
    id_meta = next((f for f in fields if f.api_name == ID), FieldMeta(api_name=ID, data_type="id"))
    for meta in [id_meta, *(f for f in fields if f.api_name != ID)]:
        if meta.api_name in seen:
            warnings.append(f"{module}: field {meta.api_name} is listed twice: the first is kept")
            continue
        seen.add(meta.api_name)
        if meta.data_type in SKIPPED_TYPES:
            skipped.append((meta.api_name, SKIPPED_TYPES[meta.data_type]))
            continue
        if meta.api_name in _SKIPPED_NAMES:
            skipped.append((meta.api_name, _SKIPPED_NAMES[meta.api_name]))
            continue
        mapped = _kind_and_type(meta)
        if mapped is None:
            warnings.append(
                f"{module}: field {meta.api_name} has unknown type {meta.data_type!r}: read as string"
            )
            mapped = (_STRING, pa.string())
        kind, arrow_type = mapped
        readable.append(meta)
        kinds.append(kind)
        arrow_fields.append(pa.field(meta.api_name, arrow_type))
        if meta.api_name in POLYMORPHIC_LOOKUPS and kind == _LOOKUP and SE_MODULE not in seen:
            # The related record's module, next to its id (one per record, as Zoho gives it).
            seen.add(SE_MODULE)
            readable.append(FieldMeta(api_name=SE_MODULE, data_type="text"))
            kinds.append(_STRING)
            arrow_fields.append(pa.field(SE_MODULE, pa.string()))
    readable.append(FieldMeta(api_name=RAW_VALUES, data_type="text"))
    kinds.append(_RAW)
    arrow_fields.append(pa.field(RAW_VALUES, pa.string()))
    return ModuleSchema(
        module=module,
        arrow=pa.schema(arrow_fields),
        fields=tuple(readable),
        skipped=tuple(skipped),
        warnings=tuple(warnings),
        kinds=tuple(kinds),
    )


# --- JSON values -> canonical text -------------------------------------------------------------


def _compact_json(value: Any) -> str:
    # Exact JSON numbers (Decimal) inside objects and arrays keep the spelling a float gives them.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=float)


def _scalar_text(value: Any) -> str | None:
    """Canonical text of a JSON scalar: the same text Bulk CSV would hold."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # A JSON number decoded exactly: its own digits, as Bulk Read's CSV would hold them.
        return str(value)
    if isinstance(value, float):
        # repr() is the shortest text that round-trips, so 0.1 stays "0.1" (never 0.1000000000000000055)
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return _compact_json(value)


def _lookup_text(value: Any) -> str | None:
    if isinstance(value, Mapping):
        related = value.get("id")
        return None if related is None else str(related)
    return _scalar_text(value)


def _list_value(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = value.split(MULTISELECT_SEPARATOR) if value else []
    elif isinstance(value, list):
        items = [_compact_json(v) if not isinstance(v, str) else v for v in value]
    else:
        items = [_scalar_text(value) or ""]
    return items or None


def _time_range_text(value: Any) -> str | None:
    """``[{"From": "10:00", "To": "19:00"}]`` (JSON) as ``10:00-19:00``, the Bulk CSV spelling."""
    if isinstance(value, list):
        spans = [
            f"{span.get('From', '')}-{span.get('To', '')}"
            for span in value
            if isinstance(span, Mapping)
        ]
        return ",".join(spans) or None
    return _scalar_text(value)


def _canonical_json(text: str | None) -> str | None:
    """Text that holds a JSON object or array, re-written compactly (Zoho's key order kept), so
    CSV text and JSON values give the same string; any other text is kept as it is."""
    if text is None or text[:1] not in ("{", "["):
        return text
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        return text
    return _compact_json(value)


_JSON_TEXT: Mapping[str, Callable[[Any], str | None]] = {
    _LOOKUP: _lookup_text,
    _TIME_RANGE: _time_range_text,
}


# --- text -> Arrow ---------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad_value(
    module: str, name: str, arrow_type: pa.DataType, column: pa.Array, ids: pa.Array | None
) -> DataError:
    """Find the first value of ``column`` that does not cast and describe it."""
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            continue
        try:
            pc.cast(pa.array([value], column.type), arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            record_id = ids[i].as_py() if ids is not None else None
            return DataError(
                f"{module}.{name}: cannot read {_describe(value)} as {arrow_type} "
                f"(record id {record_id})",
                module=module,
                field=name,
                record_id=record_id,
            )
    return DataError(f"{module}.{name}: cannot read the column as {arrow_type}", module=module)


def from_text(
    module: str,
    name: str,
    kind: str,
    arrow_type: pa.DataType,
    text: pa.Array,
    ids: pa.Array | None,
) -> pa.Array:
    """Cast a string column to the field's Arrow type, strictly: a value that does not fit
    raises :class:`DataError` (``id``, ``Modified_Time``, tombstones' ``deleted_time``)."""
    if kind in (_STRING, _LOOKUP, _TIME_RANGE, _RAW):
        return text
    if kind == _JSON:
        return pa.array([_canonical_json(v) for v in text.to_pylist()], pa.string())
    if kind == _LIST:
        return pc.split_pattern(text, MULTISELECT_SEPARATOR)
    try:
        return _cast(text, kind, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _bad_value(module, name, arrow_type, text, ids) from exc


def cast_text(
    module: str,
    name: str,
    kind: str,
    arrow_type: pa.DataType,
    text: pa.Array,
    ids: pa.Array | None,
) -> tuple[pa.Array, pa.Array | None]:
    """Cast a string column to the field's Arrow type (the one conversion all readers share).

    Returns the typed column and, when some values do not fit it exactly, Zoho's text of those
    values (null elsewhere; their typed value is null). ``id`` and ``Modified_Time`` stay strict.
    """
    if name in (ID, MODIFIED_TIME) or kind not in _CAST_KINDS:
        return from_text(module, name, kind, arrow_type, text, ids), None
    try:
        return _cast(text, kind, arrow_type), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Rare: look value by value for the ones that do not fit, then cast the rest in one go.
    fits = pa.array([value is None or _fits(value, kind, arrow_type) for value in text.to_pylist()])
    null = pa.scalar(None, pa.string())
    typed = _cast(pc.if_else(fits, text, null), kind, arrow_type)
    return typed, pc.if_else(fits, null, text)


# The kinds whose text is cast to another Arrow type, where a value may not fit.
_CAST_KINDS = frozenset({_INT, _FLOAT, _DECIMAL, _BOOL, _DATE, _DATETIME})


def _cast(text: pa.Array, kind: str, arrow_type: pa.DataType) -> pa.Array:
    try:
        return pc.cast(text, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if kind != _INT:
            raise
        # Zoho sometimes writes a whole number as 5.0 (peers see 0.0 in integer fields).
        whole = pc.replace_substring_regex(text, pattern=_WHOLE, replacement=r"\1")
        return pc.cast(whole, arrow_type)


def _fits(value: str, kind: str, arrow_type: pa.DataType) -> bool:
    try:
        _cast(pa.array([value], pa.string()), kind, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


# A whole number written with a fraction of zeros: "5.0", "-12.000", "0.".
_WHOLE = r"^([-+]?[0-9]+)\.0*$"


def parse_kind(kind: str, arrow_type: pa.DataType) -> pa.DataType | None:
    """The type Arrow's JSON reader should parse a field of ``kind`` into, or None if it cannot.

    Numbers and booleans parse into their column type directly (decimals from the number's own
    digits); dates and datetimes parse as text and go through :func:`from_text`; lookups as
    ``struct<id>``; multi-select lists as ``list<string>``; ``time_range`` values as
    ``list<struct<From, To>>``. JSON objects or arrays kept as text have no such type.
    """
    if kind in (_STRING, _DATE, _DATETIME):
        return pa.string()
    if kind == _JSON:
        return None  # an object or array: only the fallback turns it into JSON text
    if kind == _LOOKUP:
        return pa.struct([pa.field("id", pa.string())])
    if kind == _LIST:
        return pa.list_(pa.string())
    if kind == _TIME_RANGE:
        return _TIME_RANGE_PARSE
    if kind in (_INT, _FLOAT, _DECIMAL, _BOOL):
        return arrow_type
    return None


def batch_from_records(rows: Sequence[Mapping[str, Any]], schema: ModuleSchema) -> pa.RecordBatch:
    """Normalise Records API or COQL JSON rows into one batch of ``schema.arrow``.

    Keys missing from a row read as null; keys the schema does not know are ignored.
    """
    ids = pa.array([_scalar_text(row.get(ID)) for row in rows], pa.string())
    columns: dict[str, pa.Array] = {}
    unfit: dict[str, pa.Array] = {}
    for meta, kind, arrow_field in zip(schema.fields, schema.kinds, schema.arrow, strict=True):
        name = meta.api_name
        if kind == _RAW:
            continue
        values = [row.get(name) for row in rows]
        if kind == _LIST:
            columns[name] = pa.array([_list_value(v) for v in values], arrow_field.type)
            continue
        to_text = _JSON_TEXT.get(kind, _scalar_text)
        text = ids if name == ID else pa.array([to_text(v) for v in values], pa.string())
        columns[name], leftover = cast_text(schema.module, name, kind, arrow_field.type, text, ids)
        if leftover is not None:
            unfit[name] = leftover
    return assemble(schema, columns, unfit, len(rows))


def assemble(
    schema: ModuleSchema, columns: Mapping[str, pa.Array], unfit: Mapping[str, pa.Array], rows: int
) -> pa.RecordBatch:
    """One batch of ``schema`` from its typed columns and the values that did not fit them."""
    arrays = [
        raw_values_column(unfit, rows) if name == RAW_VALUES else columns[name]
        for name in schema.arrow.names
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema.arrow)


# --- deleted records --------------------------------------------------------------------------

TOMBSTONE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("deleted_time", TIMESTAMP),
        pa.field("type", pa.string()),
        pa.field("display_name", pa.string()),
        pa.field("deleted_by_id", pa.string()),
        pa.field("deleted_by_name", pa.string()),
        pa.field("created_by_id", pa.string()),
        pa.field("created_by_name", pa.string()),
    ]
)
"""Tombstones from ``GET /crm/v8/{Module}/deleted``."""


def _user_part(value: Any, key: str) -> str | None:
    if isinstance(value, Mapping):
        return _scalar_text(value.get(key))
    return None


def tombstones_from_json(rows: Sequence[Mapping[str, Any]]) -> pa.RecordBatch:
    """Normalise the rows of the deleted-records API into a batch of :data:`TOMBSTONE_SCHEMA`."""
    for row in rows:
        if not isinstance(row, Mapping):
            raise DataError(
                f"the deleted-records answer holds a row that is not an object: {_describe(row)}"
            )
    ids = pa.array([_scalar_text(r.get("id")) for r in rows], pa.string())
    times = pa.array([_scalar_text(r.get("deleted_time")) for r in rows], pa.string())
    columns = [
        ids,
        from_text("deleted records", "deleted_time", _DATETIME, TIMESTAMP, times, ids),
        pa.array([_scalar_text(r.get("type")) for r in rows], pa.string()),
        pa.array([_scalar_text(r.get("display_name")) for r in rows], pa.string()),
        pa.array([_user_part(r.get("deleted_by"), "id") for r in rows], pa.string()),
        pa.array([_user_part(r.get("deleted_by"), "name") for r in rows], pa.string()),
        pa.array([_user_part(r.get("created_by"), "id") for r in rows], pa.string()),
        pa.array([_user_part(r.get("created_by"), "name") for r in rows], pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=TOMBSTONE_SCHEMA)


def parse_zoho_datetime(text: str) -> datetime:
    """Parse a Zoho ISO 8601 datetime with its offset into an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"not an ISO 8601 datetime: {_describe(text)}") from exc
    if parsed.tzinfo is None:
        raise DataError(f"datetime without a UTC offset: {_describe(text)}")
    return parsed.astimezone(timezone.utc)
