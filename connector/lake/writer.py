"""Hive-partitioned Parquet datasets, written with bounded memory and committed atomically.

``DatasetWriter`` takes record batches of one schema, splits them by the UTC date of a timestamp
column (``Modified_Time`` for records, ``deleted_time`` for tombstones) and writes
``<rel_dir>/<partition_name>=YYYY-MM-DD/part-<run_id>-<seq>.parquet``.

* Files: at each commit a partition gets one file (more only past ``target_file_rows`` rows, or
  when one partition alone outgrows a row group before the commit). A module's records span
  thousands of days, so the cost that matters is per file: the rows of a partition are gathered
  and written with one Parquet writer, by a few threads at once.
* Memory: batches are buffered as they come, up to ``max_buffer_bytes`` in all. Past that the
  buffer is sorted by partition (one ``take``) and spilled to one Arrow IPC file in the scratch
  area (a *run*, one record batch per partition), except partitions that fill a row group
  (``row_group_rows`` rows or, by the mean row size, a quarter of the buffer bound), written at
  once. At commit each partition reads its pieces back from the runs, a row group at a time.
  Memory stays flat in the size of the module; spilled rows cost one extra local write and read.
* Ordered input (``ordered=True``: the batches come in ascending partition order, as the COQL and
  Records readers give them): a partition is complete once a batch starts past it, so its file is
  written at once, on background threads, while the reader goes on reading. Parquet encoding runs
  outside the GIL, so reading and writing overlap; at commit only the last partitions remain. The
  order is only used for speed: a row that comes after its partition was written goes to a file
  of its own, never lost.
* Atomicity: files are built in the output's scratch area (``_tmp/``) and appear under
  ``rel_dir`` only in :meth:`DatasetWriter.commit`, complete and durable: all of a commit's files
  are made durable together, renamed, and the renames made durable together
  (:meth:`~connector.lake.output.Output.prepare_files`). A writer may commit several times
  (checkpoints); each commit returns the files it moved into place.
* Format: zstd (snappy for files under ``SMALL_FILE_ROWS`` rows, see there), column statistics
  on, the Arrow schema stored (so ``Modified_Time`` keeps its UTC zone); dictionary encoding only
  for files big enough to gain from it. The partition column is in the path, not in the files, as
  hive readers expect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from connector.crashpoints import crashpoint
from connector.errors import DataError
from connector.lake.output import Output, _clean_rel

log = logging.getLogger(__name__)

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_EPOCH = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
_NULL_KEY = np.iinfo(np.int64).max
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Row groups much smaller than this make files slow to scan, so full buffers are written at once.
ROW_GROUP_ROWS = 128 * 1024
# Small files gain nothing from dictionary pages (measured: larger and up to 2x slower to write
# at 50-5,000 rows of 72 columns); big files of real CRM data (picklists, owners) do.
DICTIONARY_MIN_ROWS = 10_000
# zstd has a fixed cost per column chunk (~13 us: ~1 ms of a 72-column file, half its write time
# at 50 rows) and saves little on a few rows: measured on 72 columns, snappy writes a 50-row file
# in 1.1 ms instead of 2.1 ms for 13 % more bytes (44 vs 39 KB); at 500 rows it would cost 52 %
# more bytes. Daily partitions of incremental runs and of small modules are mostly such files.
SMALL_FILE_ROWS = 100
# Files written at once by a commit; Parquet encoding and compression run outside the GIL.
COMMIT_THREADS = max(1, min(4, os.cpu_count() or 1))
# Arrow's file streams are unbuffered: without this an IPC run costs a write(2) per column buffer
# of every partition (measured: ~200 per partition of 72 columns, ten times the spill's time) and
# a Parquet file one per page header and page.
WRITE_BUFFER_BYTES = 1 << 20


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
class _Finished:
    """A complete file in the scratch area, waiting for the commit that moves it into place."""

    tmp: Path
    partition: str
    order: int
    """Files of one partition are named in this order at commit."""
    rows: int
    size: int


@dataclass
class _Run:
    """One spill: every buffered partition as one record batch of an Arrow IPC file."""

    path: Path
    index: dict[str, int]
    source: pa.OSFile | None = None
    reader: ipc.RecordBatchFileReader | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, number: int) -> pa.RecordBatch:
        """The run's ``number``-th record batch (read from disk, not memory-mapped)."""
        with self.lock:
            if self.reader is None:
                self.source = pa.OSFile(str(self.path), "rb")
                self.reader = ipc.open_file(self.source)
            return self.reader.get_batch(number)

    def remove(self) -> None:
        """Close the reader and delete the file."""
        with self.lock:
            if self.source is not None:
                with contextlib.suppress(OSError, pa.ArrowException):
                    self.source.close()
            self.source = self.reader = None
        self.path.unlink(missing_ok=True)


