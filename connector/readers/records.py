"""Records API reader: ``GET /crm/v8/{Module}`` sorted by ``Modified_Time`` ascending.

Paging. Offset paging (``page``/``page_token``) over a long read can skip a row: when a record
earlier in the order is modified, it jumps to the end and every later row shifts back by one, so a
page boundary steps over a row. This reader therefore does not page through the module: after each
page it starts a *new* query with ``If-Modified-Since`` set to the last ``Modified_Time`` read
(inclusive), so a shift before that second cannot affect it, and skips the ids already yielded at
that second.

Ties. Zoho sorts by ``Modified_Time`` alone (the Records API takes no second sort key) and promises
no order among rows of one second: two calls may order them differently, and a ``page_token`` is
bound to its query, not documented as a cursor. So the reader never pages through one second by
``Modified_Time``: when a page lies wholly in one second ``T`` (a mass update stamps hundreds of
records with one second), it reads ``T`` again *by id* (``sort_by=id``, ``If-Modified-Since: T``,
``page`` 2..10 then ``info.next_page_token``), keeps only the rows of ``T``, and goes on by
``Modified_Time`` from ``T`` plus one second. Ids are unique, so that order is the same on every
call, and a record modified meanwhile keeps its place in it (its new version comes later, by
time). The 2,000-row ``page`` limit and the 100,000-row ``page_token`` cap apply to the rows
modified at or after ``T``; past the cap the module fails with ``PAGINATION_LIMIT_EXCEEDED`` (read it
with COQL or Bulk). An expired or mismatched page token (``EXPIRED_VALUE``,
``TOKEN_BOUND_DATA_MISMATCH``) restarts from the last second read.
:class:`~connector.readers.paging.RecordsCursor` holds that paging state and decides each next
request; this module makes the calls, merges the field groups and skips the rows already yielded.

Cost: one credit per 200 rows, plus the rows sharing a page's last second read twice, plus, for
each second that fills a page, the rows modified at or after it read once more by id.

Residual risk: a record deleted while an id pass pages through its second shifts the later rows
back by one, and one row of that second can be skipped for this run when it sits at a page
boundary. A full refresh, or the COQL reader (keyset paging on ``(Modified_Time, id)``), is
immune.

Field groups. ``fields`` takes at most 50 names. Every group (``id``, ``Modified_Time`` and up to
48 more) sends the same query (``If-Modified-Since``, ``page``, each its own ``page_token`` chain),
one call per group and page, and the pages are merged by id. A record missing from a group's page,
present only in a later group's, or with a ``Modified_Time`` that differs between groups changed
mid-read: it is left out (never half-merged) and the reader starts again at the page's last second,
where (or after which) its new version is, because a change stamps a later or the same second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.crashpoints import crashpoint
from connector.errors import ConnectorError, DataError, RetriableAPIError, ZohoAPIError
from connector.readers.base import (
    ID,
    MODIFIED_TIME,
    LastSecond,
    Prefetch,
    ReaderBase,
    merge_groups,
    split_fields,
    zoho_time,
)
from connector.readers.jsonpage import JsonPage, decode_page, row_keys
from connector.readers.paging import RecordsAnswer, RecordsCursor, RecordsRequest
from connector.zoho.limits import RECORDS_FIELDS_PER_CALL as MAX_FIELDS
from connector.zoho.limits import RECORDS_MAX_PAGE as MAX_PAGE
from connector.zoho.limits import RECORDS_PER_PAGE as PER_PAGE

if TYPE_CHECKING:
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient
    from connector.zoho.metadata import ModuleMeta

IDS_PER_CALL = 100
RESTART_CODES = frozenset(
    {"EXPIRED_VALUE", "TOKEN_BOUND_DATA_MISMATCH", "PAGINATION_LIMIT_EXCEEDED"}
)
# Restarts or re-reads in a row that yield nothing new: a record keeps changing under the reader.
MAX_STALLED = 5


def list_page(
    client: ZohoClient,
    schema: ModuleSchema,
    fields: Sequence[str],
    *,
    since: str | None = None,
    page: int = 1,
    token: str | None = None,
    ids: Sequence[str] | None = None,
    by_id: bool = False,
) -> JsonPage:
    """One ``GET /crm/v8/{module}`` call: sorted by ``Modified_Time`` (or ``id``, ``by_id``)
    ascending, or the records ``ids``.

    Returns the rows of ``fields`` and the ``info`` object; 204 (no rows) and 304 (nothing modified
    since ``since``) come back as an empty page.
    """
    params: dict[str, Any] = {"fields": ",".join(fields), "per_page": PER_PAGE}
    headers: dict[str, str] | None = None
    if ids is not None:
        params["ids"] = ",".join(ids)
    else:
        params["sort_by"] = ID if by_id else MODIFIED_TIME
        params["sort_order"] = "asc"
        if token is not None:
            params["page_token"] = token
        else:
            params["page"] = page
        if since is not None:
            headers = {"If-Modified-Since": since}
    body = client.get_body(schema.module, params=params, headers=headers)
    return decode_page(body, schema, fields, what="a Records API answer")


def fill_groups(
    client: ZohoClient,
    schema: ModuleSchema,
    groups: Sequence[Sequence[str]],
    first: JsonPage,
) -> tuple[pa.Table, set[str]]:
    """Fetch the other field groups for exactly the ids of ``first`` and merge them by id.

    Returns the merged rows and the ids of records that changed between the group reads.
    """
    if len(groups) == 1:
        return first.table, set()
    ids = first.ids()
    results: list[pa.Table] = [first.table]
    for fields in groups[1:]:
        parts = [
            list_page(client, schema, fields, ids=ids[i : i + IDS_PER_CALL]).table
            for i in range(0, len(ids), IDS_PER_CALL)
        ]
        results.append(
            pa.concat_tables(parts) if parts else schema.select(fields).arrow.empty_table()
        )
    return merge_groups(results, schema)


def fetch_by_ids(
    client: ZohoClient, schema: ModuleSchema, ids: Sequence[str]
) -> tuple[pa.Table, set[str]]:
    """Read the current version of the records ``ids`` (every field, merged across groups).

    Returns the rows and the ids that changed between group reads; ids Zoho no longer has
    (deleted meanwhile) are in neither.
    """
    groups = split_fields(schema, MAX_FIELDS)
    tables: list[pa.Table] = []
    unstable: set[str] = set()
    for i in range(0, len(ids), IDS_PER_CALL):
        first = list_page(client, schema, groups[0], ids=ids[i : i + IDS_PER_CALL])
        merged, changed = fill_groups(client, schema, groups, first)
        tables.append(merged)
        unstable |= changed
    if not tables:
        return schema.arrow.empty_table(), unstable
    return pa.concat_tables(tables), unstable


def tie_order_only(unstable: set[str], ids: Sequence[str], stamps: Sequence[str]) -> set[str]:
    """The ``unstable`` ids of a page sorted by ``Modified_Time`` that really changed.

    Each field group's call orders the ties of the page's last second its own way, so the groups
    may disagree on which of that second's rows the page holds. Those rows are left out of the
    page but are no change: the next query starts at that second and reads all of it again.
    """
    if not unstable:
        return unstable
    last = stamps[-1]
    at = dict(zip(ids, stamps, strict=True))
    return {rid for rid in unstable if at.get(rid, last) != last}


class RecordsReader(ReaderBase):
    """Reads a module through the Records API, in ascending ``Modified_Time`` order."""

    name = "records"
    ordered = True
    _pool: ThreadPoolExecutor | None = None

    def _page_of_groups(
        self,
        schema: ModuleSchema,
        groups: Sequence[Sequence[str]],
        request: RecordsRequest,
    ) -> list[JsonPage]:
        """One page of every field group, ``tuning.group_calls`` calls at a time.

        The groups send the same query, so their calls need not wait for each other: against
        Zoho's latency, two at once halve the read time of a module with more than 48 fields, for
        the same credits. The default is one at a time, which every edition's concurrency cap
        allows (and which is faster against the local simulator on 2 cores).
        """

        def call(fields: Sequence[str], token: str | None) -> JsonPage:
            return list_page(
                self.client,
                schema,
                fields,
                since=request.since,
                page=request.page,
                token=token,
                by_id=request.by_id,
            )

        jobs = list(zip(groups, request.tokens, strict=True))
        at_once = min(self.tuning.group_calls, len(jobs))
        if at_once <= 1:
            return [call(fields, token) for fields, token in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(at_once, thread_name_prefix="records-groups")
        futures = [self._pool.submit(call, fields, token) for fields, token in jobs]
        # Every call ends before an error goes up: a restart must not race a call still out.
        wait(futures)
        return [future.result() for future in futures]

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the module's rows with ``Modified_Time >= since``, ascending by modified time."""
        ahead: Prefetch[list[JsonPage]] = Prefetch()
        try:
            yield from self._read(module, schema, since, ahead)
        finally:
            ahead.close()
            self._stop_pool()

    def _read(
        self,
        module: ModuleMeta,
        schema: ModuleSchema,
        since: datetime | None,
        ahead: Prefetch[list[JsonPage]],
    ) -> Iterator[pa.RecordBatch]:
        name = module.api_name
        groups = split_fields(schema, MAX_FIELDS)
        pages = RecordsCursor(
            name,
            len(groups),
            zoho_time(since) if since is not None else None,
            per_page=PER_PAGE,
            max_page=MAX_PAGE,
            max_stalled=MAX_STALLED,
        )
        top = LastSecond()

        def page_of(request: RecordsRequest) -> Callable[[], list[JsonPage]]:
            return lambda: self._page_of_groups(schema, groups, request)

        while not pages.finished:
            request = pages.request()
            try:
                answers = ahead.take(page_of(request))
            except ZohoAPIError as exc:
                if exc.code not in RESTART_CODES:
                    raise
                # Start again at the last second yielded; its ids are skipped.
                pages.restart(exc, top.time)
                self.stats.retries += 1
                self.stats.notes.append(f"{name}: restarted paging after {exc.code}")
                continue
            crashpoint("records_page_read")
            first = answers[0]
            if not first.num_rows:
                return
            self.stats.pages += 1
            merged, unstable = merge_groups([page.table for page in answers], schema)
            stamps = first.stamps()
            if not request.by_id:
                unstable = tie_order_only(unstable, first.ids(), stamps)
            # An id pass is over one second: its rows of later seconds come in their turn.
            only = request.since if request.by_id else None
            fresh = self._fresh_rows(merged, first, stamps, top, only)
            self.stats.rows += fresh.num_rows
            if unstable:
                self.stats.dropped += len(unstable)
                self.stats.notes.append(
                    f"{name}: {len(unstable)} record(s) changed while a page was read; read again"
                )
            self.report_progress()
            said = RecordsAnswer.of(
                stamps,
                [page.info for page in answers],
                unstable=bool(unstable),
                new_rows=fresh.num_rows > 0,
            )
            failure: ConnectorError | None = None
            try:
                pages.advance(said)
            except (DataError, RetriableAPIError) as exc:
                # The page's rows are good: the caller gets them before the error.
                failure = exc
            if failure is None and not pages.finished:
                # The next request is known: make it while the caller writes this page.
                ahead.start(page_of(pages.request()))
            yield from fresh.to_batches()
            if failure is not None:
                raise failure

    def _fresh_rows(
        self,
        merged: pa.Table,
        first: JsonPage,
        first_stamps: list[str],
        top: LastSecond,
        only: str | None,
    ) -> pa.Table:
        """The merged page without the rows already yielded (at the last second read before),
        and, with ``only``, without the rows of any other second."""
        # The merge only ever leaves rows out: as many rows means the very same rows.
        if merged.num_rows == first.num_rows:
            merged_stamps, merged_ids = first_stamps, first.ids()
        else:
            merged_stamps, merged_ids = row_keys(merged)
        keep = [
            (only is None or stamp == only) and top.first_time(stamp, rid)
            for stamp, rid in zip(merged_stamps, merged_ids, strict=True)
        ]
        return merged if all(keep) else merged.filter(pa.array(keep, pa.bool_()))
