"""The SDK's COQL calls against the simulator: a filtered, ordered query whose rows are checked
against the org, LIMIT/OFFSET paging, 204 on no rows, and Zoho's COQL error body."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from zohocrmsdk.src.com.zoho.crm.api.coql import (
    APIException,
    BodyWrapper,
    CoqlOperations,
    ResponseWrapper,
)

from connector.simulator.query import Comparison

# A query that does not name Converted__s leaves converted leads out (assumed, like Records).
NOT_CONVERTED = Comparison("Converted__s", "=", "false")

if TYPE_CHECKING:
    from conftest import SdkSession


def _coql(query: str) -> Any:
    body = BodyWrapper()
    body.set_select_query(query)
    return CoqlOperations().get_records(body)


def test_filtered_ordered_query_matches_the_org(make_sdk: Callable[..., SdkSession]) -> None:
    """Nested and/or, in, comparison and ordering: the rows equal a filter of the org done here,
    lookups come back as {name, id}, and Modified_Time parses as a datetime in the org offset."""
    session = make_sdk(records=300)
    store = session.sim.org.module("Leads")
    everything = store.select(
        ["id", "Last_Name", "Owner", "Annual_Revenue", "Lead_Source", "Modified_Time"],
        where=NOT_CONVERTED,
    ).to_pylist()
    cutoff = sorted(r["Modified_Time"] for r in everything)[len(everything) // 3]
    cutoff_text = cutoff.astimezone(timezone(session.sim.org.offset)).isoformat()
    query = (
        "select Last_Name, Owner, Annual_Revenue, Modified_Time from Leads "
        f"where (Modified_Time >= '{cutoff_text}' and "
        "(Lead_Source in ('Web Download', 'Chat', 'Cold Call') or Annual_Revenue > 100000000)) "
        "order by Modified_Time asc, id asc limit 2000"
    )
    wrapper = session.result(_coql(query))
    assert isinstance(wrapper, ResponseWrapper)

    def keep(row: dict[str, Any]) -> bool:
        revenue = row["Annual_Revenue"]
        return row["Modified_Time"] >= cutoff and (
            row["Lead_Source"] in ("Web Download", "Chat", "Cold Call")
            or (revenue is not None and Decimal(revenue) > 100_000_000)
        )

    expected = sorted(
        (r for r in everything if keep(r)), key=lambda r: (r["Modified_Time"], int(r["id"]))
    )
    records = wrapper.get_data()
    assert 0 < len(records) < len(everything)
    assert [str(r.get_id()) for r in records] == [r["id"] for r in expected]
    for record, row in zip(records, expected, strict=True):
        assert record.get_key_value("Last_Name") == row["Last_Name"]
        owner = record.get_key_value("Owner")
        assert owner == {"name": row["Owner"]["name"], "id": row["Owner"]["id"]}
        revenue = record.get_key_value("Annual_Revenue")
        want = None if row["Annual_Revenue"] is None else float(Decimal(row["Annual_Revenue"]))
        assert revenue == want
        modified = record.get_key_value("Modified_Time")
        assert isinstance(modified, datetime)
        assert modified.astimezone(timezone.utc) == row["Modified_Time"]
    info = wrapper.get_info()
    assert info.get_count() == len(records)
    assert info.get_more_records() is False


def test_limit_offset_paging(make_sdk: Callable[..., SdkSession]) -> None:
    """LIMIT/OFFSET pages chain to every id in ascending order; more_records flags the end."""
    session = make_sdk(records=150)
    ids: list[str] = []
    offset = 0
    while True:
        wrapper = session.result(
            _coql(f"select Last_Name from Leads where id is not null limit {offset}, 40")
        )
        ids.extend(str(r.get_id()) for r in wrapper.get_data())
        if not wrapper.get_info().get_more_records():
            break
        offset += 40
    store = session.sim.org.module("Leads")
    expected = [
        str(i)
        for i in store.select(["id"], where=NOT_CONVERTED, order_by=(("id", "asc"),)).column("id")
    ]
    assert ids == expected
    assert 0 < len(ids) < store.count()


def test_no_rows_is_204(sdk: SdkSession) -> None:
    """A query matching nothing: 204 with no body; the SDK returns no object and logs no error."""
    response = _coql("select Last_Name from Leads where Last_Name = 'no such name at all'")
    assert response is not None and response.get_status_code() == 204
    assert response.get_object() is None
    sdk.assert_clean()


def test_syntax_error_body(sdk: SdkSession) -> None:
    """A malformed query: 400 SYNTAX_ERROR, parsed by the SDK's COQL APIException."""
    response = _coql("select Last_Name from Leads where")
    assert response is not None and response.get_status_code() == 400
    error = response.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "SYNTAX_ERROR"
    assert sdk.plain(error.get_status()) == "error"
    assert error.get_message()
    sdk.assert_clean()


def test_unknown_column_is_invalid_query(sdk: SdkSession) -> None:
    """A column the module lacks: 400 INVALID_QUERY."""
    response = _coql("select No_Such_Field from Leads limit 5")
    assert response is not None and response.get_status_code() == 400
    assert response.get_object().get_code().get_value() == "INVALID_QUERY"
