"""A value that cannot be represented exactly in its column (a fraction in an integer field, a
date that is no date) reaches the output as Zoho's text in ``$raw_values``, through every reader,
including reads split into field groups, and is counted in the run's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from support.fakezoho import FakeZoho, by_id, make_records, read_all, tuning

from connector.lake.schema import RAW_VALUES, ModuleSchema, module_schema
from connector.readers import make_reader
from connector.zoho.metadata import FieldMeta

# More fields than a Bulk job (200), a COQL query (50) or a Records call (50) takes: every reader
# reads this module in field groups, and the two odd fields sit in the first and the last group.
EXTRA = 220


def _schema() -> ModuleSchema:
    fields = [
        FieldMeta("Name", "text"),
        FieldMeta("Modified_Time", "datetime"),
        FieldMeta("Amount", "integer"),
        FieldMeta("Tags", "multiselectpicklist"),
        *(FieldMeta(f"X{i:03d}", "text") for i in range(EXTRA)),
        FieldMeta("Closing", "date"),
    ]
    return module_schema("Deals", fields)


def _records() -> list[dict[str, Any]]:
    rows = make_records(40, extra_fields=EXTRA)
    for i, row in enumerate(rows):
        row["Closing"] = "2026-02-30" if i % 10 == 3 else "2026-02-27"
        if i % 10 == 3:
            row["Amount"] = 2.5  # a fraction in an integer field
        elif i % 10 == 7:
            row["Amount"] = 12.75
    return rows


@pytest.mark.parametrize("reader_name", ["bulk", "coql", "records"])
def test_every_reader_keeps_unfit_values_of_every_field_group(
    tmp_path: Path, reader_name: str
) -> None:
    schema = _schema()
    fake = FakeZoho(_records())
    reader = make_reader(reader_name, fake, tuning(), sleep=lambda _: None, scratch_dir=tmp_path)  # type: ignore[arg-type]
    table = by_id(read_all(reader, schema))
    assert table.num_rows == 40
    assert table.schema == schema.arrow
    raw = [json.loads(v) if v else None for v in table.column(RAW_VALUES).to_pylist()]
    amounts = table.column("Amount").to_pylist()
    closing = table.column("Closing").to_pylist()
    for i in range(40):
        if i % 10 == 3:
            assert raw[i] == {"Amount": "2.5", "Closing": "2026-02-30"}, i
            assert amounts[i] is None and closing[i] is None
        elif i % 10 == 7:
            assert raw[i] == {"Amount": "12.75"}, i
            assert amounts[i] is None and closing[i] is not None
        else:
            assert raw[i] is None, i
            assert amounts[i] == i and closing[i] is not None
    # Everything else arrives as it would without the odd values.
    assert table.column("X219").to_pylist() == [f"x219-{i}" for i in range(40)]
    assert pa.compute.sum(table.column("Amount").is_null()).as_py() == 8
