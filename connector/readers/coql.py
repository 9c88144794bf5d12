"""COQL reader: keyset paging on ``(Modified_Time, id)``, never OFFSET.

Each page is ``select id, Modified_Time, … from M where <after the cursor> order by Modified_Time
asc, id asc limit N``. On an incremental run ``N`` starts at 200 (1 credit) and grows to 2,000
(3 credits, the best rate) once Zoho says more rows follow, so a small change set costs 1 credit;
a full load starts at 2,000, so a big read costs the minimum. Ids are 19-digit strings of equal
length, so comparing them is numeric-safe. :class:`~connector.readers.paging.CoqlCursor` holds the
keyset position, the LIMIT and the stall count, and decides each next request.

Columns go in groups of at most 50 (Zoho's select limit); every group holds ``id`` and
``Modified_Time`` and asks for the same rows (``tuning.group_calls`` calls at once once a page is
known to hold rows). The first group's rows fix the page's ``(Modified_Time, id)`` range; the
other groups' rows in it are merged by id, their rows past it left to the next page. A record
missing from a group, present only in a later group, or with a ``Modified_Time`` that differs
between groups changed while the page was read: it is left out (never half-merged) and the next
page starts at ``(T, min unstable id)`` inclusive, where ``T`` is the page's last
``Modified_Time``. That is enough to meet its new version again,
because a change stamps a time no earlier than ``T``. Rows already yielded at ``T`` are skipped.

Residual risk (documented, not detectable from the results): a record modified during the read in
exactly the second of the page just read, with an id below that page's last id, lands behind the
cursor. The caller's next run still reads it as long as the watermark stays at that second, which
holds unless a later second is also written during this run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from connector.crashpoints import crashpoint
from connector.errors import DataError, RetriableAPIError
from connector.lake.schema import CONVERTED_FIELD, CONVERTING_MODULES
from connector.readers.base import (
    GroupCalls,
    LastSecond,
    Prefetch,
    ReaderBase,
    merge_groups,
    split_fields,
)
from connector.readers.jsonpage import JsonPage, decode_page, row_keys
from connector.readers.paging import CoqlCursor, Keyset, base_where
from connector.readers.records import complete_rows
from connector.zoho.limits import COQL_COLUMNS_PER_CALL as MAX_COLUMNS
from connector.zoho.limits import COQL_FIRST_LIMIT as FIRST_LIMIT
from connector.zoho.limits import COQL_MAX_LIMIT as MAX_LIMIT
from connector.zoho.limits import coql_limit_credits

if TYPE_CHECKING:
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient
    from connector.zoho.metadata import ModuleMeta

# A page that yields nothing new, this many times in a row, means a record keeps changing under
# the reader (a page re-reads fewer seen rows than its LIMIT, so it always brings something new
# otherwise); give up and let the caller retry the run.
MAX_STALLED_PAGES = 5
# A page's other field groups, read one after another (no thread: a probe's, a scan's).
ONE_AT_A_TIME = GroupCalls(1, "coql-groups")


@dataclass
class Page:
    """One keyset page merged across field groups."""

    table: pa.Table
    """The page's stable rows, every column of the schema, in ``(Modified_Time, id)`` order."""
    unstable: set[str]
    more_records: bool
    last: Keyset | None
    credits: int
    calls: int


@dataclass
class ProbeResult:
    """The first COQL page of a module (LIMIT 200), read to price an incremental run.

    ``table`` holds the merged rows in the module's schema (the caller writes them so they need
    not be read twice); ``more_records`` says whether more rows follow (or whether a record changed
    during the probe, in which case the probe's rows are not the whole answer either); ``credits``
    is what the probe cost.
    """

    table: pa.Table
    more_records: bool = False
    credits: int = 0

    @property
    def rows(self) -> int:
        """How many rows the probe read."""
        return self.table.num_rows


def _select(module: str, columns: Sequence[str], where: str, limit: int) -> str:
    return (
        f"select {', '.join(columns)} from {module} where {where} "
        f"order by Modified_Time asc, id asc limit {limit}"
    )


