"""The SDK's Records API calls against the simulator: typed values, page and page_token paging,
If-Modified-Since with 304, deleted records, and Zoho's pagination errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.record import (
    APIException,
    DeletedRecordsWrapper,
    GetDeletedRecordsParam,
    GetRecordsHeader,
    GetRecordsParam,
    Record,
    RecordOperations,
    RecurringActivity,
    RemindAt,
    ResponseWrapper,
    TimeRange,
)
from zohocrmsdk.src.com.zoho.crm.api.users import MinifiedUser

from connector.simulator.clock import FakeClock

if TYPE_CHECKING:
    from conftest import SdkSession


def _params(**values: Any) -> ParameterMap:
    pm = ParameterMap()
    for name, value in values.items():
        pm.add(getattr(GetRecordsParam, name), value)
    return pm


def _get(module: str, headers: HeaderMap | None = None, **params: Any) -> Any:
    if module == "Leads":
        # Zoho's default (converted=false) leaves converted leads out; these tests read them all.
        params.setdefault("converted", "both")
    return RecordOperations(module).get_records(_params(**params), headers or HeaderMap())


def _list_fields(session: SdkSession, module: str, limit: int = 50) -> list[Any]:
    meta = session.sim.org.module(module).meta
    return [f for f in meta.fields if f.list_readable and f.api_name != "id"][:limit]


def _expected(data_type: str, value: Any) -> Any:
    """A canonical store value in the shape the SDK hands back."""
    if value is None:
        return None
    if data_type == "bigint":
        return str(value)
    if data_type == "currency":
        return float(Decimal(value))
    if data_type == "lookup":
        return {"id": str(value["id"]), "name": value["name"]}
    if data_type in ("ownerlookup", "userlookup"):
        return {"id": str(value["id"]), "name": value["name"], "email": value.get("email")}
    if data_type == "datetime":
        return value.astimezone(timezone.utc)
    if data_type in ("ALARM", "RRULE"):
        return json.loads(value)  # the store keeps the JSON object's text
    if data_type == "time_range":
        # The SDK models a time range as a list of {"From", "To"} objects.
        start, _, end = str(value).partition("-")
        return [{"From": start, "To": end}]
    return value


def _actual(session: SdkSession, data_type: str, value: Any) -> Any:
    """An SDK value (Choice, MinifiedUser, Record, tz-aware datetime...) as plain data."""
    if value is None:
        return None
    if isinstance(value, MinifiedUser):
        return {"id": str(value.get_id()), "name": value.get_name(), "email": value.get_email()}
    if isinstance(value, Record):
        return {"id": str(value.get_id()), "name": value.get_key_value("name")}
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    if isinstance(value, RemindAt):
        return {"ALARM": value.get_alarm()}
    if isinstance(value, RecurringActivity):
        return {"RRULE": value.get_rrule()}
    if data_type == "time_range" and isinstance(value, list):
        return [
            {"From": v.get_from(), "To": v.get_to()} if isinstance(v, TimeRange) else v
            for v in value
        ]
    if data_type == "bigint":
        return str(value)  # the SDK reads bigint as an integer
    return session.plain(value)


def _assert_records_match(
    session: SdkSession, module: str, records: Sequence[Record], fields: Sequence[Any]
) -> None:
    store = session.sim.org.module(module)
    for record in records:
        values = record.get_key_values()
        row = store.get(str(record.get_id()))
        assert row is not None
        for f in fields:
            assert f.api_name in values, f.api_name
            got = _actual(session, f.value_type, values[f.api_name])
            want = _expected(f.value_type, row[f.api_name])
            if f.rich_text and want is not None:
                want = want[:500]  # list answers cut rich text; fetch_full_data has it whole
            assert got == want, (module, record.get_id(), f.api_name)


@pytest.mark.parametrize(
    "module", ["Leads", "Contacts", "Accounts", "Deals", "Tasks", "Shipments", "Contacts_X_Deals"]
)
def test_values_parse_into_sdk_types(make_sdk: Callable[..., SdkSession], module: str) -> None:
    """Every list-readable field (at most 50) of a page parses into the SDK's types and equals the
    org's value: lookups as Record, owners as MinifiedUser, picklists as Choice, datetimes with
    the org's offset, currency as a number. The SDK first fetches the field metadata of the
    module and of every module it looks up."""
    session = make_sdk(records=60)
    fields = _list_fields(session, module)
    response = _get(module, fields=",".join(f.api_name for f in fields), per_page=200)
    wrapper = session.result(response)
    assert isinstance(wrapper, ResponseWrapper)
    records = wrapper.get_data()
    assert len(records) == session.sim.org.module(module).count()
    _assert_records_match(session, module, records, fields)
    fetched = {r.query.get("module") for r in session.sim.requests if r.path.endswith("/fields")}
    assert module in fetched
    lookups = {f.lookup_module for f in fields} - {None}
    assert lookups <= fetched


def test_page_numbers_walk_the_module_in_order(make_sdk: Callable[..., SdkSession]) -> None:
    """page/per_page with sort_by=Modified_Time asc: pages chain in Modified_Time order, info
    echoes page/per_page/sort, and the last page says more_records false. (Rows that share a
    second may come in another order on each page, so ids can repeat at a page boundary.)"""
    session = make_sdk(records=250)
    seen: list[str] = []
    times: list[datetime] = []
    page = 1
    while True:
        response = _get(
            "Leads",
            fields="Last_Name,Modified_Time",
            per_page=100,
            page=page,
            sort_by="Modified_Time",
            sort_order="asc",
        )
        wrapper = session.result(response)
        info = wrapper.get_info()
        assert (info.get_page(), info.get_per_page()) == (page, 100)
        assert session.plain(info.get_sort_by()) == "Modified_Time"
        assert session.plain(info.get_sort_order()) == "asc"
        for record in wrapper.get_data():
            seen.append(str(record.get_id()))
            times.append(record.get_key_value("Modified_Time"))
        assert info.get_count() == len(wrapper.get_data())
        if not info.get_more_records():
            break
        page += 1
    store = session.sim.org.module("Leads")
    assert page == 3
    assert len(seen) == store.count() == 250
    assert times == sorted(times)
    # Every second in its place: the pages' times are the module's, one for one.
    expected = store.select(["Modified_Time"], order_by=[("Modified_Time", "asc")])
    assert [t.astimezone(timezone.utc) for t in times] == expected.column(0).to_pylist()


def test_page_token_continues_past_2000_rows(make_sdk: Callable[..., SdkSession]) -> None:
    """Pages 1-10 by number, page 11 refused with DISCRETE_PAGINATION_LIMIT_EXCEEDED, then the
    next_page_token of page 10 reads on to the end (default sort: id descending)."""
    session = make_sdk(records=2_150)
    ids: list[str] = []
    token = None
    for page in range(1, 11):
        wrapper = session.result(_get("Leads", fields="Last_Name", per_page=200, page=page))
        ids.extend(str(r.get_id()) for r in wrapper.get_data())
        info = wrapper.get_info()
        assert info.get_more_records() is True
        token = info.get_next_page_token()
        assert token and info.get_page_token_expiry() is not None
    refused = _get("Leads", fields="Last_Name", per_page=200, page=11)
    assert refused is not None and refused.get_status_code() == 400
    error = refused.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    assert error.get_details()["limit"] == 2000
    while token:
        wrapper = session.result(_get("Leads", fields="Last_Name", per_page=200, page_token=token))
        ids.extend(str(r.get_id()) for r in wrapper.get_data())
        info = wrapper.get_info()
        token = info.get_next_page_token()
        assert (token is None) == (info.get_more_records() is False)
    store = session.sim.org.module("Leads")
    expected = store.select(["id"], order_by=(("id", "desc"),)).column("id").to_pylist()
    assert ids == [str(i) for i in expected]
    assert len(ids) == 2_150


def test_page_token_bound_to_its_query(make_sdk: Callable[..., SdkSession]) -> None:
    """A page_token reused with other fields: TOKEN_BOUND_DATA_MISMATCH, as an SDK APIException."""
    session = make_sdk(records=300)
    first = session.result(_get("Leads", fields="Last_Name", per_page=200))
    token = first.get_info().get_next_page_token()
    assert token
    response = _get("Leads", fields="Last_Name,Email", per_page=200, page_token=token)
    assert response is not None and response.get_status_code() == 400
    assert response.get_object().get_code().get_value() == "TOKEN_BOUND_DATA_MISMATCH"


def test_if_modified_since_and_304(make_sdk: Callable[..., SdkSession]) -> None:
    """The SDK's If-Modified-Since header (a datetime it formats itself) selects the records
    changed since then; a time after every change gets 304 with no body."""
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc))
    session = make_sdk(records=100, clock=clock)
    store = session.sim.org.module("Leads")
    changed = [str(i) for i in store.select(["id"], limit=3).column("id").to_pylist()]
    clock.advance(60)
    for record_id in changed:
        store.update(record_id, {"Last_Name": "Changed"})
    headers = HeaderMap()
    headers.add(
        GetRecordsHeader.if_modified_since, datetime(2026, 7, 1, 12, 0, 30, tzinfo=timezone.utc)
    )
    wrapper = session.result(
        _get(
            "Leads",
            headers,
            fields="Last_Name,Modified_Time",
            sort_by="Modified_Time",
            sort_order="asc",
        )
    )
    got = {str(r.get_id()): r for r in wrapper.get_data()}
    assert set(got) == set(changed)
    for record in got.values():
        assert record.get_key_value("Last_Name") == "Changed"
        assert record.get_key_value("Modified_Time") == datetime(
            2026, 7, 1, 12, 1, 0, tzinfo=timezone.utc
        )
    later = HeaderMap()
    later.add(GetRecordsHeader.if_modified_since, clock() + timedelta(minutes=5))
    response = _get("Leads", later, fields="Last_Name")
    assert response is not None and response.get_status_code() == 304
    assert response.get_object() is None
    session.assert_clean()


def test_missing_fields_parameter(sdk: SdkSession) -> None:
    """No ``fields``: 400 REQUIRED_PARAM_MISSING, parsed as the SDK's record APIException."""
    response = RecordOperations("Leads").get_records(ParameterMap(), HeaderMap())
    assert response is not None and response.get_status_code() == 400
    error = response.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "REQUIRED_PARAM_MISSING"
    assert sdk.plain(error.get_status()) == "error"


