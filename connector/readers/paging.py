"""Paging: one small cursor per Zoho paging scheme, driven by the readers.

A cursor holds only paging state. Its reader asks it for the next request, makes the call, and
tells it what the answer said; the cursor then decides the request after that, or that the read is
done, or raises when paging cannot go on. A cursor never calls Zoho, so it is tested without HTTP.

- :class:`DeletedCursor`: deleted records, ``page`` 1, 2, … while ``more_records``.
- :class:`BulkCursor`: Bulk Read, one job per page and field group; the first jobs from the query,
  later ones from each group's ``next_page_token``.
- :class:`RecordsCursor`: the Records list API, a new query (``If-Modified-Since``) from each
  page's last second; a second that fills a whole page is read again sorted by ``id`` (Zoho
  orders the rows of one second in no promised way), by ``page`` 1..10 and then ``page_token``.
- :class:`CoqlCursor`: COQL keyset paging, ``where (Modified_Time, id) > last``, with LIMIT growth
  and an inclusive restart at the records that changed while a page was read.

Every token chain goes through a :class:`TokenGuard`: a page token that comes back twice would page
in a circle for ever (a Bulk Read circle costs 50 credits a turn), so it is an error instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connector.errors import DataError, RetriableAPIError, ZohoAPIError
from connector.readers.base import zoho_time
from connector.zoho.limits import coql_page_limit


class TokenGuard:
    """The page tokens one chain of requests has followed; one that comes back raises."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._seen: set[str] = set()

    def follow(self, token: str | None) -> str | None:
        """Return ``token`` (None ends the chain); raise :class:`DataError` if it came before."""
        if token is None:
            return None
        # By its text: a malformed answer's token need not be hashable.
        key = str(token)
        if key in self._seen:
            raise DataError(
                f"{self.module}: Zoho gave the same page token twice; paging would go round in a "
                "circle",
                module=self.module,
            )
        self._seen.add(key)
        return token

    def reset(self) -> None:
        """Forget the chain: a new query starts a new one."""
        self._seen.clear()


# --- deleted records ----------------------------------------------------------------------------


@dataclass
class DeletedCursor:
    """Deleted records: numbered pages, from 1, while Zoho says more rows follow."""

    page: int = 1
    finished: bool = False

    def params(self) -> dict[str, int]:
        """The next request's paging parameter."""
        return {"page": self.page}

    def advance(self, more: bool) -> None:
        """Go on after a page; ``more`` is Zoho's ``more_records`` (False for an empty page)."""
        if more:
            self.page += 1
        else:
            self.finished = True


# --- Bulk Read ----------------------------------------------------------------------------------


class BulkCursor:
    """Bulk Read pages: every field group's next job, from the query or from a page token."""

    def __init__(self, module: str, groups: int) -> None:
        self.module = module
        self.tokens: list[str | None] = [None] * groups
        """Each group's next ``page_token``; None (the first page): a job from the query."""
        self.finished = False
        self._guards = [TokenGuard(module) for _ in range(groups)]

    def advance(self, next_tokens: Sequence[str | None]) -> None:
        """Go on after a page of every group, given each group's job's ``next_page_token``."""
        if any((t is None) != (next_tokens[0] is None) for t in next_tokens):
            # One group has more pages than another: the module changed a lot between the
            # snapshots, and the pages no longer line up.
            raise RetriableAPIError(
                f"{self.module}: Bulk Read field groups disagree on the number of pages; "
                "try the run again",
                code="BULK_UNSTABLE",
            )
        self.tokens = [
            guard.follow(token) for guard, token in zip(self._guards, next_tokens, strict=True)
        ]
        self.finished = self.tokens[0] is None


# --- Records API --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordsRequest:
    """One Records API request, sent by every field group: the query and its page."""

    since: str | None
    """The query's ``If-Modified-Since`` (None: every row)."""
    page: int
    """The ``page`` number, for a group without a token."""
    tokens: tuple[str | None, ...]
    """Each group's ``page_token``; a group with one sends it instead of ``page``."""
    by_id: bool = False
    """Sorted by ``id`` (the rows of second ``since`` in a promised order), not ``Modified_Time``."""


@dataclass(frozen=True)
class RecordsAnswer:
    """What Records paging needs of one page: its last second, and what Zoho said of more pages."""

    last_time: str
    """The ``Modified_Time`` (criteria text) of the first group's last row."""
    at_last: int
    """How many of the first group's rows share that second."""
    more: bool
    """The first group's ``more_records``."""
    next_tokens: tuple[str | None, ...]
    """Each group's ``next_page_token``."""
    unstable: bool = False
    """A record changed between the group reads and was left out of the page."""
    new_rows: bool = True
    """The page held a row not yielded before."""

    @classmethod
    def of(
        cls,
        stamps: Sequence[str],
        infos: Sequence[Mapping[str, Any]],
        *,
        unstable: bool,
        new_rows: bool,
    ) -> RecordsAnswer:
        """Read from the first group's ``Modified_Time`` stamps and every group's ``info``."""
        last_time = stamps[-1]
        return cls(
            last_time=last_time,
            at_last=stamps.count(last_time),
            more=bool(infos[0].get("more_records", False)),
            next_tokens=tuple(info.get("next_page_token") for info in infos),
            unstable=unstable,
            new_rows=new_rows,
        )


