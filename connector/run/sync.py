"""One extract run: discover → plan → read → write → commit state → run manifest.

Per module, while holding its lock (``DIR/_state/<Module>.lock``):

1. ``StateStore.recover`` removes the files of runs that never committed, then the state loads.
2. The planner picks the reader (see :mod:`connector.run.planner`); with ``APIType=Bulk`` an
   incremental run first probes with one COQL page, which is the whole read when it holds every
   change.
3. Batches are deduplicated against the watermark (the read starts at the watermark's second,
   inclusive) and written. A reader that returns rows in ``Modified_Time`` order checkpoints every
   ``checkpoint_rows`` rows: files into place, then the state that lists them and the watermark they
   reach. A Bulk read is unordered: it commits once, at the end.
4. Deleted records since the deletion watermark become tombstones under ``DIR/_deleted/<Module>``,
   committed the same way.

Watermarks only advance after the files they cover are in place, so a crash or a stop loses at most
the rows since the last commit, and the next run's ``recover`` removes their uncommitted files.

Decisions:

* **Full load and deletions.** After a full load the deletion watermark is the data watermark (the
  greatest ``Modified_Time`` written, below the read's start): every record deleted after its
  snapshot was taken has a ``deleted_time`` at or after it, so the first incremental run sees
  every deletion that matters, and uses Zoho's clock, never this machine's.
* **Full refresh.** ``--full-refresh`` on a module with committed data writes a new generation: it
  reads everything, commits once at the end (no checkpoints, so the previous output stays complete
  and consistent until the new one replaces it), and only after the new state commits deletes the
  previous generation's files (data and tombstones). A crash before that commit leaves the old
  output as it was; the next run removes the new run's files.
* **Stops.** Daily credits spent (``CreditsExhausted``) or ``--max-credits`` reached
  (``BudgetExceeded``) stop every module: no module starts reading after that, ordered readers
  commit what they have, unordered ones drop it. Committed state stays, so a rerun resumes.
* **Restarts.** A reader error that is worth retrying (an expired page token, an incomplete Bulk
  file) restarts the module's read from its last committed watermark, at most ``MAX_RESTARTS``
  times.
* **Changes during a read (the live edge).** Before a module's read starts, the server's time is
  taken from the ``Date`` header of Zoho's latest answer (:meth:`ZohoClient.server_time`, usually
  the fields call just made) minus ``SERVER_TIME_MARGIN``, and the module's watermark is capped
  there (see :mod:`connector.lake.state`): a record modified while the module is read (behind a COQL
  keyset cursor, after an earlier Bulk page's snapshot, in a Records page already passed) has a
  ``Modified_Time`` at or after the cap, so the next run reads it again, and the remembered
  ``(id, Modified_Time)`` pairs keep what this run did write from being written twice. Checkpoints
  and tombstones (capped at the start of the deleted-records read) follow the same rule. The
  manifest records the server time per module (``read_started_at_server``). Without a ``Date``
  header the local clock stands in, with the wider ``LOCAL_TIME_MARGIN`` and a warning.
* **Deferring the live edge.** Rows whose ``Modified_Time`` is at or after the cap are read but
  not written (:func:`_defer_live_edge`, between the dedupe and the writer): their second may not
  be over, and a record changed again within it gets the same ``(id, Modified_Time)`` pair, which
  the next run would drop as already written. Every written row is older than the cap, so its
  second was complete before the read began: no later version can share its pair, and the
  dedupe is exact. The next run reads from the watermark (inclusive) and writes the deferred rows
  once their seconds are over. The manifest counts them per module (``deferred_rows``).
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.config import Settings
from connector.crashpoints import crashpoint
from connector.errors import (
    AuthError,
    BudgetExceeded,
    ConfigError,
    ConnectorError,
    CreditsExhausted,
    LockError,
    ModuleUnavailable,
    RetriableAPIError,
    ZohoAPIError,
)
from connector.lake.manifest import (
    STATUS_FAILED,
    STATUS_LOCKED,
    STATUS_NOT_RUN,
    STATUS_OK,
    STATUS_SKIPPED,
    STATUS_STOPPED_BUDGET,
    STATUS_STOPPED_CREDITS,
    FileEntry,
    ModuleReport,
    RunManifest,
    new_run_id,
)
from connector.lake.output import Output
from connector.lake.schema import ModuleSchema, module_schema
from connector.lake.state import (
    DELETED_DIR,
    ModuleState,
    StateStore,
    WatermarkTracker,
    data_dirs,
    dedupe_against_watermark,
)
from connector.lake.writer import DatasetWriter, WrittenFile
from connector.readers import coql_count, coql_probe, make_reader, read_deleted
from connector.readers.base import ReaderStats
from connector.readers.bulk import BulkReader
from connector.run.planner import (
    BULK,
    COQL,
    METADATA_CREDITS,
    ModulePlan,
    Plan,
    ReaderChoice,
    cheapest_incremental,
    estimate_module,
    format_plan,
    static_choice,
)
from connector.run.progress import Progress
from connector.zoho.http import CreditMeter, ZohoClient
from connector.zoho.metadata import FieldMeta, ModuleMeta, list_fields, list_modules
from connector.zoho.scopes import bulk_allowed, coql_allowed

__all__ = ["build_plan", "discover", "format_plan", "run_extract"]

log = logging.getLogger(__name__)

# The Date header and Modified_Time both come in whole seconds, from hosts whose clocks may differ
# by a fraction of one: one second of margin keeps the cap at or below any later Modified_Time.
SERVER_TIME_MARGIN = timedelta(seconds=1)
# This machine's clock may be minutes off Zoho's; used only when Zoho sent no Date header.
LOCAL_TIME_MARGIN = timedelta(minutes=5)
MAX_RESTARTS = 2
# Reader errors that a fresh read from the last commit fixes: expired or refused page tokens,
# incomplete Bulk files, records that kept changing while read. Not repeated FAILUREs or 5xx:
# the client already retried those, and a restart would only spend more credits.
RESTART_CODES = frozenset(
    {
        "BULK_PAGE_TOKEN",
        "BULK_INCOMPLETE",
        "BULK_UNSTABLE",
        "UNSTABLE_READ",
        "EXPIRED_VALUE",
        "TOKEN_BOUND_DATA_MISMATCH",
        "INVALID_TOKEN_BOUND",
    }
)
# Zoho allows 10 concurrent heavy calls (COQL among them) per org, whatever the edition.
MAX_WORKERS = 10
EXTRACTABLE_TYPES = ("default", "custom")
DELETED_TIME = "deleted_time"


# --- discovery ----------------------------------------------------------------------------------


@dataclass
class Target:
    """A module to extract, with its fields when already fetched, or why it cannot be read."""

    meta: ModuleMeta
    fields: list[FieldMeta] | None = None
    error: ModuleUnavailable | None = None


def _unknown_module(name: str, known: Sequence[ModuleMeta]) -> ConfigError:
    names = [m.api_name for m in known]
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if name.lower() in by_lower and by_lower[name.lower()] not in close:
        close.insert(0, by_lower[name.lower()])
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; known modules: {', '.join(names)}"
    )
    return ConfigError(f"unknown module {name!r}{hint}")


def discover(client: ZohoClient, modules: Sequence[str] | None) -> list[Target]:
    """The modules to extract.

    Without ``modules``: every module the org lists that the API supports and that holds records
    (``generated_type`` default or custom: not linking, subform or web modules); their fields are
    fetched later, per module. With ``modules``: the fields of each named module are fetched now
    (1 credit each); the module list is fetched only when Zoho says a name is not a module, to
    name close matches (an unknown name is a :class:`ConfigError`).
    """
    if not modules:
        return [
            Target(m)
            for m in list_modules(client)
            if m.api_supported and m.generated_type in EXTRACTABLE_TYPES
        ]
    listing: list[ModuleMeta] | None = None
    targets: list[Target] = []
    for name in dict.fromkeys(n.strip() for n in modules if n.strip()):
        try:
            fields = list_fields(client, name)
        except ModuleUnavailable as exc:
            if listing is None:
                listing = list_modules(client)
            known = {m.api_name: m for m in listing}
            if name not in known:
                raise _unknown_module(name, listing) from None
            targets.append(Target(known[name], error=exc))
            continue
        targets.append(Target(ModuleMeta(api_name=name, module_name=name), fields=fields))
    return targets


# --- credits per module -------------------------------------------------------------------------


@dataclass
class _Spend:
    credits: dict[str, int] = field(default_factory=dict)
    calls: int = 0


class _Attribution:
    """Attributes the shared meter's credits to the module each worker thread is reading.

    The client's :class:`CreditMeter` is shared by every worker (one budget for the run); each
    module runs in one thread, so a thread-local module name tells whose call was billed.
    """

    def __init__(self, meter: CreditMeter) -> None:
        self.meter = meter
        self._local = threading.local()
        self._lock = threading.Lock()
        self.spend: dict[str | None, _Spend] = {}

    def _on_record(self, kind: str, credits: int) -> None:
        # Called on the thread that made the call: its module is the one billed.
        module = getattr(self._local, "module", None)
        with self._lock:
            spend = self.spend.setdefault(module, _Spend())
            spend.credits[kind] = spend.credits.get(kind, 0) + credits
            spend.calls += 1

    def install(self) -> None:
        self.meter.add_listener(self._on_record)

    def uninstall(self) -> None:
        self.meter.remove_listener(self._on_record)

    def bind(self, module: str | None) -> None:
        self._local.module = module

    def of(self, module: str | None) -> _Spend:
        with self._lock:
            spend = self.spend.get(module, _Spend())
            return _Spend(dict(spend.credits), spend.calls)


# --- one module ---------------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised inside a module's read when the run is stopping (credits, budget)."""


