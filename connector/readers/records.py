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

Deletions during an id pass: a record deleted while the pass pages through its second shifts
the later rows back by one, so a row of that second at a page boundary would be skipped. After each
pass the reader asks for the module's records deleted since the pass began (2 credits); a deletion
it has not answered yet means the second is read by id once more (deduplicated by id and
``Modified_Time``), until a pass sees no new deletion.

Field groups. ``fields`` takes at most 50 names. Every group (``id``, ``Modified_Time`` and up to
48 more) sends the same query (``If-Modified-Since``, ``page``, each its own ``page_token`` chain),
one call per group and page, and the pages are merged by id. A record missing from a group's page,
present only in a later group's, or with a ``Modified_Time`` that differs between groups changed
mid-read: it is left out (never half-merged) and the reader starts again at the page's last second,
where (or after which) its new version is, because a change stamps a later or the same second.

Every call asks for ``converted=both`` on a module that converts records (Leads): Zoho's default
leaves converted leads out. What a list answer leaves out, :func:`complete_rows` fills in, for
every reader: rich-text values that may be cut at 500 characters come whole from
``fetch_full_data``, and ``$se_module`` from a read by id; those rows' ``Modified_Time`` is read
again after, so a value is never joined to another version of its record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.crashpoints import crashpoint
from connector.errors import ConnectorError, DataError, RetriableAPIError, ZohoAPIError
from connector.lake.schema import POLYMORPHIC_LOOKUPS, SE_MODULE
from connector.readers.base import (
    ID,
    MODIFIED_TIME,
    GroupCalls,
    LastSecond,
    Prefetch,
    ReaderBase,
    merge_groups,
    split_fields,
    zoho_time,
)
from connector.readers.jsonpage import JsonPage, decode_page, ids_of, row_keys
from connector.readers.paging import RecordsAnswer, RecordsCursor, RecordsRequest
from connector.zoho.limits import DELETED_PER_PAGE
from connector.zoho.limits import RECORDS_FIELDS_PER_CALL as MAX_FIELDS
from connector.zoho.limits import RECORDS_MAX_PAGE as MAX_PAGE
from connector.zoho.limits import RECORDS_PER_PAGE as PER_PAGE

if TYPE_CHECKING:
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient
    from connector.zoho.metadata import ModuleMeta

IDS_PER_CALL = 100
# fetch_full_data takes up to 200 ids (Zoho's Get Rich Text Fields page).
FULL_DATA_IDS_PER_CALL = 200
# List answers give a rich-text field's first 500 characters. Zoho does not say whether it counts
# characters, UTF-16 units or bytes; a value of at least 497 UTF-8 bytes may have been cut under
# any of these readings (a cut by bytes stops at a character boundary), so it is read whole.
RICH_TEXT_MAY_BE_CUT_BYTES = 497
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
    if schema.hides_converted:
        # Zoho's default (converted=false) leaves converted leads out of every list answer.
        params["converted"] = "both"
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
    columns = list(fields)
    if SE_MODULE in schema.names and POLYMORPHIC_LOOKUPS.intersection(fields):
        columns.append(SE_MODULE)  # the Records API names the lookup's module in each record
    return decode_page(body, schema, columns, what="a Records API answer")


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
    """Read the current version of the records ``ids`` (every field, merged across groups, and
    completed by :func:`complete_rows`).

    Returns the rows and the ids that changed between group reads; ids Zoho no longer has
    (deleted meanwhile) are in neither.
    """
    groups = split_fields(schema, MAX_FIELDS)
    tables: list[pa.Table] = []
    unstable: set[str] = set()
    for i in range(0, len(ids), IDS_PER_CALL):
        first = list_page(client, schema, groups[0], ids=ids[i : i + IDS_PER_CALL])
        merged, changed = fill_groups(client, schema, groups, first)
        merged, cut = complete_rows(client, schema, merged, se_module_known=True)
        tables.append(merged)
        unstable |= changed | cut
    if not tables:
        return schema.arrow.empty_table(), unstable
    return pa.concat_tables(tables), unstable


