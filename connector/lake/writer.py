"""Hive-partitioned Parquet datasets, written with bounded memory and committed atomically.

``DatasetWriter`` takes record batches of one schema, splits them by the UTC date of a timestamp
column (``Modified_Time`` for records, ``deleted_time`` for tombstones) at the dataset's
granularity (:mod:`connector.lake.layout`: day, month, year or none) and writes
``<rel_dir>/<key>=<value>/part-<run_id>-<seq>.parquet`` (``modified_month=2024-06``), or
``<rel_dir>/part-…`` without partitions.

* Files: at each commit a partition gets one file, more only past ``target_file_rows`` rows or
  ``target_file_bytes`` bytes (1M rows or 128 MB by default, the size engines scan best). Within
  a file the rows are sorted by the partition column, in row groups of ``row_group_rows`` rows
  (or, by the mean row size, ``row_group_bytes``), each with min/max statistics: a query on
  ``Modified_Time`` skips the row groups it does not need. The rows of a partition are gathered
  and written with one Parquet writer, by a few threads at once.
* Memory: batches are buffered as they come, up to ``max_buffer_bytes`` in all. Past that the
  buffer is sorted by partition and time (one ``take``) and spilled to one Arrow IPC file in the
  scratch area (a *run*, :mod:`connector.lake.spill`). At commit a small partition is read back
  whole and sorted at once; a big one merges its pieces from the runs in time order, in passes
  when the runs are many. Memory stays flat in the size of the module.
* Ordered input (``ordered=True``: the batches come in ascending partition order, as the COQL and
  Records readers give them): a partition is complete once a batch starts past it, so its file is
  written at once, on background threads, while the reader goes on reading. The partition still
  growing is handed to its file's write as it comes (:mod:`connector.lake.stream`), a row group
  at a time, so ordered input never spills and holds about two row groups however big a
  partition grows. Parquet encoding runs outside the GIL, so reading and writing overlap; at
  commit only the last partitions remain. The order is only used for speed: a row that comes
  after its partition was written (or before the last row handed to its file) goes to a file of
  its own, never lost.
* Atomicity: files are built in the output's scratch area (``_tmp/``) and appear under
  ``rel_dir`` only in :meth:`DatasetWriter.commit`, complete and durable: all of a commit's files
  are made durable together, renamed, and the renames made durable together
  (:meth:`~connector.lake.output.Output.prepare_files`). A writer may commit several times
  (checkpoints); each commit returns the files it moved into place.
* Format: zstd (snappy for files under ``SMALL_FILE_ROWS`` rows, see there), column statistics
  on, the Arrow schema stored (so ``Modified_Time`` keeps its UTC zone); dictionary encoding only
  for files big enough to gain from it. The partition key is in the path, not in the files, as
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from connector.crashpoints import crashpoint
from connector.errors import DataError
from connector.lake import layout
from connector.lake.layout import NULL_PARTITION
from connector.lake.output import Output, _clean_rel
from connector.lake.partfiles import FileShape, FinishedFile, write_partition_files
from connector.lake.spill import Run, Source, merge_in_passes, open_sink, sort_times, sort_whole
from connector.lake.stream import PartitionStream

log = logging.getLogger(__name__)

__all__ = ["NULL_PARTITION", "DatasetWriter", "WrittenFile", "part_file_name"]

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Row groups much smaller than this make files slow to scan.
ROW_GROUP_ROWS = 128 * 1024
# Upper bounds of a file: engines scan files of this size best, and no commit holds more.
TARGET_FILE_ROWS = 1_000_000
TARGET_FILE_BYTES = 128 << 20
# A spilled partition is stored in chunks of about this share of the buffer bound: a commit
# merges a partition from every run, holding one chunk of each.
SPILL_CHUNKS_PER_BUFFER = 32
# Files written at once by a commit; Parquet encoding and compression run outside the GIL.
COMMIT_THREADS = max(1, min(4, os.cpu_count() or 1))
# A Parquet file being written holds a column writer for each column (pages, dictionary,
# statistics): a schema of more columns than this is written one file at a time (measured on a
# 300-field module's Bulk read: peak RSS 275 MB with one commit thread, 302 MB with two).
WIDE_SCHEMA_COLUMNS = 256
# A partition of at most this share of the buffer bound is read back whole and sorted at once
# (spill.sort_whole): much faster than merging it from every run when the partitions are many
# and small (days; months of a small module). A bigger one is merged holding about as much
# (sorting 16 MB months whole on two threads raised a 1M-row Bulk load's peak from 267 to 394 MB).
SORT_WHOLE_BUFFERS = 0.5
# Ordered input hands the partition still growing to its file's write each time the buffer
# holds this share of a row group: few enough hand-overs to cost nothing, small enough that the
# buffer adds little to the row group being written.
STREAM_FEEDS_PER_ROW_GROUP = 4
# Batches whose size is measured (the rest are estimated by the mean row size, see _batch_bytes).
MEASURE_FIRST = 8
MEASURE_EVERY = 16


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file moved into place by :meth:`DatasetWriter.commit`."""

    path: str
    """Relative to the output root, with ``/``."""
    rows: int
    bytes: int
    partition: str
    """The partition value, e.g. ``2024-06-05`` or ``2024-06``; empty without partitions."""


