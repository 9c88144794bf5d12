"""Hive-partitioned Parquet datasets, written with bounded memory and committed atomically.

``DatasetWriter`` takes record batches of one schema, splits them by the UTC date of a timestamp
column (``Modified_Time`` for records, ``deleted_time`` for tombstones) and writes
``<rel_dir>/<partition_name>=YYYY-MM-DD/part-<run_id>-<seq>.parquet``.

* Memory: rows are buffered per partition up to ``max_buffer_bytes`` in all; past that the largest
  buffers are written out as row groups of per-partition files. At most ``max_open_files`` files
  are open at once (least recently used closed first; a partition written to again later starts a
  new part file), and a file is closed once it holds ``target_file_rows`` rows.
* Atomicity: files are built in the output's scratch area (``_tmp/``) and appear under
  ``rel_dir`` only in :meth:`DatasetWriter.commit`, complete and fsynced. A writer may commit
  several times (checkpoints); each commit returns the files it moved into place.
* Format: zstd, column statistics on, the Arrow schema stored (so ``Modified_Time`` keeps its UTC
  zone). The partition column is in the path, not in the files, as hive readers expect.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connector.errors import DataError
from connector.output import Output, _clean_rel

log = logging.getLogger(__name__)

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_EPOCH = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
_NULL_KEY = np.iinfo(np.int64).max
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Row groups much smaller than this make files slow to scan, so full buffers are written at once.
ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file moved into place by :meth:`DatasetWriter.commit`."""

    path: str
    """Relative to the output root, with ``/``."""
    rows: int
    bytes: int
    partition: str
    """The partition value, e.g. ``2024-06-05``."""


def part_file_name(run_id: str, seq: int) -> str:
    """The name of a data file: ``part-<run_id>-<seq:05d>.parquet``."""
    return f"part-{run_id}-{seq:05d}.parquet"


@dataclass
class _OpenFile:
    writer: pq.ParquetWriter
    tmp: Path
    final_rel: str
    partition: str
    rows: int = 0


@dataclass
class _Buffer:
    batches: list[pa.RecordBatch]
    rows: int = 0
    nbytes: int = 0