def test_deleted_records(make_sdk: Callable[..., SdkSession]) -> None:
    """Deleted records (recycle and permanent) parse into DeletedRecord; an empty list is 204."""
    session = make_sdk(records=50)
    store = session.sim.org.module("Leads")
    ids = [str(i) for i in store.select(["id"], limit=2).column("id").to_pylist()]
    store.delete(ids[0])
    store.delete(ids[1], permanent=True)
    pm = ParameterMap()
    pm.add(GetDeletedRecordsParam.type, "all")
    response = RecordOperations("Leads").get_deleted_records(pm, HeaderMap())
    wrapper = session.result(response)
    assert isinstance(wrapper, DeletedRecordsWrapper)
    rows = {str(r.get_id()): r for r in wrapper.get_data()}
    assert set(rows) == set(ids)
    assert session.plain(rows[ids[0]].get_type()) == "recycle"
    assert session.plain(rows[ids[1]].get_type()) == "permanent"
    for row in rows.values():
        assert isinstance(row.get_deleted_time(), datetime)
        assert row.get_deleted_time().tzinfo is not None
        deleted_by = row.get_deleted_by()
        assert deleted_by is None or isinstance(deleted_by, MinifiedUser)
    assert wrapper.get_info().get_count() == 2
    other = session.sim.org.module("Contacts")
    assert other.deleted() == []
    response = RecordOperations("Contacts").get_deleted_records(ParameterMap(), HeaderMap())
    assert response is not None and response.get_status_code() == 204
    assert response.get_object() is None