def part_file_name(run_id: str, seq: int) -> str:
    """The name of a data file: ``part-<run_id>-<seq:05d>.parquet``."""
    return f"part-{run_id}-{seq:05d}.parquet"


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
        granularity: str = layout.DAY,
        target_file_rows: int = TARGET_FILE_ROWS,
        target_file_bytes: int = TARGET_FILE_BYTES,
        max_buffer_bytes: int = 16 << 20,
        row_group_rows: int = ROW_GROUP_ROWS,
        row_group_bytes: int | None = None,
        first_seq: int = 0,
        threads: int = COMMIT_THREADS,
        ordered: bool = False,
    ) -> None:
        """``partition_name`` is the daily key (``modified_date``); ``granularity`` picks the
        key actually used (:func:`connector.lake.layout.folder_key`). ``row_group_bytes``
        defaults to half of ``max_buffer_bytes``: a row group is built and encoded while the next
        one gathers."""
        if not _RUN_ID_RE.match(run_id):
            raise DataError(f"run id {run_id!r} cannot be part of a file name")
        if partition_column not in schema.names:
            raise DataError(f"{rel_dir}: no {partition_column} column to partition the files by")
        if not pa.types.is_timestamp(schema.field(partition_column).type):
            raise DataError(f"{rel_dir}: {partition_column} must be a timestamp column")
        folder_key = layout.folder_key(partition_name, granularity)
        if folder_key is not None and folder_key in schema.names:
            raise DataError(
                f"{rel_dir}: a field is named {folder_key!r}, like the partition column"
            )
        self.output = output
        self.rel_dir = _clean_rel(rel_dir)
        self.schema = schema
        self.run_id = run_id
        self.partition_column = partition_column
        self.partition_name = folder_key
        """The hive key of the folders (None: files directly under ``rel_dir``)."""
        self.granularity = granularity
        self.target_file_rows = max(1, target_file_rows)
        self.target_file_bytes = max(1, target_file_bytes)
        self.max_buffer_bytes = max(1, max_buffer_bytes)
        self.row_group_rows = max(1, row_group_rows)
        self.row_group_bytes = max(1, row_group_bytes or self.max_buffer_bytes // 2)
        self.threads = max(1, min(threads, WIDE_SCHEMA_COLUMNS // len(schema.names)))
        self.rows_written = 0
        self.max_value: datetime | None = None
        self._seq = first_seq
        self._lock = threading.Lock()
        self._scratch_seq = 0
        self._token = uuid.uuid4().hex[:8]
        self._scratch_dir: Path | None = None
        self._bytes_seen = 0
        self._batches_seen = 0
        # Each buffered batch with its rows' partition keys and sort times.
        self._pending: list[tuple[pa.RecordBatch, np.ndarray, np.ndarray]] = []
        self._buffered_bytes = 0
        self._runs: list[Run] = []
        self._finished: list[FinishedFile] = []
        self.ordered = ordered
        # Complete partitions being written in the background (ordered input), with their size.
        self._sealer: ThreadPoolExecutor | None = None
        self._sealing: list[tuple[Future[None], int]] = []
        # Ordered input: the partition still growing, handed to its file's write as it comes.
        self._stream: PartitionStream | None = None
        self._last_stream: Future[None] | None = None  # the latest stream's write

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
        micros = sort_times(times)
        # Null times get the largest key, so they sort into a partition of their own.
        keys = layout.partition_keys(micros, micros != layout.NULL_KEY, self.granularity)
        if self.ordered and (self._pending or self._stream):
            self._seal_below(int(keys.min()))
        self._pending.append((batch, keys, micros))
        nbytes = self._batch_bytes(batch)
        self._buffered_bytes += nbytes
        self._bytes_seen += nbytes
        self.rows_written += batch.num_rows
        if self.ordered:
            if self._buffered_bytes > self.row_group_bytes // STREAM_FEEDS_PER_ROW_GROUP:
                self._stream_out()
        elif self._buffered_bytes > self.max_buffer_bytes:
            self._spill()

    def _batch_bytes(self, batch: pa.RecordBatch) -> int:
        """The buffer size of ``batch``: measured on the first batches and every
        ``MEASURE_EVERY``-th after, by the mean row size so far for the rest (``nbytes`` walks
        every buffer of every column, ~0.4 ms a batch of 72 columns: a tenth of a Bulk read's
        intake when paid on each of its thousands of batches)."""
        self._batches_seen += 1
        if self._batches_seen <= MEASURE_FIRST or self._batches_seen % MEASURE_EVERY == 0:
            return int(batch.nbytes)
        return self._estimate_bytes(batch.num_rows)

    def _partitions(self) -> Iterator[tuple[str, pa.Table]]:
        """Empty the buffer: each partition's rows in arrival order, by partition value."""
        pending, self._pending, self._buffered_bytes = self._pending, [], 0
        return self._grouped(pending)

    def _grouped(
        self, pending: list[tuple[pa.RecordBatch, np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[str, pa.Table]]:
        """The rows of ``pending`` grouped by partition, sorted by time within each (ties in
        arrival order)."""
        if not pending:
            return
        table = pa.Table.from_batches([batch for batch, _, _ in pending], schema=self.schema)
        keys = np.concatenate([k for _, k, _ in pending])
        times = np.concatenate([t for _, _, t in pending])
        del pending
        # One stable sort groups each partition's rows together, in time order.
        order = np.lexsort((times, keys))
        if not np.array_equal(order, np.arange(len(order))):
            keys = keys[order]
            table = table.take(pa.array(order)).combine_chunks()
        # Rows already in order (ordered input, always) are sliced where they are: copying them
        # into one chunk held the buffer twice at each seal, spill and commit.
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

    def _partition_value(self, key: int) -> str:
        return layout.partition_value(key, self.granularity)

    def _chunk_rows(self) -> int:
        """Rows per record batch of a spilled partition (see ``SPILL_CHUNKS_PER_BUFFER``)."""
        row_bytes = max(1, self._bytes_seen // max(1, self.rows_written))
        return max(256, self.max_buffer_bytes // SPILL_CHUNKS_PER_BUFFER // row_bytes)

    def _spill(self) -> None:
        """Write the buffer to one scratch run, sorted by partition and time, in chunks."""
        path = self._scratch(f"spill-{self.run_id}-{uuid.uuid4().hex[:12]}.arrow")
        index: dict[str, list[int]] = {}
        rows: dict[str, int] = {}
        chunk = self._chunk_rows()
        written = 0
        try:
            with (
                open_sink(path) as sink,
                ipc.new_file(sink, self.schema) as out,
            ):
                for key, part in self._partitions():
                    rows[key] = part.num_rows
                    numbers = index.setdefault(key, [])
                    for offset in range(0, part.num_rows, chunk):
                        piece = part.slice(offset, chunk).combine_chunks().to_batches()
                        out.write_batch(piece[0] if len(piece) == 1 else pa.concat_batches(piece))
                        numbers.append(written)
                        written += 1
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if index:
            self._runs.append(Run(path, index, rows))
        else:
            path.unlink(missing_ok=True)
        crashpoint("writer_row_group_written")

    # --- ordered input: complete partitions written while reading goes on -------------------

    def _seal_below(self, bound: int) -> None:
        """Write out, in the background, every buffered partition whose key is below ``bound``,
        and finish the open stream's file if its partition is below it.

        With ordered input no later row belongs to such a partition, so its file can be built now.
        """
        done: list[tuple[pa.RecordBatch, np.ndarray, np.ndarray]] = []
        kept: list[tuple[pa.RecordBatch, np.ndarray, np.ndarray]] = []
        for batch, keys, times in self._pending:
            if keys.max() < bound:
                done.append((batch, keys, times))
            elif keys.min() >= bound:
                kept.append((batch, keys, times))
            else:
                below = keys < bound
                done.append((batch.filter(pa.array(below)), keys[below], times[below]))
                kept.append((batch.filter(pa.array(~below)), keys[~below], times[~below]))
        ends_stream = self._stream is not None and self._stream.number < bound
        self._pending = kept
        self._buffered_bytes = self._estimate_bytes(sum(b.num_rows for b, _, _ in kept))
        self._hand_over(list(self._grouped(done)))
        if ends_stream:
            self._end_stream()
        self._collect_sealed(wait_for_room=True)

    def _stream_out(self) -> None:
        """Empty the buffer (ordered input) once its last partition is big enough to stream (or
        is streaming, or the buffer is full): the partitions below it are sealed; the last, still
        growing, goes to its file's write as it is. Smaller partitions wait to be sealed whole."""
        top = max(int(keys.max()) for _, keys, _ in self._pending)
        if self._buffered_bytes <= self.max_buffer_bytes and (
            self._stream is None or self._stream.number != top
        ):
            rows = sum(int(np.count_nonzero(keys == top)) for _, keys, _ in self._pending)
            if self._estimate_bytes(rows) < self.row_group_bytes // STREAM_FEEDS_PER_ROW_GROUP:
                return
        *complete, (key, part) = self._partitions()
        self._hand_over(complete)
        times = sort_times(part.column(self.partition_column))
        if self._stream is not None and not self._stream.takes(key, int(times[0])):
            self._end_stream()  # another partition, or a late row: the file stays sorted
        if self._stream is None:
            # The buffer's partitions come sorted by key: the last one, growing, is ``top``.
            self._stream = PartitionStream(key, top, self.row_group_bytes // 2)
            self._stream.start(self._write_partition, after=self._last_stream)
            self._last_stream = self._stream.future
        self._feed(part, int(times[-1]))
        self._collect_sealed(wait_for_room=True)

    def _hand_over(self, parts: list[tuple[str, pa.Table]]) -> None:
        """Complete partitions: the open stream's rows finish its file; others are sealed."""
        for key, part in parts:
            if self._stream is not None and self._stream.key == key:
                times = sort_times(part.column(self.partition_column))
                if self._stream.takes(key, int(times[0])):
                    self._feed(part, int(times[-1]))
                    self._end_stream()
                    continue
                self._end_stream()
            self._seal(key, part)

    def _feed(self, part: pa.Table, last_time: int) -> None:
        stream = self._stream
        assert stream is not None and stream.future is not None
        stream.feed(part, self._estimate_bytes(part.num_rows), last_time)
        if stream.future.done():
            stream.future.result()  # the write failed: say so now
            raise DataError(f"{self.rel_dir}: the write of partition {stream.key} ended early")

    def _end_stream(self) -> None:
        """Finish the open stream's file; its write is then collected like a sealed one."""
        stream, self._stream = self._stream, None
        if stream is not None and stream.future is not None:
            stream.close()
            self._sealing.append((stream.future, stream.queued))

    def _seal(self, key: str, part: pa.Table) -> None:
        """Write the complete partition ``key`` in the background (ordered input: ``part`` is
        all of it, already in time order, for ordered input never spills)."""
        if self._sealer is None:
            self._sealer = ThreadPoolExecutor(self.threads, thread_name_prefix="parquet")
        future = self._sealer.submit(self._write_partition, key, iter(part.to_batches()))
        self._sealing.append((future, self._estimate_bytes(part.num_rows)))

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
        self._end_stream()
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
        write_partition_files(
            key,
            pieces,
            schema=self.schema,
            shape=FileShape(
                self.row_group_rows,
                self.row_group_bytes,
                self.target_file_rows,
                self.target_file_bytes,
            ),
            new_file=self._new_file,
            estimate_bytes=self._estimate_bytes,
            finished=self._add_finished,
        )

    def _add_finished(self, finished: FinishedFile) -> None:
        with self._lock:
            self._finished.append(finished)

    @staticmethod
    def _take_spilled(key: str, runs: list[Run]) -> list[tuple[Run, list[int], int]]:
        """Where ``key``'s rows are in ``runs`` (run, batch numbers, rows), taken out of the
        runs' indexes so that no later write reads them again (a partition written early, while
        reading goes on, is not written a second time by the commit)."""
        return [(run, run.index.pop(key), run.rows.pop(key, 0)) for run in runs if key in run.index]

    def _fits_whole(self, rows: int) -> bool:
        return self._estimate_bytes(rows) <= int(SORT_WHOLE_BUFFERS * self.max_buffer_bytes)

    def _pieces(
        self, spilled: list[tuple[Run, list[int], int]], tail: pa.Table | None
    ) -> Iterator[pa.RecordBatch]:
        """A partition's rows in time order: its spilled pieces (read when the writer gets to
        them) with the rows still buffered, sorted whole when they fit, else merged."""
        chunk = self._chunk_rows()
        sources = [
            Source(run.pieces(numbers), self._estimate_bytes(min(count, chunk)))
            for run, numbers, count in spilled
        ]
        rows = sum(count for _, _, count in spilled)
        if tail is not None:
            sources.append(Source(iter(tail.to_batches()), 0))  # in memory already
            rows += tail.num_rows
        if self._fits_whole(rows):
            return sort_whole([source.batches for source in sources], self.partition_column)
        return merge_in_passes(
            sources,
            self.partition_column,
            budget=int(SORT_WHOLE_BUFFERS * self.max_buffer_bytes),
            scratch=lambda: self._scratch(f"merge-{self.run_id}-{uuid.uuid4().hex[:12]}.arrow"),
            chunk_rows=chunk,
            row_bytes=self._estimate_bytes(1),
        )

    def commit(self) -> list[WrittenFile]:
        """Write out every buffer and spilled run, then move the files into place, durably.

        Returns the files this call put in place; the writer stays usable for a later commit.
        """
        if self._stream is not None:
            try:
                self._hand_over(list(self._partitions()))  # buffered rows finish the open file
            finally:
                self._end_stream()
        self._stop_sealing()
        buffers = dict(self._partitions())
        runs, self._runs = self._runs, []
        keys = sorted(set(buffers).union(*(run.index for run in runs)))
        try:
            # A partition's merge holds a bounded share of the buffer however many runs it
            # reads (spill.merge_in_passes), so big partitions are written a few at once too.
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
                folder = layout.partition_folder(
                    self.rel_dir, self.partition_name, handle.partition
                )
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
        if self._stream is not None:
            self._stream.abandon()
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