class DatasetWriter:
    """Write one module's batches into a hive-partitioned Parquet dataset under ``rel_dir``."""

    def __init__(
        self,
        output: Output,
        rel_dir: str,
        schema: pa.Schema,
        run_id: str,
        *,
        partition_column: str = "Modified_Time",
        partition_name: str = "modified_date",
        target_file_rows: int = 500_000,
        max_buffer_bytes: int = 64 << 20,
        max_open_files: int = 16,
        row_group_rows: int = ROW_GROUP_ROWS,
        first_seq: int = 0,
    ) -> None:
        if not _RUN_ID_RE.match(run_id):
            raise DataError(f"run id {run_id!r} cannot be part of a file name")
        if partition_column not in schema.names:
            raise DataError(f"{rel_dir}: no {partition_column} column to partition the files by")
        if not pa.types.is_timestamp(schema.field(partition_column).type):
            raise DataError(f"{rel_dir}: {partition_column} must be a timestamp column")
        if partition_name in schema.names:
            raise DataError(
                f"{rel_dir}: a field is named {partition_name!r}, like the partition column"
            )
        self.output = output
        self.rel_dir = _clean_rel(rel_dir)
        self.schema = schema
        self.run_id = run_id
        self.partition_column = partition_column
        self.partition_name = partition_name
        self.target_file_rows = max(1, target_file_rows)
        self.max_buffer_bytes = max(1, max_buffer_bytes)
        self.max_open_files = max(1, max_open_files)
        self.row_group_rows = max(1, row_group_rows)
        self.rows_written = 0
        self.max_value: datetime | None = None
        self._seq = first_seq
        self._buffers: dict[str, _Buffer] = {}
        self._buffered_bytes = 0
        self._open: OrderedDict[str, _OpenFile] = OrderedDict()
        self._finished: list[_OpenFile] = []

    @property
    def next_seq(self) -> int:
        """The sequence number the next file will get."""
        return self._seq

    # --- intake ---------------------------------------------------------------------------

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.schema.equals(self.schema):
            return batch
        try:
            table = pa.Table.from_batches([batch]).select(self.schema.names).cast(self.schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise DataError(
                f"{self.rel_dir}: a batch does not match the dataset schema ({exc})"
            ) from exc
        return table.combine_chunks().to_batches()[0] if table.num_rows else batch.slice(0, 0)

    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer ``batch``; buffers past the memory bound are written out as row groups."""
        if batch.num_rows == 0:
            return
        batch = self._conform(batch)
        times = batch.column(self.partition_column)
        self._observe_max(times)
        micros = pc.cast(times.cast(pa.timestamp("us", tz="UTC")), pa.int64())
        valid = pc.is_valid(micros).to_numpy(zero_copy_only=False)
        days = np.floor_divide(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False), _US_PER_DAY)
        # Null times get the largest key; one stable sort groups each partition's rows together.
        keys = np.where(valid, days, _NULL_KEY)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if not np.array_equal(order, np.arange(len(order))):
            batch = batch.take(pa.array(order))
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        ends = np.append(starts[1:], len(keys))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            key = self._partition_value(int(keys[start]))
            self._buffer(key, batch.slice(start, end - start))
        self.rows_written += batch.num_rows
        if self._buffered_bytes > self.max_buffer_bytes:
            self._spill(self.max_buffer_bytes // 2)

    def _observe_max(self, times: pa.Array) -> None:
        largest = pc.max(times).as_py()
        if largest is None:
            return
        if isinstance(largest, datetime):
            largest = largest.astimezone(timezone.utc)
        if self.max_value is None or largest > self.max_value:
            self.max_value = largest

    @staticmethod
    def _partition_value(day: int) -> str:
        if day == _NULL_KEY:
            return NULL_PARTITION
        return (_EPOCH + timedelta(days=int(day))).isoformat()

    def _buffer(self, key: str, part: pa.RecordBatch) -> None:
        buf = self._buffers.setdefault(key, _Buffer([]))
        buf.batches.append(part)
        buf.rows += part.num_rows
        size = part.nbytes
        buf.nbytes += size
        self._buffered_bytes += size
        if buf.rows >= self.row_group_rows:
            self._flush(key)

    def _spill(self, down_to: int) -> None:
        """Write out the largest buffers until at most ``down_to`` bytes stay buffered."""
        for key in sorted(self._buffers, key=lambda k: self._buffers[k].nbytes, reverse=True):
            if self._buffered_bytes <= down_to:
                break
            self._flush(key)

    # --- files ----------------------------------------------------------------------------

    def _flush(self, key: str) -> None:
        buf = self._buffers.pop(key, None)
        if buf is None:
            return
        self._buffered_bytes -= buf.nbytes
        table = pa.Table.from_batches(buf.batches, schema=self.schema)
        offset = 0
        while offset < table.num_rows:
            handle = self._file_for(key)
            room = self.target_file_rows - handle.rows
            chunk = table.slice(offset, room)
            handle.writer.write_table(chunk, row_group_size=max(chunk.num_rows, 1))
            handle.rows += chunk.num_rows
            offset += chunk.num_rows
            if handle.rows >= self.target_file_rows:
                self._close(key)

    def _file_for(self, key: str) -> _OpenFile:
        handle = self._open.get(key)
        if handle is not None:
            self._open.move_to_end(key)
            return handle
        while len(self._open) >= self.max_open_files:
            oldest = next(iter(self._open))
            self._close(oldest)
        name = part_file_name(self.run_id, self._seq)
        self._seq += 1
        tmp = self.output.tmp_path(f"{self.rel_dir}/{name}")
        final_rel = f"{self.rel_dir}/{self.partition_name}={key}/{name}"
        writer = pq.ParquetWriter(
            str(tmp),
            self.schema,
            compression="zstd",
            write_statistics=True,
            store_schema=True,
        )
        handle = _OpenFile(writer=writer, tmp=tmp, final_rel=final_rel, partition=key)
        self._open[key] = handle
        return handle

    def _close(self, key: str) -> None:
        handle = self._open.pop(key)
        handle.writer.close()
        self._finished.append(handle)

    def commit(self) -> list[WrittenFile]:
        """Write out every buffer, close the files and move them into place.

        Returns the files this call put in place; the writer stays usable for a later commit.
        """
        for key in list(self._buffers):
            self._flush(key)
        for key in list(self._open):
            self._close(key)
        written: list[WrittenFile] = []
        finished, self._finished = self._finished, []
        for handle in finished:
            size = handle.tmp.stat().st_size
            final_rel = handle.final_rel
            # Never replace a committed file: another writer of the same run (a retry, a second
            # pass) may have used this sequence number already.
            while self.output.exists(final_rel):
                name = part_file_name(self.run_id, self._seq)
                self._seq += 1
                final_rel = f"{final_rel.rsplit('/', 1)[0]}/{name}"
            self.output.write_file_atomic(final_rel, handle.tmp)
            written.append(WrittenFile(final_rel, handle.rows, size, handle.partition))
        if written:
            log.debug("%s: %d files committed", self.rel_dir, len(written))
        return written

    def abort(self) -> None:
        """Drop the buffers and remove every file not yet committed."""
        self._buffers.clear()
        self._buffered_bytes = 0
        handles = [*self._open.values(), *self._finished]
        self._open.clear()
        self._finished = []
        for handle in handles:
            with contextlib.suppress(OSError, pa.ArrowException):
                handle.writer.close()
            handle.tmp.unlink(missing_ok=True)
