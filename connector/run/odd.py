"""Modules that do not fit the common shape: how :mod:`connector.run.module_job` reads them.

* **No ``Modified_Time``** (such as ``Actions_Performed``): nothing the Records API can sort or
  filter a change by, so the module is read in full on every run (COQL and Records in ``id``
  order, :mod:`connector.readers.scan`; Bulk without criteria) and each run writes a new
  generation that replaces the last, as ``--full-refresh`` does: no watermark
  (:class:`NoWatermark`), no live-edge deferral, no tombstones (a deleted record is simply absent
  from the next generation). Its files are partitioned by the date of its first datetime field
  (:func:`layout_column`: ``action_performed_date=`` for ``Action_Performed_Time``); a module with
  no datetime field at all is skipped with that reason. With ``APIType=Bulk`` the planner picks
  its reader like a full load's (a COQL count, 1 credit, says whether COQL is cheaper than a
  50-credit Bulk job on every run).
* **``Users``** (:mod:`connector.readers.users`) is read the same way, in full every run.
* **Fields COQL refuses.** A module with a field COQL is known to refuse (line items,
  ``Participants``, :mod:`connector.zoho.quirks`) is read by the Records API. A column COQL
  refuses that the list does not know (``INVALID_QUERY`` naming it) is learned from that one
  failed call (:func:`learn_refusal`): the read starts again with the Records API, and the
  manifest says why. A COQL ``INVALID_QUERY`` that names no column means Zoho refuses the module:
  it is skipped (:class:`~connector.errors.ModuleUnavailable`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from connector.errors import ModuleUnavailable, ZohoAPIError
from connector.lake.layout import day_key
from connector.lake.manifest import ModuleReport
from connector.lake.output import Output
from connector.lake.schema import ModuleSchema
from connector.lake.state import ModuleState, WatermarkTracker
from connector.lake.writer import DatasetWriter
from connector.readers.base import (
    COQL,
    MODIFIED_TIME,
    RECORDS,
    ProgressCallback,
    Reader,
    make_reader,
)
from connector.readers.scan import make_scan_reader
from connector.readers.users import UsersReader
from connector.zoho.quirks import refused_column, refuses_module

if TYPE_CHECKING:
    from connector.config import Tuning
    from connector.lake.bulk_jobs import BulkJobBook
    from connector.zoho.http import ZohoClient

log = logging.getLogger("connector.run.sync")


class NoWatermark(WatermarkTracker):
    """The tracker of a module read in full every run: it never sets a watermark."""

    def observe(self, batch: pa.RecordBatch) -> None:
        """Nothing to follow: the next run reads everything again."""


def tracker(state: ModuleState, cap: datetime | None, *, full_each_run: bool) -> WatermarkTracker:
    """The watermark tracker of a module's records: none for a module read in full every run."""
    if full_each_run:
        return NoWatermark(cap=cap)
    return WatermarkTracker.from_state(state, cap=cap)


def layout_column(schema: ModuleSchema) -> str | None:
    """The datetime column a module's files are partitioned by: ``Modified_Time``, else the
    module's first datetime field, else None."""
    if MODIFIED_TIME in schema.names:
        return MODIFIED_TIME
    for arrow_field in schema.arrow:
        if pa.types.is_timestamp(arrow_field.type):
            return str(arrow_field.name)
    return None


def read_shape(schema: ModuleSchema, *, users: bool) -> tuple[str, bool, str | None]:
    """(the column the files are partitioned by, whether the module is read in full every run,
    a note for the manifest); :class:`ModuleUnavailable` for a module with no datetime field."""
    layout = layout_column(schema)
    if layout is None:
        raise ModuleUnavailable(
            f"{schema.module} has neither Modified_Time nor any datetime field to partition "
            "its files by"
        )
    if users:
        return layout, True, "Users are read in full every run (GET users, AllUsers)"
    if MODIFIED_TIME not in schema.names:
        return (
            layout,
            True,
            f"{schema.module} has no Modified_Time: read in full every run, each run's output "
            f"replacing the last (files partitioned by {layout})",
        )
    return layout, False, None


def records_writer(
    output: Output,
    schema: ModuleSchema,
    run_id: str,
    layout: str,
    *,
    ordered: bool,
    granularity: str,
) -> DatasetWriter:
    """The writer of a module's records, partitioned by the date of ``layout`` at
    ``granularity`` (day, month, year or none)."""
    return DatasetWriter(
        output,
        schema.module,
        schema.arrow,
        run_id,
        ordered=ordered,
        partition_column=layout,
        partition_name=partition_name(layout),
        granularity=granularity,
    )


def partition_name(column: str) -> str:
    """The hive partition key for ``column``: ``Modified_Time`` -> ``modified_date``,
    ``Action_Performed_Time`` -> ``action_performed_date``."""
    return day_key(column)


def module_reader(
    name: str,
    client: ZohoClient,
    tuning: Tuning,
    schema: ModuleSchema,
    *,
    on_progress: ProgressCallback,
    sleep: Callable[[float], None] | None,
    scratch_dir: str | Path,
    expected_rows: int | None = None,
    book: BulkJobBook | None = None,
) -> Reader:
    """A fresh reader ``name`` for the module of ``schema``: the Users reader for ``users``, the
    id-order scan for a COQL or Records read of a module without ``Modified_Time``, else
    :func:`~connector.readers.base.make_reader`'s (``expected_rows`` and ``book`` as there)."""
    if name == "users":
        return UsersReader(client, tuning, on_progress=on_progress)
    reader = make_reader(
        name,
        client,
        tuning,
        on_progress=on_progress,
        sleep=sleep,
        scratch_dir=scratch_dir,
        expected_rows=expected_rows,
        book=book,
    )
    if name in (COQL, RECORDS) and MODIFIED_TIME not in schema.names:
        return make_scan_reader(name, client, reader, expected_rows=expected_rows)
    return reader


def learn_refusal(
    exc: ZohoAPIError, schema: ModuleSchema, learned: list[str], report: ModuleReport
) -> str | None:
    """The column a COQL ``INVALID_QUERY`` refuses, added to ``learned`` and noted in ``report``.

    Raises :class:`ModuleUnavailable` when the refusal names no column (Zoho refuses the module).
    None when the error is something else, or names a column already learned.
    """
    column = refused_column(exc, frozenset(schema.names) - {"id", MODIFIED_TIME})
    if column is not None and column not in learned:
        learned.append(column)
        report.notes.append(
            f"COQL refused {column} (INVALID_QUERY): the module is read by the Records API"
        )
        log.warning("%s: COQL refused %s; reading with the Records API", schema.module, column)
        return column
    if column is None and refuses_module(exc):
        raise ModuleUnavailable(
            f"Zoho refuses COQL reads of {schema.module} (INVALID_QUERY): {exc}",
            status=exc.status,
            code=exc.code,
            url=exc.url,
            details=exc.details,
        ) from exc
    return None
