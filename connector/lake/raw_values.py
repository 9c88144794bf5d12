"""The ``$raw_values`` column: Zoho's text of the values that do not fit their column exactly.

A value that cannot be represented exactly in its column (a fraction in an integer field, more
decimals than a currency's scale, a date that is no date) leaves its typed cell null; the row's
``$raw_values`` holds a JSON object of field -> Zoho's text for each such value, and is null in
every other row. It is written with the row, in the same file, so it is as crash-safe as the row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

RAW_VALUES = "$raw_values"


def _compact(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def raw_values_column(unfit: Mapping[str, pa.Array], rows: int) -> pa.Array:
    """The ``$raw_values`` column: per row, a JSON object of the field -> Zoho's text of the
    values that did not fit their columns (``unfit`` from :func:`cast_text`), or null."""
    if not unfit:
        return pa.nulls(rows, pa.string())
    texts = {name: column.to_pylist() for name, column in unfit.items()}
    objects = [
        {name: values[i] for name, values in texts.items() if values[i] is not None}
        for i in range(rows)
    ]
    return pa.array([_compact(obj) if obj else None for obj in objects], pa.string())


def holds_values(column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a ``$raw_values`` column holds any value (almost every batch holds none)."""
    return column.null_count < len(column)


def merge_raw_values(columns: Sequence[pa.Array]) -> pa.Array:
    """Join the ``$raw_values`` of several parts of the same rows (field groups) into one."""
    filled = [column for column in columns if holds_values(column)]
    if len(filled) <= 1:
        return filled[0] if filled else columns[0]
    merged: list[str | None] = []
    for texts in zip(*(column.to_pylist() for column in filled), strict=True):
        obj: dict[str, Any] = {}
        for text in texts:
            if text is not None:
                obj.update(json.loads(text))
        merged.append(_compact(obj) if obj else None)
    return pa.array(merged, pa.string())


def unfit_counts(column: pa.Array) -> dict[str, int]:
    """How many values of each field a ``$raw_values`` column holds."""
    counts: dict[str, int] = {}
    if not holds_values(column):
        return counts
    for text in column.drop_null().to_pylist():
        for name in json.loads(text):
            counts[name] = counts.get(name, 0) + 1
    return counts