def every_lead(where: str) -> str:
    """``where`` widened to converted records too, for a module that converts them (Leads).

    Zoho does not say whether COQL returns converted leads; the simulator assumes the least
    convenient reading, that COQL leaves them out like the Records API's default unless the
    query names ``Converted__s``. Naming it with both values reads every lead either way.
    """
    return f"({where} and ({CONVERTED_FIELD} = true or {CONVERTED_FIELD} = false))"


def _query(
    client: ZohoClient, schema: ModuleSchema, columns: Sequence[str], where: str, limit: int
) -> JsonPage:
    if schema.hides_converted:
        where = every_lead(where)
    body = client.post_body("coql", {"select_query": _select(schema.module, columns, where, limit)})
    # Zoho answers 204 with an empty body when no row matches.
    return decode_page(body, schema, columns, what="a COQL answer")


def read_page(
    client: ZohoClient,
    schema: ModuleSchema,
    groups: Sequence[Sequence[str]],
    where: str,
    limit: int,
    calls: GroupCalls = ONE_AT_A_TIME,
    *,
    holds_rows: bool = False,
) -> Page:
    """Read one keyset page of every field group and merge them by id.

    Every group asks for the same rows (``where``, ``limit``); the first group's rows fix the
    page's range, and another group's rows past its last row are left to the next page. A page
    that ``holds_rows`` (the previous page said more follow) sends every group's call at once,
    ``calls`` of them at a time; otherwise the first group goes alone, so that an empty page
    costs one call. A record that changed between the groups' calls is unstable (see
    :func:`~connector.readers.base.merge_groups`).
    """

    def query(columns: Sequence[str]) -> JsonPage:
        return _query(client, schema, columns, where, limit)

    if holds_rows and calls.at_once > 1:
        answers = calls.map(query, groups)
    else:
        answers = [query(groups[0])]
        if answers[0].num_rows:
            answers += calls.map(query, groups[1:])
    first = answers[0]
    credits = len(answers) * coql_limit_credits(limit)
    if not first.num_rows:
        return Page(schema.arrow.empty_table(), set(), False, None, credits, len(answers))
    (stamp,), (last_id,) = row_keys(first.table.slice(first.num_rows - 1))
    last = Keyset(stamp, last_id)
    tables = [first.table, *(up_to(answer.table, last) for answer in answers[1:])]
    merged, unstable = merge_groups(tables, schema)
    # Rich text cut at 500 characters and $se_module, which COQL does not give, read by id.
    merged, cut = complete_rows(client, schema, merged, se_module_known=False)
    more = bool(first.info.get("more_records", False))
    return Page(merged, unstable | cut, more, last, credits, len(answers))


def up_to(table: pa.Table, last: Keyset) -> pa.Table:
    """The rows of ``table`` (in keyset order) at or before ``last``."""
    if not table.num_rows:
        return table
    bound = (last.time, last.id)
    (stamp,), (rid,) = row_keys(table.slice(table.num_rows - 1))
    if (stamp, rid) <= bound:
        return table  # the common case: every group read the same rows
    stamps, ids = row_keys(table)
    return table.slice(0, sum(1 for key in zip(stamps, ids, strict=True) if key <= bound))


