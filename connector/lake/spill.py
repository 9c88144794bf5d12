"""The writer's scratch runs, and the merge that reads a partition back from them in time order.

:class:`~connector.lake.writer.DatasetWriter` spills its buffer, past its memory bound, to one
Arrow IPC file per spill (a *run*): every buffered partition, its rows sorted by time, as a few
record batches of at most ``chunk_rows`` rows. At commit a partition's file is built from its
pieces in every run plus the rows still buffered, each source sorted by time:
:func:`merge_sorted` interleaves them into one stream sorted by time while holding only one
chunk per source, so a file's rows are in ``Modified_Time`` order however the reader delivered
them (Bulk Read's CSV is in no useful order), and memory stays bounded: a partition spread
over more runs than its merge may hold at once is merged in passes (:func:`merge_in_passes`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from connector.lake.layout import NULL_KEY

# Arrow's file streams are unbuffered: without this an IPC run costs a write(2) per column buffer
# of every partition (measured: ~200 per partition of 72 columns, ten times the spill's time) and
# a Parquet file one per page header and page.
WRITE_BUFFER_BYTES = 1 << 20


def sort_times(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as int64 UTC microseconds, nulls as the greatest value (they sort last)."""
    micros = pc.cast(column.cast(pa.timestamp("us", tz="UTC")), pa.int64())
    return pc.fill_null(micros, NULL_KEY).to_numpy(zero_copy_only=False)


@dataclass
class Run:
    """One spill: each buffered partition as a few record batches of an Arrow IPC file."""

    path: Path
    index: dict[str, list[int]]
    """Partition value -> the numbers of its record batches, in time order."""
    rows: dict[str, int] = field(default_factory=dict)
    """Partition value -> its rows in this run."""
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

    def pieces(self, numbers: list[int]) -> Iterator[pa.RecordBatch]:
        """The batches ``numbers``, each read when the caller gets to it."""
        for number in numbers:
            piece = self.read(number)
            if piece.num_rows:
                yield piece

    def remove(self) -> None:
        """Close the reader and delete the file."""
        with self.lock:
            if self.source is not None:
                with contextlib.suppress(OSError, pa.ArrowException):
                    self.source.close()
            self.source = self.reader = None
        self.path.unlink(missing_ok=True)


def open_sink(path: Path) -> pa.NativeFile:
    """A new local file behind a write buffer (its scratch directory recreated if removed)."""
    try:
        raw = pa.OSFile(str(path), "wb")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = pa.OSFile(str(path), "wb")
    return pa.BufferedOutputStream(raw, WRITE_BUFFER_BYTES)


@dataclass
class _Head:
    """The batch a source is at, its sort times, and the rest of the source."""

    batch: pa.RecordBatch
    times: np.ndarray
    rest: Iterator[pa.RecordBatch]


def _advance(source: Iterator[pa.RecordBatch], column: str) -> _Head | None:
    for batch in source:
        if batch.num_rows:
            return _Head(batch, sort_times(batch.column(column)), source)
    return None