@dataclass
class _Run:
    settings: Settings
    client: ZohoClient
    output: Output
    store: StateStore
    run_id: str
    full_refresh: bool
    progress: Progress
    attribution: _Attribution
    checkpoint_rows: int
    sleep: Callable[[float], None] | None
    stop: threading.Event = field(default_factory=threading.Event)
    stop_status: str | None = None
    stop_lock: threading.Lock = field(default_factory=threading.Lock)

    def request_stop(self, status: str) -> None:
        with self.stop_lock:
            if self.stop_status is None:
                self.stop_status = status
            self.stop.set()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def _entries(files: Iterable[WrittenFile]) -> list[FileEntry]:
    return [FileEntry(f.path, f.rows, f.bytes) for f in files]


def _defer_live_edge(
    batch: pa.RecordBatch, cap: datetime | None, *, time_column: str = "Modified_Time"
) -> tuple[pa.RecordBatch, int]:
    """(the rows of ``batch`` modified before ``cap``, how many rows were left out).

    Zoho's ``Modified_Time`` has whole seconds: a version written from a second that is not over
    yet could be followed by another in the same second, with the same ``(id, Modified_Time)``,
    which the next run would then drop as already written. Rows with no time are kept (there is
    nothing to defer them to).
    """
    if cap is None or batch.num_rows == 0:
        return batch, 0
    times = batch.column(time_column)
    bound = pa.scalar(cap.astimezone(timezone.utc), type=times.type)
    keep = pc.fill_null(pc.less(times, bound), True)
    kept = pc.sum(keep.cast(pa.int64())).as_py() or 0
    if kept == batch.num_rows:
        return batch, 0
    return batch.filter(keep), batch.num_rows - kept


