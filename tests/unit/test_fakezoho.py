"""The fake Zoho used by the reader unit tests answers as Zoho does."""

from __future__ import annotations

from support.fakezoho import FakeZoho, coql_predicate, make_records

from connector.errors import FatalAPIError


def test_coql_predicate_reads_the_readers_conditions() -> None:
    pred = coql_predicate(
        "((Modified_Time > '2026-01-01T00:00:01+00:00') or "
        "((Modified_Time = '2026-01-01T00:00:01+00:00') and (id >= '5')))"
    )
    assert pred("2026-01-01T00:00:02+00:00", "1")
    assert pred("2026-01-01T00:00:01+00:00", "5")
    assert not pred("2026-01-01T00:00:01+00:00", "4")
    assert not pred("2026-01-01T00:00:00+00:00", "9")


def test_fake_records_api_pages_and_refuses_page_past_ten() -> None:
    fake = FakeZoho(make_records(2100))
    params = {"fields": "id,Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"}
    body = fake.get_json("Leads", params={**params, "page": 10})
    assert body is not None and body["info"]["more_records"]
    try:
        fake.get_json("Leads", params={**params, "page": 11})
    except FatalAPIError as exc:
        assert exc.code == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    else:
        raise AssertionError("page 11 must be refused")