def _open_sink(path: Path) -> pa.NativeFile:
    """A new local file behind a write buffer (its scratch directory recreated if removed)."""
    try:
        raw = pa.OSFile(str(path), "wb")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = pa.OSFile(str(path), "wb")
    return pa.BufferedOutputStream(raw, WRITE_BUFFER_BYTES)


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
        max_buffer_bytes: int = 16 << 20,
        row_group_rows: int = ROW_GROUP_ROWS,
        first_seq: int = 0,
        threads: int = COMMIT_THREADS,
        ordered: bool = False,
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
        self.row_group_rows = max(1, row_group_rows)
        self.row_group_bytes = max(1, self.max_buffer_bytes // 4)
        self.threads = max(1, threads)
        self.rows_written = 0
        self.max_value: datetime | None = None
        self._seq = first_seq
        self._lock = threading.Lock()
        self._scratch_seq = 0
        self._token = uuid.uuid4().hex[:8]
        self._scratch_dir: Path | None = None
        self._bytes_seen = 0
        self._pending: list[tuple[pa.RecordBatch, np.ndarray]] = []
        self._buffered_bytes = 0
        self._runs: list[_Run] = []
        self._finished: list[_Finished] = []
        self.ordered = ordered
        # Complete partitions being written in the background (ordered input), with their size.
        self._sealer: ThreadPoolExecutor | None = None
        self._sealing: list[tuple[Future[None], int]] = []

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
        """Buffer ``batch``; past the memory bound the buffer is spilled to a scratch run."""
        if batch.num_rows == 0:
            return
        batch = self._conform(batch)
        times = batch.column(self.partition_column)
        self._observe_max(times)
        micros = pc.cast(times.cast(pa.timestamp("us", tz="UTC")), pa.int64())
        valid = pc.is_valid(micros).to_numpy(zero_copy_only=False)
        days = np.floor_divide(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False), _US_PER_DAY)
        # Null times get the largest key, so they sort into a partition of their own.
        keys = np.where(valid, days, _NULL_KEY)
        if self.ordered and self._pending:
            self._seal_below(int(keys.min()))
        self._pending.append((batch, keys))
        nbytes = batch.nbytes
        self._buffered_bytes += nbytes
        self._bytes_seen += nbytes
        self.rows_written += batch.num_rows
        if self._buffered_bytes > self.max_buffer_bytes:
            self._spill()

    def _partitions(self) -> Iterator[tuple[str, pa.Table]]:
        """Empty the buffer: each partition's rows in arrival order, by partition value."""
        pending, self._pending, self._buffered_bytes = self._pending, [], 0
        return self._grouped(pending)

    def _grouped(
        self, pending: list[tuple[pa.RecordBatch, np.ndarray]]
    ) -> Iterator[tuple[str, pa.Table]]:
        """The rows of ``pending`` grouped by partition, in arrival order within each."""
        if not pending:
            return
        table = pa.Table.from_batches([batch for batch, _ in pending], schema=self.schema)
        keys = np.concatenate([k for _, k in pending])
        del pending
        # One stable sort groups each partition's rows together, in the order they came.
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if not np.array_equal(order, np.arange(len(order))):
            table = table.take(pa.array(order))
        table = table.combine_chunks()
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        ends = np.append(starts[1:], len(keys))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            yield self._partition_value(int(keys[start])), table.slice(start, end - start)

    def _observe_max(self, times: pa.Array) -> None:
        largest = pc.max(times).as_py()
        if largest is None:
            return
        if isinstance(largest, datetime):
            largest = largest.astimezone(timezone.utc)
        if self.max_value is None or largest > self.max_value:
            self.max_value = largest

    def _estimate_bytes(self, rows: int) -> int:
        """The buffer size of ``rows`` rows, from the mean row size of every batch written.

        ``nbytes`` of a slice or of a batch read back from a run walks every column's buffers
        (~0.3 ms for 72 columns): paid per partition and per piece, it was a fifth of a commit.
        """
        return rows * self._bytes_seen // max(1, self.rows_written)

    def _full_row_group(self, rows: int) -> bool:
        return rows >= self.row_group_rows or self._estimate_bytes(rows) >= self.row_group_bytes

    @staticmethod
    def _partition_value(day: int) -> str:
        if day == _NULL_KEY:
            return NULL_PARTITION
        return (_EPOCH + timedelta(days=int(day))).isoformat()

    def _spill(self) -> None:
        """Write the buffer to one scratch run, sorted by partition; full row groups as Parquet."""
        path = self._scratch(f"spill-{self.run_id}-{uuid.uuid4().hex[:12]}.arrow")
        index: dict[str, int] = {}
        try:
            with (
                _open_sink(path) as sink,
                ipc.new_file(sink, self.schema) as out,
            ):
                for key, part in self._partitions():
                    if self._full_row_group(part.num_rows):
                        self._write_partition(key, iter(part.to_batches()))
                        continue
                    batches = part.to_batches()
                    out.write_batch(batches[0] if len(batches) == 1 else pa.concat_batches(batches))
                    index[key] = len(index)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if index:
            self._runs.append(_Run(path, index))
        else:
            path.unlink(missing_ok=True)
        crashpoint("writer_row_group_written")

    # --- ordered input: complete partitions written while reading goes on -------------------

    def _seal_below(self, bound: int) -> None:
        """Write out, in the background, every buffered partition whose key is below ``bound``.

        With ordered input no later row belongs to such a partition, so its file can be built now.
        """
        done: list[tuple[pa.RecordBatch, np.ndarray]] = []
        kept: list[tuple[pa.RecordBatch, np.ndarray]] = []
        for batch, keys in self._pending:
            if keys.max() < bound:
                done.append((batch, keys))
            elif keys.min() >= bound:
                kept.append((batch, keys))
            else:
                below = keys < bound
                done.append((batch.filter(pa.array(below)), keys[below]))
                kept.append((batch.filter(pa.array(~below)), keys[~below]))
        if not done:
            return
        self._pending = kept
        self._buffered_bytes = self._estimate_bytes(sum(b.num_rows for b, _ in kept))
        if self._sealer is None:
            self._sealer = ThreadPoolExecutor(self.threads, thread_name_prefix="parquet")
        for key, part in self._grouped(done):
            pieces = self._pieces(self._take_spilled(key, self._runs), part)
            future = self._sealer.submit(self._write_partition, key, pieces)
            self._sealing.append((future, self._estimate_bytes(part.num_rows)))
        self._collect_sealed(wait_for_room=True)

    def _collect_sealed(self, *, wait_for_room: bool = False, everything: bool = False) -> None:
        """Take the finished background writes (raising the first failure); optionally wait until
        the writes in flight hold at most ``max_buffer_bytes``, or for all of them."""
        while self._sealing:
            in_flight = sum(size for _, size in self._sealing)
            oldest = self._sealing[0][0]
            must_wait = everything or (wait_for_room and in_flight > self.max_buffer_bytes)
            if not oldest.done() and not must_wait:
                break
            self._sealing.pop(0)
            oldest.result()

    def _stop_sealing(self) -> None:
        """Wait for every background write, even after a failure, and stop the threads."""
        futures = [future for future, _ in self._sealing]
        self._sealing = []
        if futures:
            wait(futures)
        if self._sealer is not None:
            self._sealer.shutdown(wait=True)
            self._sealer = None
        for future in futures:
            future.result()

    # --- files ----------------------------------------------------------------------------

    def _scratch(self, name: str) -> Path:
        """A scratch path in this dataset's scratch directory, created once per writer."""
        if self._scratch_dir is None:
            path = self.output.tmp_path(f"{self.rel_dir}/{name}")
            self._scratch_dir = path.parent
            return path
        return self._scratch_dir / name

    def _new_file(self) -> tuple[int, Path]:
        # Scratch names only need to be unique; the final names are given in order at commit.
        with self._lock:
            order = self._scratch_seq
            self._scratch_seq += 1
        return order, self._scratch(f"part-{self.run_id}-{self._token}-{order:05d}.parquet")

    def _write_partition(self, key: str, pieces: Iterator[pa.RecordBatch]) -> None:
        """Write a partition's rows (in order) as files of at most ``target_file_rows`` rows,
        holding about one row group in memory at a time."""
        pending: list[pa.RecordBatch] = []
        rows = size = 0
        current: tuple[pq.ParquetWriter, pa.NativeFile, int, Path] | None = None
        in_file = 0

        def close() -> None:
            nonlocal current, in_file
            assert current is not None
            writer, sink, order, tmp = current
            writer.close()
            nbytes = sink.tell()
            sink.close()
            finished = _Finished(tmp, key, order, in_file, nbytes)
            with self._lock:
                self._finished.append(finished)
            current, in_file = None, 0

        def flush() -> None:
            nonlocal current, in_file
            table = pa.Table.from_batches(pending, schema=self.schema)
            pending.clear()
            offset = 0
            while offset < table.num_rows:
                if current is None:
                    order, tmp = self._new_file()
                    sink = _open_sink(tmp)
                    try:
                        writer = pq.ParquetWriter(
                            sink,
                            self.schema,
                            compression=(
                                "zstd" if table.num_rows - offset >= SMALL_FILE_ROWS else "snappy"
                            ),
                            use_dictionary=table.num_rows - offset >= DICTIONARY_MIN_ROWS,
                            write_statistics=True,
                            store_schema=True,
                        )
                    except BaseException:
                        with contextlib.suppress(OSError, pa.ArrowException):
                            sink.close()
                        tmp.unlink(missing_ok=True)
                        raise
                    current = (writer, sink, order, tmp)
                chunk = table.slice(offset, self.target_file_rows - in_file)
                current[0].write_table(chunk, row_group_size=self.row_group_rows)
                crashpoint("writer_row_group_written")
                in_file += chunk.num_rows
                offset += chunk.num_rows
                if in_file >= self.target_file_rows:
                    close()

        try:
            for piece in pieces:
                pending.append(piece)
                rows += piece.num_rows
                size += self._estimate_bytes(piece.num_rows)
                if rows >= self.row_group_rows or size >= self.row_group_bytes:
                    flush()
                    rows = size = 0
            if pending:
                flush()
            if current is not None:
                close()
        except BaseException:
            if current is not None:
                with contextlib.suppress(OSError, pa.ArrowException):
                    current[0].close()
                with contextlib.suppress(OSError, pa.ArrowException):
                    current[1].close()
                current[3].unlink(missing_ok=True)
            raise

    @staticmethod
    def _take_spilled(key: str, runs: list[_Run]) -> list[tuple[_Run, int]]:
        """Where ``key``'s rows are in ``runs`` (run, batch number), taken out of the runs'
        indexes so that no later write reads them again (a partition written early, while
        reading goes on, is not written a second time by the commit)."""
        return [(run, run.index.pop(key)) for run in runs if key in run.index]

    @staticmethod
    def _pieces(spilled: list[tuple[_Run, int]], tail: pa.Table | None) -> Iterator[pa.RecordBatch]:
        """A partition's rows: its spilled pieces (read when the writer gets to them), then the
        rows still buffered."""
        for run, number in spilled:
            piece = run.read(number)
            if piece.num_rows:
                yield piece
        if tail is not None:
            yield from tail.to_batches()

    def commit(self) -> list[WrittenFile]:
        """Write out every buffer and spilled run, then move the files into place, durably.

        Returns the files this call put in place; the writer stays usable for a later commit.
        """
        self._stop_sealing()
        buffers = dict(self._partitions())
        runs, self._runs = self._runs, []
        keys = sorted(set(buffers).union(*(run.index for run in runs)))
        try:
            if self.threads > 1 and len(keys) > 1:
                with ThreadPoolExecutor(max_workers=self.threads) as pool:
                    jobs = [
                        pool.submit(
                            self._write_partition,
                            key,
                            self._pieces(self._take_spilled(key, runs), buffers.get(key)),
                        )
                        for key in keys
                    ]
                    for job in jobs:
                        job.result()
            else:
                for key in keys:
                    pieces = self._pieces(self._take_spilled(key, runs), buffers.get(key))
                    self._write_partition(key, pieces)
        finally:
            for run in runs:
                run.remove()
        return self._place()

    def _place(self) -> list[WrittenFile]:
        finished = sorted(self._finished, key=lambda f: (f.partition, f.order))
        self._finished = []
        self.output.prepare_files([f.tmp for f in finished])
        written: list[WrittenFile] = []
        try:
            for handle in finished:
                folder = f"{self.rel_dir}/{self.partition_name}={handle.partition}"
                # Never replace a committed file: another writer of the same run (a retry, a
                # second pass) may have used this sequence number already.
                while True:
                    final_rel = f"{folder}/{part_file_name(self.run_id, self._seq)}"
                    self._seq += 1
                    if not self.output.exists(final_rel):
                        break
                crashpoint("writer_before_rename")
                self.output.place_file(final_rel, handle.tmp)
                crashpoint("writer_after_rename")
                written.append(WrittenFile(final_rel, handle.rows, handle.size, handle.partition))
        except BaseException:
            # What is not placed yet stays abortable.
            self._finished = finished[len(written) :]
            raise
        self.output.finish_placing([f.path for f in written])
        if written:
            log.debug("%s: %d files committed", self.rel_dir, len(written))
        return written

    def abort(self) -> None:
        """Drop the buffers and remove every file not yet committed."""
        with contextlib.suppress(Exception):
            self._stop_sealing()
        self._pending.clear()
        self._buffered_bytes = 0
        runs, self._runs = self._runs, []
        for run in runs:
            with contextlib.suppress(OSError):
                run.remove()
        finished, self._finished = self._finished, []
        for handle in finished:
            with contextlib.suppress(OSError):
                handle.tmp.unlink(missing_ok=True)