class _ModuleJob:
    """Extracts one module (the caller holds its lock)."""

    def __init__(self, run: _Run, target: Target, report: ModuleReport) -> None:
        self.run = run
        self.target = target
        self.report = report
        self.name = target.meta.api_name
        self.reader_stats: ReaderStats | None = None
        self.cap: datetime | None = None
        """The data watermark's cap: the server time the read started, minus the margin."""

    # progress ---------------------------------------------------------------------------------

    def _on_progress(self, stats: ReaderStats) -> None:
        spend = self.run.attribution.of(self.name)
        self.run.progress.update(
            self.name,
            rows=stats.rows,
            pages=stats.pages,
            credits=sum(spend.credits.values()),
        )

    def _check_stop(self) -> None:
        if self.run.stop.is_set():
            raise _Stopped

    def _read_start(self) -> tuple[datetime | None, datetime]:
        """(the server's time now as Zoho last told it, or None; the watermark cap to use)."""
        server = self.run.client.server_time()
        if server is not None:
            return server, server - SERVER_TIME_MARGIN
        local = datetime.now(timezone.utc).replace(microsecond=0)
        note = (
            "Zoho sent no Date header: the watermark is capped with this machine's clock minus "
            f"{int(LOCAL_TIME_MARGIN.total_seconds())} s"
        )
        if note not in self.report.warnings:
            self.report.warnings.append(note)
            log.warning("%s: %s", self.name, note)
        return None, local - LOCAL_TIME_MARGIN

    # the module ------------------------------------------------------------------------------

    def execute(self) -> None:
        run, report, name = self.run, self.report, self.name
        report.recovered_files = run.store.recover(name)
        crashpoint("sync_recovered")
        state = run.store.load(name)
        report.watermark_before = _iso(state.watermark)
        report.deleted_watermark_before = _iso(state.deleted_watermark)
        had_data = state.watermark is not None or bool(state.committed_runs)
        incremental = state.watermark is not None and not run.full_refresh
        new_generation = run.full_refresh and had_data
        report.mode = (
            "incremental" if incremental else ("full_refresh" if new_generation else "full")
        )

        fields = self.target.fields
        if fields is None:
            fields = list_fields(run.client, name)
        schema = module_schema(name, fields)
        report.skipped_fields = [f"{api_name} ({why})" for api_name, why in schema.skipped]
        report.warnings.extend(schema.warnings)
        self._check_stop()
        # Taken before any record is read (the COQL probe of _choose included).
        started, self.cap = self._read_start()
        report.read_started_at_server = _iso(started)

        base = state if incremental else ModuleState(module=name)
        if new_generation:
            # The new generation's state lists only its own files; the old ones go after commit.
            target_state = replace(state, committed_runs={})
        else:
            target_state = replace(state, committed_runs=dict(state.committed_runs))
        if not incremental:
            target_state.watermark = None
            target_state.remembered = frozenset()

        choice, first = self._choose(schema, base.watermark if incremental else None)
        report.reader, report.reason, report.fallback = (
            choice.reader,
            choice.reason,
            choice.fallback,
        )
        run.progress.start_module(name, choice.reader)

        try:
            self._read_data(
                choice, first, schema, base, target_state, checkpoints=not new_generation
            )
        finally:
            if report.deferred_rows:
                report.notes.append(
                    f"{report.deferred_rows:,} rows modified in the last second(s) before the "
                    f"read (at or after {_iso(self.cap)}) are left for the next run"
                )

        if incremental:
            self._read_deleted(target_state)
        else:
            # See the module docstring: deletions after the snapshot come at or after this time.
            target_state.deleted_watermark = target_state.watermark
            target_state.deleted_remembered = frozenset()
            self._commit_state(target_state)

        if new_generation:
            for rel_dir in data_dirs(name):
                for path in run.output.list_files(rel_dir, ".parquet"):
                    if not target_state.covers(path):
                        run.output.delete(path)
                        crashpoint("sync_old_generation_deleted")
                        report.removed_files.append(path)

        report.watermark_after = _iso(target_state.watermark)
        report.deleted_watermark_after = _iso(target_state.deleted_watermark)

    def _choose(
        self, schema: ModuleSchema, since: datetime | None
    ) -> tuple[ReaderChoice, pa.RecordBatch | None]:
        """The reader, and the rows a COQL probe already read when that probe was the read."""
        run, meta = self.run, self.target.meta
        settings = run.settings
        coql_ok = coql_allowed(settings.use_coql, run.client.tokens.granted_scopes)
        choice = static_choice(
            meta,
            api_type=settings.api_type.value,
            use_coql=settings.use_coql,
            coql_ok=coql_ok,
            incremental=since is not None,
            bulk_ok=bulk_allowed(run.client.tokens.granted_scopes),
        )
        if not choice.probe:
            return choice, None
        try:
            probe = coql_probe(run.client, schema, since)
        except AuthError as exc:
            # The COQL scope turned out to be missing: Bulk reads everything anyway.
            self.report.warnings.append(f"COQL probe refused ({exc}); reading with Bulk")
            return ReaderChoice(BULK, "APIType=Bulk, incremental (COQL refused)"), None
        if not probe.more_records:
            reason = f"APIType=Bulk, incremental: {probe.rows} changes fit one COQL page"
            rows = probe.table
            first = pa.RecordBatch.from_arrays(
                [column.combine_chunks() for column in rows.columns], schema=rows.schema
            )
            return ReaderChoice(COQL, reason), first
        count = coql_count(run.client, self.name, since)
        return cheapest_incremental(count, len(schema.arrow)), None

    # data ------------------------------------------------------------------------------------

    def _read_data(
        self,
        choice: ReaderChoice,
        first: pa.RecordBatch | None,
        schema: ModuleSchema,
        base: ModuleState,
        target: ModuleState,
        *,
        checkpoints: bool,
    ) -> None:
        run, report = self.run, self.report
        restarts = 0
        while True:
            reader = make_reader(
                choice.reader,
                run.client,
                run.settings.tuning,
                on_progress=self._on_progress,
                **({"sleep": run.sleep} if run.sleep is not None else {}),
            )
            if isinstance(reader, BulkReader):
                # Bulk's ZIPs go to the output's scratch area, not the system's temp dir: a
                # killed run's files are then swept by the next run's recover().
                reader.scratch_dir = run.output.tmp_path(f"{self.name}/bulk/_").parent
            if first is not None:
                batches: Iterator[pa.RecordBatch] = iter([first])
                ordered = True
            else:
                since = base.watermark
                batches = reader.read(self.target.meta, schema, since)
                ordered = reader.ordered
            try:
                self._consume(batches, schema, base, target, ordered and checkpoints, ordered)
            except RetriableAPIError as exc:
                restarts += 1
                if restarts > MAX_RESTARTS or exc.code not in RESTART_CODES:
                    raise
                report.warnings.append(f"read restarted from the last commit after: {exc}")
                log.warning("%s: read restarted from the last commit after: %s", self.name, exc)
                # Continue from what is committed: the target state is the new base.
                if checkpoints and target.watermark is not None:
                    base = replace(target)
                continue
            finally:
                # A reader that stopped early (a stop, an error, credits) may have a call out on
                # its prefetch thread: closing it waits for that call here, not at exit.
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
                self._add_stats(reader.stats)
            return

    def _add_stats(self, stats: ReaderStats) -> None:
        self.report.pages += stats.pages
        self.report.jobs += stats.jobs
        for note in stats.notes:
            if note not in self.report.warnings:
                self.report.warnings.append(note)

    def _consume(
        self,
        batches: Iterator[pa.RecordBatch],
        schema: ModuleSchema,
        base: ModuleState,
        target: ModuleState,
        checkpoint: bool,
        ordered: bool,
    ) -> None:
        """Dedupe and write ``batches``; commit at checkpoints and at the end."""
        run = self.run
        # Ordered readers let the writer build each day's file as soon as the day is complete.
        writer = DatasetWriter(run.output, self.name, schema.arrow, run.run_id, ordered=ordered)
        tracker = WatermarkTracker.from_state(target, cap=self.cap)
        pending = 0
        # A restart reads the deferred rows again: count this attempt's only.
        self.report.deferred_rows = 0
        try:
            for batch in batches:
                self._check_stop()
                batch = dedupe_against_watermark(batch, base)
                batch, deferred = _defer_live_edge(batch, self.cap)
                self.report.deferred_rows += deferred
                if batch.num_rows == 0:
                    continue
                writer.write(batch)
                crashpoint("sync_batch_written")
                tracker.observe(batch)
                pending += batch.num_rows
                if checkpoint and pending >= run.checkpoint_rows:
                    self._commit_data(writer, tracker, target, pending, schema)
                    self.report.checkpoints += 1
                    crashpoint("sync_checkpoint_done")
                    pending = 0
        except (_Stopped, CreditsExhausted, BudgetExceeded, RetriableAPIError):
            if checkpoint and ordered:
                # Every batch so far arrived in order: what is written is a consistent prefix.
                self._commit_data(writer, tracker, target, pending, schema)
            else:
                writer.abort()
            raise
        except BaseException:
            writer.abort()
            raise
        self._commit_data(writer, tracker, target, pending, schema)

    def _commit_data(
        self,
        writer: DatasetWriter,
        tracker: WatermarkTracker,
        target: ModuleState,
        rows: int,
        schema: ModuleSchema,
    ) -> None:
        files = writer.commit()
        crashpoint("sync_data_committed")
        target.record_files(self.run.run_id, [f.path for f in files])
        tracker.apply(target)
        target.fields = tuple(schema.arrow.names)
        target.reader = self.report.reader
        self._commit_state(target)
        self.report.files.extend(_entries(files))
        self.report.rows += rows

    def _commit_state(self, target: ModuleState) -> None:
        target.last_run_id = self.run.run_id
        self.run.store.commit(target)
        crashpoint("sync_state_committed")

    # deletions ---------------------------------------------------------------------------------

    def _read_deleted(self, target: ModuleState) -> None:
        run, name = self.run, self.name
        self._check_stop()
        from connector.lake.schema import TOMBSTONE_SCHEMA

        writer = DatasetWriter(
            run.output,
            f"{DELETED_DIR}/{name}",
            TOMBSTONE_SCHEMA,
            run.run_id,
            partition_column=DELETED_TIME,
            partition_name="deleted_date",
        )
        base = replace(target)
        # Deletions made while this read pages are stamped at or after its start: cap there.
        # Tombstones are not deferred like records (_defer_live_edge): a record is deleted once,
        # so no later tombstone can share an (id, deleted_time) pair with a different content;
        # one deleted again within the same second after a restore from the recycle bin says
        # nothing new (it is gone either way), and the cap still re-reads anything deleted
        # during this read.
        _, cap = self._read_start()
        tracker = WatermarkTracker.from_state(target, time_column=DELETED_TIME, cap=cap)
        rows = 0
        try:
            for batch in read_deleted(run.client, name, target.deleted_watermark):
                self._check_stop()
                batch = dedupe_against_watermark(batch, base, time_column=DELETED_TIME)
                if batch.num_rows == 0:
                    continue
                writer.write(batch)
                crashpoint("sync_tombstones_written")
                tracker.observe(batch)
                rows += batch.num_rows
        except BaseException:
            writer.abort()
            raise
        files = writer.commit()
        crashpoint("sync_tombstones_committed")
        target.record_files(run.run_id, [f.path for f in files])
        tracker.apply(target)
        self._commit_state(target)
        self.report.tombstone_files.extend(_entries(files))
        self.report.tombstones += rows


