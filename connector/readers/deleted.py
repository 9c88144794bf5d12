"""Deleted records: ``GET /crm/v8/{Module}/deleted`` into tombstone batches.

Zoho keeps recycle-bin entries 60 days and permanent deletions 120 days, so a module extracted less
often than that can miss deletions; the caller reports its last deletion watermark.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.errors import DataError
from connector.readers.base import ProgressCallback, ReaderStats, zoho_time
from connector.readers.paging import DeletedCursor
from connector.zoho.limits import DELETED_PER_PAGE as PER_PAGE

if TYPE_CHECKING:
    import pyarrow as pa

    from connector.zoho.http import ZohoClient


def read_deleted(
    client: ZohoClient,
    module: str,
    since: datetime | None,
    *,
    on_progress: ProgressCallback | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield tombstones (``schema.TOMBSTONE_SCHEMA``) of records deleted at or after ``since``.

    Every page costs 2 credits. ``since`` None reads every deletion Zoho still remembers.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from connector.lake.schema import tombstones_from_json

    stats = ReaderStats()
    headers = {"If-Modified-Since": zoho_time(since)} if since is not None else None
    pages = DeletedCursor()
    while not pages.finished:
        body = client.get_json(
            f"{module}/deleted",
            params={"type": "all", "per_page": PER_PAGE, **pages.params()},
            headers=headers,
        )
        # 204 (nothing deleted) and 304 (nothing since) come without a body.
        if not body:
            return
        rows: Any = body.get("data") or []
        if not isinstance(rows, list):
            raise DataError(
                "a deleted-records answer has a 'data' that is not a list", module=module
            )
        stats.pages += 1
        if rows:
            batch = tombstones_from_json(rows)
            if since is not None:
                # If-Modified-Since is a filter Zoho documents loosely; enforce it here.
                bound = pa.scalar(since, type=batch.schema.field("deleted_time").type)
                keep = pc.fill_null(pc.greater_equal(batch.column("deleted_time"), bound), False)
                batch = batch.filter(keep)
            if batch.num_rows:
                stats.rows += batch.num_rows
                yield batch
        if on_progress is not None:
            on_progress(stats)
        info = body.get("info") or {}
        # An empty page ends the read whatever its info says.
        pages.advance(bool(rows) and bool(info.get("more_records", False)))
