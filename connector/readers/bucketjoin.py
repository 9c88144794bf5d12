"""The join of a Bulk Read page's field groups by id, in buckets, with bounded memory.

A module of more than 200 fields takes one Bulk job per group of fields for each page (up to
200,000 rows), and the groups' rows are joined by id. Holding a whole page of one group while
the other streams past took ~600 MB at 300 fields. Here every group's CSV stream is partitioned
instead by a hash of ``id`` into ``BUCKETS`` buckets: the pieces are buffered up to
``BUFFER_BYTES`` a group, past that appended to one Arrow IPC file of the group in the reader's
scratch directory (:class:`connector.lake.spill.Run`, its batches indexed by bucket). A record's
rows in every group fall in the same bucket, so the page is then joined a few buckets at a time
(about ``JOIN_BYTES`` of rows of all groups), by :func:`connector.readers.base.merge_groups`:
memory is bounded by the buffer and the join's share, not by the page. A page smaller than the
buffer never touches the disk. The rows come out in bucket order; a Bulk page has no order to
keep (the writer sorts by time).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from connector.lake.spill import Run, open_sink
from connector.readers.base import ID, merge_groups

if TYPE_CHECKING:
    from connector.lake.schema import ModuleSchema

# Buckets a page is hashed into; consecutive buckets are joined together up to JOIN_BYTES, so
# more buckets only make the pieces smaller, never the joins.
BUCKETS = 64
# A group's rows held in memory before they are appended to its scratch file.
BUFFER_BYTES = 8 << 20
# Rows of every group joined at once (each group's share, estimated by its mean row size).
JOIN_BYTES = 8 << 20
# Bytes of the end of an id that are hashed (Zoho's ids are numbers: their last digits vary).
HASHED_BYTES = 12
_MULTIPLIER = np.uint64(0x100000001B3)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def bucket_numbers(ids: pa.Array, buckets: int) -> np.ndarray:
    """The bucket of each id (0 to ``buckets - 1``): a hash of its last ``HASHED_BYTES`` bytes,
    computed on the array's buffers (no Python per row). Equal ids always get equal buckets."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.type != pa.string():
        ids = ids.cast(pa.string())
    _, offsets_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[ids.offset : ids.offset + len(ids) + 1]
    starts, ends = offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else None
    hashes = np.zeros(len(ids), dtype=np.uint64)
    if data is not None and data.size:
        for back in range(1, HASHED_BYTES + 1):
            at = ends - back
            inside = at >= starts
            byte = np.where(inside, data[np.where(inside, at, 0)], 0).astype(np.uint64)
            hashes = hashes * _MULTIPLIER + byte + np.uint64(1)
    hashes ^= hashes >> np.uint64(31)
    hashes *= _MIX
    hashes ^= hashes >> np.uint64(29)
    return (hashes % np.uint64(buckets)).astype(np.int64)


