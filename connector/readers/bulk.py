"""Bulk Read reader: jobs that export CSV files in ZIPs, streamed into Arrow batches.

One job per page and field group: ``POST /crm/bulk/{v}/read`` (50 credits), status polls with
exponential backoff from ``tuning.bulk_poll_initial`` to ``bulk_poll_max`` (1 credit each, so the
first poll waits ``bulk_poll_initial``), then the result ZIP is downloaded to a scratch file and
its CSV extracted beside it (``zipfile`` checks the CRC as the last byte is read; the ZIP is then
removed), and only then parsed from that file by
:func:`connector.lake.csvbatches.batches_from_csv` (Arrow reads it on its own threads): a batch
never comes from a file not known to be complete, and the file is never held in memory. Later
pages are new jobs with ``{"query": {"page_token": …}}``, created, polled and downloaded on a
background thread while the page before is parsed.

Faults. A job that ends in ``FAILURE`` is created again (at most ``MAX_JOB_ATTEMPTS`` times); a
truncated or corrupt ZIP is downloaded again (``MAX_DOWNLOADS`` times), then its job created again.
A download Zoho refuses with 429 (10 downloads a minute per org) never costs the job: the client
paces downloads across workers and downloads the same result again once the minute has passed
(:mod:`connector.zoho.pacing`, :mod:`connector.zoho.retry`); the result stays downloadable a day.
A page whose CSV holds another number of rows than the job's ``result.count`` raises
:class:`RetriableAPIError` (``BULK_INCOMPLETE``). A refused page token (expired after 24 h, or
unknown) raises :class:`RetriableAPIError` with code ``BULK_PAGE_TOKEN``: a Bulk read is unordered,
so its caller commits nothing until ``read`` returns, and restarts the module from its last committed
watermark. ``MODULE_NOT_SUPPORTED`` surfaces as :class:`ModuleUnavailable` from the client.

Paid jobs. With a :class:`~connector.lake.bulk_jobs.BulkJobBook` (``book``), every job is
recorded durably the moment Zoho answers its create call, and a job the book holds for exactly
this request (group, criteria, page token; the rules are the book's) is taken instead of a new
one: one status call, and its result downloaded, for 2 credits instead of 53. A job Zoho no
longer knows (404) or that failed is forgotten and created anew; so are a page's jobs whose file
is incomplete, and every recorded job when a page token is refused (the chain of pages broke).

Field groups. A job exports at most 200 fields; more fields take one job per group of 200 (each with
``id`` and ``Modified_Time``), joined by id page by page. Groups are separate snapshots taken a few
seconds apart, so a record can change between them. Such a record (present in one group's page but
not another's, or with differing ``Modified_Time``) is never half-merged. Dropping it would not be
safe: its new version is newer than this page's snapshot, but a *later* page's job may see records
modified even later, so the run's watermark can pass the dropped record's new ``Modified_Time``. So
the reader reads such records again at the end, by id, through the Records API (the values are
normalised by the same :mod:`connector.lake.schema`), and gives up with a retriable error if they keep
changing. A page's groups are joined a few buckets of ids at a time, spilled to the scratch
directory (:mod:`connector.readers.bucketjoin`): memory is bounded by neither the page nor the module.
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.crashpoints import crash_on_write, crashpoint
from connector.errors import DataError, FatalAPIError, ModuleUnavailable, RetriableAPIError
from connector.lake.raw_values import RAW_VALUES
from connector.readers.base import (
    ID,
    Prefetch,
    ReaderBase,
)
from connector.readers.bulk_query import bulk_request, created_time, zoho_now
from connector.readers.paging import BulkCursor
from connector.readers.records import complete_rows

if TYPE_CHECKING:
    from connector.lake.bulk_jobs import BulkJobBook, PaidJob
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient
    from connector.zoho.metadata import ModuleMeta

log = logging.getLogger(__name__)

MAX_JOB_ATTEMPTS = 3
MAX_DOWNLOADS = 3
# Reader errors after which the current page's recorded jobs are not taken again: their files
# are not what their jobs counted, or the field groups' jobs disagree.
BAD_PAGE_CODES = frozenset({"BULK_INCOMPLETE", "BULK_UNSTABLE"})
# Zoho's answer for a job id it does not know (or no longer keeps).
JOB_UNKNOWN = "RESOURCE_NOT_FOUND"
# Rounds of reading records that changed between field groups again, by id.
MAX_REREAD_ROUNDS = 3
# Arrow's streaming CSV reader reads up to 32 blocks ahead on its I/O thread (as Python bytes from
# the ZIP stream) and parses a few more: 8 MB blocks held about 200 MB of a 100k-row read, 2 MB
# blocks 60-100 MB; 512 KB blocks cap the read-ahead at 16 MB, and read as fast.
CSV_BLOCK_SIZE = 512 << 10
# Bytes a ZIP member is copied out in.
EXTRACT_CHUNK = 1 << 20
# Arrow cannot parse a row longer than one block ("straddling object"); a file with such a row
# (long text areas) is read again from the first row not yet given, with blocks this much bigger.
CSV_BLOCK_GROWTH = 8
CSV_BLOCK_MAX = 256 << 20


@dataclass
class JobResult:
    """A completed job's page: where its file is and what Zoho says about it."""

    path: Path | None
    count: int
    more_records: bool
    next_page_token: str | None
    job_id: str = ""


