"""Compaction: a module's small files merged into few large ones, or rewritten at a granularity.

Years of incremental runs leave many small files in each partition (a daily run writes one per
partition it touches). :func:`compact_module` rewrites them, locally and without a call to Zoho:

* **Merging** (the granularity stays): in every partition folder holding two or more *small*
  files (under half the target size in rows and bytes), those files become one file per
  :class:`~connector.lake.writer.DatasetWriter` target size, rows sorted by time.
* **Converting** (``partition_by`` differs from the dataset's): every file of the records and of
  the tombstones is rewritten at the new granularity, which the state then records.

Every row version is kept: the datasets are append-only change logs, and compaction never
deduplicates (:mod:`connector.lake.snapshot` reads the current table from them). Files whose
schemas differ (a field added between runs) are never merged with each other: each keeps its
columns, so nothing is invented.

Crash safety follows the extract's commit protocol (:mod:`connector.lake.state`), under the
module's lock (:mod:`connector.lake.locks`): ``recover`` first (so only committed files are
merged), then the new files are written and placed, then the state commits listing the new files
and no longer listing the old ones (their runs' lists are written out without them), then the old
files are deleted. A crash before the state commit leaves new files no state covers: the next
``recover`` (of an extract or a compaction) removes them and the old files are as they were. A
crash after it leaves old files no state covers, which the next ``recover`` removes. Either way
every row is in the dataset exactly once once ``recover`` has run.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from connector.crashpoints import crashpoint
from connector.errors import ConfigError
from connector.lake import layout
from connector.lake.manifest import new_run_id
from connector.lake.output import LocalOutput, Output
from connector.lake.state import _PART_RE, TOMBSTONE_TIME, ModuleState, StateStore, data_dirs
from connector.lake.writer import TARGET_FILE_BYTES, TARGET_FILE_ROWS, DatasetWriter

log = logging.getLogger(__name__)

MODIFIED_TIME = "Modified_Time"
READ_BATCH_ROWS = 64 * 1024


@dataclass
class CompactResult:
    """What :func:`compact_module` did."""

    module: str
    granularity_before: str
    granularity: str
    files_read: int = 0
    """Files rewritten (and removed)."""
    files_written: list[str] = field(default_factory=list)
    rows: int = 0
    """Rows rewritten: the same rows, every version kept."""
    bytes_before: int = 0
    bytes_after: int = 0

    def summary(self) -> str:
        """One line for the command line."""
        if not self.files_read:
            return f"{self.module}: nothing to compact ({self.granularity} partitions)"
        change = (
            f", {self.granularity_before} -> {self.granularity} partitions"
            if self.granularity != self.granularity_before
            else f" ({self.granularity} partitions)"
        )
        return (
            f"{self.module}: {self.files_read} files ({self.bytes_before:,} bytes) -> "
            f"{len(self.files_written)} files ({self.bytes_after:,} bytes), "
            f"{self.rows:,} rows{change}"
        )


@dataclass
class _Source:
    """One committed data file: where, its size, its Arrow schema."""

    path: str
    rows: int
    size: int
    schema: pa.Schema


def _open(output: Output, rel: str) -> IO[bytes]:
    if isinstance(output, LocalOutput):
        return open(output.path / rel, "rb")
    remote: Any = output  # an FsspecOutput: its filesystem and base path
    opened: IO[bytes] = remote.fs.open(f"{remote.base}/{rel}", "rb")
    return opened


def _describe(output: Output, rel: str) -> _Source:
    with _open(output, rel) as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(0)
        parquet = pq.ParquetFile(handle)
        return _Source(rel, parquet.metadata.num_rows, size, parquet.schema_arrow)


def _batches(output: Output, rel: str) -> Iterator[pa.RecordBatch]:
    with _open(output, rel) as handle:
        yield from pq.ParquetFile(handle).iter_batches(batch_size=READ_BATCH_ROWS)


def _folder_key(rel_dir: str, path: str) -> str | None:
    """The hive key of the folder holding ``path`` (``modified_date``), None at the top."""
    folder = posixpath.dirname(posixpath.relpath(path, rel_dir))
    if not folder or folder == ".":
        return None
    return folder.split("/", 1)[0].split("=", 1)[0]


def _partition_column(schema: pa.Schema, folder_key: str | None, tombstones: bool) -> str:
    """The timestamp column the files are partitioned by: ``deleted_time`` for tombstones; for
    records the one the folder key names, else ``Modified_Time``, else the first timestamp."""
    if tombstones:
        return TOMBSTONE_TIME
    stamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    for name in stamps:
        day = layout.day_key(name)
        if folder_key is not None and folder_key.rsplit("_", 1)[0] == day.rsplit("_", 1)[0]:
            return name
    if MODIFIED_TIME in stamps:
        return MODIFIED_TIME
    if not stamps:
        raise ConfigError(f"the files of {schema} have no timestamp column to partition by")
    return stamps[0]


def _small(source: _Source, rows: int, size: int) -> bool:
    return source.rows < rows // 2 and source.size < size // 2


def _selected(sources: list[_Source], convert: bool, rows: int, size: int) -> list[_Source]:
    """The files to rewrite: all when converting, else the small files of folders with two or
    more small files of one schema."""
    if convert:
        return sources
    groups: dict[tuple[str, str], list[_Source]] = {}
    for source in sources:
        if _small(source, rows, size):
            key = (posixpath.dirname(source.path), source.schema.to_string())
            groups.setdefault(key, []).append(source)
    return [s for group in groups.values() if len(group) > 1 for s in group]


def _by_schema(sources: list[_Source]) -> list[list[_Source]]:
    groups: dict[str, list[_Source]] = {}
    for source in sources:
        groups.setdefault(source.schema.to_string(), []).append(source)
    return list(groups.values())


@dataclass
class _Plan:
    """A compaction's parameters, shared by both datasets of the module."""

    output: Output
    run_id: str
    granularity: str
    convert: bool
    target_file_rows: int
    target_file_bytes: int
    max_buffer_bytes: int


