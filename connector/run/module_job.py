"""One module's job in a run: recover → choose a reader → read → write → commit state → tombstones.

Per module, while its caller holds the module's lock (``DIR/_state/<Module>.lock``):

1. ``StateStore.recover`` removes the files of runs that never committed, then the state loads.
2. The planner picks the reader (see :mod:`connector.run.planner`); with ``APIType=Bulk`` an
   incremental run first probes with one COQL page, which is the whole read when it holds every
   change.
3. Batches are deduplicated against the watermark (the read starts at the watermark's second,
   inclusive) and written. A reader that returns rows in ``Modified_Time`` order checkpoints every
   ``checkpoint_rows`` rows: files into place, then the state that lists them and the watermark they
   reach. A Bulk read is unordered: it commits once, at the end.
4. Deleted records since the deletion watermark become tombstones under ``DIR/_deleted/<Module>``,
   committed the same way (one loop, :meth:`connector.run.landing.Landing.drain`, writes both).

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
* **Stops.** Once the run is stopping (credits, budget, a signal: see :mod:`connector.run.sync`),
  a read stops at its next batch and no new paid call starts: ordered readers commit what they
  have, as at a checkpoint, unordered ones drop it. Commits need the module's lease
  (:meth:`RunStops.holding`): once it is lost or released, nothing more is committed.
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
* **Which reader.** :mod:`connector.run.choosing` (the planner's rules, the budget).
* **Odd modules.** Modules without ``Modified_Time``, ``Users``, fields COQL refuses and modules
  Zoho refuses: see :mod:`connector.run.odd`.
* **Deferring the live edge.** Rows whose ``Modified_Time`` is at or after the cap are read but
  not written (:func:`defer_live_edge`, between the dedupe and the writer): their second may not
  be over, and a record changed again within it gets the same ``(id, Modified_Time)`` pair, which
  the next run would drop as already written. Every written row is older than the cap, so its
  second was complete before the read began: no later version can share its pair, and the
  dedupe is exact. The next run reads from the watermark (inclusive) and writes the deferred rows
  once their seconds are over. The manifest counts them per module (``deferred_rows``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import cached_property

import pyarrow as pa

from connector.config import Settings
from connector.crashpoints import crashpoint
from connector.errors import (
    FatalAPIError,
    LockError,
    RetriableAPIError,
    StopRequested,
    ZohoAPIError,
)
from connector.lake.bulk_jobs import BulkJobBook, PaidJob
from connector.lake.layout import DEFAULT_GRANULARITY, resolve_granularity
from connector.lake.manifest import FileEntry, ModuleReport
from connector.lake.output import Output
from connector.lake.schema import (
    TOMBSTONE_SCHEMA,
    ModuleSchema,
    module_schema,
)
from connector.lake.state import (
    DELETED_DIR,
    TOMBSTONE_TIME,
    ModuleState,
    StateStore,
    WatermarkTracker,
    data_dirs,
)
from connector.lake.tombstones import empty_tombstones
from connector.lake.writer import DatasetWriter
from connector.logging_setup import counted
from connector.readers import read_deleted
from connector.readers.base import BULK, COQL, MODIFIED_TIME, ReaderStats
from connector.readers.bulk_query import paid_jobs
from connector.readers.users import USERS_META
from connector.run import odd
from connector.run.catalog import Target
from connector.run.choosing import OverBudget, ReaderChooser
from connector.run.credits import CreditAttribution
from connector.run.landing import Landing, Sink
from connector.run.planner import (
    ReaderChoice,
)
from connector.run.progress import Progress
from connector.run.workers import RunStops
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import list_fields

__all__ = ["ModuleJob", "OverBudget", "RunContext", "Stopped"]

# The run's log lines keep one logger name, whichever of its modules writes them.
log = logging.getLogger("connector.run.sync")

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


class Stopped(StopRequested):
    """Raised inside a module's read when the run is stopping (credits, budget, a signal)."""

    def __init__(self, message: str = "the run is stopping") -> None:
        super().__init__(message)


