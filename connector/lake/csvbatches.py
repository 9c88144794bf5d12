"""Bulk Read CSV -> Arrow batches of a module's schema, streamed block by block.

The text of each cell goes through the same cast as the JSON readers' (:func:`cast_text`), so a
record read from CSV and from JSON gives an equal Arrow row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pyarrow.csv as pacsv

from connector.errors import DataError
from connector.lake.schema import ID, RAW_KIND, ModuleSchema, assemble, cast_text


class _Prefixed(io.RawIOBase):
    """A readable stream that first returns ``head`` and then the rest of ``tail``."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head = head
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._tail.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_header(stream: BinaryIO, module: str) -> tuple[list[str], bytes]:
    """Read the CSV header line; return its names and every byte read so far."""
    chunks: list[bytes] = []
    while True:
        chunk = stream.read(64 << 10)
        if not chunk:
            break
        chunks.append(chunk)
        if b"\n" in chunk:
            break
    head = b"".join(chunks)
    line = head.split(b"\n", 1)[0]
    if not line.strip():
        raise DataError(f"{module}: the Bulk Read CSV has no header (empty or truncated file)")
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise DataError(f"{module}: the Bulk Read CSV header is not UTF-8", module=module) from exc
    try:
        names = next(csv.reader([text]))
    except (csv.Error, StopIteration) as exc:
        raise DataError(f"{module}: the Bulk Read CSV header cannot be parsed ({exc})") from None
    return names, head


def batches_from_csv(
    stream: BinaryIO | pa.NativeFile, schema: ModuleSchema, *, block_size: int = 8 << 20
) -> Iterator[pa.RecordBatch]:
    """Stream a Bulk Read CSV into batches of ``schema.arrow``, one per block of ``block_size`` bytes.

    The header may list the columns in any order, leave some out (they read as null) or add others
    (ignored); the ``id`` column is required. An Arrow file (``pa.OSFile``) is read by Arrow's own
    threads, without a Python call per block.
    """
    module = schema.module
    header, head = _read_header(stream, module)
    if ID not in header:
        raise DataError(f"{module}: the Bulk Read CSV has no 'id' column (header: {header[:10]})")
    names = schema.names
    reader_opts = pacsv.ReadOptions(block_size=block_size, use_threads=True)
    parse_opts = pacsv.ParseOptions(newlines_in_values=True, double_quote=True, escape_char=False)
    convert_opts = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        include_columns=names,
        include_missing_columns=True,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
        check_utf8=True,
    )
    source: pa.NativeFile | io.BufferedReader
    if isinstance(stream, pa.NativeFile) and stream.seekable():
        stream.seek(0)  # the header is read again by Arrow
        source = stream
    else:
        source = io.BufferedReader(_Prefixed(head, cast(BinaryIO, stream)), buffer_size=1 << 20)
    try:
        reader = pacsv.open_csv(
            source, read_options=reader_opts, parse_options=parse_opts, convert_options=convert_opts
        )
        while True:
            try:
                raw = reader.read_next_batch()
            except StopIteration:
                return
            yield _convert_csv_batch(raw, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"{module}: the Bulk Read CSV cannot be parsed ({str(exc).splitlines()[0]})",
            module=module,
        ) from exc


def _convert_csv_batch(raw: pa.RecordBatch, schema: ModuleSchema) -> pa.RecordBatch:
    ids = raw.column(ID)
    columns: dict[str, pa.Array] = {}
    unfit: dict[str, pa.Array] = {}
    for i, (meta, kind, arrow_field) in enumerate(
        zip(schema.fields, schema.kinds, schema.arrow, strict=True)
    ):
        if kind == RAW_KIND:
            continue
        name = meta.api_name
        columns[name], leftover = cast_text(
            schema.module, name, kind, arrow_field.type, raw.column(i), ids
        )
        if leftover is not None:
            unfit[name] = leftover
    return assemble(schema, columns, unfit, raw.num_rows)
