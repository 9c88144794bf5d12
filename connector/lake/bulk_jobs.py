"""Paid Bulk Read jobs, recorded durably so that a later run downloads their result instead of
paying for the same job again.

A Bulk Read job costs 50 credits when it is created, and its result stays downloadable for a day
(zoho-api.md §3). A run that dies after paying (a crash, ``kill -9``, a stop mid-download, a
full disk, a failing later page) commits nothing of a Bulk read, so without a record the next
run would pay again. So the moment Zoho answers a create call, the job is written to
``DIR/_state/<Module>.bulkjobs`` (next to the module's state and lease; atomic and fsync'd like
the state; not ``.json``, which names a module's state): its id, the field group it exports, its
criteria (the watermark it reads from), the page (the first page from the query, or the hash
of the page token a later page was created from: the token itself is never stored), Zoho's
``created_time``, the run's watermark cap and the state it was paid on.

**When a later run may use a recorded job** (:meth:`BulkJobBook.find`): only for exactly the
request it would send itself, and only while nothing has been committed since:

* the same module and the same fields of the field group (a schema change is a new request);
* the same criteria (the same ``Modified_Time >=`` watermark, the same converted-leads rule);
  a full load and an incremental read, or two different watermarks, never share a job;
* a later page only when created from the same page token, i.e. the continuation of the very
  job the run has just taken for the page before (pages of two snapshots are never mixed);
* the module's state still the one the job was paid on (its ``last_run_id``): once any run has
  committed the module, a recorded job is stale (its rows are behind the new watermark);
* less than a day old by Zoho's clock, with an hour's margin for the download (a job that old
  may expire before its download is done).

Zoho then decides: a status call (1 credit) says COMPLETED (or still running: polled as usual),
and the result is downloaded (1 credit); a job Zoho no longer knows, or that failed, is forgotten
and a new one created.

**Why this never skips data.** A recorded job's rows are the rows a new job would have given at
its creation time: an older snapshot of the same request. The watermark rule still holds if the
run caps its watermark, and defers rows, at the cap of the run that paid for the job (the
server's time before that read began, stored here), not at its own: every row written is then
from a second that was over before the snapshot, and rows modified after it have a
``Modified_Time`` at or after the cap, so the next incremental run reads them
(applied by :mod:`connector.run.module_job`). The record is removed once
the module's data is committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from connector.lake.output import Output
from connector.lake.state import STATE_DIR, StateStore
from connector.zoho.limits import BULK_RESULT_LIFETIME

log = logging.getLogger(__name__)

JOBS_SUFFIX = ".bulkjobs"
RECORD_VERSION = 1
# Zoho keeps a job's result a day; one taken later than this may expire before it is downloaded
# (downloads wait out Zoho's 10 a minute).
RESUME_WITHIN = timedelta(seconds=BULK_RESULT_LIFETIME) - timedelta(hours=1)


def token_hash(token: str | None) -> str | None:
    """The SHA-256 of a page token (a later page's job is recorded by it; None: the first)."""
    if token is None:
        return None
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("a time is not text")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed.astimezone(timezone.utc)


def _canonical(criteria: Any) -> str:
    """The criteria as text that compares equal exactly when the JSON sent would be equal."""
    return json.dumps(criteria, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class PaidJob:
    """One Bulk Read job a run has paid for."""

    id: str
    module: str
    fields: tuple[str, ...]
    """The field group the job exports (``id`` first, as the reader groups them)."""
    criteria: Any
    """The criteria JSON of the first page's query (None: every row)."""
    page: int
    token_sha256: str | None
    """The hash of the page token the job was created from; None for the first page."""
    created_time: datetime
    """When Zoho created the job (its ``created_time``; the server's clock, UTC)."""
    cap: datetime | None
    """The watermark cap of the run that paid: rows at or after it are left for the next run."""
    after_run: str | None
    """The module state's ``last_run_id`` when the job was paid: valid while it is unchanged."""
    rows: int | None = None
    """The rows the paying run's planner counted for the read, if it counted them."""

    def to_json(self) -> dict[str, Any]:
        """The job as stored."""
        return {
            "id": self.id,
            "module": self.module,
            "fields": list(self.fields),
            "criteria": self.criteria,
            "page": self.page,
            "token_sha256": self.token_sha256,
            "created_time": _iso(self.created_time),
            "cap": _iso(self.cap),
            "after_run": self.after_run,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, doc: Any) -> PaidJob:
        """Parse a stored job; ``ValueError``/``TypeError``/``KeyError`` when malformed."""
        if not isinstance(doc, dict):
            raise TypeError("a job is not an object")
        fields = doc["fields"]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise TypeError("fields is not a list of names")
        created = _when(doc["created_time"])
        if created is None:
            raise ValueError("a job has no created_time")
        page, rows = doc["page"], doc.get("rows")
        if not isinstance(page, int) or (rows is not None and not isinstance(rows, int)):
            raise TypeError("page or rows is not a number")
        texts = [doc["id"], doc["module"], doc.get("token_sha256"), doc.get("after_run")]
        if not all(t is None or isinstance(t, str) for t in texts) or texts[0] is None:
            raise TypeError("id, module, token_sha256 or after_run is not text")
        return cls(
            id=str(doc["id"]),
            module=str(doc["module"]),
            fields=tuple(fields),
            criteria=doc.get("criteria"),
            page=page,
            token_sha256=doc.get("token_sha256"),
            created_time=created,
            cap=_when(doc.get("cap")),
            after_run=doc.get("after_run"),
            rows=rows,
        )


class BulkJobBook:
    """The paid Bulk Read jobs of one module in one output: recorded, found, forgotten.

    ``after_run`` is the module state's ``last_run_id`` as this run found it; ``cap`` and
    ``rows`` are what this run's new records carry (set once the run knows them). Writes happen
    under the module's lock, like the state's. A record that cannot be read is ignored (the
    worst that costs is a new job); one that cannot be written is a warning (the job is still
    finished by this run, it only cannot be resumed by the next).
    """

    def __init__(
        self,
        output: Output,
        module: str,
        *,
        after_run: str | None,
        cap: datetime | None = None,
        rows: int | None = None,
    ) -> None:
        self.output = output
        self.module = module
        self.after_run = after_run
        self.cap_now = cap
        self.rows = rows
        self.rel = self.path(module)
        self._jobs: list[PaidJob] | None = None

    @staticmethod
    def path(module: str) -> str:
        """``_state/<Module>.bulkjobs``, relative to the output."""
        return StateStore.state_path(module)[: -len(".json")] + JOBS_SUFFIX

    def sweep(self) -> None:
        """Remove the scratch files of a record write a killed run left (under the lock)."""
        self.output.sweep_tmp(f"{STATE_DIR}/{self.module}{JOBS_SUFFIX}.")

    # --- reading -------------------------------------------------------------------------------

    def jobs(self) -> list[PaidJob]:
        """Every recorded job (loaded once)."""
        if self._jobs is None:
            self._jobs = self._load()
        return list(self._jobs)

    def _load(self) -> list[PaidJob]:
        data = self.output.read_bytes(self.rel)
        if data is None:
            return []
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
                raise ValueError("not a version 1 record")
            raw = doc["jobs"]
            if not isinstance(raw, list):
                raise TypeError("jobs is not a list")
            return [PaidJob.from_json(item) for item in raw]
        except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            log.warning(
                "%s: the record of paid Bulk jobs %s is unreadable (%s); it is ignored",
                self.module,
                self.output.describe(self.rel),
                exc,
            )
            return []

    def _usable(self, job: PaidJob, now: datetime) -> bool:
        """Whether ``job`` is still this module's, on this state, and young enough."""
        return (
            job.module == self.module
            and job.after_run == self.after_run
            and now - job.created_time < RESUME_WITHIN
        )

    def usable(
        self, groups: Sequence[Sequence[str]], criteria: Any, now: datetime
    ) -> list[PaidJob]:
        """The recorded jobs a read of ``groups`` with ``criteria`` may take (see the module
        docstring): the first page of a group, and the pages paid after it."""
        wanted = {tuple(g) for g in groups}
        text = _canonical(criteria)
        return [
            job
            for job in self.jobs()
            if self._usable(job, now) and job.fields in wanted and _canonical(job.criteria) == text
        ]

    def find(
        self, fields: Sequence[str], criteria: Any, token: str | None, now: datetime
    ) -> PaidJob | None:
        """The recorded job that is exactly this request (group, criteria, page token), if any."""
        sha = token_hash(token)
        for job in self.usable([fields], criteria, now):
            if job.token_sha256 == sha:
                return job
        return None

    # --- writing -------------------------------------------------------------------------------

    def paid(
        self,
        job_id: str,
        fields: Sequence[str],
        criteria: Any,
        *,
        page: int,
        token: str | None,
        created_time: datetime,
    ) -> PaidJob:
        """Record a job Zoho has just created (and charged for), durably."""
        job = PaidJob(
            id=job_id,
            module=self.module,
            fields=tuple(fields),
            criteria=criteria,
            page=page,
            token_sha256=token_hash(token),
            created_time=created_time.astimezone(timezone.utc),
            cap=self.cap_now,
            after_run=self.after_run,
            rows=self.rows,
        )
        # A job recorded for the same request before (now forgotten by Zoho) is replaced.
        kept = [
            j
            for j in self.jobs()
            if not (j.fields == job.fields and j.token_sha256 == job.token_sha256)
        ]
        self._write([*kept, job])
        return job

    def forget(self, job_ids: Sequence[str]) -> None:
        """Drop jobs Zoho no longer serves (or whose result is unusable)."""
        ids = set(job_ids)
        current = self.jobs()
        kept = [job for job in current if job.id not in ids]
        if len(kept) != len(current):
            self._write(kept)

    def clear(self) -> None:
        """Remove the record (the module's data is committed: no paid job is pending)."""
        self._jobs = []
        if self.output.exists(self.rel):
            self.output.delete(self.rel)

    def _write(self, jobs: list[PaidJob]) -> None:
        self._jobs = jobs
        if not jobs:
            self.clear()
            return
        doc = {
            "version": RECORD_VERSION,
            "module": self.module,
            "jobs": [j.to_json() for j in jobs],
        }
        body = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        try:
            self.output.write_bytes_atomic(self.rel, body.encode("utf-8"))
        except OSError as exc:
            log.warning(
                "%s: could not record the paid Bulk job(s) in %s (%s); a run that dies before "
                "this one commits will pay for them again",
                self.module,
                self.output.describe(self.rel),
                exc,
            )
