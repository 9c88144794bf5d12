"""Field values that break naive CSV and JSON handling (quotes, newlines, separators, very long
text, emoji, control characters, text that looks like null or a number) survive exactly, end to
end, through each reader: inserted into the simulator, extracted, compared value for value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from support.reliability import (
    READERS,
    assert_clean_and_committed,
    assert_output_equals_source,
    noop,
    output_table,
    schema_of,
    settings_for,
)

from connector.run.sync import run_extract
from connector.simulator import Simulator
from connector.simulator.clock import LiveClock
from connector.zoho.http import ZohoClient

HOSTILE = [
    'a "quoted" word',
    '"',
    '""',
    '"leading quote',
    "comma, separated, values",
    "semi;colon;list",
    "line one\nline two",
    "windows\r\nline end",
    "lonely\rcarriage return",
    "tab\tseparated",
    "  padded both sides  ",
    " ",
    "emoji 😀👍🏽 and 中文 and عربى",
    "right-to-left \u202e override",
    "line\u2028separator and \u2029paragraph",
    "\ufeffbyte order mark",
    "control \x01\x02\x07\x1b\x7f characters",
    "back\\slash \\n not a newline",
    "NA",
    "null",
    "NULL",
    "N/A",
    "nan",
    "true",
    "1e5",
    "0012345",
    "=SUM(A1:A2)",
    "<tag attr='x'>&amp;</tag>",
    '{"json": [1, 2]}',
    "x" * 31_000,
    ('long, "quoted"\nmulti-line ' * 2_000)[:31_500],
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reader", list(READERS))
def test_csv_breaking_values_survive_exactly(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    clock = LiveClock()
    sim = make_simulator(seed=13, records=60, bulk_page_size=1000, bulk_polls=1, clock=clock)
    leads = sim.org.module("Leads")
    inserted: dict[str, str] = {}
    for value in HOSTILE:
        record_id = leads.insert(
            {"Last_Name": value[:255], "Company": value[:255], "Description": value}
        )
        inserted[record_id] = value
    # And an existing record updated with every troublesome character at once.
    everything = "".join(v for v in HOSTILE if len(v) < 100)
    leads.update(leads.current_ids()[0], {"Description": everything})
    clock.advance(2)  # the run comes after the edits' second, as a scheduled one does

    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = ZohoClient(settings, sleep=noop)
    out = tmp_path / "out"
    run = run_extract(settings, str(out), modules=["Leads"], client=client, sleep=noop)
    assert run.exit_code == 0, run.summary_lines()
    assert run.module("Leads").reader == reader

    schema = schema_of(settings, "Leads", client)
    assert_output_equals_source(sim, out, schema)
    assert_clean_and_committed(out, "Leads")
    table = output_table(out, schema)
    got = dict(
        zip(
            table.column("id").to_pylist(),
            table.column("Description").to_pylist(),
            strict=True,
        )
    )
    for record_id, value in inserted.items():
        assert got[record_id] == value, (reader, value[:40])
    assert everything in set(got.values())
    names = set(table.column("Last_Name").to_pylist())
    assert {v[:255] for v in HOSTILE} <= names
    # No value turned into a null on the way.
    hostile_rows = table.filter(
        pc.is_in(table.column("id"), value_set=pa.array(list(inserted), pa.string()))
    )
    assert hostile_rows.column("Description").null_count == 0
    client.close()