@dataclass(eq=False, repr=False)
class CoqlReader(ReaderBase):
    """Reads a module through COQL, in ascending ``(Modified_Time, id)`` order."""

    name = "coql"
    ordered = True
    first_limit: int = field(default=FIRST_LIMIT, kw_only=True)
    """The LIMIT an incremental read starts at."""
    max_limit: int = field(default=MAX_LIMIT, kw_only=True)
    """The LIMIT of a full load, and of an incremental one once more rows follow."""
    expected_rows: int | None = field(default=None, kw_only=True)
    """The rows a count found before a full load: each page's LIMIT is fitted to what is left."""

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the module's rows with ``Modified_Time >= since`` in keyset order."""
        ahead: Prefetch[Page] = Prefetch()
        calls = GroupCalls(self.tuning.group_calls, "coql-groups")
        try:
            yield from self._read(module, schema, since, ahead, calls)
        finally:
            ahead.close()
            calls.close()

    def _read(
        self,
        module: ModuleMeta,
        schema: ModuleSchema,
        since: datetime | None,
        ahead: Prefetch[Page],
        calls: GroupCalls,
    ) -> Iterator[pa.RecordBatch]:
        name = module.api_name
        groups = split_fields(schema, MAX_COLUMNS)
        pages = CoqlCursor(
            name,
            since,
            first_limit=self.first_limit,
            max_limit=self.max_limit,
            max_stalled=MAX_STALLED_PAGES,
            expected=self.expected_rows,
        )
        # Ids already yielded at the greatest Modified_Time yielded so far: an inclusive cursor
        # reads some of them again.
        top = LastSecond()

        def page_at(where: str, size: int, holds_rows: bool) -> Callable[[], Page]:
            return lambda: read_page(
                self.client, schema, groups, where, size, calls, holds_rows=holds_rows
            )

        while not pages.finished:
            page = ahead.take(page_at(pages.where(), pages.limit, pages.holds_rows))
            crashpoint("coql_page_read")
            self.stats.pages += 1
            fresh = page.table
            if fresh.num_rows:
                stamps, ids = row_keys(fresh)
                keep = [top.first_time(stamp, rid) for stamp, rid in zip(stamps, ids, strict=True)]
                if not all(keep):
                    fresh = fresh.filter(pa.array(keep, pa.bool_()))
            if fresh.num_rows:
                self.stats.rows += fresh.num_rows
            if page.unstable:
                self.stats.dropped += len(page.unstable)
                self.stats.retries += 1
                self.stats.notes.append(
                    f"{name}: {len(page.unstable)} record(s) changed while a page was read; "
                    "read again from the page's last second"
                )
            self.report_progress()
            failure: RetriableAPIError | None = None
            try:
                pages.advance(
                    page.last,
                    more=page.more_records,
                    unstable=page.unstable,
                    new_rows=fresh.num_rows,
                )
            except RetriableAPIError as exc:
                # The page's rows are good: the caller gets them before the error.
                failure = exc
            if failure is None and not pages.finished:
                # The next page is known: ask for it while the caller writes this one.
                ahead.start(page_at(pages.where(), pages.limit, pages.holds_rows))
            yield from fresh.to_batches()
            if failure is not None:
                raise failure


def coql_probe(client: ZohoClient, schema: ModuleSchema, since: datetime | None) -> ProbeResult:
    """Read the first COQL page (LIMIT 200) of a module since ``since``, every schema column.

    More than 50 columns are read in groups and merged. The planner uses this to decide whether an
    incremental run is cheaper through COQL than through a 50-credit Bulk job.
    """
    groups = split_fields(schema, MAX_COLUMNS)
    page = read_page(client, schema, groups, base_where(since, None), FIRST_LIMIT)
    return ProbeResult(
        table=page.table,
        more_records=page.more_records or bool(page.unstable),
        credits=page.credits,
    )


def count_query(module: str, since: datetime | None) -> str:
    """The COQL query that counts the module's rows modified since ``since`` (all when None),
    converted leads included."""
    where = base_where(since, None)
    if module in CONVERTING_MODULES:
        where = every_lead(where)
    return f"select COUNT(id) from {module} where {where}"


def coql_count(client: ZohoClient, module: str, since: datetime | None) -> int:
    """Count the module's rows modified since ``since`` (all rows when None) in one COQL call."""
    body = client.post_json("coql", {"select_query": count_query(module, since)})
    if not body:
        return 0
    data = body.get("data") or []
    if not data or not isinstance(data[0], dict):
        return 0
    for value in data[0].values():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    raise DataError(f"COQL count answer for {module} holds no number")