def _run_module(run: _Run, target: Target, report: ModuleReport) -> None:
    """Run one module in a worker thread; record the outcome in ``report`` (never raises
    a :class:`ConnectorError`)."""
    name = target.meta.api_name
    run.attribution.bind(name)
    try:
        if run.stop.is_set():
            report.status = run.stop_status or STATUS_NOT_RUN
            report.error = "not started: the run was stopping"
            return
        if target.error is not None:
            raise target.error
        with run.store.lock(name, run.run_id):
            crashpoint("sync_locked")
            job = _ModuleJob(run, target, report)
            job.execute()
        crashpoint("sync_module_done")
        report.status = STATUS_OK
    except LockError as exc:
        report.status, report.error = STATUS_LOCKED, str(exc)
    except CreditsExhausted as exc:
        report.status, report.error = STATUS_STOPPED_CREDITS, str(exc)
        run.request_stop(STATUS_STOPPED_CREDITS)
    except BudgetExceeded as exc:
        report.status, report.error = STATUS_STOPPED_BUDGET, str(exc)
        run.request_stop(STATUS_STOPPED_BUDGET)
    except _Stopped:
        report.status = run.stop_status or STATUS_STOPPED_CREDITS
        report.error = "stopped: the run was stopping"
    except ModuleUnavailable as exc:
        report.status, report.error = STATUS_SKIPPED, f"not available: {exc}"
    except ConnectorError as exc:
        report.status, report.error = STATUS_FAILED, str(exc)
    finally:
        spend = run.attribution.of(name)
        report.credits, report.calls = spend.credits, spend.calls
        run.attribution.bind(None)
        run.progress.finish_module(name, report.status)
        if report.error:
            log.warning("%s: %s", name, report.error)


