"""What every reader shares: the ``Reader`` protocol, its statistics, field grouping and time text.

A reader fetches one module and yields ``pa.RecordBatch``es of exactly ``ModuleSchema.arrow``; the
values are normalised once, in :mod:`connector.lake.schema`. Three readers exist:

- ``bulk`` (:mod:`connector.readers.bulk`): Bulk Read jobs, CSV in a ZIP; unordered.
- ``coql`` (:mod:`connector.readers.coql`): keyset paging on ``(Modified_Time, id)``; ordered.
- ``records`` (:mod:`connector.readers.records`): the list API sorted by ``Modified_Time``; ordered.

Each reader pages through Zoho with a small cursor object from :mod:`connector.readers.paging`
that holds only the paging state and decides the next request from the last answer.

An *ordered* reader yields batches in ascending ``Modified_Time`` order (COQL also by ``id`` within
a second; the Records API's rows of one second in any order), so its caller may commit a
watermark between batches. An unordered reader's output is only complete when ``read``
returns; if it raises, the caller discards what it wrote during the read and starts again from its
last committed watermark.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from connector.config import Tuning
    from connector.lake.bulk_jobs import BulkJobBook
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient
    from connector.zoho.metadata import ModuleMeta

BULK = "bulk"
COQL = "coql"
RECORDS = "records"
READER_NAMES = (BULK, COQL, RECORDS)
T = TypeVar("T")
A = TypeVar("A")

ID = "id"
MODIFIED_TIME = "Modified_Time"


@dataclass
class ReaderStats:
    """Counters a reader keeps while it reads one module (shown as progress, kept in the manifest).

    ``pages`` counts result pages (API list pages, COQL pages, Bulk job pages), ``jobs`` Bulk jobs
    created, ``retries`` re-created jobs, repeated downloads and restarted pages, ``dropped`` the
    records left out of a page because they changed while it was read (they are read again later),
    ``gone`` Bulk jobs an earlier run paid for that Zoho no longer serves (paid for again), ``notes``
    human-readable remarks for the run manifest.
    """

    pages: int = 0
    rows: int = 0
    jobs: int = 0
    retries: int = 0
    dropped: int = 0
    gone: int = 0
    notes: list[str] = field(default_factory=list)


ProgressCallback = Callable[[ReaderStats], None]


class Reader(Protocol):
    """Reads one module into Arrow record batches."""

    name: str
    ordered: bool
    stats: ReaderStats

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the module's rows with ``Modified_Time >= since`` (all rows when ``since`` is None).

        ``since`` is inclusive: rows modified in the watermark's own second come again, and the
        caller drops those it already has. Every batch has exactly ``schema.arrow``.
        """
        ...


@dataclass(eq=False, repr=False)
class ReaderBase:
    """What every reader keeps: its client, tuning, sleep, progress callback and statistics.

    A dataclass: a reader with options of its own (Bulk's scratch directory, COQL's LIMITs) adds
    them as keyword-only fields, and every reader is built the same way,
    ``Reader(client, tuning, sleep=..., on_progress=..., **options)``.
    """

    client: ZohoClient
    tuning: Tuning
    sleep: Callable[[float], None] = field(default=time.sleep, kw_only=True)
    on_progress: ProgressCallback | None = field(default=None, kw_only=True)
    stats: ReaderStats = field(default_factory=ReaderStats, init=False)

    def report_progress(self) -> None:
        """Hand the current statistics to the progress callback, if there is one."""
        if self.on_progress is not None:
            self.on_progress(self.stats)


def in_context(pool: ThreadPoolExecutor, call: Callable[..., T], *args: object) -> Future[T]:
    """Submit ``call(*args)`` to ``pool`` inside a copy of the caller's context.

    Threads do not inherit context variables; the run's credit attribution
    (:mod:`connector.run.credits`) is one, so a call made on a helper thread is billed to the
    module whose reader started it.
    """
    return pool.submit(contextvars.copy_context().run, call, *args)


