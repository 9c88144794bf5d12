"""Materialise a module "as it is now" from the change log an extract writes.

An extract appends every version of a record it sees to ``DIR/<Module>/`` (hive partitions
``modified_date=YYYY-MM-DD``) and every deletion to ``DIR/_deleted/<Module>/``. Loaders that want
the current table rather than the change log run :func:`materialise_snapshot`: for each ``id`` the
row with the greatest ``Modified_Time``, minus the ids whose latest tombstone is at or after that
row's ``Modified_Time``, written as one Parquet file.

The work is done with pyarrow in two passes so that memory stays proportional to the *keys* of the
module, not to its full width:

1. read only ``id`` and ``Modified_Time`` of every file, remembering (file, row) of each version;
   sort by ``id`` then ``Modified_Time`` descending, keep the first row of each ``id``; drop the
   ids deleted at or after that time (a hash join against the tombstones' latest ``deleted_time``);
2. read the files that hold a winning row one at a time, a row group at a time, take those rows,
   conform them to the unified schema and gather them into the output's row groups (a few large
   ones, up to ``ROW_GROUP_ROWS`` rows or ``ROW_GROUP_BYTES``, however small the source files).

Peak memory is therefore about (``id`` + ``Modified_Time`` + two integers) per stored version, plus
one row group of a data file and one output row group. DuckDB could stream the whole thing, but pyarrow is a core
dependency and DuckDB is not.

Files of runs that crashed before committing their state may still be present (the next extract
removes them). They hold genuine versions read from Zoho, and keeping the latest version per id is
insensitive to duplicates, so the snapshot reads them like any other file.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from connector.errors import ConfigError, DataError
from connector.lake.output import LocalOutput, Output

ID = "id"
MODIFIED = "Modified_Time"
DELETED_TIME = "deleted_time"
DELETED_DIR = "_deleted"
SINGLE_FILE_NAME = "part-00000.parquet"
_TS = pa.timestamp("us", tz="UTC")
# The snapshot's row groups: as large as the extract's own (engines scan such groups best),
# bounded in bytes too so that a wide module's group stays small in memory.
ROW_GROUP_ROWS = 128 * 1024
ROW_GROUP_BYTES = 64 << 20


@dataclass(frozen=True)
class SnapshotResult:
    """What :func:`materialise_snapshot` wrote."""

    rows: int
    path: str
    versions_read: int = 0
    deleted: int = 0
    files_read: int = 0


def materialise_snapshot(output: str, module: str, out: str) -> SnapshotResult:
    """Write ``module`` of the extract in ``output`` as it is now to ``out``.

    ``output`` is the extract's directory (a local path or an fsspec URL such as ``s3://b/p``).
    ``out`` ending in ``.parquet`` is written as that single file; anything else is a directory
    that receives one file, ``part-00000.parquet``. The file appears atomically (a temporary file
    renamed into place, or one complete object upload). Columns are the union of the columns of
    every data file (a column missing from an older file is null there), without the partition
    column. Memory is proportional to the number of stored versions of the module (their ids and
    times), not to the width of its rows.

    Raises :class:`ConfigError` when the module has no data in ``output`` (the message lists the
    modules that do) and :class:`DataError` when files disagree on a column's type.
    """
    as_file = check_out(output, out)
    fs, root = fsspec.core.url_to_fs(output)
    root = root.rstrip("/") or "/"
    module_name = _find_module(fs, root, module, output)
    module_dir = posixpath.join(root, module_name)
    files = _parquet_files(fs, module_dir)
    if not files:
        raise ConfigError(
            f"module {module_name} has no data files in {output}: run an extract for it first"
        )
    schema, partition_keys = _unified_schema(fs, module_dir, files)
    if ID not in schema.names:
        raise DataError(
            f"the data files of {module_name} have no {ID!r} column", module=module_name
        )

    keys = _read_keys(fs, files, schema)
    winners = _latest_per_id(keys)
    tombstones = _latest_tombstones(fs, posixpath.join(root, DELETED_DIR, module_name))
    kept = _drop_deleted(winners, tombstones)
    rows = _write_rows(fs, files, kept, schema, partition_keys, out, as_file=as_file)
    return SnapshotResult(
        rows=kept.num_rows,
        path=rows,
        versions_read=keys.num_rows,
        deleted=winners.num_rows - kept.num_rows,
        files_read=len(files),
    )


def _find_module(fs: Any, root: str, module: str, output: str) -> str:
    """Return the directory name of ``module`` in ``root`` (exact, else a unique case-fold match)."""
    existing = _module_names(fs, root)
    if module in existing:
        return module
    folded = [name for name in existing if name.casefold() == module.casefold()]
    if len(folded) == 1:
        return folded[0]
    listed = ", ".join(existing) if existing else "none"
    raise ConfigError(f"no module {module!r} in {output}; modules there: {listed}")


def _module_names(fs: Any, root: str) -> list[str]:
    if not fs.isdir(root):
        return []
    names = []
    for entry in fs.ls(root, detail=True):
        name = posixpath.basename(str(entry["name"]).rstrip("/"))
        # _state, _deleted, _tmp, _runs and hidden entries are the extract's bookkeeping.
        if entry.get("type") == "directory" and not name.startswith(("_", ".")):
            names.append(name)
    return sorted(names)


def _parquet_files(fs: Any, directory: str) -> list[str]:
    if not fs.isdir(directory):
        return []
    found = []
    for path in fs.find(directory):
        rel = posixpath.relpath(str(path), directory)
        parts = rel.split("/")
        if rel.endswith(".parquet") and not any(p.startswith(("_", ".")) for p in parts):
            found.append(str(path))
    return sorted(found)


def _partition_keys(directory: str, path: str) -> set[str]:
    rel = posixpath.relpath(path, directory)
    return {part.split("=", 1)[0] for part in rel.split("/")[:-1] if "=" in part}


def _read_schema(fs: Any, path: str) -> pa.Schema:
    with fs.open(path, "rb") as handle:
        return pq.read_schema(handle)


def _unified_schema(fs: Any, module_dir: str, files: list[str]) -> tuple[pa.Schema, set[str]]:
    """The union of the files' columns (first appearance order) minus hive partition keys."""
    partition_keys: set[str] = set()
    schemas = []
    for path in files:
        partition_keys |= _partition_keys(module_dir, path)
        schemas.append(_read_schema(fs, path))
    trimmed = [
        pa.schema([f for f in s if f.name not in partition_keys], metadata=s.metadata)
        for s in schemas
    ]
    try:
        unified = pa.unify_schemas(trimmed, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            f"the data files of {posixpath.basename(module_dir)} disagree on a column type "
            f"and cannot be combined: {exc}"
        ) from exc
    # Keys are compared as UTC microseconds whatever unit an older file used.
    fields = [
        pa.field(f.name, pa.string(), f.nullable, f.metadata)
        if f.name == ID
        else pa.field(f.name, _TS, f.nullable, f.metadata)
        if f.name == MODIFIED and pa.types.is_timestamp(f.type)
        else f
        for f in unified
    ]
    return pa.schema(fields, metadata=unified.metadata), partition_keys