# --- the run ------------------------------------------------------------------------------------


def connection_summary(settings: Settings, client: ZohoClient) -> dict[str, Any]:
    """What the manifest says about the connection: no secret, no client id."""
    return {
        "region": settings.region.value,
        "instance_type": settings.instance_type.value,
        "api_type": settings.api_type.value,
        "use_coql": settings.use_coql,
        "api_version": settings.api_version,
        "api_domain": client.api_domain,
    }


def run_extract(
    settings: Settings,
    output: str,
    *,
    modules: Sequence[str] | None = None,
    full_refresh: bool = False,
    workers: int | None = None,
    max_credits: int | None = None,
    progress: Progress | None = None,
    client: ZohoClient | None = None,
    checkpoint_rows: int | None = None,
    sleep: Callable[[float], None] | None = None,
) -> RunManifest:
    """Extract ``modules`` (default: every extractable module) into ``output``; one run.

    Returns the run manifest (also written to ``output/_runs/<run_id>.json``); its ``exit_code``
    is 0 when every module succeeded (unavailable modules are skipped and reported), 1 when a
    module failed, 4 when credits or the ``max_credits`` budget stopped the run, 5 when a module
    was locked by another extract. A :class:`ConfigError` (unknown module) or an
    :class:`AuthError` before any module started propagates; so do unexpected exceptions.
    """
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    own_client = client is None
    client = client or ZohoClient(settings)
    progress = progress or Progress()
    meter = client.meter
    previous_budget = meter.budget
    if max_credits is not None:
        meter.budget = meter.total + max_credits
    attribution = _Attribution(meter)
    attribution.install()
    out = Output.open(output)
    manifest = RunManifest(
        run_id=run_id, started_at=started, output=str(output), max_credits=max_credits
    )
    start_calls = meter.calls
    start_kinds, start_refreshes = meter.by_kind, meter.token_refreshes
    try:
        attribution.bind(None)
        try:
            targets = discover(client, modules)
            crashpoint("sync_discovered")
        except CreditsExhausted as exc:
            manifest.status, manifest.message = STATUS_STOPPED_CREDITS, str(exc)
            targets = []
        except BudgetExceeded as exc:
            manifest.status, manifest.message = STATUS_STOPPED_BUDGET, str(exc)
            targets = []
        manifest.connection = connection_summary(settings, client)
        manifest.modules = [ModuleReport(t.meta.api_name) for t in targets]
        run = _Run(
            settings=settings,
            client=client,
            output=out,
            store=StateStore(out),
            run_id=run_id,
            full_refresh=full_refresh,
            progress=progress,
            attribution=attribution,
            checkpoint_rows=max(
                1,
                checkpoint_rows if checkpoint_rows is not None else settings.tuning.checkpoint_rows,
            ),
            sleep=sleep,
        )
        n_workers = max(1, min(workers or settings.tuning.workers, MAX_WORKERS, len(targets) or 1))
        if targets:
            with ThreadPoolExecutor(n_workers, thread_name_prefix="extract") as pool:
                futures = [
                    pool.submit(_run_module, run, t, r)
                    for t, r in zip(targets, manifest.modules, strict=True)
                ]
                for future in futures:
                    future.result()
        if run.stop_status is not None:
            manifest.status = run.stop_status
    finally:
        attribution.uninstall()
        if max_credits is not None:
            meter.budget = previous_budget
        progress.close()
        kinds = meter.by_kind
        manifest.credits = {
            k: v - start_kinds.get(k, 0) for k, v in kinds.items() if v - start_kinds.get(k, 0)
        }
        manifest.discovery_credits = attribution.of(None).credits
        manifest.calls = meter.calls - start_calls
        manifest.token_refreshes = meter.token_refreshes - start_refreshes
        if own_client:
            client.close()
    manifest.finish()
    crashpoint("sync_before_manifest")
    manifest.write(out)
    return manifest