class RecordsCursor:
    """Records API paging: a new query from each page's last second; a crowded second by id.

    Offset paging over a long read can skip a row (a record modified earlier in the order jumps to
    the end and shifts every later row back by one), so after each page the next request is a new
    query with ``If-Modified-Since`` set to the page's last second, from its first page.

    The rows of one second tie on ``Modified_Time``, and Zoho promises no order among ties: two
    calls (``page`` 1 and 2, or a ``page_token`` chain, which is not a cursor) may order them
    differently, so paging through a second by ``Modified_Time`` can miss rows. A page that lies
    wholly in one second ``T`` therefore starts an *id pass*: the rows modified at or after ``T``
    sorted by ``id`` (unique, so the order is the same on every call), ``page`` up to ``max_page``
    then each group's ``next_page_token``; the reader keeps only the rows of ``T``. A record
    modified meanwhile leaves ``T`` but keeps its place in id order, so no row shifts. After the
    pass the read goes on by ``Modified_Time`` from the second after ``T``.
    """

    def __init__(
        self,
        module: str,
        groups: int,
        since: str | None,
        *,
        per_page: int,
        max_page: int,
        max_stalled: int,
    ) -> None:
        self.module = module
        self.per_page = per_page
        self.max_page = max_page
        self.max_stalled = max_stalled
        self.since = since
        self.page = 1
        # One page-token chain per field group: the groups page through the same query in step.
        self.tokens: list[str | None] = [None] * groups
        self.stalled = 0
        """Restarts or re-reads in a row that yielded nothing new."""
        self.by_id = False
        """In an id pass over the second ``since``."""
        self.finished = False
        self._guards = [TokenGuard(module) for _ in range(groups)]

    def request(self) -> RecordsRequest:
        """The next request."""
        return RecordsRequest(self.since, self.page, tuple(self.tokens), self.by_id)

    def restart(self, error: ZohoAPIError, last_second: str | None) -> None:
        """Start a new query at ``last_second`` (the last second yielded) after Zoho refused to
        page on (an expired or mismatched token, the pagination limit).

        Raises :class:`RetriableAPIError` when that cannot help: the limit reached within one
        second, or too many restarts in a row.
        """
        self.stalled += 1
        if self.stalled >= self.max_stalled or (
            error.code == "PAGINATION_LIMIT_EXCEEDED" and self.since == last_second
        ):
            raise RetriableAPIError(
                f"{self.module}: the Records API cannot page past this point ({error.code}); "
                "try the run again",
                status=error.status,
                code=error.code,
                url=error.url,
            ) from error
        self._query(last_second if last_second is not None else self.since, 1)

    def advance(self, answer: RecordsAnswer) -> None:
        """Decide the request after a page.

        Raises :class:`DataError` when Zoho says more rows follow but gives no page token, and
        :class:`RetriableAPIError` (``UNSTABLE_READ``) when records keep changing under the read.
        """
        if self.by_id:
            self._id_pass_advance(answer)
            return
        if not answer.more and not answer.unstable:
            self.finished = True
            return
        if answer.unstable:
            # The changed records' new versions are at the last second or later: read that
            # second again from its start.
            self.stalled = 0 if answer.new_rows else self.stalled + 1
            self._query(answer.last_time, 1)
        elif answer.at_last >= self.per_page:
            # The whole page lies in one second, which may hold more rows: read it by id.
            self.stalled = 0
            self._query(answer.last_time, 1, by_id=True)
        else:
            # A fresh query from the page's last second, from its first page: its rows at that
            # second may come in another order, so none of them is known to be read.
            self.stalled = 0
            self._query(answer.last_time, 1)
        if self.stalled >= self.max_stalled:
            raise RetriableAPIError(
                f"{self.module}: records keep changing while the Records API reads them; "
                "try the run again",
                code="UNSTABLE_READ",
            )

    def repeat_pass(self, second: str) -> None:
        """Read ``second`` by id once more: a record deleted while the pass paged moves every
        later row back by one, so a row of that second may have slipped past a page boundary.

        Raises :class:`RetriableAPIError` (``UNSTABLE_READ``) when deletions never stop.
        """
        self.stalled += 1
        if self.stalled >= self.max_stalled:
            raise RetriableAPIError(
                f"{self.module}: records keep being deleted while a crowded second is read; "
                "try the run again",
                code="UNSTABLE_READ",
            )
        self._query(second, 1, by_id=True)

    def _id_pass_advance(self, answer: RecordsAnswer) -> None:
        # A record that changed between the group reads left the second (a change stamps the
        # time now, later than T unless T is the live edge, which the run never writes): the
        # read by Modified_Time after T meets its new version, so `unstable` changes nothing here.
        if answer.more:
            self._next_page(answer.next_tokens)
        elif self.since is None:  # never: an id pass is over a second
            self.finished = True
        else:
            after = datetime.fromisoformat(self.since) + timedelta(seconds=1)
            self._query(zoho_time(after), 1)

    def _query(self, since: str | None, page: int, *, by_id: bool = False) -> None:
        self.since, self.page, self.by_id = since, page, by_id
        self.tokens = [None] * len(self.tokens)
        for guard in self._guards:
            guard.reset()

    def _next_page(self, next_tokens: Sequence[str | None]) -> None:
        # Zoho serves ``page`` only for the first max_page pages of a query; past that, tokens.
        if self.tokens[0] is None and self.page < self.max_page:
            self.page += 1
            return
        if not all(next_tokens):
            raise DataError(
                f"{self.module}: the Records API said more rows follow but gave no page token",
                module=self.module,
            )
        self.tokens = [
            guard.follow(token) for guard, token in zip(self._guards, next_tokens, strict=True)
        ]


