"""Per-module state: watermarks committed after the data they cover, crash recovery and locks.

Each module has its own state file ``DIR/_state/<Module>.json`` and lock ``DIR/_state/<Module>.lock``,
so separate processes can extract different modules into the same output side by side.

The commit protocol (one module, while holding its lock):

1. **Recover.** :meth:`StateStore.recover` removes the scratch files a killed run left in ``_tmp/``,
   and every data or tombstone file that no committed state covers: a file
   ``part-<run_id>-<seq>.parquet`` is kept only if its run is in ``committed_runs`` and the file is
   in that run's list of committed files (or the run is *sealed*, see below).
2. **Read** from the watermark's second inclusive, and drop what was already written with
   :func:`dedupe_against_watermark` (rows older than the watermark, and rows whose
   ``(id, Modified_Time)`` pair is in ``remembered``). Ties in one second are common in Zoho, so
   the watermark is never moved past a second that may still hold unseen rows.
3. **Write** the data files (:class:`~connector.lake.writer.DatasetWriter`): they are built in ``_tmp/``
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
from there and drops the rows it remembers.

**The watermark is capped at the read's start** (a "low-water mark"). Before a module's read
begins, the caller takes the server's time ``T0`` (the ``Date`` header of Zoho's latest answer,
minus a safety margin). A record modified while the read runs gets a ``Modified_Time`` at or after
``T0``, but a paging reader can miss it: it may land behind a keyset cursor, after an earlier Bulk
page's snapshot, or in an offset page already passed, while later rows push the greatest
``Modified_Time`` written beyond it. So the new watermark is ``W = min(greatest time written, T0)``
(never below the previous watermark), and ``remembered`` holds every ``(id, Modified_Time)`` pair
written at or after ``W``. The next run reads from ``W`` inclusive and drops exactly the
remembered pairs: whatever changed during a run is read again, and nothing is written twice. The
remembered set stays small: the rows of the watermark's second plus the rows modified during the
run (:class:`WatermarkTracker` keeps only pairs that can still be at or after ``W``). Checkpoints
apply the same cap, and tombstones follow the same rule with ``deleted_time``.

**Rows at or after ``T0`` are not written at all** (the caller, :mod:`connector.run.sync`, leaves them
for the next run). Zoho's ``Modified_Time`` has whole seconds, so a record changed twice within
one second has one ``(id, Modified_Time)`` pair for both versions: had a run written the first
version in a second that was not over, the next run would drop the second version as already
written. Every row written is older than ``T0``, so its second was complete before the read
began and no later version can share its pair: deduplicating by pair is then exact. It also
means ``W`` is simply the greatest time written (always below ``T0``) and ``remembered`` holds the
rows of that one second; the cap in :class:`WatermarkTracker` remains as a guard.

At the next recover, every run's list is *sealed* (replaced by ``null``: every file of that run
still present is committed), because recover has just removed the others; runs with no file left
are forgotten. The state file therefore stays small however many runs there have been.
"""

from __future__ import annotations

import functools
import json
import logging
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.crashpoints import crashpoint
from connector.errors import ConfigError, DataError
from connector.lake.locks import DEFAULT_LEASE_SECONDS, Lock
from connector.lake.output import Output

log = logging.getLogger(__name__)

STATE_DIR = "_state"
DELETED_DIR = "_deleted"
STATE_VERSION = 2
# Version 1 remembered only the ids at the watermark (``ids_at_watermark``); it still loads.
_READABLE_VERSIONS = (1, 2)
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


Pairs = frozenset[tuple[str, datetime]]
"""Remembered ``(id, time)`` pairs: rows written with a time at or after the watermark (UTC)."""


def _ids_at(pairs: Pairs, when: datetime | None) -> frozenset[str]:
    if when is None:
        return frozenset()
    return frozenset(i for i, t in pairs if t == when)


def _pairs_json(pairs: Pairs) -> dict[str, list[str]]:
    """``{time: [ids]}``, times and ids sorted: compact and readable."""
    grouped: dict[datetime, list[str]] = {}
    for record_id, when in pairs:
        grouped.setdefault(when, []).append(record_id)
    return {
        when.astimezone(timezone.utc).isoformat(): sorted(ids)
        for when, ids in sorted(grouped.items())
    }


