"""The filter AST shared by COQL and Bulk Read criteria, and its evaluation on Arrow tables.

``Comparison(field, op, value)`` holds the literal as the client spelled it (text, or a tuple of
texts for ``between``/``in``); it is converted by the compared field's type when evaluated, so
COQL and criteria agree on what a literal means. Null values match only ``is null`` (SQL's
three-valued logic collapsed to false), which is how Zoho's filters behave for empty fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.simulator.orgdef import SimField

OPS = frozenset(
    {
        "=",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "between",
        "not between",
        "in",
        "not in",
        "is null",
        "is not null",
        "like",
        "not like",
    }
)

NUMBER_TYPES = frozenset({"integer", "long", "double", "percent", "currency", "bigint"})
LOOKUP_TYPES = frozenset({"lookup", "ownerlookup", "userlookup"})

_ORDER_OPS = frozenset({"=", "!=", ">", ">=", "<", "<=", "between", "not between", "in", "not in"})
_NULL_OPS = frozenset({"is null", "is not null"})
# What each category of field can be compared with (the union of COQL's and criteria's rules;
# callers narrow it with their own tables).
DEFAULT_ALLOWED: dict[str, frozenset[str]] = {
    "text": frozenset({"=", "!=", "in", "not in", "like", "not like"}) | _NULL_OPS,
    "multiselect": frozenset({"=", "!=", "in", "not in", "like", "not like"}) | _NULL_OPS,
    "number": _ORDER_OPS | _NULL_OPS,
    "date": _ORDER_OPS | _NULL_OPS,
    "datetime": _ORDER_OPS | _NULL_OPS,
    "boolean": frozenset({"=", "!="}) | _NULL_OPS,
    "lookup": frozenset({"=", "!=", "in", "not in"}) | _NULL_OPS,
    "unsupported": frozenset(),
}


class QueryError(Exception):
    """A query, criteria or write the simulated Zoho refuses: ``code``/``message``/``details``
    become Zoho's error body, ``status`` its HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        status: int = 400,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.status = status

    def to_body(self) -> dict[str, Any]:
        """Zoho's error body."""
        return error_body(self.code, self.message, self.details)


