"""The SDK's Bulk Read calls against the simulator: a job created with nested criteria, polled to
COMPLETED and downloaded as a ZIP; later pages by page_token; unsupported modules, the download
rate limit, and a failed job."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from zohocrmsdk.src.com.zoho.crm.api.bulk_read import (
    ActionWrapper,
    APIException,
    BodyWrapper,
    BulkReadOperations,
    Criteria,
    FileBodyWrapper,
    JobDetail,
    Query,
    ResponseWrapper,
    SuccessResponse,
)
from zohocrmsdk.src.com.zoho.crm.api.fields import MinifiedField
from zohocrmsdk.src.com.zoho.crm.api.modules import MinifiedModule
from zohocrmsdk.src.com.zoho.crm.api.users import MinifiedUser
from zohocrmsdk.src.com.zoho.crm.api.util import Choice

from connector.simulator import FaultConfig
from connector.simulator.query import Comparison

# A query that does not name Converted__s leaves converted leads out (assumed, like Records).
NOT_CONVERTED = Comparison("Converted__s", "=", "false")

if TYPE_CHECKING:
    from conftest import SdkSession

MAX_POLLS = 6


def _criterion(field: str, comparator: str, value: Any) -> Criteria:
    c = Criteria()
    f = MinifiedField()
    f.set_api_name(field)
    c.set_field(f)
    c.set_comparator(Choice(comparator))
    c.set_value(value)
    return c


def _group(operator: str, *items: Criteria) -> Criteria:
    c = Criteria()
    c.set_group_operator(Choice(operator))
    c.set_group(list(items))
    return c


def _query(module: str | None = None, fields: list[str] | None = None, **extra: Any) -> Query:
    q = Query()
    if module is not None:
        m = MinifiedModule()
        m.set_api_name(module)
        q.set_module(m)
    if fields is not None:
        q.set_fields(fields)
    if "criteria" in extra:
        q.set_criteria(extra["criteria"])
    if "page_token" in extra:
        q.set_page_token(extra["page_token"])
    if "page" in extra:
        q.set_page(extra["page"])
    return q


def _create(session: SdkSession, query: Query) -> str:
    """Create a job; return its id after checking the 201 answer."""
    body = BodyWrapper()
    body.set_query(query)
    body.set_file_type("csv")
    wrapper = session.result(BulkReadOperations().create_bulk_read_job(body), status=201)
    assert isinstance(wrapper, ActionWrapper)
    [entry] = wrapper.get_data()
    assert isinstance(entry, SuccessResponse)
    assert entry.get_code().get_value() == "ADDED_SUCCESSFULLY"
    assert entry.get_status().get_value() == "success"
    details = session.plain(entry.get_details())
    assert details["operation"] == "read"
    assert details["state"] == "ADDED"
    return str(details["id"])


def _poll(session: SdkSession, job_id: str) -> tuple[JobDetail, list[str]]:
    """Poll until the job ends (the simulator moves one state per poll); no sleeping."""
    states: list[str] = []
    for _ in range(MAX_POLLS):
        wrapper = session.result(BulkReadOperations().get_bulk_read_job_details(int(job_id)))
        assert isinstance(wrapper, ResponseWrapper)
        [job] = wrapper.get_data()
        states.append(job.get_state().get_value())
        if states[-1] in ("COMPLETED", "FAILURE"):
            return job, states
    raise AssertionError(f"job {job_id} never finished: {states}")


def _download(session: SdkSession, job_id: str) -> list[dict[str, str]]:
    """Download the result through the SDK and read the CSV inside the ZIP."""
    wrapper = session.result(BulkReadOperations().download_result(int(job_id)))
    assert isinstance(wrapper, FileBodyWrapper)
    stream = wrapper.get_file()
    assert stream.get_name() == f"{job_id}.zip"
    payload = stream.get_stream().content
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        assert zf.namelist() == [f"{job_id}.csv"]
        text = zf.read(f"{job_id}.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_job_created_polled_and_downloaded(make_sdk: Callable[..., SdkSession]) -> None:
    """Nested criteria (and / or, a datetime the SDK formats itself, in, greater_than); the job
    walks its states, its details parse into the SDK's JobDetail and Result, and the CSV holds
    exactly the matching rows, ``id`` first, in the requested column order."""
    session = make_sdk(records=300)
    store = session.sim.org.module("Leads")
    columns = ["id", "Last_Name", "Owner", "Lead_Source", "Annual_Revenue", "Modified_Time"]
    everything = store.select(columns, where=NOT_CONVERTED).to_pylist()
    cutoff = sorted(r["Modified_Time"] for r in everything)[len(everything) // 2]
    sources = ["Web Download", "Chat", "Cold Call"]
    criteria = _group(
        "and",
        _criterion("Modified_Time", "greater_equal", cutoff.replace(tzinfo=timezone.utc)),
        _group(
            "or",
            _criterion("Lead_Source", "in", sources),
            _criterion("Annual_Revenue", "greater_than", 100_000_000),
        ),
    )
    fields = ["Last_Name", "Owner", "Lead_Source", "Annual_Revenue", "Modified_Time"]
    job_id = _create(session, _query("Leads", fields, criteria=criteria))
    job, states = _poll(session, job_id)
    assert states[-1] == "COMPLETED"
    assert set(states) <= {"ADDED", "QUEUED", "IN PROGRESS", "COMPLETED"}
    assert str(job.get_id()) == job_id
    assert job.get_operation() == "read"
    assert isinstance(job.get_created_time(), datetime)
    assert isinstance(job.get_created_by(), MinifiedUser)
    assert job.get_query().get_module().get_api_name() == "Leads"
    result = job.get_result()
    assert result.get_download_url() == f"/crm/bulk/v8/read/{job_id}/result"
    assert result.get_more_records() is False
    assert result.get_page() == 1

    def keep(row: dict[str, Any]) -> bool:
        revenue = row["Annual_Revenue"]
        return row["Modified_Time"] >= cutoff and (
            row["Lead_Source"] in sources
            or (revenue is not None and Decimal(revenue) > 100_000_000)
        )

    expected = [r for r in everything if keep(r)]
    rows = _download(session, job_id)
    assert 0 < len(rows) < len(everything)
    assert result.get_count() == len(rows)
    assert list(rows[0]) == ["id", *fields]
    assert [r["id"] for r in rows] == [
        r["id"] for r in sorted(expected, key=lambda r: int(r["id"]))
    ]
    by_id = {r["id"]: r for r in expected}
    for row in rows:
        want = by_id[row["id"]]
        assert row["Last_Name"] == (want["Last_Name"] or "")
        assert row["Owner"] == want["Owner"]["id"]  # lookups as the related id
        modified = datetime.fromisoformat(row["Modified_Time"])
        assert modified.utcoffset() == session.sim.org.offset
        assert modified == want["Modified_Time"]


def test_later_pages_by_page_token(make_sdk: Callable[..., SdkSession]) -> None:
    """With 100-row pages, each COMPLETED job names the next page's token; a job created from
    ``{"query": {"page_token": ...}}`` alone reads on, and the pages cover the module once."""
    session = make_sdk(records=250, bulk_page_size=100)
    ids: list[str] = []
    query = _query("Leads", ["Last_Name"])
    for _ in range(5):
        job_id = _create(session, query)
        job, _states = _poll(session, job_id)
        assert job.get_state().get_value() == "COMPLETED"
        rows = _download(session, job_id)
        ids.extend(r["id"] for r in rows)
        result = job.get_result()
        assert result.get_count() == len(rows)
        if not result.get_more_records():
            assert result.get_next_page_token() is None
            break
        assert result.get_per_page() == 100
        query = _query(page_token=result.get_next_page_token())
    store = session.sim.org.module("Leads")
    expected = [
        str(i)
        for i in store.select(["id"], where=NOT_CONVERTED, order_by=(("id", "asc"),)).column("id")
    ]
    assert ids == expected
    assert 0 < len(ids) < store.count() == 250


def test_later_page_by_number(make_sdk: Callable[..., SdkSession]) -> None:
    """``query.page = 2`` reads the second page of rows (rows 101-200 with 100-row pages)."""
    session = make_sdk(records=250, bulk_page_size=100)
    job_id = _create(session, _query("Leads", ["Last_Name"], page=2))
    job, _states = _poll(session, job_id)
    result = job.get_result()
    assert result.get_page() == 2
    assert result.get_more_records() is True
    rows = _download(session, job_id)
    store = session.sim.org.module("Leads")
    ids = [
        str(i)
        for i in store.select(["id"], where=NOT_CONVERTED, order_by=(("id", "asc"),)).column("id")
    ]
    assert [r["id"] for r in rows] == ids[100:200]


def test_notes_is_not_supported(sdk: SdkSession) -> None:
    """Bulk Read of Notes: 400 MODULE_NOT_SUPPORTED, parsed by the SDK's bulk APIException."""
    body = BodyWrapper()
    body.set_query(_query("Notes", ["Note_Title"]))
    response = BulkReadOperations().create_bulk_read_job(body)
    assert response is not None and response.get_status_code() == 400
    error = response.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "MODULE_NOT_SUPPORTED"
    assert sdk.plain(error.get_status()) == "error"


def test_download_rate_limit(make_sdk: Callable[..., SdkSession]) -> None:
    """Past the per-minute download limit: 429 TOO_MANY_REQUESTS as the SDK's APIException."""
    session = make_sdk(records=30, download_limit_per_minute=1)
    job_id = _create(session, _query("Leads", ["Last_Name"]))
    _poll(session, job_id)
    assert _download(session, job_id)
    response = BulkReadOperations().download_result(int(job_id))
    assert response is not None and response.get_status_code() == 429
    error = response.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "TOO_MANY_REQUESTS"


def test_failed_job(make_sdk: Callable[..., SdkSession]) -> None:
    """A job that fails ends in FAILURE (not "FAILED"), and its details still parse."""
    session = make_sdk(records=30, faults=FaultConfig(bulk_fail_next=1))
    job_id = _create(session, _query("Leads", ["Last_Name"]))
    job, states = _poll(session, job_id)
    assert states[-1] == "FAILURE"
    assert job.get_query().get_module().get_api_name() == "Leads"
    session.assert_clean()