# --- COQL ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyset:
    """Where the next COQL page starts: after ``(time, id)``, or at it when ``inclusive``."""

    time: str
    id: str
    inclusive: bool = False

    def lower(self) -> str:
        """The COQL condition for rows at or after this position, fully bracketed."""
        op = ">=" if self.inclusive else ">"
        return (
            f"((Modified_Time > '{self.time}') or "
            f"((Modified_Time = '{self.time}') and (id {op} '{self.id}')))"
        )

    def upper(self) -> str:
        """The COQL condition for rows at or before this position (inclusive)."""
        return (
            f"((Modified_Time < '{self.time}') or "
            f"((Modified_Time = '{self.time}') and (id <= '{self.id}')))"
        )


def base_where(since: datetime | None, after: Keyset | None) -> str:
    """The first group's condition: after the keyset, else from ``since``, else every row."""
    if after is not None:
        return after.lower()
    if since is not None:
        return f"(Modified_Time >= '{zoho_time(since)}')"
    return "(id is not null)"


@dataclass
class CoqlCursor:
    """COQL keyset paging on ``(Modified_Time, id)``, never OFFSET, with a growing LIMIT.

    An incremental read starts at ``first_limit`` and a full load at ``max_limit``; the LIMIT grows
    to ``max_limit`` once Zoho says more rows follow. A full load of ``expected`` counted rows
    asks each page for the cheapest LIMIT holding what is left of them (Zoho bills a call by its
    LIMIT, and ``more_records`` says when a page was the last): a count that fell short only
    costs pages at ``max_limit``. After a page whose records changed while it
    was read, the next page starts at ``(T, min unstable id)`` inclusive, ``T`` being the page's
    last second: a change stamps a time no earlier than ``T``, so the new versions are met again.
    """

    module: str
    since: datetime | None
    first_limit: int
    max_limit: int
    max_stalled: int
    after: Keyset | None = None
    """Where the next page starts; None: from ``since``."""
    limit: int = field(init=False)
    stalled: int = 0
    """Pages in a row that yielded nothing new."""
    finished: bool = False
    expected: int | None = None
    """The rows a count found (a full load), or None."""
    served: int = 0
    """New rows the pages so far yielded."""

    def __post_init__(self) -> None:
        # A full load reads the whole module, so the ramp from a small LIMIT only costs credits;
        # an incremental run usually finds a few changes, which the small LIMIT reads cheapest.
        self.limit = self.first_limit if self.since is not None else self._fitted()

    def _fitted(self) -> int:
        """The LIMIT of a full page: the cheapest holding the counted rows left, else the most."""
        return coql_page_limit(self.expected, self.served, self.max_limit)

    def where(self) -> str:
        """The next request's condition."""
        return base_where(self.since, self.after)

    @property
    def holds_rows(self) -> bool:
        """Whether the next page should hold rows: the last page said more follow, or a count
        found rows (the first page of a read may be empty)."""
        return self.after is not None or bool(self.expected)

    def advance(
        self, last: Keyset | None, *, more: bool, unstable: Set[str], new_rows: int
    ) -> None:
        """Decide the page after one that ended at ``last`` (None: it was empty).

        ``more`` is Zoho's ``more_records``, ``unstable`` the ids left out because they changed
        while the page was read, ``new_rows`` how many rows the page yielded that were not
        yielded before. Raises :class:`RetriableAPIError` (``UNSTABLE_READ``) when records keep
        changing.
        """
        self.served += new_rows
        if last is None or (not more and not unstable):
            self.finished = True
            return
        self.after = Keyset(last.time, min(unstable), inclusive=True) if unstable else last
        self.stalled = 0 if new_rows else self.stalled + 1
        if self.since is None:
            # A page that reads some rows again (after unstable ones) gets no LIMIT fitted to
            # the count.
            self.limit = self.max_limit if unstable else self._fitted()
        elif more:
            self.limit = self.max_limit
        if self.stalled >= self.max_stalled:
            raise RetriableAPIError(
                f"{self.module}: records keep changing while COQL reads them; try the run again",
                code="UNSTABLE_READ",
            )
