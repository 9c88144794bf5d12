"""Per-module state: watermarks committed after the data they cover, crash recovery and locks.

Each module has its own state file ``DIR/_state/<Module>.json`` and lock ``DIR/_state/<Module>.lock``,
so separate processes can extract different modules into the same output side by side.

The commit protocol (one module, while holding its lock):

1. **Recover.** :meth:`StateStore.recover` removes the scratch files a killed run left in ``_tmp/``,
   and every data or tombstone file that no committed state covers: a file
   ``part-<run_id>-<seq>.parquet`` is kept only if its run is in ``committed_runs`` and the file is
   in that run's list of committed files (or the run is *sealed*, see below).
2. **Read** from the watermark's second inclusive, and drop what was already written with
   :func:`dedupe_against_watermark` (rows older than the watermark, and rows at the watermark whose
   id is in ``ids_at_watermark``). Ties in one second are common in Zoho, so the watermark is
   never moved past a second that may still hold unseen rows.
3. **Write** the data files (:class:`~connector.writer.DatasetWriter`): they are built in ``_tmp/``
   and renamed (or uploaded) into place, complete, at the writer's commit.
4. **Commit state** (:meth:`StateStore.commit`): the new watermark together with the list of files
   the run has committed so far, written atomically (temporary file, fsync, rename) and only after
   step 3 has put every listed file in place.

A run may repeat steps 3-4 as checkpoints when its reader returns rows in ``Modified_Time`` order:
each checkpoint commits exactly the files written so far and the watermark they reach. (A reader
that returns rows in another order, such as Bulk Read, must commit once at the end: a watermark
taken mid-way could skip rows not yet seen.)

A crash at any point loses nothing and duplicates nothing: before step 4 the new files are listed
nowhere, so the next run's recover removes them and, the watermark being unchanged, reads the same
rows again; after step 4 the files are listed and the watermark covers them, so the next run starts
from there and drops the rows at the watermark it already has.

At the next recover, every run's list is *sealed* (replaced by ``null``: every file of that run
still present is committed), because recover has just removed the others; runs with no file left
are forgotten. The state file therefore stays small however many runs there have been.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.errors import ConfigError, DataError
from connector.output import Lock, Output

log = logging.getLogger(__name__)

STATE_DIR = "_state"
DELETED_DIR = "_deleted"
STATE_VERSION = 1
TOMBSTONE_TIME = "deleted_time"
_UTC_US = pa.timestamp("us", tz="UTC")
_PART_RE = re.compile(r"^part-(?P<run>.+)-(?P<seq>\d+)\.parquet$")
_MODULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_$ -]*$")


def _check_module(module: str) -> str:
    if not _MODULE_RE.match(module):
        raise ConfigError(f"module name {module!r} is not a Zoho API name")
    return module


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise DataError(f"watermark {value.isoformat()} has no time zone")
    return value.astimezone(timezone.utc)


@dataclass
class ModuleState:
    """What has been extracted of one module into one output."""

    module: str
    watermark: datetime | None = None
    """The greatest ``Modified_Time`` written (UTC)."""
    ids_at_watermark: frozenset[str] = frozenset()
    """The ids written with ``Modified_Time`` equal to the watermark."""
    deleted_watermark: datetime | None = None
    """The greatest ``deleted_time`` of the tombstones written (UTC)."""
    deleted_ids_at_watermark: frozenset[str] = frozenset()
    committed_runs: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    """Run id -> the files it committed (relative to the output), or None once sealed."""
    fields: tuple[str, ...] = ()
    """The column names last written (to report schema drift)."""
    last_run_id: str | None = None
    updated_at: datetime | None = None
    reader: str | None = None

    def record_files(self, run_id: str, paths: Iterable[str]) -> None:
        """Add ``paths`` to what ``run_id`` has committed (call before :meth:`StateStore.commit`)."""
        known = self.committed_runs.get(run_id) or ()
        merged = dict.fromkeys([*known, *paths])
        self.committed_runs[run_id] = tuple(merged)
        self.last_run_id = run_id

    def covers(self, path: str) -> bool:
        """Whether the data file ``path`` (relative to the output) is committed."""
        match = _PART_RE.match(posixpath.basename(path))
        if match is None:
            return True  # not a file this connector writes: never ours to remove
        run = match.group("run")
        if run not in self.committed_runs:
            return False
        files = self.committed_runs[run]
        return files is None or path in files

    def to_json(self) -> dict[str, Any]:
        """The JSON document stored in the state file."""

        def iso(value: datetime | None) -> str | None:
            return value.astimezone(timezone.utc).isoformat() if value is not None else None

        return {
            "version": STATE_VERSION,
            "module": self.module,
            "watermark": iso(self.watermark),
            "ids_at_watermark": sorted(self.ids_at_watermark),
            "deleted_watermark": iso(self.deleted_watermark),
            "deleted_ids_at_watermark": sorted(self.deleted_ids_at_watermark),
            "fields": list(self.fields),
            "last_run_id": self.last_run_id,
            "updated_at": iso(self.updated_at),
            "reader": self.reader,
            "committed_runs": {
                run: (list(files) if files is not None else None)
                for run, files in self.committed_runs.items()
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModuleState:
        """Parse a state document; raises ``ValueError``/``TypeError``/``KeyError`` if malformed."""
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported version {doc.get('version')!r}")

        def when(key: str) -> datetime | None:
            value = doc.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise TypeError(f"{key} is not a text datetime")
            return _utc(datetime.fromisoformat(value))

        def texts(key: str) -> list[str]:
            value = doc.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{key} is not a list of strings")
            return value

        runs_raw = doc.get("committed_runs") or {}
        if not isinstance(runs_raw, dict):
            raise TypeError("committed_runs is not an object")
        runs: dict[str, tuple[str, ...] | None] = {}
        for run, files in runs_raw.items():
            if files is not None and (
                not isinstance(files, list) or not all(isinstance(f, str) for f in files)
            ):
                raise TypeError(f"committed_runs[{run!r}] is not a list of paths")
            runs[str(run)] = tuple(files) if files is not None else None

        def optional_text(key: str) -> str | None:
            value = doc.get(key)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{key} is not text")
            return value

        module = doc["module"]
        if not isinstance(module, str):
            raise TypeError("module is not text")
        return cls(
            module=module,
            watermark=when("watermark"),
            ids_at_watermark=frozenset(texts("ids_at_watermark")),
            deleted_watermark=when("deleted_watermark"),
            deleted_ids_at_watermark=frozenset(texts("deleted_ids_at_watermark")),
            committed_runs=runs,
            fields=tuple(texts("fields")),
            last_run_id=optional_text("last_run_id"),
            updated_at=when("updated_at"),
            reader=optional_text("reader"),
        )


def data_dirs(module: str) -> tuple[str, str]:
    """The dataset directories of ``module``: its records and its tombstones."""
    return module, f"{DELETED_DIR}/{module}"


class StateStore:
    """Loads, commits and recovers the per-module state files of one output."""

    def __init__(self, output: Output, *, clock: Callable[[], datetime] | None = None) -> None:
        self.output = output
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    @staticmethod
    def state_path(module: str) -> str:
        """``_state/<Module>.json``, relative to the output."""
        return f"{STATE_DIR}/{_check_module(module)}.json"

    @staticmethod
    def lock_path(module: str) -> str:
        """``_state/<Module>.lock``, relative to the output."""
        return f"{STATE_DIR}/{_check_module(module)}.lock"

    def load(self, module: str) -> ModuleState:
        """The committed state of ``module``, or an empty state if it has none."""
        rel = self.state_path(module)
        data = self.output.read_bytes(rel)
        if data is None:
            return ModuleState(module=module)
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict):
                raise TypeError("the document is not a JSON object")
            state = ModuleState.from_json(doc)
        except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            raise DataError(
                f"state file {self.output.describe(rel)} is corrupt ({exc}); restore it from a "
                f"backup, or delete it (and the {module} and {DELETED_DIR}/{module} data) to "
                f"extract {module} again from the start",
                module=module,
            ) from exc
        if state.module != module:
            raise DataError(
                f"state file {self.output.describe(rel)} belongs to module {state.module!r}, "
                f"not {module!r}; move it back to {state.module}.json",
                module=module,
            )
        return state

    def commit(self, state: ModuleState) -> None:
        """Write ``state`` atomically; call it only after the files it lists are in place."""
        state.updated_at = self.clock().astimezone(timezone.utc)
        body = json.dumps(state.to_json(), indent=2, ensure_ascii=False) + "\n"
        self.output.write_bytes_atomic(self.state_path(state.module), body.encode("utf-8"))

    def recover(self, module: str) -> list[str]:
        """Remove what runs that did not commit left behind; return the data files removed.

        Call it while holding the module's lock, before reading. Also seals the committed runs
        (see the module docstring) and commits the state if that changed it.
        """
        _check_module(module)
        for prefix in (f"{module}/", f"{DELETED_DIR}/{module}/", f"{STATE_DIR}/{module}.json."):
            swept = self.output.sweep_tmp(prefix)
            if swept:
                log.info("%s: removed %d scratch files of an interrupted run", module, len(swept))
        state = self.load(module)
        removed: list[str] = []
        runs_present: set[str] = set()
        for rel_dir in data_dirs(module):
            for path in self.output.list_files(rel_dir, ".parquet"):
                if state.covers(path):
                    match = _PART_RE.match(posixpath.basename(path))
                    if match is not None:
                        runs_present.add(match.group("run"))
                    continue
                self.output.delete(path)
                removed.append(path)
        if removed:
            log.warning(
                "%s: removed %d files of runs that did not commit (they will be read again)",
                module,
                len(removed),
            )
        sealed: dict[str, tuple[str, ...] | None] = {
            run: None for run in state.committed_runs if run in runs_present
        }
        if sealed != state.committed_runs and self.output.exists(self.state_path(module)):
            state.committed_runs = sealed
            self.commit(state)
        return removed

    def lock(self, module: str, run_id: str) -> Lock:
        """Take ``_state/<Module>.lock`` (a context manager) or raise :class:`LockError`."""
        return self.output.acquire_lock(
            self.lock_path(module), {"module": module, "run_id": run_id}
        )


def _ts_scalar(value: datetime) -> pa.Scalar:
    return pa.scalar(value.astimezone(timezone.utc), type=_UTC_US)


def dedupe_against_watermark(
    batch: pa.RecordBatch,
    state: ModuleState,
    *,
    time_column: str = "Modified_Time",
    id_column: str = "id",
) -> pa.RecordBatch:
    """Drop the rows already written: older than the watermark, or at it with a known id.

    With ``time_column="deleted_time"`` the tombstone watermark is used. Rows with no time are
    kept.
    """
    tombstones = time_column == TOMBSTONE_TIME
    watermark = state.deleted_watermark if tombstones else state.watermark
    ids = state.deleted_ids_at_watermark if tombstones else state.ids_at_watermark
    if watermark is None or batch.num_rows == 0:
        return batch
    times = batch.column(time_column).cast(_UTC_US)
    mark = _ts_scalar(watermark)
    newer = pc.fill_null(pc.greater(times, mark), False)
    keep = pc.or_(newer, pc.is_null(times))
    if ids:
        at_mark = pc.fill_null(pc.equal(times, mark), False)
        known = pc.is_in(batch.column(id_column), value_set=pa.array(sorted(ids), pa.string()))
        keep = pc.or_(keep, pc.and_(at_mark, pc.invert(pc.fill_null(known, False))))
    else:
        keep = pc.or_(keep, pc.fill_null(pc.equal(times, mark), False))
    if pc.all(keep).as_py():
        return batch
    return batch.filter(keep)


class WatermarkTracker:
    """Follows the greatest time written and the ids written at that time (vectorised).

    Start it from the committed state (:meth:`from_state`) so that ids at an unchanged watermark
    accumulate across runs, feed it every batch that is written, and copy the result into the
    state (:meth:`apply`) before committing it.
    """

    def __init__(
        self,
        watermark: datetime | None = None,
        ids: Iterable[str] = (),
        *,
        time_column: str = "Modified_Time",
        id_column: str = "id",
    ) -> None:
        self.watermark = _utc(watermark)
        self._ids: set[str] = set(ids)
        self.time_column = time_column
        self.id_column = id_column

    @classmethod
    def from_state(
        cls, state: ModuleState, *, time_column: str = "Modified_Time"
    ) -> WatermarkTracker:
        """A tracker starting at the state's watermark (the tombstone one for ``deleted_time``)."""
        if time_column == TOMBSTONE_TIME:
            return cls(
                state.deleted_watermark, state.deleted_ids_at_watermark, time_column=time_column
            )
        return cls(state.watermark, state.ids_at_watermark, time_column=time_column)

    @property
    def ids_at_watermark(self) -> frozenset[str]:
        """The ids seen at the current watermark."""
        return frozenset(self._ids)

    def observe(self, batch: pa.RecordBatch) -> None:
        """Take the rows of ``batch`` into account."""
        if batch.num_rows == 0:
            return
        times = batch.column(self.time_column).cast(_UTC_US)
        largest = pc.max(times).as_py()
        if largest is None:
            return
        largest = largest.astimezone(timezone.utc)
        if self.watermark is not None and largest < self.watermark:
            return
        at_max = pc.fill_null(pc.equal(times, _ts_scalar(largest)), False)
        ids = batch.column(self.id_column).filter(at_max).to_pylist()
        if self.watermark is None or largest > self.watermark:
            self.watermark = largest
            self._ids = set()
        self._ids.update(i for i in ids if i is not None)

    def apply(self, state: ModuleState) -> None:
        """Copy the watermark and its ids into ``state`` (the tombstone fields for tombstones)."""
        if self.time_column == TOMBSTONE_TIME:
            state.deleted_watermark = self.watermark
            state.deleted_ids_at_watermark = self.ids_at_watermark
        else:
            state.watermark = self.watermark
            state.ids_at_watermark = self.ids_at_watermark