def _any_true(masks: Sequence[pa.Array], rows: int) -> pa.Array:
    result = pa.repeat(pa.scalar(False), rows)
    for mask in masks:
        result = pc.or_(result, pc.fill_null(mask, False))
    return result


def _full_values(
    client: ZohoClient, schema: ModuleSchema, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``GET /{module}/actions/fetch_full_data``: the whole rich-text values of ``ids``, by id.

    Zoho's Get Rich Text Fields call: up to 200 ids and the rich-text fields named; its answer
    is ``{"data": [{<field>: <html>, "id": …}]}`` (ids it no longer has are left out).
    """
    values: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), FULL_DATA_IDS_PER_CALL):
        params = {
            "ids": ",".join(ids[i : i + FULL_DATA_IDS_PER_CALL]),
            "fields": ",".join(schema.rich_text),
        }
        body = client.get_json(f"{schema.module}/actions/fetch_full_data", params=params)
        rows = (body or {}).get("data") or []
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DataError(f"{schema.module}: the fetch_full_data answer holds no records")
        values.update((str(row.get("id")), row) for row in rows)
    return values


def _stamps_now(
    client: ZohoClient, schema: ModuleSchema, ids: Sequence[str], with_module: bool
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Each record's current ``Modified_Time`` (criteria text) and, when asked, its
    ``$se_module``, read by id through the Records API."""
    fields = [name for name in ("id", MODIFIED_TIME) if name in schema.names]
    if with_module:
        fields += [name for name in schema.names if name in POLYMORPHIC_LOOKUPS]
    stamps: dict[str, str] = {}
    modules: dict[str, str | None] = {}
    for i in range(0, len(ids), IDS_PER_CALL):
        page = list_page(client, schema, fields, ids=ids[i : i + IDS_PER_CALL])
        page_ids = ids_of(page.table)
        if MODIFIED_TIME in page.table.column_names:  # a module without one is not checked
            stamps.update(zip(page_ids, row_keys(page.table)[0], strict=True))
        if with_module and SE_MODULE in page.table.column_names:
            modules.update(zip(page_ids, page.table.column(SE_MODULE).to_pylist(), strict=True))
    return stamps, modules


def complete_rows(
    client: ZohoClient, schema: ModuleSchema, table: pa.Table, *, se_module_known: bool
) -> tuple[pa.Table, set[str]]:
    """Fill in what a list answer (Records, COQL) or a Bulk CSV leaves out of ``table``.

    Rich-text values that may have been cut at 500 characters are read whole through
    ``fetch_full_data`` (1 credit per 200 records, by assumption: Zoho gives no price); when
    ``se_module_known`` is False (COQL, Bulk Read), ``$se_module`` of the rows whose polymorphic
    lookup is set is read by id through the Records API (1 credit per 100 records). Those rows'
    ``Modified_Time`` is then read again: a record that changed since ``table`` was read (or is
    gone) is left out and its id returned, like a record that changed between field groups, so a
    whole value is never joined to another version. Returns the table in schema order.
    """
    rows = table.num_rows
    cut = _any_true(
        [
            pc.greater_equal(pc.binary_length(table.column(name)), RICH_TEXT_MAY_BE_CUT_BYTES)
            for name in schema.rich_text
            if name in table.column_names
        ],
        rows,
    )
    module_missing = SE_MODULE in schema.names and not se_module_known
    linked = _any_true(
        [pc.is_valid(table.column(name)) for name in schema.names if name in POLYMORPHIC_LOOKUPS]
        if module_missing
        else [],
        rows,
    )
    check = pc.or_(cut, linked)
    if SE_MODULE in schema.names and SE_MODULE not in table.column_names:
        table = table.append_column(SE_MODULE, pa.nulls(rows, pa.string()))
    if not pc.any(check).as_py():
        return table.select(schema.names), set()
    cut_ids = ids_of(table.filter(cut))
    full = _full_values(client, schema, cut_ids) if cut_ids else {}
    checked = table.filter(check)
    stamps, modules = _stamps_now(client, schema, ids_of(checked), module_missing)
    unstable = {rid for rid in cut_ids if rid not in full}
    if MODIFIED_TIME in checked.column_names:
        then, checked_ids = row_keys(checked)
        unstable |= {
            rid for rid, stamp in zip(checked_ids, then, strict=True) if stamps.get(rid) != stamp
        }
    ids = ids_of(table)
    columns = {name: table.column(name) for name in table.column_names}
    for name in schema.rich_text:
        if name in columns:
            old = columns[name].to_pylist()
            columns[name] = pa.array(
                [
                    (full[rid].get(name) or None) if rid in full else v
                    for rid, v in zip(ids, old, strict=True)
                ],
                pa.string(),
            )
    if module_missing:
        linked_rows = linked.to_pylist()
        columns[SE_MODULE] = pa.array(
            [
                modules.get(rid) if flag else None
                for rid, flag in zip(ids, linked_rows, strict=True)
            ],
            pa.string(),
        )
    done = pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema.arrow)
    if unstable:
        done = done.filter(
            pc.invert(
                pc.is_in(done.column("id"), value_set=pa.array(sorted(unstable), pa.string()))
            )
        )
    return done, unstable


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

    def _page_of_groups(
        self,
        schema: ModuleSchema,
        groups: Sequence[Sequence[str]],
        request: RecordsRequest,
        calls: GroupCalls,
    ) -> list[JsonPage]:
        """One page of every field group, ``tuning.group_calls`` calls at a time (the groups send
        the same query; see :class:`~connector.readers.base.GroupCalls`)."""

        def call(job: tuple[Sequence[str], str | None]) -> JsonPage:
            fields, token = job
            return list_page(
                self.client,
                schema,
                fields,
                since=request.since,
                page=request.page,
                token=token,
                by_id=request.by_id,
            )

        return calls.map(call, list(zip(groups, request.tokens, strict=True)))

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the module's rows with ``Modified_Time >= since``, ascending by modified time."""
        ahead: Prefetch[list[JsonPage]] = Prefetch()
        calls = GroupCalls(self.tuning.group_calls, "records-groups")
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
        ahead: Prefetch[list[JsonPage]],
        calls: GroupCalls,
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
        # Zoho's time when the current id pass was decided (None outside a pass, or unknown), and
        # the deletions already answered by reading the pass again.
        pass_start: datetime | None = None
        seen_deleted: set[str] = set()

        def page_of(request: RecordsRequest) -> Callable[[], list[JsonPage]]:
            return lambda: self._page_of_groups(schema, groups, request, calls)

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
            merged, cut = complete_rows(self.client, schema, merged, se_module_known=True)
            unstable |= cut
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
                if pages.by_id and not request.by_id:
                    pass_start = self.client.server_time()
                elif request.by_id and not pages.by_id and not pages.finished:
                    deleted = self._deleted_since(name, pass_start) - seen_deleted
                    if deleted:
                        assert request.since is not None
                        seen_deleted |= deleted
                        pages.repeat_pass(request.since)
                        pass_start = self.client.server_time()
                    self.stats.notes.append(
                        f"{name}: a record was deleted while a crowded second was read by id; "
                        "read it again"
                    )
            except (DataError, RetriableAPIError) as exc:
                # The page's rows are good: the caller gets them before the error.
                failure = exc
            if failure is None and not pages.finished:
                # The next request is known: make it while the caller writes this page.
                ahead.start(page_of(pages.request()))
            yield from fresh.to_batches()
            if failure is not None:
                raise failure

    def _deleted_since(self, module: str, start: datetime | None) -> set[str]:
        """The ids of ``module``'s records deleted at or after ``start`` (2 credits).

        Without Zoho's time (no ``Date`` header seen) nothing can be checked: none.
        """
        if start is None:
            return set()
        body = self.client.get_json(
            f"{module}/deleted",
            params={"type": "all", "per_page": DELETED_PER_PAGE},
            headers={"If-Modified-Since": zoho_time(start)},
        )
        rows = (body or {}).get("data") or []
        # If-Modified-Since is a filter Zoho documents loosely: check each deletion's time.
        return {
            str(row.get("id"))
            for row in rows
            if isinstance(row, dict)
            and isinstance(row.get("deleted_time"), str)
            and datetime.fromisoformat(row["deleted_time"]) >= start
        }

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
