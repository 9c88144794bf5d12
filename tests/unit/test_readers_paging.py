"""The readers' paging cursors, without HTTP: each decides the next request from the last answer."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connector.errors import DataError, FatalAPIError, RetriableAPIError
from connector.readers.paging import (
    BulkCursor,
    CoqlCursor,
    DeletedCursor,
    Keyset,
    RecordsAnswer,
    RecordsCursor,
    RecordsRequest,
    TokenGuard,
    base_where,
)

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-01-01T00:00:01+00:00"
T2 = "2026-01-01T00:00:02+00:00"
SINCE = datetime(2026, 1, 1, 0, 0, 5, 250_000, tzinfo=timezone.utc)

# --- the repeated-token guard -------------------------------------------------------------------


def test_token_guard_follows_new_tokens_and_refuses_one_that_comes_back() -> None:
    guard = TokenGuard("Leads")
    assert guard.follow("a") == "a"
    assert guard.follow("b") == "b"
    assert guard.follow(None) is None  # the end of the chain is no token
    with pytest.raises(DataError) as info:
        guard.follow("a")
    assert info.value.module == "Leads" and "same page token twice" in str(info.value)


def test_token_guard_starts_over_after_a_reset() -> None:
    guard = TokenGuard("Leads")
    guard.follow("a")
    guard.reset()
    assert guard.follow("a") == "a"


# --- deleted records ----------------------------------------------------------------------------


def test_deleted_pages_are_numbered_while_more_records() -> None:
    pages = DeletedCursor()
    asked = []
    for more in (True, True, False):
        assert not pages.finished
        asked.append(pages.params())
        pages.advance(more)
    assert asked == [{"page": 1}, {"page": 2}, {"page": 3}]
    assert pages.finished


# --- Bulk Read ----------------------------------------------------------------------------------


def test_bulk_first_jobs_come_from_the_query_then_from_each_groups_token() -> None:
    pages = BulkCursor("Leads", 2)
    assert pages.tokens == [None, None] and not pages.finished
    pages.advance(["a1", "b1"])
    assert pages.tokens == ["a1", "b1"] and not pages.finished
    pages.advance(["a2", "b2"])
    assert pages.tokens == ["a2", "b2"]
    pages.advance([None, None])
    assert pages.finished


@pytest.mark.parametrize("tokens", [["a", None], [None, "b"]])
def test_bulk_groups_that_disagree_on_more_pages_are_retriable(tokens: list[str | None]) -> None:
    pages = BulkCursor("Leads", 2)
    with pytest.raises(RetriableAPIError) as info:
        pages.advance(tokens)
    assert info.value.code == "BULK_UNSTABLE"


def test_bulk_token_that_comes_back_is_refused_before_another_job() -> None:
    pages = BulkCursor("Leads", 1)
    pages.advance(["a"])
    pages.advance(["b"])
    with pytest.raises(DataError):
        pages.advance(["a"])


# --- Records API --------------------------------------------------------------------------------


def records(groups: int = 1, since: str | None = None, **limits: int) -> RecordsCursor:
    numbers = {"per_page": 200, "max_page": 10, "max_stalled": 5, **limits}
    return RecordsCursor("Leads", groups, since, **numbers)


def answer(
    last_time: str,
    at_last: int = 1,
    *,
    more: bool = True,
    tokens: tuple[str | None, ...] = (None,),
    unstable: bool = False,
    new_rows: bool = True,
) -> RecordsAnswer:
    return RecordsAnswer(last_time, at_last, more, tokens, unstable, new_rows)


def test_records_answer_reads_the_last_second_and_every_groups_info() -> None:
    got = RecordsAnswer.of(
        [T0, T1, T1],
        [{"more_records": True, "next_page_token": "a"}, {"next_page_token": "b"}],
        unstable=False,
        new_rows=True,
    )
    assert got == RecordsAnswer(T1, 2, True, ("a", "b"), False, True)
    assert not RecordsAnswer.of([T0], [{}], unstable=True, new_rows=False).more


def test_records_first_request_is_page_one_of_the_query() -> None:
    assert records(2, T0).request() == RecordsRequest(T0, 1, (None, None))
    assert records().request() == RecordsRequest(None, 1, (None,))


def test_records_last_page_ends_the_read() -> None:
    pages = records()
    pages.advance(answer(T1, more=False))
    assert pages.finished


def test_records_each_page_starts_a_new_query_at_its_last_second() -> None:
    pages = records(2)
    pages.advance(answer(T1, 3, tokens=("a", "b")))
    assert pages.request() == RecordsRequest(T1, 1, (None, None))
    # From its first page again, even after 150 rows of that second: its ties may come in
    # another order in the new query, so no page of them is known to be read.
    pages.advance(answer(T2, 150))
    assert pages.request() == RecordsRequest(T2, 1, (None, None))


def id_pass(groups: int = 1, **limits: int) -> RecordsCursor:
    """A cursor whose first page lay wholly in second T0: it reads T0 again by id."""
    pages = records(groups, T0, **limits)
    pages.advance(answer(T0, 200, tokens=("x",) * groups))
    assert pages.request() == RecordsRequest(T0, 1, (None,) * groups, by_id=True)
    return pages


def test_records_a_second_filling_a_page_is_read_by_id_by_page_then_by_token() -> None:
    pages = id_pass(2, max_page=3)
    asked = []
    for tokens in [("a1", "b1"), ("a2", "b2"), ("a3", "b3"), ("a4", "b4")]:
        pages.advance(answer(T1, 7, tokens=tokens))  # an id page: its times say nothing
        asked.append(pages.request())
    assert asked == [
        RecordsRequest(T0, 2, (None, None), by_id=True),
        RecordsRequest(T0, 3, (None, None), by_id=True),
        # Past max_page, each group follows its own token (page is then not sent).
        RecordsRequest(T0, 3, ("a3", "b3"), by_id=True),
        RecordsRequest(T0, 3, ("a4", "b4"), by_id=True),
    ]
    # The id pass done, the read goes on by time from the next second, a new token chain.
    pages.advance(answer(T1, more=False))
    assert pages.request() == RecordsRequest(T1, 1, (None, None), by_id=False)
    assert not pages.finished


def test_records_id_pass_ignores_changes_between_groups() -> None:
    # A record that changed left the second; the read by time after it meets its new version.
    pages = id_pass()
    pages.advance(answer(T1, unstable=True, new_rows=False))
    assert pages.request() == RecordsRequest(T0, 2, (None,), by_id=True)


def test_records_more_rows_without_a_page_token_is_a_data_error() -> None:
    pages = id_pass(2, max_page=1)
    with pytest.raises(DataError) as info:
        pages.advance(answer(T0, 200, tokens=("a", None)))
    assert "gave no page token" in str(info.value)


def test_records_page_token_that_comes_back_is_refused() -> None:
    pages = id_pass(1, max_page=1)
    pages.advance(answer(T0, 200, tokens=("a",)))
    pages.advance(answer(T0, 200, tokens=("b",)))
    with pytest.raises(DataError):
        pages.advance(answer(T0, 200, tokens=("a",)))


def test_records_same_token_in_a_new_query_is_a_new_chain() -> None:
    pages = id_pass(1, max_page=1)
    pages.advance(answer(T0, 200, tokens=("a",)))
    pages.advance(answer(T0, more=False))
    pages.advance(answer(T1, 200))  # a second id pass
    pages.advance(answer(T1, 200, tokens=("a",)))
    assert pages.request() == RecordsRequest(T1, 1, ("a",), by_id=True)


def test_records_unstable_page_reads_its_last_second_again_until_it_stalls() -> None:
    pages = records(1, T0, max_stalled=3)
    pages.advance(answer(T1, unstable=True))
    assert pages.request() == RecordsRequest(T1, 1, (None,)) and pages.stalled == 0
    pages.advance(answer(T1, unstable=True, new_rows=False))
    pages.advance(answer(T1, unstable=True, new_rows=False))
    with pytest.raises(RetriableAPIError) as info:
        pages.advance(answer(T1, unstable=True, new_rows=False))
    assert info.value.code == "UNSTABLE_READ"


def expired(code: str = "EXPIRED_VALUE") -> FatalAPIError:
    return FatalAPIError("refused", status=400, code=code, url="https://zoho/crm/v8/Leads")


def test_records_restart_goes_back_to_the_last_second_yielded() -> None:
    pages = records(2, T0, max_page=1)
    pages.advance(answer(T0, 200, tokens=("a", "b")))
    pages.restart(expired(), T0)
    assert pages.request() == RecordsRequest(T0, 1, (None, None))
    # Nothing yielded yet: the query stays where it was.
    fresh = records(1, T2)
    fresh.restart(expired(), None)
    assert fresh.request() == RecordsRequest(T2, 1, (None,))


def test_records_pagination_limit_inside_one_second_cannot_be_restarted() -> None:
    pages = records(1, T0)
    pages.restart(expired("PAGINATION_LIMIT_EXCEEDED"), T1)  # a later second: start there
    assert pages.request().since == T1
    with pytest.raises(RetriableAPIError) as info:
        pages.restart(expired("PAGINATION_LIMIT_EXCEEDED"), T1)
    assert info.value.code == "PAGINATION_LIMIT_EXCEEDED" and info.value.status == 400
    assert isinstance(info.value.__cause__, FatalAPIError)


def test_records_too_many_restarts_in_a_row_give_up() -> None:
    pages = records(1, T0, max_stalled=2)
    pages.restart(expired(), T1)
    with pytest.raises(RetriableAPIError) as info:
        pages.restart(expired(), T2)
    assert info.value.code == "EXPIRED_VALUE"


# --- COQL ---------------------------------------------------------------------------------------


def coql(since: datetime | None = None, **limits: int) -> CoqlCursor:
    numbers = {"first_limit": 200, "max_limit": 2000, "max_stalled": 5, **limits}
    return CoqlCursor("Leads", since, **numbers)


def test_keyset_conditions() -> None:
    after = Keyset(T1, "42")
    assert after.lower() == (
        f"((Modified_Time > '{T1}') or ((Modified_Time = '{T1}') and (id > '42')))"
    )
    assert Keyset(T1, "42", inclusive=True).lower().endswith("(id >= '42')))")
    assert after.upper() == (
        f"((Modified_Time < '{T1}') or ((Modified_Time = '{T1}') and (id <= '42')))"
    )


def test_base_where() -> None:
    assert base_where(None, None) == "(id is not null)"
    assert base_where(SINCE, None) == "(Modified_Time >= '2026-01-01T00:00:05+00:00')"
    assert base_where(SINCE, Keyset(T1, "7")) == Keyset(T1, "7").lower()


def test_coql_full_load_starts_at_the_biggest_limit_incremental_at_the_smallest() -> None:
    full = coql()
    assert (full.where(), full.limit) == ("(id is not null)", 2000)
    incremental = coql(SINCE)
    assert incremental.limit == 200
    assert incremental.where() == "(Modified_Time >= '2026-01-01T00:00:05+00:00')"


def test_coql_next_page_is_after_the_last_row_and_the_limit_grows_once_more_follow() -> None:
    pages = coql(SINCE)
    pages.advance(Keyset(T1, "9"), more=True, unstable=set(), new_rows=True)
    assert pages.where() == Keyset(T1, "9").lower() and pages.limit == 2000
    pages.advance(Keyset(T2, "3"), more=False, unstable=set(), new_rows=True)
    assert pages.finished


def test_coql_counted_full_load_fits_each_limit_to_the_rows_left() -> None:
    pages = coql(expected=5_000)
    assert pages.limit == 2000
    pages.advance(Keyset(T1, "1"), more=True, unstable=set(), new_rows=2000)
    assert pages.limit == 2000
    pages.advance(Keyset(T1, "2"), more=True, unstable=set(), new_rows=2000)
    assert pages.limit == 1000  # 1,000 left: the 2-credit LIMIT holds them
    pages.advance(Keyset(T2, "3"), more=True, unstable=set(), new_rows=1000)
    assert pages.limit == 2000  # the count fell short: rows came since, read them at the most
    small = coql(expected=150)
    assert small.limit == 200


def test_coql_counted_full_load_after_unstable_rows_reads_at_the_most() -> None:
    pages = coql(expected=2_100)
    pages.advance(Keyset(T1, "9"), more=True, unstable={"4"}, new_rows=1999)
    assert pages.limit == 2000  # the next page reads some rows again: no fitted LIMIT


def test_coql_empty_page_ends_the_read() -> None:
    pages = coql()
    pages.advance(None, more=True, unstable=set(), new_rows=False)
    assert pages.finished


def test_coql_unstable_records_restart_inclusively_at_the_lowest_id() -> None:
    pages = coql(SINCE)
    pages.advance(Keyset(T1, "9"), more=False, unstable={"5", "3"}, new_rows=True)
    assert not pages.finished
    assert pages.where() == Keyset(T1, "3", inclusive=True).lower()
    assert pages.limit == 200  # no more rows said to follow: the LIMIT stays


def test_coql_pages_that_bring_nothing_new_give_up() -> None:
    pages = coql(max_stalled=2)
    pages.advance(Keyset(T1, "9"), more=False, unstable={"9"}, new_rows=False)
    with pytest.raises(RetriableAPIError) as info:
        pages.advance(Keyset(T1, "9"), more=False, unstable={"9"}, new_rows=False)
    assert info.value.code == "UNSTABLE_READ"


def test_coql_a_page_with_new_rows_resets_the_stall_count() -> None:
    pages = coql(max_stalled=2)
    pages.advance(Keyset(T1, "9"), more=True, unstable=set(), new_rows=False)
    pages.advance(Keyset(T1, "10"), more=True, unstable=set(), new_rows=True)
    pages.advance(Keyset(T2, "11"), more=True, unstable=set(), new_rows=False)
    assert pages.stalled == 1