def _rewrite(plan: _Plan, rel_dir: str, tombstones: bool, result: CompactResult) -> list[str]:
    """Rewrite the selected files of one dataset; return the paths of the old files."""
    output = plan.output
    ours = [
        p for p in output.list_files(rel_dir, ".parquet") if _PART_RE.match(posixpath.basename(p))
    ]
    sources = [_describe(output, path) for path in ours]
    chosen = _selected(sources, plan.convert, plan.target_file_rows, plan.target_file_bytes)
    seq = 0
    for group in _by_schema(chosen):
        schema = group[0].schema
        column = _partition_column(schema, _folder_key(rel_dir, group[0].path), tombstones)
        writer = DatasetWriter(
            output,
            rel_dir,
            schema,
            plan.run_id,
            partition_column=column,
            partition_name=layout.day_key(column),
            granularity=plan.granularity,
            target_file_rows=plan.target_file_rows,
            target_file_bytes=plan.target_file_bytes,
            max_buffer_bytes=plan.max_buffer_bytes,
            first_seq=seq,
        )
        try:
            for source in group:
                for batch in _batches(output, source.path):
                    writer.write(batch)
            written = writer.commit()
        except BaseException:
            writer.abort()
            raise
        seq += len(written)
        result.files_written.extend(f.path for f in written)
        result.bytes_after += sum(f.bytes for f in written)
        result.rows += writer.rows_written
    result.files_read += len(chosen)
    result.bytes_before += sum(s.size for s in chosen)
    return [s.path for s in chosen]


def _commit(
    store: StateStore, state: ModuleState, plan: _Plan, new: list[str], old: list[str]
) -> None:
    """Commit the state that lists the new files and not the old ones (see the module docstring)."""
    retired = set(old)
    present = [
        p
        for rel_dir in data_dirs(state.module)
        for p in store.output.list_files(rel_dir, ".parquet")
    ]
    touched = {m.group("run") for p in retired if (m := _PART_RE.match(posixpath.basename(p)))}
    for run in touched:
        keep = tuple(
            p
            for p in present
            if p not in retired
            and (m := _PART_RE.match(posixpath.basename(p)))
            and m.group("run") == run
        )
        if keep:
            state.committed_runs[run] = keep
        else:
            state.committed_runs.pop(run, None)
    state.committed_runs[plan.run_id] = tuple(new)
    state.partition_by = plan.granularity
    store.commit(state)


def _remove_empty_folders(output: Output, removed: list[str]) -> None:
    """Local outputs: the partition folders left empty (object stores have no folders)."""
    if not isinstance(output, LocalOutput):
        return
    for folder in sorted({posixpath.dirname(p) for p in removed}, reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds new files
            (output.path / folder).rmdir()


def compact_module(
    output: Output | str,
    module: str,
    *,
    partition_by: str | None = None,
    target_file_rows: int = TARGET_FILE_ROWS,
    target_file_bytes: int = TARGET_FILE_BYTES,
    max_buffer_bytes: int = 16 << 20,
) -> CompactResult:
    """Compact ``module`` in ``output`` (see the module docstring), under its lock.

    ``partition_by`` converts the module (records and tombstones) to that granularity. Raises
    :class:`ConfigError` when the output holds no extracted data of ``module``, and
    :class:`~connector.errors.LockError` while an extract or another compaction holds its lock.
    """
    out = Output.open(output) if isinstance(output, str) else output
    store = StateStore(out)
    module = store.stored_name(module)  # `leads` is Leads: one dataset, one lock
    run_id = f"{new_run_id()}-compact"
    with store.lock(module, run_id):
        store.recover(module)
        state = store.load(module)
        if state.watermark is None and not state.committed_runs:
            raise ConfigError(
                f"no extracted data of {module} in {out.describe('')}: run an extract for it first"
            )
        current = state.partition_by or layout.LEGACY_GRANULARITY
        target = layout.check_granularity(partition_by) if partition_by else current
        plan = _Plan(
            out,
            run_id,
            target,
            target != current,
            max(2, target_file_rows),
            max(2, target_file_bytes),
            max_buffer_bytes,
        )
        result = CompactResult(module, current, target)
        old: list[str] = []
        records_dir, tombstones_dir = data_dirs(module)
        old += _rewrite(plan, records_dir, False, result)
        old += _rewrite(plan, tombstones_dir, True, result)
        if not old and not plan.convert:
            return result
        crashpoint("compact_files_written")
        _commit(store, state, plan, result.files_written, old)
        crashpoint("compact_state_committed")
        for path in old:
            out.delete(path)
            crashpoint("compact_old_deleted")
        _remove_empty_folders(out, old)
        log.info("%s", result.summary())
        return result
