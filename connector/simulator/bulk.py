"""Bulk Read jobs: the state machine, the ZIP/CSV result files, page tokens, the download limit.

zoho-api.md §3: a job is created with 201 ``ADDED_SUCCESSFULLY``; its state moves ADDED → QUEUED →
IN PROGRESS → COMPLETED (or FAILURE); the result is a ZIP holding ``<job_id>.csv`` with at most
``page_size`` rows (200,000 on Zoho), later pages through ``page`` or ``page_token``; 10
downloads per minute per org, then 429 until a minute has passed. Assumed, as the least
convenient reading of "served again after one minute": the window slides (any 60 s, not the
calendar minute), and every refused download starts the minute again, so a client that asks
again within the minute keeps itself locked out. Here each status poll advances a job one step, so a job reaches COMPLETED
after ``polls`` polls (no timers), provided its result file is ready; the file is written by a
background thread started when the job is created.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.simulator.clock import Clock
from connector.simulator.store import with_converted

if TYPE_CHECKING:
    from connector.simulator.faults import FaultInjector
    from connector.simulator.store import ModuleStore

PAGE_TOKEN_LIFETIME = timedelta(hours=24)
# zoho-api.md §3: a job's result can be downloaded for one day. Assumed, as the least convenient
# reading: after that Zoho no longer knows the job at all (its status and its result are 404
# RESOURCE_NOT_FOUND, as for an id it never issued).
JOB_LIFETIME = timedelta(days=1)
DOWNLOADS_PER_MINUTE = 10
CHUNK_ROWS = 50_000

# States seen by successive status polls before COMPLETED, by how many polls it takes.
ADDED, QUEUED, IN_PROGRESS, COMPLETED, FAILURE = (
    "ADDED",
    "QUEUED",
    "IN PROGRESS",
    "COMPLETED",
    "FAILURE",
)

# (module api_name, rows, with header?) -> CSV bytes
CsvWriter = Callable[[str, pa.Table, bool], bytes]


@dataclass
class BulkQuery:
    """What a job exports: module, columns (``id`` first), filter and where its page starts."""

    module: str
    columns: list[str]
    fields_echo: list[str]
    criteria: Any
    where: Any
    page: int = 1
    after_id: str | None = None  # keyset start (from a page token)
    skip_rows: int = 0  # offset start (from ``page``)

    def binding(self) -> tuple[Any, ...]:
        """What a page token is bound to."""
        return (self.module, tuple(self.columns), repr(self.criteria))


@dataclass
class PageToken:
    """A bulk page token: the query it continues, and where."""

    query: BulkQuery
    page: int
    after_id: str
    expires_at: datetime


@dataclass
class BulkJob:
    """One Bulk Read job."""

    id: str
    query: BulkQuery
    created_time: datetime
    created_by: dict[str, str]
    fail: bool
    polls: int = 0
    state: str = ADDED
    count: int = 0
    more_records: bool = False
    next_page_token: str | None = None
    last_id: str | None = None
    result_path: Path | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BulkError(Exception):
    """A refused bulk call: HTTP status, Zoho code, message, details."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class BulkManager:
    """Holds the jobs, builds their files, meters downloads. Thread-safe."""

    def __init__(
        self,
        *,
        stores: Callable[[str], ModuleStore],
        csv_writer: CsvWriter,
        id_after: Callable[[str], Any],
        clock: Clock,
        workdir: Path,
        faults: FaultInjector,
        page_size: int = 200_000,
        polls: int = 2,
        download_limit_per_minute: int = DOWNLOADS_PER_MINUTE,
        completion_wait: float = 2.0,
        compression: int = zipfile.ZIP_DEFLATED,
    ) -> None:
        self._stores = stores
        self._csv = csv_writer
        self._id_after = id_after
        self.clock = clock
        self.workdir = workdir
        self.faults = faults
        self.page_size = page_size
        self.polls = polls
        self.download_limit = download_limit_per_minute
        # A status poll that would show COMPLETED waits this long (seconds) for the file, so
        # small jobs finish deterministically; a big job keeps showing IN PROGRESS.
        self.completion_wait = completion_wait
        # ZIP_DEFLATED like Zoho's files; ZIP_STORED makes big jobs faster (benchmarks).
        self.compression = compression
        self.jobs: dict[str, BulkJob] = {}
        self.tokens: dict[str, PageToken] = {}
        self._downloads: deque[datetime] = deque()
        self._downloads_blocked_until: datetime | None = None
        self.downloads_refused = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- create ---------------------------------------------------------------------------
    def resolve_token(self, token: str) -> PageToken:
        """The page token's state, or a BulkError when unknown or expired."""
        with self._lock:
            state = self.tokens.get(token)
        if state is None:
            raise BulkError(400, "INVALID_DATA", "invalid data", {"api_name": "page_token"})
        if state.expires_at <= self.clock():
            raise BulkError(
                400, "EXPIRED_VALUE", "the page_token has expired", {"api_name": "page_token"}
            )
        return state

    def create(self, query: BulkQuery, created_by: dict[str, str]) -> BulkJob:
        """Register a job and start building its result in the background."""
        job_id = f"{5_725_767_000_000_000_000 + next(self._ids) * 1_013}"
        job = BulkJob(
            id=job_id,
            query=query,
            created_time=self.clock(),
            created_by=created_by,
            fail=self.faults.take_bulk_failure(),
        )
        with self._lock:
            self.jobs[job_id] = job
        if job.fail:
            job.done.set()
        else:
            threading.Thread(
                target=self._build, args=(job,), daemon=True, name=f"bulk-{job_id}"
            ).start()
        return job

    def _build(self, job: BulkJob) -> None:
        try:
            self._write_result(job)
        except Exception as exc:  # the job fails like a Zoho job would; the error is kept
            job.error = f"{type(exc).__name__}: {exc}"
            job.fail = True
        finally:
            job.done.set()

    def _write_result(self, job: BulkJob) -> None:
        q = job.query
        store = self._stores(q.module)
        # Assumed (the Bulk Read pages are silent): a job leaves converted leads out unless its
        # criteria name Converted__s, like the Records API's default.
        where = with_converted(store.meta, q.where)
        if q.after_id is not None:
            where = (
                self._id_after(q.after_id)
                if where is None
                else _and(where, self._id_after(q.after_id))
            )
        path = self.workdir / f"{job.id}.zip"
        to_skip, left = q.skip_rows, self.page_size
        first, more, last_id = True, False, None
        with (
            zipfile.ZipFile(path, "w", self.compression, compresslevel=1) as zf,
            zf.open(f"{job.id}.csv", "w", force_zip64=True) as out,
        ):
            for table in store.iter_tables(q.columns, where=where, chunk_rows=CHUNK_ROWS):
                if to_skip:
                    dropped = min(to_skip, table.num_rows)
                    table = table.slice(dropped)
                    to_skip -= dropped
                if table.num_rows == 0:
                    continue
                if left == 0:
                    more = True
                    break
                part = table.slice(0, left)
                out.write(self._csv(q.module, part, first))
                first = False
                left -= part.num_rows
                last_id = str(part.column("id")[-1].as_py())
                if part.num_rows < table.num_rows:
                    more = True
                    break
            if first:
                empty = store.select(q.columns, limit=0)
                out.write(self._csv(q.module, empty, True))
        job.count = self.page_size - left
        job.result_path = path
        job.last_id = last_id
        job.more_records = more
        if more and last_id is not None:
            token = secrets.token_hex(20)
            with self._lock:
                self.tokens[token] = PageToken(
                    query=q,
                    page=q.page + 1,
                    after_id=last_id,
                    expires_at=self.clock() + PAGE_TOKEN_LIFETIME,
                )
            job.next_page_token = token

    # --- status ---------------------------------------------------------------------------
    def get(self, job_id: str) -> BulkJob:
        """The job, or 404 RESOURCE_NOT_FOUND (an unknown id, or a job a day old or more)."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is not None and self.clock() - job.created_time >= JOB_LIFETIME:
                del self.jobs[job_id]
                if job.result_path is not None:
                    job.result_path.unlink(missing_ok=True)
                job = None
        if job is None:
            raise BulkError(
                404,
                "RESOURCE_NOT_FOUND",
                "the requested resource doesn't exist",
                {"resource": job_id},
            )
        return job

    def poll(self, job_id: str) -> BulkJob:
        """Advance the job one step (one status call) and return it."""
        job = self.get(job_id)
        with self._lock:
            if job.state in (COMPLETED, FAILURE):
                return job
            job.polls += 1
            step = job.polls
        if step >= self.polls:
            if job.fail or job.done.wait(self.completion_wait):
                job.state = FAILURE if job.fail else COMPLETED
            else:
                job.state = IN_PROGRESS
        else:
            job.state = QUEUED if step == 1 and self.polls > 2 else IN_PROGRESS
        return job

    # --- download -------------------------------------------------------------------------
    def take_download_slot(self) -> int | None:
        """Count a download; None when allowed, else the seconds until downloads resume."""
        minute = timedelta(minutes=1)
        with self._lock:
            now = self.clock()
            while self._downloads and now - self._downloads[0] >= minute:
                self._downloads.popleft()
            blocked = self._downloads_blocked_until
            if len(self._downloads) >= self.download_limit or (
                blocked is not None and now < blocked
            ):
                # Refused: downloads resume a minute after this refusal.
                self.downloads_refused += 1
                self._downloads_blocked_until = now + minute
                return math.ceil(minute.total_seconds())
            self._downloads.append(now)
            return None

    def result_file(self, job_id: str) -> Path:
        """The ZIP of a COMPLETED job."""
        job = self.get(job_id)
        if job.state != COMPLETED or job.result_path is None:
            # Zoho's answer for an unfinished job is undocumented; a 400 is the likely shape.
            raise BulkError(400, "INVALID_REQUEST", "the job is not completed yet", {"id": job_id})
        return job.result_path


def _and(left: Any, right: Any) -> Any:
    from connector.simulator.query import And

    return And((left, right))