def sort_whole(sources: list[Iterator[pa.RecordBatch]], column: str) -> Iterator[pa.RecordBatch]:
    """The rows of ``sources`` as one table sorted by ``column`` (stably: ties keep the order of
    the sources), for a partition small enough to hold whole.

    One sort in C instead of :func:`merge_sorted`'s rounds, each of which slices every source:
    with a spill per 16 MB a 1M-row module has ~60 runs, and merging a partition from all of
    them took longer than writing it. The columns are reordered one at a time and each source
    column dropped once reordered, so the rows are held about once, not twice.
    """
    table = pa.Table.from_batches([batch for source in sources for batch in source])
    if table.num_rows == 0:
        return
    times = sort_times(table.column(column))
    # numpy's stable sort on int64 runs is a timsort: the sources are sorted runs already.
    order = np.argsort(times, kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        # Already in order (ordered input): the batches as they are, not a copy of them.
        yield from table.to_batches()
        return
    schema, columns = table.schema, table.columns
    del table
    indices = pa.array(order)
    for i in range(len(columns)):
        columns[i] = columns[i].take(indices).combine_chunks()
    yield pa.RecordBatch.from_arrays(columns, schema=schema)


def merge_sorted(sources: list[Iterator[pa.RecordBatch]], column: str) -> Iterator[pa.RecordBatch]:
    """The rows of ``sources`` (each sorted by ``column``) as batches sorted by ``column``.

    Each round takes, from every source, the rows up to the smallest of the sources' current
    last times: no row still unread can be earlier, so those rows sorted (stably, so ties keep
    the order of the sources) come next. At least one source's batch is used up per round.
    """
    heads = [head for head in (_advance(s, column) for s in sources) if head is not None]
    while len(heads) > 1:
        bound = min(int(head.times[-1]) for head in heads)
        parts: list[pa.RecordBatch] = []
        times: list[np.ndarray] = []
        for head in heads:
            n = int(np.searchsorted(head.times, bound, side="right"))
            if n:
                parts.append(head.batch.slice(0, n))
                times.append(head.times[:n])
                head.batch, head.times = head.batch.slice(n), head.times[n:]
        advanced = [head if head.batch.num_rows else _advance(head.rest, column) for head in heads]
        heads = [head for head in advanced if head is not None]
        order = np.argsort(np.concatenate(times), kind="stable")
        if np.array_equal(order, np.arange(len(order))):
            # The sources do not overlap here (ordered input: every run's piece precedes the
            # next): the slices as they are, not a copy of them.
            yield from parts
            continue
        table = pa.Table.from_batches(parts)
        yield from table.take(pa.array(order)).combine_chunks().to_batches()
    if heads:
        yield heads[0].batch
        yield from heads[0].rest


@dataclass
class Source:
    """One sorted source of a partition's rows, and the most of it a merge holds at once."""

    batches: Iterator[pa.RecordBatch]
    held: int
    """Bytes of its largest batch (a run's piece; 0 for rows already in memory)."""


def merge_in_passes(
    sources: list[Source],
    column: str,
    *,
    budget: int,
    scratch: Callable[[], Path],
    chunk_rows: int,
    row_bytes: int,
) -> Iterator[pa.RecordBatch]:
    """:func:`merge_sorted` of ``sources``, holding about ``budget`` bytes of their batches.

    A merge holds one batch of every source. A big partition of unordered input (Bulk Read) has
    a small piece in each of many runs (a 1M-row module of 300 columns: ~280 runs), so holding
    one batch of each is holding the whole partition. While the sources hold more than
    ``budget`` together, consecutive sources that fit in it are merged into a scratch run
    (``scratch()`` names it; batches of ``chunk_rows`` rows of about ``row_bytes`` each), a pass
    that costs one more local write and read of their rows; the runs are removed at the end.
    """
    made: list[Run] = []
    try:
        while len(sources) > 2 and sum(source.held for source in sources) > budget:
            merged: list[Source] = []
            for group in _groups(sources, budget):
                if len(group) == 1:
                    merged.append(group[0])
                    continue
                run = _merged_run(group, column, scratch(), chunk_rows)
                made.append(run)
                rows = run.rows[""]
                merged.append(Source(run.pieces(run.index[""]), min(rows, chunk_rows) * row_bytes))
            sources = merged
        yield from merge_sorted([source.batches for source in sources], column)
    finally:
        for run in made:
            run.remove()


def _groups(sources: list[Source], budget: int) -> Iterator[list[Source]]:
    """Consecutive sources that hold at most ``budget`` together; at least two a group, so that
    every pass makes fewer sources."""
    group: list[Source] = []
    held = 0
    for source in sources:
        if len(group) >= 2 and held + source.held > budget:
            yield group
            group, held = [], 0
        group.append(source)
        held += source.held
    if group:
        yield group


def _merged_run(group: list[Source], column: str, path: Path, chunk_rows: int) -> Run:
    """``group`` merged into one scratch run (partition ``""``), in batches of ``chunk_rows``."""
    numbers: list[int] = []
    rows = 0
    try:
        with open_sink(path) as sink:
            writer: ipc.RecordBatchFileWriter | None = None
            for batch in merge_sorted([source.batches for source in group], column):
                for offset in range(0, batch.num_rows, chunk_rows):
                    piece = batch.slice(offset, chunk_rows)
                    if writer is None:
                        writer = ipc.new_file(sink, piece.schema)
                    writer.write_batch(piece)
                    numbers.append(len(numbers))
                    rows += piece.num_rows
            if writer is not None:
                writer.close()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Run(path, {"": numbers}, {"": rows})