@dataclass
class RunContext(RunStops):
    """What every module job of one run shares, and how it stops (:class:`RunStops`)."""

    settings: Settings
    client: ZohoClient
    output: Output
    store: StateStore
    run_id: str
    full_refresh: bool
    progress: Progress
    attribution: CreditAttribution
    checkpoint_rows: int
    sleep: Callable[[float], None] | None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


class ModuleJob:
    """Extracts one module (the caller holds its lock)."""

    def __init__(self, run: RunContext, target: Target, report: ModuleReport) -> None:
        self.run = run
        self.target = target
        self.report = report
        self.name = target.meta.api_name
        self.cap: datetime | None = None
        """The data watermark's cap: the server time the read started, minus the margin."""
        self.users = target.meta is USERS_META
        # Read in full every run, as a new generation, and partitioned by ``layout``: odd.py.
        self.full_each_run, self.layout = self.users, MODIFIED_TIME
        self.learned_refused: list[str] = []  # columns COQL refused, this run or an earlier one
        self.known_rows: int | None = None  # rows of the module's last full load, if known
        self.granularity = DEFAULT_GRANULARITY  # the folders of its records and tombstones
        self.book: BulkJobBook  # the module's paid Bulk jobs: set up by execute

    @cached_property
    def landing(self) -> Landing:
        """The write loop of this module's records and tombstones."""
        return Landing(
            run_id=self.run.run_id,
            report=self.report,
            check_stop=self._check_stop,
            commit_state=self._commit_state,
            holding=lambda: self.run.holding(self.name),
        )

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
        if self.run.stopping():
            raise Stopped
        lease = self.run.leases.get(self.name)
        if lease is not None and lease.lost:
            raise LockError(f"{self.name}: the lock was taken over by another run; stopping")

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
        """Read the module, write and commit its data and tombstones, fill in the report."""
        run, report, name = self.run, self.report, self.name
        report.recovered_files = run.store.recover(name)
        crashpoint("sync_recovered")
        state = run.store.load(name)
        report.watermark_before = _iso(state.watermark)
        report.deleted_watermark_before = _iso(state.deleted_watermark)
        schema = self._schema()
        had_data = state.watermark is not None or bool(state.committed_runs)
        everything = run.full_refresh or self.full_each_run
        incremental = state.watermark is not None and not everything
        new_generation = everything and had_data
        # One layout per dataset: a different granularity only with a new generation.
        self.granularity = resolve_granularity(
            name,
            state.partition_by,
            has_data=had_data,
            requested=run.settings.partition_by,
            replacing=everything,
        )
        report.mode = (
            "incremental" if incremental else ("full_refresh" if new_generation else "full")
        )
        if self.full_each_run:
            report.mode = "full_every_run"
        self._check_stop()
        # Taken before any record is read (the COQL probe of _choose included).
        started, self.cap = self._read_start()
        report.read_started_at_server = _iso(started)
        # Bulk jobs this run pays for are recorded, so that a run that dies does not waste them.
        self.book = BulkJobBook(run.output, name, after_run=state.last_run_id, cap=self.cap)
        self.book.sweep()

        base = state if incremental else ModuleState(module=name)
        target_state = self._target_state(state, incremental, new_generation)
        target_state.partition_by = self.granularity
        if not self.users:
            target_state.module_meta = self.target.meta.to_api()
        self._remember(state, target_state, full=not incremental)

        choice, first = self._choose(schema, base.watermark if incremental else None)
        report.reader, report.reason, report.fallback = (
            choice.reader,
            choice.reason,
            choice.fallback,
        )
        if choice.reader == BULK and first is None:
            self._cap_at_paid_jobs(schema, base.watermark if incremental else None, choice.rows)
        # Every commit of the new state records the columns and the reader it was written with.
        target_state.fields = tuple(schema.arrow.names)
        target_state.reader = choice.reader
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

        # The module's data is committed: no paid job is left to resume.
        self.book.clear()
        # Committed with the module's last commit only: a read stopped before it keeps the old.
        target_state.completed_at = datetime.now(timezone.utc)
        if incremental:
            self._read_deleted(target_state)
        else:
            # See the module docstring: deletions after the snapshot come at or after this time.
            target_state.deleted_watermark = target_state.watermark
            target_state.deleted_remembered = frozenset()
            self._commit_state(target_state)
        report.tombstone_files.extend(empty_tombstones(run.store, target_state, run.run_id))

        if new_generation:
            self._remove_old_generation(target_state)

        report.watermark_after = _iso(target_state.watermark)
        report.deleted_watermark_after = _iso(target_state.deleted_watermark)

    def paid_jobs(self, schema: ModuleSchema, since: datetime | None) -> list[PaidJob]:
        """The Bulk jobs earlier runs paid for that a Bulk read from ``since`` may take."""
        return paid_jobs(self.book, schema, since, self.run.client)

    def _cap_at_paid_jobs(
        self, schema: ModuleSchema, since: datetime | None, rows: int | None
    ) -> None:
        """Cap the watermark at the lowest cap of the paid jobs the Bulk read may take: their
        snapshots are older than this read (see :mod:`connector.lake.bulk_jobs`); the jobs this
        run pays for are recorded with the same cap."""
        caps = [job.cap for job in self.paid_jobs(schema, since) if job.cap is not None]
        if caps and self.cap is not None and min(caps) < self.cap:
            self.cap = min(caps)
            self.report.notes.append(
                f"watermark capped at {_iso(self.cap)}, the start of the run that paid for the "
                "Bulk job(s) taken: rows modified since are read by the next run"
            )
        self.book.cap_now, self.book.rows = self.cap, rows

    def _schema(self) -> ModuleSchema:
        """The module's schema (its fields fetched now unless discovery did), noted in the report.

        Also decides how the module is laid out and whether it is read in full every run.
        """
        fields = self.target.fields
        if fields is None:
            fields = list_fields(self.run.client, self.name)
        schema = module_schema(self.name, fields)
        self.report.skipped_fields = [f"{api_name} ({why})" for api_name, why in schema.skipped]
        self.report.warnings.extend(schema.warnings)
        self.layout, self.full_each_run, note = odd.read_shape(schema, users=self.users)
        if note:
            self.report.notes.append(note)
        return schema

    @staticmethod
    def _target_state(state: ModuleState, incremental: bool, new_generation: bool) -> ModuleState:
        """The state this run commits, starting from the committed ``state``."""
        if new_generation:
            # The new generation's state lists only its own files; the old ones go after commit.
            target = replace(state, committed_runs={})
        else:
            target = replace(state, committed_runs=dict(state.committed_runs))
        if not incremental:
            target.watermark = None
            target.remembered = frozenset()
        return target

    def _remember(self, state: ModuleState, target: ModuleState, *, full: bool) -> None:
        """Carry what earlier runs learned about reading the module into this one, and have
        every commit of this run record what it learns (the live lists, not copies)."""
        self.learned_refused = list(dict.fromkeys([*state.coql_refused, *self.learned_refused]))
        self.known_rows = state.full_rows
        self._target = target
        self._full = full

    def _learned_into_state(self) -> None:
        """Note in the state being committed what this run learned (called before a commit)."""
        target = getattr(self, "_target", None)
        if target is None:
            return
        target.coql_refused = tuple(self.learned_refused)
        if self._full:
            target.full_rows = self.report.rows

    def _remove_old_generation(self, target: ModuleState) -> None:
        """Delete the data and tombstone files the committed ``target`` does not list."""
        output = self.run.output
        for rel_dir in data_dirs(self.name):
            for path in output.list_files(rel_dir, ".parquet"):
                if not target.covers(path):
                    output.delete(path)
                    crashpoint("sync_old_generation_deleted")
                    self.report.removed_files.append(path)

    def _choose(
        self, schema: ModuleSchema, since: datetime | None
    ) -> tuple[ReaderChoice, pa.RecordBatch | None]:
        """The reader (:mod:`connector.run.choosing`), and the rows a COQL probe already read
        when that probe was the read."""
        return ReaderChooser(self, schema).choose(since)

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
        report = self.report
        restarts = 0
        while True:
            reader = odd.module_reader(
                choice.reader,
                self.run.client,
                self.run.settings.tuning,
                schema,
                on_progress=self._on_progress,
                sleep=self.run.sleep,
                # Downloads go to the output's scratch area, not the system's temp dir: a killed
                # run's files are then swept by the next run's recover().
                scratch_dir=self.run.output.tmp_path(f"{self.name}/bulk/_").parent,
                # A counted full load: COQL asks each page for the cheapest LIMIT holding the rest.
                expected_rows=choice.fitted_rows,
                book=self.book,
            )
            if first is not None:
                batches: Iterator[pa.RecordBatch] = iter([first])
                ordered = True
            else:
                since = base.watermark
                batches = reader.read(self.target.meta, schema, since)
                ordered = reader.ordered
            try:
                self._consume(batches, schema, base, target, ordered and checkpoints, ordered)
            except FatalAPIError as exc:
                if choice.reader != COQL or self._coql_refused(exc, schema) is None:
                    raise
                # Nothing was written: a refusal comes with the first page of every group.
                choice, first = self._choose(schema, base.watermark)
                report.reader, report.reason = choice.reader, choice.reason
                report.fallback = choice.fallback
                continue
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

    def _coql_refused(self, exc: ZohoAPIError, schema: ModuleSchema) -> str | None:
        return odd.learn_refusal(exc, schema, self.learned_refused, self.report)

    def _add_stats(self, stats: ReaderStats) -> None:
        self.report.pages += stats.pages
        self.report.jobs += stats.jobs
        if stats.gone:
            # The plan was to resume; the reason says what the read did instead.
            gone = f"{counted(stats.gone, 'paid job')} gone at Zoho, paid for again"
            self.report.reason = "; ".join(filter(None, [self.report.reason, gone]))
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
        writer = odd.records_writer(
            run.output,
            schema,
            run.run_id,
            self.layout,
            ordered=ordered,
            granularity=self.granularity,
        )
        tracker = odd.tracker(target, self.cap, full_each_run=self.full_each_run)
        # A restart reads the deferred rows again: count this attempt's only.
        self.report.deferred_rows = 0
        sink = Sink(
            writer,
            tracker,
            base,
            target,
            written_point="sync_batch_written",
            committed_point="sync_data_committed",
            landed=self._land_records,
            # A module read in full every run keeps no watermark: nothing to defer past.
            defer_cap=None if self.full_each_run else self.cap,
        )
        self.landing.drain(
            batches, sink, checkpoint_rows=run.checkpoint_rows if checkpoint else None
        )

    def _land_records(self, files: list[FileEntry], rows: int) -> None:
        self.report.files.extend(files)
        self.report.rows += rows

    def _commit_state(self, target: ModuleState) -> None:
        self._learned_into_state()
        target.last_run_id = self.run.run_id
        with self.run.holding(self.name):
            self.run.store.commit(target)
        crashpoint("sync_state_committed")

    # deletions ---------------------------------------------------------------------------------

    def _read_deleted(self, target: ModuleState) -> None:
        run, name = self.run, self.name
        self._check_stop()
        writer = DatasetWriter(
            run.output,
            f"{DELETED_DIR}/{name}",
            TOMBSTONE_SCHEMA,
            run.run_id,
            partition_column=TOMBSTONE_TIME,
            partition_name="deleted_date",
            granularity=self.granularity,
        )
        base = replace(target)
        # Deletions made while this read pages are stamped at or after its start: cap there.
        # Tombstones are not deferred like records (defer_live_edge): a record is deleted once,
        # so no later tombstone can share an (id, deleted_time) pair with a different content;
        # one deleted again within the same second after a restore from the recycle bin says
        # nothing new (it is gone either way), and the cap still re-reads anything deleted
        # during this read.
        _, cap = self._read_start()
        tracker = WatermarkTracker.from_state(target, time_column=TOMBSTONE_TIME, cap=cap)
        sink = Sink(
            writer,
            tracker,
            base,
            target,
            written_point="sync_tombstones_written",
            committed_point="sync_tombstones_committed",
            landed=self._land_tombstones,
        )
        self.landing.drain(
            read_deleted(run.client, name, target.deleted_watermark), sink, checkpoint_rows=None
        )

    def _land_tombstones(self, files: list[FileEntry], rows: int) -> None:
        self.report.tombstone_files.extend(files)
        self.report.tombstones += rows