# --- the plan -----------------------------------------------------------------------------------


def _load_states(output: str | None, names: Sequence[str]) -> dict[str, ModuleState]:
    if output is None:
        return {}
    out = Output.open(output)
    if not out.exists("_state") and not out.list_files("_state", ".json"):
        return {}
    store = StateStore(out)
    return {name: store.load(name) for name in names}


def build_plan(
    settings: Settings,
    *,
    modules: Sequence[str] | None = None,
    output: str | None = None,
    client: ZohoClient | None = None,
) -> Plan:
    """A dry run: per module the reader, estimated rows (a COQL count, 1 credit, when COQL may
    be used) and estimated credits, without reading records.

    With ``output``, modules with a committed watermark there are planned as incremental runs.
    """
    own_client = client is None
    client = client or ZohoClient(settings)
    try:
        spent_before = client.meter.total
        targets = discover(client, modules)
        # Named modules had their fields fetched during discovery (1 credit each, priced in each
        # module's estimate); what remains is the modules list, when it was needed.
        listing_credits = max(
            0,
            client.meter.total
            - spent_before
            - METADATA_CREDITS * sum(1 for t in targets if t.fields is not None),
        )
        states = _load_states(output, [t.meta.api_name for t in targets])
        coql_ok = coql_allowed(settings.use_coql, client.tokens.granted_scopes)
        plans: list[ModulePlan] = []
        warnings: list[str] = []
        for target in targets:
            plans.append(_plan_module(settings, client, target, states, coql_ok, warnings))
        return Plan(
            api_type=settings.api_type.value,
            use_coql=settings.use_coql,
            modules=plans,
            discovery_credits=listing_credits,
            spent_credits=client.meter.total - spent_before,
            warnings=warnings,
        )
    finally:
        if own_client:
            client.close()