def _api_version(client: ZohoClient) -> str:
    settings = getattr(client, "settings", None)
    return str(getattr(settings, "api_version", None) or "v8")


def _extract_csv(archive_path: Path, csv_path: Path) -> bool:
    """Write the CSV member of a complete, intact ZIP to ``csv_path``; False (nothing written)
    when the file is truncated or corrupt. One pass: ``zipfile`` checks the member's CRC when
    its last byte is read."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                return False
            with archive.open(names[0]) as member, open(csv_path, "wb") as out:
                shutil.copyfileobj(member, out, EXTRACT_CHUNK)
        return True
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        OSError,
        ValueError,
        # An unknown compression method or an encrypted member: not a file Zoho would send.
        NotImplementedError,
        RuntimeError,
    ):
        csv_path.unlink(missing_ok=True)
        return False


class _ReadClosed(Exception):
    """The read was closed while the next page's job was being prepared in the background."""


@dataclass(eq=False, repr=False)
class BulkReader(ReaderBase):
    """Reads a module through Bulk Read jobs; batches come in no particular order."""

    name = "bulk"
    ordered = False
    scratch_dir: str | Path | None = field(default=None, kw_only=True)
    """Where the result ZIPs go while they are read (the system's temp dir when None)."""
    book: BulkJobBook | None = field(default=None, kw_only=True)
    """Where paid jobs are recorded and found again (None: jobs are neither recorded nor reused)."""

    def __post_init__(self) -> None:
        self._base = f"/crm/bulk/{_api_version(self.client)}/read"
        self._closing = threading.Event()

    def _pause(self, seconds: float) -> None:
        """Wait between status polls. A read being closed (a stop, an error) ends the wait of the
        next page's job, prepared in the background: that job stays recorded, resumable."""
        if self._closing.is_set():
            raise _ReadClosed
        if self.sleep is time.sleep:
            self._closing.wait(seconds)  # a real wait, which the close cuts short
        else:
            self.sleep(seconds)
        if self._closing.is_set():
            raise _ReadClosed

    # --- one job -------------------------------------------------------------------------------

    def _create(
        self,
        module: str,
        fields: Sequence[str],
        criteria: dict | None,
        token: str | None,
        page: int = 1,
    ) -> str:
        """Create the job (50 credits) and record it in the book at once; its id."""
        query: dict[str, Any]
        if token is not None:
            query = {"page_token": token}
        else:
            query = {"module": {"api_name": module}, "fields": [f for f in fields if f != ID]}
            if criteria is not None:
                query["criteria"] = criteria
        try:
            body = self.client.post_json(self._base, {"query": query, "file_type": "csv"})
        except ModuleUnavailable:
            raise
        except FatalAPIError as exc:
            if token is None:
                raise
            raise RetriableAPIError(
                f"{module}: Zoho refused the Bulk Read page token ({exc.code}); "
                "restart the module from its last committed watermark",
                status=exc.status,
                code="BULK_PAGE_TOKEN",
                url=exc.url,
                details=exc.details,
            ) from exc
        self.stats.jobs += 1
        try:
            details = (body or {})["data"][0]["details"]
            job_id = str(details["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise DataError(f"{module}: the Bulk Read create answer has no job id") from exc
        if self.book is not None:
            created = created_time(details.get("created_time")) or zoho_now(self.client)
            self.book.paid(job_id, fields, criteria, page=page, token=token, created_time=created)
            crashpoint("bulk_job_recorded")
        return job_id

    def _resume(
        self, module: str, fields: Sequence[str], criteria: dict | None, token: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """(job id, its ``result``) of a job paid for earlier that Zoho still serves, completed;
        None when the book holds none for this request (or Zoho no longer has it)."""
        paid = self.book.find(fields, criteria, token, zoho_now(self.client)) if self.book else None
        if paid is None:
            return None
        try:
            result = self._wait(module, paid.id, immediate=True)
        except ModuleUnavailable:
            raise
        except FatalAPIError as exc:
            # Expired (a day old) or unknown: Zoho's 404 RESOURCE_NOT_FOUND.
            result = None
            self.stats.gone += 1
            self.stats.notes.append(
                f"{module}: Bulk Read job {paid.id} paid for by an earlier run is gone "
                f"({exc.code}); creating a new one"
            )
        if result is None:
            self._forget(paid)
            return None
        self.stats.notes.append(
            f"{module}: resumed Bulk Read job {paid.id} (page {paid.page}) paid for by an "
            "earlier run: its result downloaded, no new job"
        )
        log.info("%s: resuming Bulk Read job %s paid for by an earlier run", module, paid.id)
        return paid.id, result

    def _forget(self, paid: PaidJob | str) -> None:
        if self.book is not None:
            self.book.forget([paid if isinstance(paid, str) else paid.id])

    def _wait(self, module: str, job_id: str, *, immediate: bool = False) -> dict[str, Any] | None:
        """Poll until COMPLETED (the job's ``result``) or FAILURE (None); ``immediate``: the
        first poll without waiting (a job created by an earlier run)."""
        wait = 0.0 if immediate else self.tuning.bulk_poll_initial
        waited = 0.0
        while True:
            if waited >= self.tuning.bulk_poll_timeout:
                raise RetriableAPIError(
                    f"{module}: Bulk Read job {job_id} did not complete within "
                    f"{self.tuning.bulk_poll_timeout:g} s",
                    code="BULK_TIMEOUT",
                )
            self._pause(wait)
            waited += wait
            body = self.client.get_json(f"{self._base}/{job_id}")
            crashpoint("bulk_polled")
            try:
                job = (body or {})["data"][0]
                state = str(job["state"])
                result = job.get("result") or {}
                if not isinstance(result, dict):
                    raise TypeError("result is not an object")
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise DataError(f"{module}: the Bulk Read status answer has no state") from exc
            if state == "COMPLETED":
                return dict(result)
            if state == "FAILURE":
                error = result.get("error_message") or {}
                code = error.get("code") if isinstance(error, dict) else None
                self.stats.notes.append(f"{module}: Bulk Read job {job_id} failed ({code})")
                return None
            wait = (
                min(wait * 2, self.tuning.bulk_poll_max)
                if wait > 0
                else self.tuning.bulk_poll_initial
            )

    def _download(self, url: str, dest: Path) -> Path | None:
        """Download a result ZIP to ``dest`` and extract its CSV beside it (the ZIP removed);
        the CSV's path, or None when the file is incomplete."""
        with open(dest, "wb") as handle:
            self.client.download(url, crash_on_write(handle, "bulk_download_chunk"))
        crashpoint("bulk_downloaded")
        extracted = dest.with_suffix(".csv")
        intact = _extract_csv(dest, extracted)
        dest.unlink(missing_ok=True)
        return extracted if intact else None

    def _job(
        self,
        module: str,
        fields: Sequence[str],
        criteria: dict | None,
        token: str | None,
        scratch: Path,
        page: int = 1,
    ) -> JobResult:
        """Run one job to a verified local ZIP: a job paid for earlier when the book holds one
        Zoho still serves, else a new one; re-created and downloaded again as needed."""
        resumed = self._resume(module, fields, criteria, token)
        result: dict[str, Any] | None
        created = 0
        while resumed is not None or created < MAX_JOB_ATTEMPTS:
            if resumed is not None:
                (job_id, result), resumed = resumed, None
            else:
                if created:
                    self.stats.retries += 1
                created += 1
                job_id = self._create(module, fields, criteria, token, page)
                result = self._wait(module, job_id)
            if result is None:
                self._forget(job_id)
                continue
            done = self._fetch(module, job_id, result, scratch)
            if done is not None:
                return done
            self._forget(job_id)
        raise RetriableAPIError(
            f"{module}: Bulk Read failed {MAX_JOB_ATTEMPTS} times in a row", code="BULK_FAILURE"
        )

    def _fetch(
        self, module: str, job_id: str, result: dict[str, Any], scratch: Path
    ) -> JobResult | None:
        """A completed job's page, its file downloaded and verified; None when the file stays
        incomplete after ``MAX_DOWNLOADS`` tries, or Zoho no longer serves it."""
        try:
            count = int(result.get("count") or 0)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(
                f"{module}: Bulk Read job {job_id} gives a row count that is not a number"
            ) from exc
        more = bool(result.get("more_records", False))
        following = result.get("next_page_token") if more else None
        url = result.get("download_url")
        if not url:
            if count:
                raise DataError(f"{module}: Bulk Read job {job_id} has rows but no download_url")
            return JobResult(None, 0, more, following, job_id)
        dest = scratch / f"{job_id}.zip"
        for tries in range(MAX_DOWNLOADS):
            if tries:
                self.stats.retries += 1
                self.stats.notes.append(
                    f"{module}: Bulk Read file of job {job_id} was incomplete; downloading again"
                )
            try:
                extracted = self._download(str(url), dest)
            except FatalAPIError as exc:
                # A job that expired between its status and its download (a day old).
                if exc.code != JOB_UNKNOWN or isinstance(exc, ModuleUnavailable):
                    raise
                break
            if extracted is not None:
                return JobResult(extracted, count, more, following, job_id)
        dest.unlink(missing_ok=True)
        return None

    def _batches(self, job: JobResult, schema: ModuleSchema) -> Iterator[pa.RecordBatch]:
        """Stream a verified file's CSV; the row count must match the job's."""
        from connector.lake.csvbatches import batches_from_csv

        if job.path is None:
            return
        seen = 0
        block_size = CSV_BLOCK_SIZE
        done = False
        while not done:
            # Rows already given on an earlier pass (read again with bigger blocks) are skipped.
            skip = seen
            with pa.OSFile(str(job.path), "rb") as stream:
                batches = batches_from_csv(stream, schema, block_size=block_size)
                while True:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        done = True
                        break
                    except csv.Error as exc:
                        raise DataError(
                            f"{schema.module}: a Bulk Read file is not valid CSV ({exc})",
                            module=schema.module,
                        ) from exc
                    except DataError as exc:
                        if "straddl" not in str(exc) or block_size >= CSV_BLOCK_MAX:
                            raise
                        block_size *= CSV_BLOCK_GROWTH
                        log.debug("%s: a CSV row is longer than a block", schema.module)
                        break
                    if skip:
                        if batch.num_rows <= skip:
                            skip -= batch.num_rows
                            continue
                        batch, skip = batch.slice(skip), 0
                    seen += batch.num_rows
                    if seen > job.count:
                        done = True
                        break
                    crashpoint("bulk_csv_batch")
                    yield batch
        if seen != job.count:
            raise RetriableAPIError(
                f"{schema.module}: a Bulk Read file holds {seen} rows where the job counted "
                f"{job.count}",
                code="BULK_INCOMPLETE",
            )

    # --- the read ------------------------------------------------------------------------------

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield every row with ``Modified_Time >= since`` (all rows when None), page by page."""
        name = module.api_name
        groups, criteria = bulk_request(schema, since)
        scratch = Path(tempfile.mkdtemp(prefix="zoho-bulk-", dir=self.scratch_dir))
        self._closing.clear()
        ahead: Prefetch[list[JobResult]] = Prefetch()
        jobs: list[JobResult] = []

        def page_jobs(tokens: Sequence[str | None], page: int) -> Callable[[], list[JobResult]]:
            return lambda: [
                self._job(name, fields, criteria, token, scratch, page)
                for fields, token in zip(groups, tokens, strict=True)
            ]

        try:
            pages = BulkCursor(name, len(groups))
            unstable: set[str] = set()
            page = 1
            while not pages.finished:
                try:
                    jobs = ahead.take(page_jobs(pages.tokens, page))
                except BaseException:
                    jobs = []  # a failed job forgot itself; the last page's stay resumable
                    raise
                pages.advance([job.next_page_token for job in jobs])
                if not pages.finished:
                    # The next page's jobs are known: Zoho prepares them, and they are
                    # downloaded, while this page is parsed. The same jobs, in the same order.
                    ahead.start(page_jobs(list(pages.tokens), page + 1))
                yield from self._page_rows(jobs, groups, schema, unstable, scratch)
                for job in jobs:
                    if job.path is not None:
                        job.path.unlink(missing_ok=True)
                self.stats.pages += 1
                crashpoint("bulk_page_done")
                self.report_progress()
                page += 1
            if unstable:
                yield from self._reread(name, schema, unstable)
        except RetriableAPIError as exc:
            self._forget_bad(exc, jobs)
            raise
        finally:
            self._closing.set()
            ahead.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def _page_rows(
        self,
        jobs: Sequence[JobResult],
        groups: Sequence[Sequence[str]],
        schema: ModuleSchema,
        unstable: set[str],
        scratch: Path,
    ) -> Iterator[pa.RecordBatch]:
        """One page's rows (its groups joined), complete: rich text cut at 500 characters and
        ``$se_module``, which Bulk Read does not give, read by id; records that changed
        meanwhile go to ``unstable``, read again at the end."""
        if len(groups) == 1:
            batches = self._batches(jobs[0], schema)
        else:
            batches = self._merged(jobs, groups, schema, unstable, scratch)
        for batch in batches:
            if not batch.num_rows:
                continue
            done, cut = complete_rows(
                self.client, schema, pa.Table.from_batches([batch]), se_module_known=False
            )
            unstable |= cut
            if done.num_rows:
                self.stats.rows += done.num_rows
                yield from done.to_batches()

    def _forget_bad(self, exc: RetriableAPIError, jobs: Sequence[JobResult]) -> None:
        """Keep a restart (or the next run) from taking recorded jobs that cannot serve it: the
        page's when its files are not what the jobs counted, all when a page token was refused
        (the later pages' jobs hang on the chain of tokens that broke)."""
        if self.book is None:
            return
        if exc.code == "BULK_PAGE_TOKEN":
            self.book.clear()
        elif exc.code in BAD_PAGE_CODES:
            self.book.forget([job.job_id for job in jobs])

    def _merged(
        self,
        jobs: Sequence[JobResult],
        groups: Sequence[Sequence[str]],
        schema: ModuleSchema,
        unstable: set[str],
        scratch: Path,
    ) -> Iterator[pa.RecordBatch]:
        """Join one page's field groups by id, in buckets of ids spilled to ``scratch``
        (:mod:`connector.readers.bucketjoin`); collect the ids of records that changed between."""
        from connector.readers.bucketjoin import join_in_buckets

        others = {name for fields in groups[1:] for name in fields} - set(groups[0])
        # Each group's CSV is read into its own columns only (each keeps its own unfit values);
        # the first group also carries the columns no group exports (they read as null).
        parts = [schema.select([n for n in schema.names if n not in others and n != RAW_VALUES])]
        parts += [schema.select([n for n in fields if n != RAW_VALUES]) for fields in groups[1:]]
        batches = [self._batches(job, part) for job, part in zip(jobs, parts, strict=True)]
        for table in join_in_buckets(
            batches, [part.arrow for part in parts], schema, scratch, unstable
        ):
            yield from table.to_batches()

    def _reread(self, module: str, schema: ModuleSchema, ids: set[str]) -> Iterator[pa.RecordBatch]:
        """Read records that changed between field groups again, by id, until they hold still."""
        from connector.readers.records import fetch_by_ids

        pending = sorted(ids)
        self.stats.dropped += len(pending)
        self.stats.notes.append(
            f"{module}: {len(pending)} record(s) changed between Bulk Read field groups; "
            "read again by id"
        )
        for _ in range(MAX_REREAD_ROUNDS):
            self.stats.retries += 1
            rows, changed = fetch_by_ids(self.client, schema, pending)
            if rows.num_rows:
                self.stats.rows += rows.num_rows
                yield from rows.to_batches()
            if not changed:
                return
            pending = sorted(changed)
        raise RetriableAPIError(
            f"{module}: {len(pending)} record(s) keep changing during the read; try the run again",
            code="UNSTABLE_READ",
        )