def _as_utc_us(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_timestamp(column.type) and column.type.tz is None:
        # A naive timestamp in our files is UTC by contract.
        column = pc.assume_timezone(column, "UTC")
    return column.cast(_TS)


def _read_keys(fs: Any, files: list[str], schema: pa.Schema) -> pa.Table:
    """Pass 1: ``id``, ``Modified_Time``, file index and row index of every stored version."""
    parts = []
    for index, path in enumerate(files):
        with fs.open(path, "rb") as handle:
            pf = pq.ParquetFile(handle)
            names = set(pf.schema_arrow.names)
            columns = [c for c in (ID, MODIFIED) if c in names]
            table = pf.read(columns=columns)
        n = table.num_rows
        if ID in names:
            ids = table.column(ID).cast(pa.string())
        else:
            ids = pa.chunked_array([pa.nulls(n, pa.string())])
        if MODIFIED in names:
            times = _as_utc_us(table.column(MODIFIED))
        else:
            times = pa.chunked_array([pa.nulls(n, _TS)])
        parts.append(
            pa.table(
                {
                    ID: ids,
                    MODIFIED: times,
                    "_file": pa.array(np.full(n, index, dtype=np.int32)),
                    "_row": pa.array(np.arange(n, dtype=np.int64)),
                }
            )
        )
    keys = pa.concat_tables(parts).combine_chunks()
    return keys.filter(pc.is_valid(keys.column(ID)))


def _latest_per_id(keys: pa.Table) -> pa.Table:
    """For each id the version with the greatest Modified_Time (a null time loses)."""
    if keys.num_rows == 0:
        return keys
    # A null time sorts as the oldest possible (spelled out: null_placement per key is pyarrow 25+).
    oldest = pa.scalar(datetime.min.replace(tzinfo=timezone.utc), _TS)
    sortable = keys.append_column("_sort", pc.fill_null(keys.column(MODIFIED), oldest))
    order = pc.sort_indices(sortable, sort_keys=[(ID, "ascending"), ("_sort", "descending")])
    ordered = keys.take(order)
    ids = ordered.column(ID).combine_chunks()
    n = len(ids)
    # Sorted by id, so the first row of each run of equal ids is that id's latest version.
    changed = pc.not_equal(ids.slice(1), ids.slice(0, n - 1))
    first = pa.concat_arrays([pa.array([True]), changed])
    return ordered.filter(first)


def _latest_tombstones(fs: Any, deleted_dir: str) -> pa.Table:
    """``id`` → greatest ``deleted_time`` over every tombstone of the module (may be empty)."""
    empty = pa.table({ID: pa.array([], pa.string()), "_deleted": pa.array([], _TS)})
    files = _parquet_files(fs, deleted_dir)
    parts = []
    for path in files:
        with fs.open(path, "rb") as handle:
            pf = pq.ParquetFile(handle)
            if not {ID, DELETED_TIME} <= set(pf.schema_arrow.names):
                raise DataError(f"tombstone file {path} lacks {ID!r} or {DELETED_TIME!r}")
            table = pf.read(columns=[ID, DELETED_TIME])
        parts.append(
            pa.table(
                {
                    ID: table.column(ID).cast(pa.string()),
                    "_deleted": _as_utc_us(table.column(DELETED_TIME)),
                }
            )
        )
    if not parts:
        return empty
    tombstones = pa.concat_tables(parts)
    grouped = tombstones.group_by(ID).aggregate([("_deleted", "max")])
    return grouped.rename_columns([name.removesuffix("_max") for name in grouped.column_names])


def _drop_deleted(winners: pa.Table, tombstones: pa.Table) -> pa.Table:
    """Keep the winners that no tombstone at or after their Modified_Time removes."""
    if winners.num_rows == 0 or tombstones.num_rows == 0:
        return winners.select([ID, MODIFIED, "_file", "_row"])
    joined = winners.join(tombstones, keys=ID, join_type="left outer")
    deleted_at = joined.column("_deleted")
    modified = joined.column(MODIFIED)
    # A version without Modified_Time cannot be ordered against a deletion: the deletion wins.
    survives = pc.or_kleene(
        pc.is_null(deleted_at),
        pc.fill_null(pc.less(deleted_at, modified), False),
    )
    return joined.filter(survives).select([ID, MODIFIED, "_file", "_row"])


def _conform(table: pa.Table, schema: pa.Schema, path: str) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones null, types cast."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if field.name == MODIFIED:
                column = _as_utc_us(column)
            if column.type != field.type:
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise DataError(
                        f"column {field.name!r} of {path} cannot be read as {field.type}: {exc}",
                        field=field.name,
                    ) from exc
            columns.append(column)
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _winning_rows(kept: pa.Table) -> Iterable[tuple[int, np.ndarray]]:
    """(file index, row indices in that file) in file order, rows ascending."""
    if kept.num_rows == 0:
        return []
    order = pc.sort_indices(kept, sort_keys=[("_file", "ascending"), ("_row", "ascending")])
    ordered = kept.select(["_file", "_row"]).take(order)
    file_idx = ordered.column("_file").to_numpy()
    rows = ordered.column("_row").to_numpy()
    starts = np.concatenate(([0], np.flatnonzero(np.diff(file_idx)) + 1))
    ends = np.append(starts[1:], len(file_idx))
    return [
        (int(file_idx[start]), rows[start:end]) for start, end in zip(starts, ends, strict=True)
    ]


def _file_rows(source: Any, rows: np.ndarray) -> Iterable[pa.Table]:
    """The rows ``rows`` (ascending) of one Parquet file, read a row group at a time: a file
    may hold a million rows, the winners of a snapshot only some of them."""
    pf = pq.ParquetFile(source)
    first = 0
    for group in range(pf.num_row_groups):
        size = pf.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(rows, [first, first + size])
        if hi > lo:
            yield pf.read_row_group(group).take(pa.array(rows[lo:hi] - first))
        first += size


class _RowGroups:
    """Gather the snapshot's rows into row groups of about ``ROW_GROUP_ROWS`` rows or
    ``ROW_GROUP_BYTES`` bytes, whichever comes first, however small the files they come from:
    a few large row groups scan fast, one per source file (a month, a day) does not."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer = writer
        self.pending: list[pa.Table] = []
        self.rows = self.bytes = 0

    def add(self, table: pa.Table) -> None:
        """Take some rows; write a row group when enough are gathered."""
        if table.num_rows == 0:
            return
        self.pending.append(table)
        self.rows += table.num_rows
        self.bytes += table.nbytes
        if self.rows >= ROW_GROUP_ROWS or self.bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is gathered as one row group."""
        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.pending, self.rows, self.bytes = [], 0, 0


def _target(out: str, *, as_file: bool) -> tuple[Output, str, str]:
    """Where the snapshot goes: the output holding its directory, its name there, its path."""
    fs, path = fsspec.core.url_to_fs(out)
    path = path.rstrip("/")
    if isinstance(fs, LocalFileSystem):
        final = path if as_file else posixpath.join(path, SINGLE_FILE_NAME)
        directory, name = os.path.split(final)
        return Output.open(directory or "."), name, final
    url = out.rstrip("/")
    if not as_file:
        url = f"{url}/{SINGLE_FILE_NAME}"
    scheme, _, rest = url.partition("://")
    directory, _, name = rest.rpartition("/")
    shown = out if as_file else f"{out.rstrip('/')}/{SINGLE_FILE_NAME}"
    return Output.open(f"{scheme}://{directory}"), name, shown


# The extract's own folders: never a place for a snapshot, although their names start with "_".
_BOOKKEEPING = frozenset({DELETED_DIR, "_state", "_runs", "_tmp"})


def check_out(output: str, out: str) -> bool:
    """Check the ``--out`` of a snapshot of ``output``; True for one file, False for a dataset.

    ``FILE.parquet`` is one file; a directory (a path ending in ``/``, an existing directory, or
    a name without an extension) receives a dataset of one file. Any other extension, an existing
    file that is not ``.parquet``, or a place inside ``output`` where dataset readers would take
    the snapshot for part of the extract (anywhere but a folder of its own starting with ``_``),
    is a :class:`ConfigError`, raised before anything is read.
    """
    fs, path = fsspec.core.url_to_fs(out)
    path = str(path).rstrip("/")
    name = posixpath.basename(path)
    is_dir = out.endswith("/") or fs.isdir(path)
    as_file = not is_dir and name.lower().endswith(".parquet")
    if not is_dir and not as_file:
        if fs.exists(path):
            raise ConfigError(
                f"--out {out} is an existing file, not a .parquet file: give FILE.parquet or a "
                "directory"
            )
        suffix = posixpath.splitext(name)[1]
        if suffix:
            raise ConfigError(
                f"--out {out}: a snapshot is Parquet, written as FILE.parquet (one file) or into "
                f"a directory (a dataset), not a {suffix} file"
            )
    _refuse_inside(output, out, fs, path if as_file else posixpath.join(path, SINGLE_FILE_NAME))
    return as_file


def _refuse_inside(output: str, out: str, out_fs: Any, out_path: str) -> None:
    """A :class:`ConfigError` when the file ``out_path`` lies inside ``output`` where datasets
    live (anywhere but a folder of its own starting with ``_``)."""
    fs, root = fsspec.core.url_to_fs(output)
    if type(fs) is not type(out_fs):
        return
    root = str(root).rstrip("/")
    if isinstance(fs, LocalFileSystem):
        root, out_path = os.path.realpath(root), os.path.realpath(out_path)
        rel = os.path.relpath(out_path, root).replace(os.sep, "/")
        inside = rel != ".." and not rel.startswith("../")
    else:
        inside = out_path == root or out_path.startswith(root + "/")
        rel = out_path[len(root) :].lstrip("/") or "."
    if not inside:
        return
    first = rel.split("/")[0]
    if first.startswith("_") and first not in _BOOKKEEPING and "/" in rel:
        return
    raise ConfigError(
        f"--out {out} is inside the output {output}, where it would be read as part of the "
        f"extract's datasets: write it outside {output}, or under a folder of its own whose name "
        "starts with '_' (e.g. _snapshots/)"
    )


def _scratch_file(target: Output, name: str) -> str:
    """A local file to build the snapshot in before :meth:`Output.write_file_atomic` places it."""
    if isinstance(target, LocalOutput):
        # Beside the target (one filesystem, so the move is a rename), hidden by its leading dot.
        target.path.mkdir(parents=True, exist_ok=True)
        return str(target.path / f".{name}.{uuid.uuid4().hex}.tmp")
    handle, tmp = tempfile.mkstemp(suffix=".parquet")
    os.close(handle)
    return tmp


def _write_rows(
    fs: Any,
    files: list[str],
    kept: pa.Table,
    schema: pa.Schema,
    partition_keys: set[str],
    out: str,
    *,
    as_file: bool,
) -> str:
    """Pass 2: write the winning rows to ``out`` atomically; return the final path."""
    target, name, final = _target(out, as_file=as_file)
    tmp = _scratch_file(target, name)
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            groups = _RowGroups(writer)
            for index, rows in _winning_rows(kept):
                with fs.open(files[index], "rb") as source:
                    for table in _file_rows(source, rows):
                        dropped = [c for c in table.column_names if c in partition_keys]
                        groups.add(_conform(table.drop_columns(dropped), schema, files[index]))
            groups.flush()
            if kept.num_rows == 0:
                writer.write_table(schema.empty_table())
        target.write_file_atomic(name, Path(tmp))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return final