def error_body(code: str, message: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """Zoho's error body, the same for a whole call and for one record of a write."""
    return {"code": code, "details": dict(details), "message": message, "status": "error"}


@dataclass(frozen=True)
class Comparison:
    """``field op value``."""

    field: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class And:
    """All items hold."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Any item holds."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    """The item does not hold (rows where it is false, nulls included)."""

    item: Expr


Expr = Union[Comparison, And, Or, Not]  # noqa: UP007  (runtime alias, py3.10 target)


def comparisons(expr: Expr) -> Iterator[Comparison]:
    """Every leaf of the tree."""
    if isinstance(expr, Comparison):
        yield expr
    elif isinstance(expr, (And, Or)):
        for item in expr.items:
            yield from comparisons(item)
    else:
        yield from comparisons(expr.item)


def category(f: SimField) -> str:
    """The comparison category of a field: text, number, date, datetime, boolean, lookup,
    multiselect or unsupported."""
    if not f.list_readable:
        return "unsupported"
    t = f.value_type
    if t in NUMBER_TYPES:
        return "number"
    if t in ("date", "datetime", "boolean"):
        return t
    if t in LOOKUP_TYPES:
        return "lookup"
    if t == "multiselectpicklist":
        return "multiselect"
    return "text"


# ---- literals -------------------------------------------------------------------------------


def parse_datetime_literal(text: str) -> datetime:
    """ISO 8601 with an offset (``2026-01-01T00:00:00+05:30`` or ``…Z``) -> aware datetime.
    Raises ValueError for anything else (Zoho needs the offset)."""
    text = text.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    if "T" not in text:
        raise ValueError("a datetime needs a time part")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("a datetime needs an offset")
    return value


def _number_literal(f: SimField, value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("boolean for a number")
    text = str(value).strip()
    if f.value_type in ("integer", "long", "bigint"):
        return int(text)
    return float(text)


def _datetime_literal(f: SimField, value: Any) -> int:
    return int(parse_datetime_literal(str(value)).timestamp())


def _date_literal(f: SimField, value: Any) -> int:
    if not isinstance(value, str) or len(value.strip()) != 10:
        raise ValueError("a date is YYYY-MM-DD")
    return (date.fromisoformat(value.strip()) - date(1970, 1, 1)).days


def _boolean_literal(f: SimField, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError("a boolean is true or false")
    return text == "true"


def _lookup_literal(f: SimField, value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("id")
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError("a lookup is compared by record id")
    return text


# How a literal is read, by field category; text and multi-select literals stay text.
_LITERALS: dict[str, Callable[[SimField, Any], Any]] = {
    "number": _number_literal,
    "datetime": _datetime_literal,
    "date": _date_literal,
    "boolean": _boolean_literal,
    "lookup": _lookup_literal,
}


def convert_literal(f: SimField, value: Any, *, code: str = "INVALID_QUERY") -> Any:
    """A literal (as text, or a bool/number from JSON) as the Python value compared with the
    field's comparison column; raises QueryError(code) when it does not fit the type."""
    convert = _LITERALS.get(category(f))
    if convert is not None:
        try:
            return convert(f, value)
        except (ValueError, TypeError) as exc:
            raise QueryError(
                code,
                f"invalid value for {f.api_name}",
                {"column_name": f.api_name, "api_name": f.api_name, "reason": str(exc)},
            ) from None
    if value is None:
        raise QueryError(code, f"invalid value for {f.api_name}", {"column_name": f.api_name})
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resolve(fields: Mapping[str, SimField], name: str, code: str) -> SimField:
    f = fields.get(name)
    if f is None:
        lowered = {k.lower(): v for k, v in fields.items()}
        f = lowered.get(name.lower())
    if f is None:
        raise QueryError(
            code,
            "invalid column name",
            {"column_name": name, "api_name": name, "reason": "column name is invalid"},
        )
    return f


def check(
    expr: Expr,
    fields: Mapping[str, SimField],
    *,
    code: str = "INVALID_QUERY",
    allowed: Mapping[str, frozenset[str]] | None = None,
) -> None:
    """Raise QueryError(code) unless every field exists, its type allows the operator, and every
    literal converts."""
    table = allowed or DEFAULT_ALLOWED
    for leaf in comparisons(expr):
        f = _resolve(fields, leaf.field, code)
        cat = category(f)
        if leaf.op not in OPS or leaf.op not in table.get(cat, frozenset()):
            raise QueryError(
                code,
                f"the operator {leaf.op} is not supported for {f.api_name}",
                {
                    "column_name": f.api_name,
                    "api_name": f.api_name,
                    "operator": leaf.op,
                    "reason": f"operator not supported for the {f.data_type} data type",
                },
            )
        for literal in _literals(leaf):
            if cat == "multiselect" or cat == "text":
                continue
            convert_literal(f, literal, code=code)


def _literals(leaf: Comparison) -> tuple[Any, ...]:
    if leaf.op in _NULL_OPS:
        return ()
    if leaf.op in ("between", "not between", "in", "not in"):
        value = leaf.value
        if not isinstance(value, (tuple, list)) or not value:
            return (None,)
        return tuple(value)
    return (leaf.value,)


# ---- evaluation -----------------------------------------------------------------------------


def like_to_match(pattern: str) -> str:
    """A COQL like pattern (only ``%`` is a wildcard in Zoho) as a pyarrow match_like pattern."""
    return pattern.replace("\\", "\\\\").replace("_", "\\_")


def comparable(column: pa.Array | pa.ChunkedArray, f: SimField) -> pa.Array | pa.ChunkedArray:
    """The canonical column in the form literals are compared with."""
    cat = category(f)
    t = f.value_type
    if cat == "number" and t == "currency":
        return pc.cast(column, pa.float64())
    if cat == "number" and t == "bigint":
        return pc.cast(column, pa.int64())
    if cat == "datetime":
        return pc.cast(pc.cast(column, pa.timestamp("s", tz="UTC")), pa.int64())
    if cat == "date":
        return pc.cast(pc.cast(column, pa.int32()), pa.int64())
    if cat == "lookup":
        return pc.struct_field(column, "id")
    return column


def _scalar_type(f: SimField) -> pa.DataType:
    cat = category(f)
    t = f.value_type
    if cat == "number":
        return pa.int64() if t in ("integer", "long", "bigint") else pa.float64()
    if cat in ("datetime", "date"):
        return pa.int64()
    if cat == "boolean":
        return pa.bool_()
    return pa.string()


_COMPARE = {
    "=": pc.equal,
    "!=": pc.not_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
    "<": pc.less,
    "<=": pc.less_equal,
}


def _compare(col: Any, op: str, lit: Any, typ: pa.DataType) -> Any:
    scalar = pa.scalar(lit, type=typ)
    compare = _COMPARE.get(op)
    if compare is None:
        raise QueryError("INVALID_QUERY", f"unsupported operator {op}")
    return compare(col, scalar)


def _eval_leaf(leaf: Comparison, table: pa.Table, fields: Mapping[str, SimField]) -> pa.Array:
    f = _resolve(fields, leaf.field, "INVALID_QUERY")
    n = table.num_rows
    if f.api_name not in table.column_names:
        raise QueryError("INVALID_QUERY", "column missing", {"column_name": f.api_name})
    raw = table.column(f.api_name)
    if leaf.op == "is null":
        return pc.is_null(raw)
    if leaf.op == "is not null":
        return pc.is_valid(raw)
    if category(f) == "multiselect":
        return _eval_multiselect(leaf, raw, n)
    col = comparable(raw, f)
    typ = _scalar_type(f)

    def lit(value: Any) -> Any:
        return convert_literal(f, value)

    op = leaf.op
    if op in ("between", "not between"):
        lo, hi = (lit(v) for v in leaf.value)
        inside = pc.and_(_compare(col, ">=", lo, typ), _compare(col, "<=", hi, typ))
        return inside if op == "between" else pc.invert(inside)
    if op in ("in", "not in"):
        values = pa.array([lit(v) for v in leaf.value], type=typ)
        member = pc.is_in(col, value_set=values)
        member = pc.if_else(pc.is_null(col), pa.scalar(None, pa.bool_()), member)
        return member if op == "in" else pc.invert(member)
    if op in ("like", "not like"):
        matched = pc.match_like(col, like_to_match(str(leaf.value)))
        return matched if op == "like" else pc.invert(matched)
    return _compare(col, op, lit(leaf.value), typ)


def _eval_multiselect(leaf: Comparison, raw: Any, n: int) -> pa.Array:
    """Multi-select values match when any chosen option matches (Zoho's 'contains' reading)."""
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    flat = pc.list_flatten(raw)
    parents = np.asarray(pc.list_parent_indices(raw).to_numpy(zero_copy_only=False))
    op = leaf.op
    positive = op.removeprefix("not ").removeprefix("!")
    if positive in ("=", ""):
        elem = pc.equal(flat, pa.scalar(str(leaf.value)))
    elif positive == "in":
        elem = pc.is_in(flat, value_set=pa.array([str(v) for v in leaf.value], pa.string()))
    elif positive == "like":
        elem = pc.match_like(flat, like_to_match(str(leaf.value)))
    else:
        raise QueryError("INVALID_QUERY", f"unsupported operator {op} for a multi-select")
    hit = np.zeros(n, dtype=bool)
    elem_np = np.asarray(pc.fill_null(elem, False).to_numpy(zero_copy_only=False), dtype=bool)
    hit[parents[elem_np]] = True
    valid = np.asarray(pc.is_valid(raw).to_numpy(zero_copy_only=False), dtype=bool)
    if op.startswith("not ") or op == "!=":
        return pa.array(valid & ~hit)
    return pa.array(valid & hit)


def evaluate(expr: Expr, table: pa.Table, fields: Mapping[str, SimField]) -> pa.BooleanArray:
    """Rows of ``table`` where ``expr`` holds (never null)."""
    result = _evaluate(expr, table, fields)
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks() if result.num_chunks else pa.array([], pa.bool_())
    filled = pc.fill_null(result, False)
    assert isinstance(filled, pa.BooleanArray)
    return filled


def _evaluate(expr: Expr, table: pa.Table, fields: Mapping[str, SimField]) -> Any:
    if isinstance(expr, Comparison):
        return pc.fill_null(_eval_leaf(expr, table, fields), False)
    if isinstance(expr, And):
        out: Any = pa.array(np.ones(table.num_rows, dtype=bool))
        for item in expr.items:
            out = pc.and_(out, _evaluate(item, table, fields))
        return out
    if isinstance(expr, Or):
        out = pa.array(np.zeros(table.num_rows, dtype=bool))
        for item in expr.items:
            out = pc.or_(out, _evaluate(item, table, fields))
        return out
    return pc.invert(_evaluate(expr.item, table, fields))
