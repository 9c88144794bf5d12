"""Shared test helpers: compare what the connector wrote with the simulator's current data.

The output is a change log: the table a reader sees is the latest version of every id, minus
the ids with a tombstone. These helpers build that table and the simulator's, in the connector's
types, and assert they are equal value for value. Importable from every test directory
(``from support.source import …``), as the root conftest puts this directory on the import path.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from connector.config import Tuning
from connector.lake.schema import (
    RAW_VALUES,
    SE_MODULE,
    ModuleSchema,
    batch_from_records,
    module_schema,
)
from connector.readers.users import USERS, users_schema
from connector.simulator import Simulator
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import list_fields

# Retry and poll waits shrunk to nothing: tests never wait for real. ``price_readers`` off: with
# APIType=Bulk a full load of these small orgs is read by Bulk Read, as the Bulk tests mean it
# to be (the planner's choice has tests of its own, which turn it on).
TINY = Tuning(
    bulk_poll_initial=0.0,
    bulk_poll_max=0.0,
    retry_initial_wait=0.0,
    retry_max_wait=0.0,
    price_readers=False,
)


def noop(_: float) -> None:
    """A sleep that does not sleep."""
    return None


def source_table(sim: Simulator, schema: ModuleSchema) -> pa.Table:
    """The simulator's current records (or users) in the connector's types, sorted by id.

    ``$se_module`` (no field of the simulator's) is the polymorphic lookup's module wherever the
    lookup is set, as the Records API names it.
    """
    if schema.module == USERS:
        rows = [user.to_api() for user in sim.org.users]
        return pa.Table.from_batches([batch_from_records(rows, schema)]).sort_by("id")
    store = sim.org.module(schema.module)
    raw = store.current_table([name for name in schema.arrow.names if name not in schema.derived])
    columns = []
    for field in schema.arrow:
        if field.name == RAW_VALUES:  # the simulator's values all fit their columns
            columns.append(pa.nulls(raw.num_rows, pa.string()))
            continue
        if field.name == SE_MODULE:
            lookup = next(f for f in store.meta.fields if f.sim.get("se_module"))
            linked = pc.is_valid(raw.column(lookup.api_name))
            module = pa.scalar(lookup.lookup_module, pa.string())
            columns.append(pc.if_else(linked, module, pa.scalar(None, pa.string())))
            continue
        column = raw.column(field.name)
        if pa.types.is_struct(column.type):  # a lookup: the connector keeps the related id
            column = pc.struct_field(column, "id")
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema.arrow).sort_by("id")


def schema_for(client: ZohoClient, module: str) -> ModuleSchema:
    """The connector's schema of ``module`` (``Users`` has fixed columns, no fields call)."""
    if module == USERS:
        return users_schema()
    return module_schema(module, list_fields(client, module))


def read_local(path: Path) -> pa.Table | None:
    """The hive-partitioned Parquet dataset at ``path``, or None when it holds no Parquet file."""
    if not path.exists() or not any(path.rglob("*.parquet")):
        return None
    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table()


def latest_per_id(
    table: pa.Table, schema: ModuleSchema, tombstone_ids: pa.Array | pa.ChunkedArray | None
) -> pa.Table:
    """The change log ``table`` as the current table: latest version per id, minus tombstoned
    ids, sorted by id; asserts no (id, Modified_Time) appears twice."""
    table = table.select(schema.arrow.names).cast(schema.arrow)
    if "Modified_Time" not in schema.arrow.names:
        # Read in full every run (no Modified_Time; Users): the dataset is one generation.
        ids = table.column("id")
        assert len(pc.unique(ids)) == len(ids), f"{schema.module}: an id twice"
        return table.sort_by("id")
    keys = list(
        zip(table.column("id").to_pylist(), table.column("Modified_Time").to_pylist(), strict=True)
    )
    assert len(keys) == len(set(keys)), f"{schema.module}: an (id, Modified_Time) row twice"
    table = table.sort_by([("id", "ascending"), ("Modified_Time", "descending")])
    ids = table.column("id").to_pylist()
    keep = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    table = table.filter(pa.array(keep, pa.bool_()))
    if tombstone_ids is not None and len(tombstone_ids):
        gone = pc.is_in(table.column("id"), value_set=tombstone_ids)
        table = table.filter(pc.invert(gone))
    return table.sort_by("id")


def output_table(out: Path, schema: ModuleSchema, *, required: bool = False) -> pa.Table:
    """Latest version per id, minus tombstones, of the module under the local output ``out``.

    With ``required`` the module's dataset must exist; otherwise a missing one is empty.
    """
    table = read_local(out / schema.module)
    if table is None:
        assert not required, f"{schema.module}: no data written"
        return schema.arrow.empty_table()
    tombstones = read_local(out / "_deleted" / schema.module)
    return latest_per_id(table, schema, None if tombstones is None else tombstones.column("id"))


def assert_same_table(got: pa.Table, want: pa.Table, label: str = "") -> None:
    """``got`` has ``want``'s rows, column by column, value for value."""
    assert got.num_rows == want.num_rows, (label, got.num_rows, want.num_rows)
    for name in want.column_names:
        assert got.column(name).equals(want.column(name)), (label, name)


def assert_output_equals_source(
    sim: Simulator, out: Path, schema: ModuleSchema, *, required: bool = False
) -> None:
    """The output, read as a change log, is the simulator's current module, value for value."""
    got = output_table(out, schema, required=required)
    assert_same_table(got, source_table(sim, schema), schema.module)