class GroupBuckets:
    """One field group's rows of a page, partitioned by a hash of ``id``."""

    def __init__(
        self, schema: pa.Schema, scratch: Path, *, buckets: int, buffer_bytes: int
    ) -> None:
        self.schema = schema
        self.buckets = buckets
        self.buffer_bytes = buffer_bytes
        self.rows = [0] * buckets
        self._path = scratch / f"join-{uuid.uuid4().hex[:12]}.arrow"
        # Batches not yet partitioned, with each row's bucket.
        self._pending: list[tuple[pa.RecordBatch, np.ndarray]] = []
        self._pending_bytes = 0
        self._bytes = 0
        # After seal: each bucket's rows still in memory.
        self._held: list[pa.RecordBatch | None] = [None] * buckets
        self._sink: pa.NativeFile | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._index: dict[str, list[int]] = {}
        self._written = 0
        self._run: Run | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        """Take a batch of the group's rows; past the buffer bound, append the buffer to disk."""
        if not batch.num_rows:
            return
        numbers = bucket_numbers(batch.column(ID), self.buckets)
        self._pending.append((batch, numbers))
        for bucket, count in enumerate(np.bincount(numbers, minlength=self.buckets).tolist()):
            self.rows[bucket] += count
        size = batch.nbytes
        self._pending_bytes += size
        self._bytes += size
        if self._pending_bytes > self.buffer_bytes:
            if self._writer is None:
                self._sink = open_sink(self._path)
                self._writer = ipc.new_file(self._sink, self.schema)
            for bucket, rows in self._partitioned():
                self._writer.write_batch(rows)
                self._index.setdefault(str(bucket), []).append(self._written)
                self._written += 1

    def _partitioned(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Empty the buffer: its rows as one batch per bucket (one sort, one copy)."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if not pending:
            return
        batch = pa.concat_batches([b for b, _ in pending])
        numbers = np.concatenate([n for _, n in pending])
        del pending
        order = np.argsort(numbers, kind="stable")
        grouped = batch.take(pa.array(order))
        del batch
        offset = 0
        for bucket, count in enumerate(np.bincount(numbers, minlength=self.buckets).tolist()):
            if count:
                yield bucket, grouped.slice(offset, count)
                offset += count

    def seal(self) -> None:
        """Every row has been added: the rest stays in memory, the scratch file is closed."""
        for bucket, rows in self._partitioned():
            self._held[bucket] = rows
        if self._writer is not None:
            self._writer.close()
            assert self._sink is not None
            self._sink.close()
            self._writer = self._sink = None
            self._run = Run(self._path, self._index)

    def row_bytes(self) -> int:
        """The group's mean row size in bytes."""
        return self._bytes // max(1, sum(self.rows))

    def take(self, buckets: Iterable[int]) -> pa.Table:
        """The group's rows in ``buckets`` (read from disk, and from memory), released here."""
        pieces: list[pa.RecordBatch] = []
        for bucket in buckets:
            if self._run is not None:
                pieces.extend(self._run.pieces(self._run.index.pop(str(bucket), [])))
            held, self._held[bucket] = self._held[bucket], None
            if held is not None:
                pieces.append(held)
        return pa.Table.from_batches(pieces, schema=self.schema)

    def remove(self) -> None:
        """Delete the scratch file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self._run is not None:
            self._run.remove()
        self._path.unlink(missing_ok=True)


def _units(groups: Sequence[GroupBuckets], join_bytes: int) -> Iterator[list[int]]:
    """Consecutive buckets whose rows of every group add up to about ``join_bytes``."""
    sizes = [g.row_bytes() for g in groups]
    unit: list[int] = []
    held = 0
    for bucket in range(groups[0].buckets):
        unit.append(bucket)
        held += sum(g.rows[bucket] * size for g, size in zip(groups, sizes, strict=True))
        if held >= join_bytes:
            yield unit
            unit, held = [], 0
    if unit:
        yield unit


def join_in_buckets(
    parts: Sequence[Iterator[pa.RecordBatch]],
    schemas: Sequence[pa.Schema],
    schema: ModuleSchema,
    scratch: Path,
    unstable: set[str],
    *,
    buckets: int | None = None,
    buffer_bytes: int | None = None,
    join_bytes: int | None = None,
) -> Iterator[pa.Table]:
    """Join a page's field groups by id, a few buckets at a time, as tables of ``schema``.

    ``parts`` are the groups' batches (of ``schemas``; the first group holds every column of
    ``schema.arrow`` the others do not, the others their fields with ``id`` and ``Modified_Time``).
    Each group is read whole (its row count checked) before any row is joined. The ids of records
    missing from a group or whose ``Modified_Time`` differs between groups are added to
    ``unstable`` and their rows left out (see :func:`connector.readers.base.merge_groups`).
    The bounds default to the module's ``BUCKETS``, ``BUFFER_BYTES`` and ``JOIN_BYTES``.
    """
    count = buckets or BUCKETS
    bound = buffer_bytes or BUFFER_BYTES
    groups = [
        GroupBuckets(part_schema, scratch, buckets=count, buffer_bytes=bound)
        for part_schema in schemas
    ]
    try:
        for group, batches in zip(groups, parts, strict=True):
            for batch in batches:
                group.add(batch)
            group.seal()
        for unit in _units(groups, join_bytes or JOIN_BYTES):
            tables = [group.take(unit) for group in groups]
            if not any(table.num_rows for table in tables):
                continue
            merged, changed = merge_groups(tables, schema)
            del tables
            unstable.update(changed)
            if merged.num_rows:
                yield pa.Table.from_arrays(merged.columns, schema=schema.arrow)
    finally:
        for group in groups:
            group.remove()
