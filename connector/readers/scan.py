"""Whole-module reads in ``id`` order, for modules without ``Modified_Time``.

The COQL and Records readers page on ``Modified_Time`` (keyset, ``sort_by``, ``If-Modified-Since``).
Some modules have no such field (``Actions_Performed``, for one, has ``Action_Performed_Time``):
they are read in full on every run, in ``id`` order, and each run's output replaces the last one
(see :mod:`connector.run.module_job`). What Zoho allows, per reader:

* **COQL**: any field may be filtered and ordered on, so ``where id > '<last id>' order by id asc
  limit 2000`` pages through the module by keyset (3 credits per 2,000 rows). Other field groups
  read the same id range, ``where ((id > a) and (id <= b))``.
* **Records API**: ``sort_by`` takes only ``id``, ``Created_Time`` or ``Modified_Time``, and
  ``If-Modified-Since`` compares ``Modified_Time``, so the only safe order is ``sort_by=id``:
  ``page`` 1..10, then ``page_token`` (1 credit per 200 rows). Zoho stops a ``page_token`` chain at
  100,000 rows: a bigger module without ``Modified_Time`` cannot be read this way, and the read
  fails with a message that says to use COQL or Bulk.
* **Bulk Read** needs no change: a full load has no criteria (:mod:`connector.readers.bulk`).

Both readers are unordered as far as the run is concerned (their order is not ``Modified_Time``),
so the run commits once, at the end of the module. A record missing from one field group's page
(created or deleted between the group reads) makes the read retriable (``UNSTABLE_READ``): there is
no ``Modified_Time`` to tell which version is newer, and nothing may be half-merged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from connector.errors import DataError, RetriableAPIError
from connector.readers.base import ID, Reader, ReaderBase, merge_groups, split_fields
from connector.readers.jsonpage import JsonPage, decode_page
from connector.readers.paging import TokenGuard
from connector.zoho.limits import (
    COQL_COLUMNS_PER_CALL,
    RECORDS_MAX_PAGE,
    RECORDS_PER_PAGE,
    coql_page_limit,
)
from connector.zoho.limits import RECORDS_FIELDS_PER_CALL as RECORDS_FIELDS

if TYPE_CHECKING:
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient
    from connector.zoho.metadata import ModuleMeta

# Zoho ends a page_token chain at this many rows (zoho-api.md §5).
RECORDS_TOKEN_ROWS = 100_000


def _unstable(module: str, ids: set[str]) -> RetriableAPIError:
    return RetriableAPIError(
        f"{module}: {len(ids)} record(s) changed between field-group reads of a module without "
        "Modified_Time; try the run again",
        code="UNSTABLE_READ",
    )


@dataclass(eq=False, repr=False)
class CoqlScanReader(ReaderBase):
    """Reads a whole module through COQL, keyset-paged on ``id``."""

    name = "coql"
    ordered = False
    expected_rows: int | None = field(default=None, kw_only=True)
    """The rows a count found: each page's LIMIT is the cheapest holding what is left."""

    def _select(
        self, schema: ModuleSchema, columns: Sequence[str], where: str, limit: int
    ) -> JsonPage:
        query = (
            f"select {', '.join(columns)} from {schema.module} where {where} "
            f"order by id asc limit {limit}"
        )
        body = self.client.post_body("coql", {"select_query": query})
        return decode_page(body, schema, columns, what="a COQL answer")

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield every row of the module (``since`` must be None: there is no time to page on)."""
        if since is not None:
            raise ValueError(f"{module.api_name}: a module without Modified_Time is read in full")
        groups = split_fields(schema, COQL_COLUMNS_PER_CALL)
        last: str | None = None
        served = 0
        while True:
            where = "(id is not null)" if last is None else f"(id > '{last}')"
            limit = coql_page_limit(self.expected_rows, served)
            first = self._select(schema, groups[0], where, limit)
            self.stats.pages += 1
            if not first.num_rows:
                return
            ids = first.ids()
            tables = [first.table]
            upper = f"(id <= '{ids[-1]}')"
            span = upper if last is None else f"({where} and {upper})"
            # The span holds the first group's rows: the same LIMIT holds them in every group.
            tables.extend(self._select(schema, g, span, limit).table for g in groups[1:])
            merged, unstable = merge_groups(tables, schema)
            if unstable:
                raise _unstable(module.api_name, unstable)
            served += merged.num_rows
            self.stats.rows += merged.num_rows
            self.report_progress()
            yield from merged.to_batches()
            if not first.info.get("more_records"):
                return
            last = ids[-1]


class RecordsScanReader(ReaderBase):
    """Reads a whole module through the Records API, sorted by ``id``."""

    name = "records"
    ordered = False

    def _page(
        self, schema: ModuleSchema, fields: Sequence[str], page: int, token: str | None
    ) -> JsonPage:
        params: dict[str, Any] = {
            "fields": ",".join(fields),
            "per_page": RECORDS_PER_PAGE,
            "sort_by": ID,
            "sort_order": "asc",
        }
        if token is None:
            params["page"] = page
        else:
            params["page_token"] = token
        body = self.client.get_body(schema.module, params=params)
        return decode_page(body, schema, fields, what="a Records API answer")

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield every row of the module (``since`` must be None)."""
        if since is not None:
            raise ValueError(f"{module.api_name}: a module without Modified_Time is read in full")
        name = module.api_name
        groups = split_fields(schema, RECORDS_FIELDS)
        page = 1
        tokens: list[str | None] = [None] * len(groups)
        guards = [TokenGuard(name) for _ in groups]
        served = 0
        while True:
            answers = [
                self._page(schema, fields, page, token)
                for fields, token in zip(groups, tokens, strict=True)
            ]
            self.stats.pages += 1
            if not answers[0].num_rows:
                return
            merged, unstable = merge_groups([a.table for a in answers], schema)
            if unstable:
                raise _unstable(name, unstable)
            served += answers[0].num_rows
            self.stats.rows += merged.num_rows
            self.report_progress()
            yield from merged.to_batches()
            if not answers[0].info.get("more_records"):
                return
            if served >= RECORDS_TOKEN_ROWS:
                raise DataError(
                    f"{name}: the Records API reads at most {RECORDS_TOKEN_ROWS:,} rows of a module "
                    "without Modified_Time; read it with COQL (UseCOQL=true) or Bulk Read",
                    module=name,
                )
            if tokens[0] is None and page < RECORDS_MAX_PAGE:
                page += 1
                continue
            following = [a.info.get("next_page_token") for a in answers]
            if not all(following):
                raise DataError(
                    f"{name}: the Records API said more rows follow but gave no page token",
                    module=name,
                )
            tokens = [g.follow(t) for g, t in zip(guards, following, strict=True)]


def make_scan_reader(
    name: str, client: ZohoClient, reader: Reader, *, expected_rows: int | None = None
) -> Reader:
    """The id-order counterpart of the COQL or Records ``reader`` (same tuning, sleep, progress);
    ``expected_rows`` as in :func:`~connector.readers.base.make_reader`."""
    base = cast(ReaderBase, reader)
    if name == "coql":
        return CoqlScanReader(
            client,
            base.tuning,
            sleep=base.sleep,
            on_progress=base.on_progress,
            expected_rows=expected_rows,
        )
    return RecordsScanReader(client, base.tuning, sleep=base.sleep, on_progress=base.on_progress)
