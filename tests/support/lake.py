"""A dataset built as extract builds it (files of daily runs, then the state listing them), for
the compaction tests."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from connector.lake.output import Output
from connector.lake.schema import TOMBSTONE_SCHEMA, batch_from_records, module_schema
from connector.lake.state import DELETED_DIR, StateStore
from connector.lake.writer import DatasetWriter
from connector.zoho.metadata import FieldMeta

UTC = timezone.utc
FIELDS = [FieldMeta("Last_Name", "text"), FieldMeta("Modified_Time", "datetime")]
SCHEMA = module_schema("Leads", FIELDS)
WIDER = module_schema("Leads", [*FIELDS, FieldMeta("Rating", "integer")])
START = datetime(2024, 1, 1, 8, tzinfo=UTC)


def batch(run: int, schema: pa.Schema = SCHEMA.arrow) -> pa.RecordBatch:
    """Run ``run`` of a daily schedule: 10 records changed (ids overlap: new versions)."""
    at = START + timedelta(days=run)
    rows = [
        {
            "id": str(10**18 + (run * 7 + i) % 40),
            "Last_Name": f"v{run}-{i}",
            "Modified_Time": (at + timedelta(minutes=i)).isoformat(),
            **({"Rating": run} if "Rating" in schema.names else {}),
        }
        for i in range(10)
    ]
    module = WIDER if "Rating" in schema.names else SCHEMA
    return batch_from_records(rows, module)


def tombstones(run: int) -> pa.RecordBatch:
    at = START + timedelta(days=run, hours=12)
    return pa.RecordBatch.from_pylist(
        [{"id": str(10**18 + run), "deleted_time": at, "type": "recycle"}],
        schema=TOMBSTONE_SCHEMA,
    )


def extract_like(
    output: Output, runs: range, *, granularity: str | None = None, wider_from: int | None = None
) -> None:
    """Commit one writer per run as extract does: files, then the state listing them."""
    store = StateStore(output)
    for run in runs:
        run_id = f"r{run:03d}"
        state = store.load("Leads")
        store.recover("Leads")
        state = store.load("Leads")
        wide = wider_from is not None and run >= wider_from
        schema = (WIDER if wide else SCHEMA).arrow
        writer = DatasetWriter(output, "Leads", schema, run_id, granularity=granularity or "day")
        writer.write(batch(run, schema))
        files = [f.path for f in writer.commit()]
        dead = DatasetWriter(
            output,
            f"{DELETED_DIR}/Leads",
            TOMBSTONE_SCHEMA,
            run_id,
            partition_column="deleted_time",
            partition_name="deleted_date",
            granularity=granularity or "day",
        )
        dead.write(tombstones(run))
        files += [f.path for f in dead.commit()]
        state.record_files(run_id, files)
        state.watermark = START + timedelta(days=run, minutes=9)
        state.partition_by = granularity
        store.commit(state)


def versions(root: str | Path, rel: str = "Leads") -> Counter[tuple[str, object]]:
    """Every (id, time) row of a dataset, counted."""
    table = ds.dataset(f"{root}/{rel}", format="parquet", partitioning="hive").to_table()
    time = "deleted_time" if rel.startswith(DELETED_DIR) else "Modified_Time"
    return Counter(zip(table.column("id").to_pylist(), table.column(time).to_pylist(), strict=True))


def parquet_files(root: Path, rel: str = "Leads") -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / rel).rglob("*.parquet"))