def _parse_utc(text: str) -> datetime:
    """A stored ISO datetime as UTC; ``ValueError`` if it is not one or has no offset."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(timezone.utc)


def _pairs_from_json(key: str, value: Any) -> Pairs:
    if value is None:
        return frozenset()
    if not isinstance(value, dict):
        raise TypeError(f"{key} is not an object of time -> ids")
    pairs: set[tuple[str, datetime]] = set()
    for when_text, ids in value.items():
        when = _parse_utc(when_text)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise TypeError(f"{key}[{when_text!r}] is not a list of ids")
        pairs.update((i, when) for i in ids)
    return frozenset(pairs)


@dataclass
class ModuleState:
    """What has been extracted of one module into one output."""

    module: str
    watermark: datetime | None = None
    """Where the next run reads from (UTC): the greatest ``Modified_Time`` written, capped at the
    server time its read started (see the module docstring)."""
    remembered: Pairs = frozenset()
    """The ``(id, Modified_Time)`` pairs written with a time at or after the watermark."""
    deleted_watermark: datetime | None = None
    """The same for tombstones: the greatest ``deleted_time`` written, capped (UTC)."""
    deleted_remembered: Pairs = frozenset()
    """The ``(id, deleted_time)`` pairs of tombstones written at or after the deleted watermark."""
    committed_runs: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    """Run id -> the files it committed (relative to the output), or None once sealed."""
    fields: tuple[str, ...] = ()
    """The column names last written (to report schema drift)."""
    last_run_id: str | None = None
    updated_at: datetime | None = None
    reader: str | None = None
    full_rows: int | None = None
    """Rows the last full load (or full refresh) wrote: the planner's size when it skips a count."""
    coql_refused: tuple[str, ...] = ()
    """Columns COQL refused in an earlier run: later runs read the module without COQL."""
    completed_at: datetime | None = None
    """When a run last read the module to the end (records and deletions): under a credit
    budget, the module completed longest ago goes first."""
    partition_by: str | None = None
    """The granularity of the module's folders (:mod:`connector.lake.layout`), records and
    tombstones alike; None in a state written before it was recorded: daily."""
    module_meta: dict[str, Any] | None = None
    """How ``settings/modules`` described the module when it was last read (its api name,
    type, …): a run that names only modules it knows from their state needs no modules list."""

    @property
    def ids_at_watermark(self) -> frozenset[str]:
        """The remembered ids whose ``Modified_Time`` is exactly the watermark."""
        return _ids_at(self.remembered, self.watermark)

    @property
    def deleted_ids_at_watermark(self) -> frozenset[str]:
        """The remembered tombstone ids whose ``deleted_time`` is exactly the deleted watermark."""
        return _ids_at(self.deleted_remembered, self.deleted_watermark)

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
            "remembered": _pairs_json(self.remembered),
            "deleted_watermark": iso(self.deleted_watermark),
            "deleted_remembered": _pairs_json(self.deleted_remembered),
            "fields": list(self.fields),
            "last_run_id": self.last_run_id,
            "updated_at": iso(self.updated_at),
            "reader": self.reader,
            "full_rows": self.full_rows,
            "coql_refused": list(self.coql_refused),
            "completed_at": iso(self.completed_at),
            "partition_by": self.partition_by,
            "module_meta": self.module_meta,
            "committed_runs": {
                run: (list(files) if files is not None else None)
                for run, files in self.committed_runs.items()
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModuleState:
        """Parse a state document; raises ``ValueError``/``TypeError``/``KeyError`` if malformed.

        Reads version 1 too, whose ``ids_at_watermark`` become pairs at the watermark.
        """
        version = doc.get("version")
        if version not in _READABLE_VERSIONS or isinstance(version, bool):
            raise ValueError(f"unsupported version {version!r}")

        def when(key: str) -> datetime | None:
            value = doc.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise TypeError(f"{key} is not a text datetime")
            return _parse_utc(value)

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

        def remembered(key: str, legacy_key: str, watermark: datetime | None) -> Pairs:
            if version == 1:
                ids = texts(legacy_key)
                return frozenset((i, watermark) for i in ids) if watermark else frozenset()
            return _pairs_from_json(key, doc.get(key))

        module = doc["module"]
        if not isinstance(module, str):
            raise TypeError("module is not text")
        full_rows = _optional_count(doc, "full_rows")
        watermark = when("watermark")
        deleted_watermark = when("deleted_watermark")
        return cls(
            module=module,
            watermark=watermark,
            remembered=remembered("remembered", "ids_at_watermark", watermark),
            deleted_watermark=deleted_watermark,
            deleted_remembered=remembered(
                "deleted_remembered", "deleted_ids_at_watermark", deleted_watermark
            ),
            committed_runs=runs,
            fields=tuple(texts("fields")),
            last_run_id=optional_text("last_run_id"),
            updated_at=when("updated_at"),
            reader=optional_text("reader"),
            full_rows=full_rows,
            coql_refused=tuple(texts("coql_refused")),
            completed_at=when("completed_at"),
            partition_by=optional_text("partition_by"),
            module_meta=_optional_object(doc, "module_meta"),
        )


def _optional_object(doc: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """``doc[key]`` as a JSON object, or None when absent (older state files)."""
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{key} is not an object")
    return value


def _optional_count(doc: Mapping[str, Any], key: str) -> int | None:
    """``doc[key]`` as a whole number, or None when absent (older state files)."""
    value = doc.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{key} is not a number")
    return value


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

    def stored_name(self, module: str) -> str:
        """``module`` as its state file spells it (Zoho's spelling), matched case-insensitively;
        as given when the output holds no state of it."""
        wanted = f"{STATE_DIR}/{module}.json".lower()
        for rel in self.output.list_files(STATE_DIR, ".json"):
            if rel.lower() == wanted:
                return rel[len(STATE_DIR) + 1 : -len(".json")]
        return module

    def module_metas(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The ``module_meta`` recorded in the state of each of ``names`` that has one, by the
        name as given (matched case-insensitively); a module whose state cannot be read is left
        out (its own job reports it)."""
        found: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                meta = self.load(self.stored_name(name)).module_meta
            except (DataError, ValueError):
                continue
            if meta is not None:
                found[name] = meta
        return found

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
                crashpoint("state_recover_deleted")
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

    def lock(self, module: str, run_id: str, *, lease: float = DEFAULT_LEASE_SECONDS) -> Lock:
        """Take ``_state/<Module>.lock`` (a context manager, a lease of ``lease`` seconds) or
        raise :class:`LockError`."""
        return self.output.acquire_lock(
            self.lock_path(module), {"module": module, "run_id": run_id}, lease=lease
        )


def _ts_scalar(value: datetime) -> pa.Scalar:
    return pa.scalar(value.astimezone(timezone.utc), type=_UTC_US)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def _pair_key(record_id: str, when: datetime) -> str:
    """The text key of an ``(id, time)`` pair, as :func:`_pair_keys` builds it for a column."""
    return f"{record_id}@{(when - _EPOCH) // _US}"


def _pair_keys(ids: pa.Array | pa.ChunkedArray, times: pa.Array | pa.ChunkedArray) -> Any:
    """``id@microseconds since the epoch`` per row (null where either is null), vectorised."""
    micros = pc.cast(pc.cast(times, _UTC_US), pa.int64())
    return pc.binary_join_element_wise(ids, pc.cast(micros, pa.string()), "@")


@functools.lru_cache(maxsize=8)
def _remembered_keys(pairs: Pairs) -> pa.Array:
    """The keys of ``pairs``, built once per state (a run dedupes every batch against it)."""
    return pa.array(sorted(_pair_key(i, t) for i, t in pairs), pa.string())


def dedupe_against_watermark(
    batch: pa.RecordBatch,
    state: ModuleState,
    *,
    time_column: str = "Modified_Time",
    id_column: str = "id",
) -> pa.RecordBatch:
    """Drop the rows already written: older than the watermark, or with a remembered
    ``(id, time)`` pair.

    With ``time_column="deleted_time"`` the tombstone watermark is used. Rows with no time are
    kept.
    """
    tombstones = time_column == TOMBSTONE_TIME
    watermark = state.deleted_watermark if tombstones else state.watermark
    pairs = state.deleted_remembered if tombstones else state.remembered
    if watermark is None or batch.num_rows == 0:
        return batch
    times = batch.column(time_column).cast(_UTC_US)
    fresh = pc.fill_null(pc.greater_equal(times, _ts_scalar(watermark)), False)
    if pairs:
        keys = _remembered_keys(pairs)
        known = pc.is_in(_pair_keys(batch.column(id_column), times), value_set=keys)
        fresh = pc.and_(fresh, pc.invert(pc.fill_null(known, False)))
    keep = pc.or_(fresh, pc.is_null(times))
    if pc.all(keep).as_py():
        return batch
    return batch.filter(keep)


class WatermarkTracker:
    """Follows the watermark a run reaches and the ``(id, time)`` pairs to remember (vectorised).

    Start it from the committed state (:meth:`from_state`), so that its pairs carry over, with
    ``cap`` the server time the read started (minus a margin), feed it every batch that is
    written, and copy the result into the state (:meth:`apply`) before committing it. The
    watermark is ``max(previous watermark, min(greatest time seen, cap))``; without a cap it is
    the greatest time seen. Only pairs at or after the watermark so far are kept, and that
    watermark only grows, so memory is bounded by the rows at or after ``cap`` plus the rows of
    the greatest second, never by the size of the read.
    """

    def __init__(
        self,
        watermark: datetime | None = None,
        remembered: Iterable[tuple[str, datetime]] = (),
        *,
        cap: datetime | None = None,
        time_column: str = "Modified_Time",
        id_column: str = "id",
    ) -> None:
        self._floor = _utc(watermark)
        self._max = self._floor
        self.cap = _utc(cap)
        self.time_column = time_column
        self.id_column = id_column
        self._pairs: dict[datetime, set[str]] = {}
        for record_id, when in remembered:
            self._pairs.setdefault(_utc(when) or when, set()).add(record_id)
        self._prune()

    @classmethod
    def from_state(
        cls,
        state: ModuleState,
        *,
        time_column: str = "Modified_Time",
        cap: datetime | None = None,
    ) -> WatermarkTracker:
        """A tracker starting at the state's watermark (the tombstone one for ``deleted_time``)."""
        if time_column == TOMBSTONE_TIME:
            return cls(
                state.deleted_watermark,
                state.deleted_remembered,
                cap=cap,
                time_column=time_column,
            )
        return cls(state.watermark, state.remembered, cap=cap, time_column=time_column)

    @property
    def watermark(self) -> datetime | None:
        """The watermark reached so far: the greatest time seen, capped, never below the start."""
        if self._max is None:
            return None
        mark = self._max if self.cap is None else min(self._max, self.cap)
        return mark if self._floor is None else max(mark, self._floor)

    @property
    def remembered(self) -> frozenset[tuple[str, datetime]]:
        """The pairs seen (or carried over) at or after the current watermark."""
        mark = self.watermark
        return frozenset(
            (i, when)
            for when, ids in self._pairs.items()
            if mark is None or when >= mark
            for i in ids
        )

    @property
    def ids_at_watermark(self) -> frozenset[str]:
        """The ids seen at exactly the current watermark."""
        return _ids_at(self.remembered, self.watermark)

    def _prune(self) -> None:
        mark = self.watermark
        if mark is None:
            return
        for when in [w for w in self._pairs if w < mark]:
            del self._pairs[when]

    def observe(self, batch: pa.RecordBatch) -> None:
        """Take the rows of ``batch`` into account."""
        if batch.num_rows == 0:
            return
        times = batch.column(self.time_column).cast(_UTC_US)
        largest = pc.max(times).as_py()
        if largest is None:
            return
        largest = largest.astimezone(timezone.utc)
        if self._max is None or largest > self._max:
            self._max = largest
        mark = self.watermark
        assert mark is not None
        wanted = pc.fill_null(pc.greater_equal(times, _ts_scalar(mark)), False)
        ids = batch.column(self.id_column).filter(wanted).to_pylist()
        whens = times.filter(wanted).to_pylist()
        for record_id, when in zip(ids, whens, strict=True):
            if record_id is not None:
                self._pairs.setdefault(when.astimezone(timezone.utc), set()).add(record_id)
        self._prune()

    def apply(self, state: ModuleState) -> None:
        """Copy the watermark and its pairs into ``state`` (the tombstone fields for tombstones)."""
        if self.time_column == TOMBSTONE_TIME:
            state.deleted_watermark = self.watermark
            state.deleted_remembered = self.remembered
        else:
            state.watermark = self.watermark
            state.remembered = self.remembered
