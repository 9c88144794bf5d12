"""Bulk Read criteria JSON -> the filter AST of ``query.py``.

A criterion is ``{"field": {"api_name": …}, "comparator": …, "value": …}``; a group is
``{"group_operator": "and"|"or", "group": [criterion or group, …]}``, nested to any depth.
Errors use Bulk Read's codes: INVALID_CRITERIA and CRITERIA_LIMIT_EXCEEDED.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connector.simulator.orgdef import SimField
from connector.simulator.query import (
    And,
    Comparison,
    Expr,
    Or,
    QueryError,
    category,
    convert_literal,
)

MAX_CRITERIA = 25
EMPTY = "${EMPTY}"

# Comparators Zoho allows per field category (zoho-api.md §3, Bulk Read create-job page).
_TEXT = frozenset(
    {"equal", "not_equal", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with"}
)
_ORDERED = frozenset(
    {
        "equal",
        "not_equal",
        "in",
        "not_in",
        "less_than",
        "less_equal",
        "greater_than",
        "greater_equal",
    }
)
ALLOWED_COMPARATORS: dict[str, frozenset[str]] = {
    "text": _TEXT,
    "multiselect": _TEXT,
    "number": _ORDERED,
    "date": _ORDERED | {"between", "not_between"},
    "datetime": _ORDERED | {"between", "not_between"},
    "boolean": frozenset({"equal"}),
    "lookup": frozenset({"equal", "not_equal", "in", "not_in"}),
    "unsupported": frozenset(),
}
_SIMPLE_OPS = {
    "equal": "=",
    "not_equal": "!=",
    "greater_than": ">",
    "greater_equal": ">=",
    "less_than": "<",
    "less_equal": "<=",
}
# Zoho refuses milliseconds in Bulk Read datetime criteria.
_MILLIS = re.compile(r"T\d{2}:\d{2}:\d{2}[.,]\d+")
_TEXT_LIMIT = 255


def _invalid(message: str, api_name: str | None = None, **extra: Any) -> QueryError:
    details: dict[str, Any] = dict(extra)
    if api_name is not None:
        details["api_name"] = api_name
    return QueryError("INVALID_CRITERIA", message, details)


def count_criteria(criteria: Any) -> int:
    """How many single criteria a (possibly nested) criteria object holds."""
    if isinstance(criteria, Mapping) and "group" in criteria:
        group = criteria.get("group")
        if isinstance(group, list):
            return sum(count_criteria(item) for item in group)
    return 1


def criteria_to_expr(
    criteria: Mapping[str, Any], fields: Mapping[str, SimField] | Sequence[SimField]
) -> Expr:
    """Convert and validate Bulk Read criteria against the module's fields."""
    by_name = dict(fields) if isinstance(fields, Mapping) else {f.api_name: f for f in fields}
    if count_criteria(criteria) > MAX_CRITERIA:
        raise QueryError(
            "CRITERIA_LIMIT_EXCEEDED",
            f"the criteria can have at most {MAX_CRITERIA} conditions",
            {"limit": MAX_CRITERIA},
        )
    return _convert(criteria, by_name)


def _convert(node: Any, fields: Mapping[str, SimField]) -> Expr:
    if not isinstance(node, Mapping):
        raise _invalid("criteria must be an object")
    if "group" in node or "group_operator" in node:
        operator = str(node.get("group_operator", "")).lower()
        group = node.get("group")
        if operator not in ("and", "or"):
            raise _invalid(
                "group_operator must be and or or", group_operator=node.get("group_operator")
            )
        if not isinstance(group, list) or not group:
            raise _invalid("group must be a non-empty list")
        items = tuple(_convert(item, fields) for item in group)
        return And(items) if operator == "and" else Or(items)
    return _leaf(node, fields)