def _plan_module(
    settings: Settings,
    client: ZohoClient,
    target: Target,
    states: dict[str, ModuleState],
    coql_ok: bool,
    warnings: list[str],
) -> ModulePlan:
    name = target.meta.api_name
    state = states.get(name)
    since = state.watermark if state is not None else None
    mode = "incremental" if since is not None else "full"
    fields = target.fields
    try:
        if target.error is not None:
            raise target.error
        if fields is None:
            fields = list_fields(client, name)
    except ModuleUnavailable as exc:
        return ModulePlan(name, "-", "", mode, 0, None, 0, error=f"not available: {exc}")
    schema = module_schema(name, fields)
    rows: int | None = None
    count_credits = 0
    if coql_ok:
        try:
            rows = coql_count(client, name, since)
            count_credits = 1
        except (ZohoAPIError, AuthError) as exc:
            warnings.append(f"{name}: could not count rows with COQL ({exc})")
    else:
        warnings.append(f"{name}: rows unknown (COQL scope not granted: no cheap count)")
    choice, credits = estimate_module(
        target.meta,
        n_columns=len(schema.arrow),
        rows=rows,
        incremental=since is not None,
        api_type=settings.api_type.value,
        use_coql=settings.use_coql,
        coql_ok=coql_ok,
        bulk_ok=bulk_allowed(client.tokens.granted_scopes),
    )
    return ModulePlan(
        module=name,
        reader=choice.reader,
        reason=choice.reason,
        mode=mode,
        columns=len(schema.arrow),
        estimated_rows=rows,
        estimated_credits=credits,
        count_credits=count_credits,
        fallback=choice.fallback,
        skipped_fields=[n for n, _ in schema.skipped],
    )
