"""One extraction, read back by the loaders data engineers use: pyarrow, pandas, DuckDB, Polars.

Each must see the same rows and the same logical types: string ids, UTC-aware timestamps,
decimals, lists, dates, booleans, nullable integers, at every partition granularity (day, month,
year, none; day is also the layout of every dataset written before the granularity was a
setting). The hive partition column (``modified_date``, ``modified_month``, ``modified_year``)
is typed by each loader as it likes (string, category, date, integer), so it is compared by value
only. Spark is not a test dependency; it reads the same hive folders.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from support.source import TINY, noop

from connector.config import load_settings
from connector.run.sync import run_extract
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.http import ZohoClient

MODULES = ("Leads", "Shipments")
GRANULARITIES = {"day": "modified_date", "month": "modified_month", "year": "modified_year"}
GRANULARITIES_ALL = [*GRANULARITIES, "none"]
UTC_NAMES = {"UTC", "Etc/UTC", "+00:00", "Z", "GMT", "Etc/GMT"}


@pytest.fixture(scope="module", params=GRANULARITIES_ALL)
def extracted(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Simulator]]:
    """A full load then an incremental run (so a module has files of two runs), at each
    granularity."""
    tmp = tmp_path_factory.mktemp(f"loaders-{request.param}")
    clock = FakeClock(dt.datetime(2026, 7, 1, 12, 0, 0, tzinfo=dt.timezone.utc))
    sim = Simulator(seed=13, records=300, bulk_polls=1, clock=clock).start()
    try:
        text = sim.connection_string(OAuthSettingsLocation=str(tmp / "tokens.json"), APIType="Bulk")
        settings = load_settings(text, environ={}).settings.model_copy(
            update={"tuning": TINY, "partition_by": request.param}
        )
        client = ZohoClient(settings, sleep=noop)
        out = tmp / "out"
        first = run_extract(settings, str(out), modules=MODULES, client=client, sleep=noop)
        assert first.exit_code == 0, first.summary_lines()
        leads = sim.org.module("Leads")
        leads.update(leads.current_ids()[0], {"Last_Name": 'Ünïcode; "quoted", ok'})
        leads.insert({"Last_Name": "Newcomer", "Company": "Zylker"})
        clock.advance(2)  # the next run comes after the edits' second, as a scheduled one does
        second = run_extract(settings, str(out), modules=MODULES, client=client, sleep=noop)
        assert second.exit_code == 0 and second.module("Leads").rows == 2
        assert all(
            f.path.startswith(f"Leads/{GRANULARITIES.get(request.param, 'part-')}")
            for f in first.module("Leads").files
        )
        yield out, sim
    finally:
        sim.stop()


def logical(t: pa.DataType) -> str:
    """The logical type, ignoring physical variants (large/view strings and lists, tz spelling)."""
    if pa.types.is_dictionary(t):
        return logical(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list<{logical(t.value_type)}>"
    if pa.types.is_timestamp(t):
        tz = "UTC" if t.tz in UTC_NAMES else t.tz
        return f"timestamp[{t.unit}, tz={tz}]"
    return str(t)


def by_id(table: pa.Table) -> pa.Table:
    """Rows in a fixed order: (id, Modified_Time)."""
    return table.sort_by([("id", "ascending"), ("Modified_Time", "ascending")])


def partition_of(table: pa.Table) -> str | None:
    """The hive partition column a loader added, if any."""
    found = [n for n in table.column_names if n in GRANULARITIES.values()]
    return found[0] if found else None


def with_pyarrow(path: Path) -> pa.Table:
    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table()


def with_pandas(path: Path) -> pa.Table:
    # dtype_backend="pyarrow" keeps nullable ints, decimals, lists and dates typed.
    frame = pd.read_parquet(path, dtype_backend="pyarrow")
    return pa.Table.from_pandas(frame, preserve_index=False)


def with_duckdb(path: Path) -> pa.Table:
    con = duckdb.connect()
    try:
        # DuckDB hands TIMESTAMPTZ to Arrow in the session time zone; pin it so it is UTC.
        con.execute("SET TimeZone = 'UTC'")
        query = (
            f"SELECT * FROM read_parquet('{path.as_posix()}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        )
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def with_polars(path: Path) -> pa.Table:
    frame = pl.scan_parquet(f"{path.as_posix()}/**/*.parquet", hive_partitioning=True).collect()
    return frame.to_arrow()


LOADERS = {"pandas": with_pandas, "duckdb": with_duckdb, "polars": with_polars}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("loader", list(LOADERS))
def test_loader_sees_the_rows_and_types_pyarrow_sees(
    extracted: tuple[Path, Simulator], module: str, loader: str
) -> None:
    out, _sim = extracted
    reference = by_id(with_pyarrow(out / module))
    got = by_id(LOADERS[loader](out / module))
    partition = partition_of(reference)
    data = [n for n in reference.column_names if n != partition]
    assert sorted(got.column_names) == sorted(reference.column_names)
    assert got.num_rows == reference.num_rows
    for name in data:
        want_type, got_type = reference.schema.field(name).type, got.schema.field(name).type
        assert logical(got_type) == logical(want_type), (loader, name, got_type)
        assert got.column(name).to_pylist() == reference.column(name).to_pylist(), (loader, name)
    if partition is not None:
        partitions = {str(v) for v in got.column(partition).to_pylist()}
        assert partitions == {str(v) for v in reference.column(partition).to_pylist()}


@pytest.mark.parametrize("module", MODULES)
def test_reference_read_has_the_promised_types_and_every_record(
    extracted: tuple[Path, Simulator], module: str
) -> None:
    out, sim = extracted
    table = with_pyarrow(out / module)
    kinds = {logical(field.type) for field in table.schema}
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("Modified_Time").type == pa.timestamp("us", tz="UTC")
    for expected in ("bool", "date32[day]", "list<string>", "int64", "double"):
        assert expected in kinds, (module, expected)
    assert any(pa.types.is_decimal(field.type) for field in table.schema)
    # Every current record is there (the change log may hold an older version of some).
    assert set(table.column("id").to_pylist()) >= set(sim.org.module(module).current_ids())
    for loader in LOADERS.values():
        assert set(loader(out / module).column("id").to_pylist()) == set(
            table.column("id").to_pylist()
        )


def _plain(value: Any) -> Any:
    """A pandas (NumPy backend) cell as the Python value Arrow would give."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def test_plain_pandas_read_keeps_values_and_key_types(extracted: tuple[Path, Simulator]) -> None:
    out, _sim = extracted
    frame = pd.read_parquet(out / "Leads")  # the default NumPy backend
    assert pd.api.types.is_string_dtype(frame["id"])
    assert isinstance(frame["Modified_Time"].dtype, pd.DatetimeTZDtype)
    assert str(frame["Modified_Time"].dtype.tz) == "UTC"
    assert frame["Email_Opt_Out"].dtype == np.bool_
    assert {type(v) for v in frame["Annual_Revenue"].dropna()} == {Decimal}
    assert {type(v) for v in frame["Preferred_Call_Date"].dropna()} == {dt.date}
    assert {type(v) for v in frame["Interests"].dropna()} == {np.ndarray}
    frame = frame.sort_values(["id", "Modified_Time"], kind="stable")
    reference = by_id(with_pyarrow(out / "Leads"))
    for name in reference.column_names:
        if name == partition_of(reference):
            continue
        # Integers with nulls come back as float64 here (the reason to prefer the pyarrow
        # backend), but they still compare equal value by value.
        assert [_plain(v) for v in frame[name].tolist()] == reference.column(name).to_pylist(), name


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table_as_it_is_now(out: Path, module: str) -> str:
    """The README's "table as it is now" SQL, pointed at ``out`` and ``module``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index('For "the table as it is now"') :]
    sql = section[section.index("```sql\n") + len("```sql\n") :]
    sql = sql[: sql.index("```")]
    return sql.replace("zoho-demo", out.as_posix()).replace("Leads", module)


def current_ids_by_sql(out: Path, module: str) -> set[str]:
    con = duckdb.connect()
    try:
        return {row[0] for row in con.sql(readme_table_as_it_is_now(out, module)).fetchall()}
    finally:
        con.close()


@pytest.mark.parametrize("module", MODULES)
def test_readme_sql_works_when_a_module_has_no_tombstones(
    extracted: tuple[Path, Simulator], module: str
) -> None:
    out, sim = extracted
    assert readme_table_as_it_is_now(out, module).count(f"/{module}/") == 2
    tombstones = ds.dataset(str(out / "_deleted" / module), partitioning="hive").to_table()
    assert tombstones.num_rows == 0  # nothing deleted: one file of no rows, with the schema
    assert {"id", "deleted_time"} <= set(tombstones.column_names)
    assert current_ids_by_sql(out, module) == set(sim.org.module(module).current_ids())


def test_readme_sql_and_every_loader_after_deletions_and_a_full_refresh(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2026, 7, 1, 12, 0, 0, tzinfo=dt.timezone.utc))
    sim = Simulator(seed=5, records=120, clock=clock).start()
    try:
        text = sim.connection_string(OAuthSettingsLocation=str(tmp_path / "t.json"), APIType="REST")
        settings = load_settings(text, environ={}).settings.model_copy(update={"tuning": TINY})
        client = ZohoClient(settings, sleep=noop)
        out = tmp_path / "out"

        def run(**kwargs: Any) -> None:
            manifest = run_extract(
                settings, str(out), modules=["Leads"], client=client, sleep=noop, **kwargs
            )
            assert manifest.exit_code == 0, manifest.summary_lines()

        run()
        leads = sim.org.module("Leads")
        leads.delete(leads.current_ids()[0])
        clock.advance(2)
        run()
        assert current_ids_by_sql(out, "Leads") == set(leads.current_ids())
        run(full_refresh=True)  # the new generation drops the old tombstones
        assert current_ids_by_sql(out, "Leads") == set(leads.current_ids())
        deleted = out / "_deleted" / "Leads"
        assert with_pyarrow(deleted).num_rows == 0
        for loader in LOADERS.values():
            table = loader(deleted)
            assert table.num_rows == 0 and "deleted_time" in table.column_names
    finally:
        sim.stop()