# Comparators that take a list of values, and the AST operator each becomes.
_LIST_OPS = {"in": "in", "not_in": "not in"}
_RANGE_OPS = {"between": "between", "not_between": "not between"}
# ${EMPTY} with equal / not_equal is the null test.
_EMPTY_OPS = {"equal": "is null", "not_equal": "is not null"}
# The text comparators as like patterns; {} is the (unescaped) value.
_LIKE_OPS = {
    "contains": ("like", "%{}%"),
    "not_contains": ("not like", "%{}%"),
    "starts_with": ("like", "{}%"),
    "ends_with": ("like", "%{}"),
}


def _leaf(node: Mapping[str, Any], fields: Mapping[str, SimField]) -> Expr:
    f, comparator = _leaf_field(node, fields)
    if "value" not in node:
        raise _invalid("value is required", f.api_name)
    value = node["value"]
    if value == EMPTY and comparator in _EMPTY_OPS:
        return Comparison(f.api_name, _EMPTY_OPS[comparator])
    if comparator in _LIST_OPS:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise _invalid("in needs at least one value", f.api_name)
        return Comparison(f.api_name, _LIST_OPS[comparator], _checked_texts(f, values))
    if comparator in _RANGE_OPS:
        if not isinstance(value, list) or len(value) != 2:
            raise _invalid("between needs a list of two values", f.api_name)
        return Comparison(f.api_name, _RANGE_OPS[comparator], _checked_texts(f, value))
    if isinstance(value, (list, dict)):
        raise _invalid(f"{comparator} needs a single value", f.api_name)
    _check_value(f, value)
    if comparator in _SIMPLE_OPS:
        return Comparison(f.api_name, _SIMPLE_OPS[comparator], _text(value))
    op, pattern = _LIKE_OPS[comparator]
    return Comparison(f.api_name, op, pattern.format(_escape_like(_text(value))))


def _leaf_field(node: Mapping[str, Any], fields: Mapping[str, SimField]) -> tuple[SimField, str]:
    """The criterion's field and comparator, once both are known to be allowed together."""
    field_obj = node.get("field")
    api_name = field_obj.get("api_name") if isinstance(field_obj, Mapping) else None
    if not isinstance(api_name, str):
        raise _invalid("field.api_name is required")
    f = fields.get(api_name)
    if f is None:
        raise _invalid("the field given in criteria is invalid", api_name)
    comparator = node.get("comparator")
    if not isinstance(comparator, str):
        raise _invalid("comparator is required", api_name)
    if f.data_type == "textarea":
        raise _invalid("multi-line fields cannot be used in criteria", api_name)
    if comparator not in ALLOWED_COMPARATORS.get(category(f), frozenset()):
        raise _invalid(
            f"the comparator {comparator} is not supported for {f.data_type} fields",
            api_name,
            comparator=comparator,
        )
    return f, comparator


def _checked_texts(f: SimField, values: Sequence[Any]) -> tuple[str, ...]:
    """Every value checked against the field, then as text."""
    for item in values:
        _check_value(f, item)
    return tuple(_text(v) for v in values)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return str(value.get("id"))
    return str(value)


def _escape_like(text: str) -> str:
    # A literal % in a contains value cannot be expressed in the like-based AST; Zoho's own
    # behaviour for it is undocumented, so it stays a wildcard.
    return text


def _check_value(f: SimField, value: Any) -> None:
    cat = category(f)
    if value is None:
        raise _invalid("value cannot be null; use ${EMPTY}", f.api_name)
    if cat in ("text", "multiselect"):
        if len(str(value)) > _TEXT_LIMIT:
            raise _invalid(f"values are limited to {_TEXT_LIMIT} characters", f.api_name)
        return
    if cat == "datetime" and isinstance(value, str) and _MILLIS.search(value):
        raise _invalid("milliseconds are not supported in datetime values", f.api_name, value=value)
    convert_literal(
        f, _text(value) if not isinstance(value, bool) else value, code="INVALID_CRITERIA"
    )