class GroupCalls:
    """The calls that read one page's field groups, ``at_once`` of them at a time.

    A module wider than one call's column limit is read in field groups that ask Zoho for the
    same rows, so their calls need not wait for each other: against Zoho's latency two at once
    halve a wide module's read time for the same credits. ``tuning.group_calls`` sets
    ``at_once``; its default, one at a time, fits every edition's concurrency cap.
    """

    def __init__(self, at_once: int, thread_name: str) -> None:
        self.at_once = max(1, at_once)
        self._thread_name = thread_name
        self._pool: ThreadPoolExecutor | None = None

    def map(self, call: Callable[[A], T], items: Sequence[A]) -> list[T]:
        """``call`` on every item, results in order; every call has ended before an error is
        raised (a restart must not race a call still out)."""
        if min(self.at_once, len(items)) <= 1:
            return [call(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.at_once, thread_name_prefix=self._thread_name)
        futures = [in_context(self._pool, call, item) for item in items]
        wait(futures)
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the threads (the calls have all ended: :meth:`map` waits for them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class Prefetch(Generic[T]):
    """The reader's next call, made on a background thread while its caller writes the last page.

    An ordered reader knows its next request once a page is merged; making that request before
    handing the page over lets the network wait and the JSON decoding overlap the caller's work.
    The requests are the same ones, in the same order: no call is speculative.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[T] | None = None

    def start(self, call: Callable[[], T]) -> None:
        """Begin ``call`` in the background (one at a time)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self._future = in_context(self._pool, call)

    def take(self, call: Callable[[], T]) -> T:
        """The started call's result (its error raised here), or ``call()`` made now."""
        future, self._future = self._future, None
        return future.result() if future is not None else call()

    def close(self) -> None:
        """Wait for a call still out (its result and error dropped) and stop the thread."""
        future, self._future = self._future, None
        if future is not None:
            wait([future])
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass
class LastSecond:
    """The greatest ``Modified_Time`` an ordered reader has yielded and the ids yielded at it.

    An ordered reader restarts inclusively at that second (a COQL cursor, a Records API query from
    it), so it reads some of those ids again; :meth:`first_time` tells them apart.
    """

    time: str | None = None
    ids: set[str] = field(default_factory=set)

    def first_time(self, stamp: str, rid: str) -> bool:
        """Note the row ``rid`` at ``stamp``; False when it was already yielded at that second."""
        if stamp == self.time:
            if rid in self.ids:
                return False
            self.ids.add(rid)
        else:
            self.time, self.ids = stamp, {rid}
        return True


def make_reader(
    name: str,
    client: ZohoClient,
    tuning: Tuning,
    *,
    sleep: Callable[[float], None] | None = None,
    on_progress: ProgressCallback | None = None,
    scratch_dir: str | Path | None = None,
    expected_rows: int | None = None,
    book: BulkJobBook | None = None,
) -> Reader:
    """Return a fresh reader by name: ``"bulk"``, ``"coql"`` or ``"records"``.

    ``sleep`` waits between polls and retries (default :func:`time.sleep`); ``scratch_dir`` is
    where a reader that downloads files keeps them while it reads (Bulk's ZIPs; default: the
    system's temporary directory); the other readers keep nothing on disk and ignore it.
    ``expected_rows``: the rows a count found before a full load, to which COQL fits its LIMITs
    (the other readers' pages have one price whatever their size, and ignore it). ``book``:
    where Bulk Read records the jobs it pays for and finds those an earlier run paid for
    (:mod:`connector.lake.bulk_jobs`); the other readers pay for no job and ignore it.
    """
    # Imported here: each reader module imports this one.
    from connector.readers.bulk import BulkReader
    from connector.readers.coql import CoqlReader
    from connector.readers.records import RecordsReader

    wait = time.sleep if sleep is None else sleep
    if name == "bulk":
        return BulkReader(
            client,
            tuning,
            sleep=wait,
            on_progress=on_progress,
            scratch_dir=scratch_dir,
            book=book,
        )
    if name == "coql":
        return CoqlReader(
            client, tuning, sleep=wait, on_progress=on_progress, expected_rows=expected_rows
        )
    if name == "records":
        return RecordsReader(client, tuning, sleep=wait, on_progress=on_progress)
    raise ValueError(f"unknown reader {name!r}; expected one of {', '.join(READER_NAMES)}")


def field_names(schema: ModuleSchema) -> list[str]:
    """The schema's readable field names without ``id``, in schema order (columns that are no
    Zoho field, such as ``$se_module``, are never asked for)."""
    derived = schema.derived
    return [f.api_name for f in schema.fields if f.api_name != ID and f.api_name not in derived]


def split_fields(schema: ModuleSchema, size: int) -> list[list[str]]:
    """Split the readable fields into groups of at most ``size`` names.

    Every group holds ``id`` and ``Modified_Time`` (they count towards ``size``), so groups can be
    joined by id and a record that changed between two group reads can be detected. A module
    without ``Modified_Time`` (see :mod:`connector.readers.scan`) has only ``id`` in every group.
    """
    keys = [ID, MODIFIED_TIME] if MODIFIED_TIME in schema.names else [ID]
    others = [n for n in field_names(schema) if n != MODIFIED_TIME]
    room = size - len(keys)
    chunks = [others[i : i + room] for i in range(0, len(others), room)] or [[]]
    return [[*keys, *chunk] for chunk in chunks]


def zoho_time(value: datetime) -> str:
    """Format an instant for Zoho criteria, COQL and ``If-Modified-Since``.

    ISO 8601 in UTC, whole seconds, with an explicit ``+00:00`` offset: Zoho refuses milliseconds,
    and flooring to the second keeps an inclusive lower bound inclusive.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def merge_groups(groups: Sequence[pa.Table], schema: ModuleSchema) -> tuple[pa.Table, set[str]]:
    """Merge the rows of several field groups by id, in the first group's order.

    Every group holds ``id`` and ``Modified_Time``; the result has the columns of ``schema`` that
    the groups hold, in schema order. Also returns the ids of *unstable* records: present in some
    groups but not all, or with a ``Modified_Time`` that differs between groups. Such a record
    changed while its groups were read, so it is never half-merged: it is left out and read again
    later. Arrow does the joining; no Python runs per row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from connector.lake.raw_values import RAW_VALUES, holds_values, merge_raw_values

    first = groups[0]
    ids = first.column(ID)
    keep = pa.repeat(pa.scalar(True), first.num_rows)
    columns = {name: first.column(name) for name in first.column_names}
    timed = MODIFIED_TIME in first.column_names
    for other in groups[1:]:
        where = pc.index_in(ids, value_set=other.column(ID))
        if timed:
            same = pc.equal(first.column(MODIFIED_TIME), other.column(MODIFIED_TIME).take(where))
        else:
            # No Modified_Time to compare: a record is stable when every group has it.
            same = pc.is_valid(where)
        keep = pc.and_(keep, pc.fill_null(same, False))
        new = [name for name in other.column_names if name not in columns]
        if RAW_VALUES in other.column_names and holds_values(other.column(RAW_VALUES)):
            new.append(RAW_VALUES)  # every group keeps its own fields' unfit values: join them
        # One take for the whole group (a call per column was a tenth of a Records page's time).
        taken = other.select(new).take(where)
        for name, column in zip(new, taken.columns, strict=True):
            if name == RAW_VALUES and name in columns:
                column = merge_raw_values([columns[name], column])
            columns[name] = column
    names = [name for name in schema.names if name in columns]
    merged = pa.Table.from_arrays(
        [columns[name] for name in names], schema=schema.select(names).arrow
    )
    unstable: set[str] = set()
    if len(groups) > 1:
        dropped = pc.invert(keep)
        if pc.any(dropped).as_py():
            unstable.update(str(v) for v in ids.filter(dropped).to_pylist())
            merged = merged.filter(keep)
        for other in groups[1:]:
            extra = other.column(ID).filter(pc.invert(pc.is_in(other.column(ID), value_set=ids)))
            unstable.update(str(v) for v in extra.to_pylist())
    return merged, unstable
