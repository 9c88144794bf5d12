"""A partition's rows, in time order, written as Parquet files of bounded size, a row group at a
time.

Files close at ``target_file_rows`` rows or ``target_file_bytes`` bytes; row groups hold at most
``row_group_rows`` rows or, by the writer's estimate, ``row_group_bytes`` bytes, and only one is
held in memory at a time. Each finished file is in the scratch area until a commit moves it into
place; a file that fails half-way is removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connector.crashpoints import crashpoint
from connector.lake.spill import open_sink

# Small files gain nothing from dictionary pages (measured: larger and up to 2x slower to write
# at 50-5,000 rows of 72 columns); big files of real CRM data (picklists, owners) do.
DICTIONARY_MIN_ROWS = 10_000
# zstd has a fixed cost per column chunk (~13 us: ~1 ms of a 72-column file, half its write time
# at 50 rows) and saves little on a few rows: measured on 72 columns, snappy writes a 50-row file
# in 1.1 ms instead of 2.1 ms for 13 % more bytes (44 vs 39 KB); at 500 rows it would cost 52 %
# more bytes. Daily partitions of incremental runs and of small modules are mostly such files.
SMALL_FILE_ROWS = 100


@dataclass(frozen=True)
class FileShape:
    """The size bounds of files and row groups."""

    row_group_rows: int
    row_group_bytes: int
    target_file_rows: int
    target_file_bytes: int


@dataclass
class FinishedFile:
    """A complete file in the scratch area, waiting for the commit that moves it into place."""

    tmp: Path
    partition: str
    order: int
    """Files of one partition are named in this order at commit."""
    rows: int
    size: int


@dataclass
class _OpenFile:
    writer: pq.ParquetWriter
    sink: pa.NativeFile
    order: int
    tmp: Path
    rows: int = 0


def write_partition_files(
    key: str,
    pieces: Iterator[pa.RecordBatch],
    *,
    schema: pa.Schema,
    shape: FileShape,
    new_file: Callable[[], tuple[int, Path]],
    estimate_bytes: Callable[[int], int],
    finished: Callable[[FinishedFile], None],
) -> None:
    """Write partition ``key``'s rows (``pieces``, in order) as files of ``shape``; each complete
    file goes to ``finished``. ``new_file`` gives a scratch path and its order."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    current: _OpenFile | None = None

    def close() -> None:
        nonlocal current
        assert current is not None
        current.writer.close()
        nbytes = current.sink.tell()
        current.sink.close()
        finished(FinishedFile(current.tmp, key, current.order, current.rows, nbytes))
        current = None

    def flush() -> None:
        nonlocal current
        table = pa.Table.from_batches(pending, schema=schema)
        pending.clear()
        offset = 0
        while offset < table.num_rows:
            if current is None:
                current = _open(schema, new_file, table.num_rows - offset)
            # One row group at a time, so a file closes at the byte target too.
            chunk = table.slice(
                offset, min(shape.row_group_rows, shape.target_file_rows - current.rows)
            )
            current.writer.write_table(chunk, row_group_size=shape.row_group_rows)
            crashpoint("writer_row_group_written")
            current.rows += chunk.num_rows
            offset += chunk.num_rows
            if (
                current.rows >= shape.target_file_rows
                or current.sink.tell() >= shape.target_file_bytes
            ):
                close()

    try:
        for piece in pieces:
            pending.append(piece)
            rows += piece.num_rows
            size += estimate_bytes(piece.num_rows)
            if rows >= shape.row_group_rows or size >= shape.row_group_bytes:
                flush()
                rows = size = 0
        if pending:
            flush()
        if current is not None:
            close()
    except BaseException:
        if current is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                current.writer.close()
            with contextlib.suppress(OSError, pa.ArrowException):
                current.sink.close()
            current.tmp.unlink(missing_ok=True)
        raise


def _open(schema: pa.Schema, new_file: Callable[[], tuple[int, Path]], rows: int) -> _OpenFile:
    """A new scratch file; its codec and dictionary use follow the rows it is opened for."""
    order, tmp = new_file()
    sink = open_sink(tmp)
    try:
        writer = pq.ParquetWriter(
            sink,
            schema,
            compression="zstd" if rows >= SMALL_FILE_ROWS else "snappy",
            use_dictionary=rows >= DICTIONARY_MIN_ROWS,
            write_statistics=True,
            store_schema=True,
        )
    except BaseException:
        with contextlib.suppress(OSError, pa.ArrowException):
            sink.close()
        tmp.unlink(missing_ok=True)
        raise
    return _OpenFile(writer, sink, order, tmp)
