"""Hostile input, fuzzed with hypothesis (derandomized: fixed seeds, the same examples every run).

* Connection strings through the CLI (``zoho-crm check --connection …``): exit code 2 and one
  line, never a traceback.
* Server answers to the HTTP client and to each reader: random or malformed JSON, wrong shapes
  (``data`` not a list, ``info`` missing, nulls, huge numbers, wrong types), random CSV in valid
  and broken ZIPs, COQL rows with wrong types. Each ends in a result or a ``ConnectorError``
  subclass with a message; never another exception, never a hang (a per-test timeout).
"""

from __future__ import annotations

import contextlib
import io
import json
import string
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fakehttp import fake_session, response, token_ok
from typer.testing import CliRunner

from connector.config import Tuning, load_settings
from connector.errors import ConnectorError, DataError
from connector.lake.csvbatches import batches_from_csv
from connector.lake.schema import (
    batch_from_records,
    module_schema,
    parse_zoho_datetime,
    tombstones_from_json,
)
from connector.readers.bulk import BulkReader
from connector.readers.coql import CoqlReader
from connector.readers.records import RecordsReader
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import FieldMeta, ModuleMeta

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TINY = Tuning(
    bulk_poll_initial=0.0,
    bulk_poll_max=0.0,
    retry_initial_wait=0.0,
    retry_max_wait=0.0,
    max_attempts=2,
)
MODULE = ModuleMeta(api_name="Leads", module_name="Leads")
SCHEMA = module_schema(
    "Leads",
    [
        FieldMeta("Last_Name", "text"),
        FieldMeta("Modified_Time", "datetime"),
        FieldMeta("Employees", "integer"),
        FieldMeta("Revenue", "currency", decimal_place=2),
        FieldMeta("Rating", "double"),
        FieldMeta("Active", "boolean"),
        FieldMeta("Born", "date"),
        FieldMeta("Tags", "multiselectpicklist"),
        FieldMeta("Owner", "ownerlookup"),
        FieldMeta("Odd", "mystery_type"),
    ],
)
KEYS = ["id", *(f.name for f in SCHEMA.arrow if f.name != "id")]

# --- strategies ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "2026-07-01T12:00:00+05:30",
            "2026-07-01",
            "5725767000000000001",
            "not a date",
            "",
            "1e400",
            "NaN",
            "true",
            "-0",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from([*KEYS, "name", "x"]), inner, max_size=4)
    ),
    max_leaves=12,
)
rows = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=len(KEYS))
plausible_row = st.fixed_dictionaries(
    {
        "id": st.one_of(
            st.sampled_from(["5725767000000000001", "5725767000000000002"]), json_values
        ),
        "Modified_Time": st.one_of(st.just("2026-07-01T12:00:00+05:30"), json_values),
    },
    optional={k: json_values for k in KEYS if k not in ("id", "Modified_Time")},
)
info = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "more_records": json_values,
            "next_page_token": json_values,
            "count": json_values,
            "page": json_values,
        },
    ),
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "data": st.one_of(json_values, st.lists(st.one_of(rows, plausible_row), max_size=5)),
            "info": info,
            "code": st.sampled_from(["INVALID_DATA", "INTERNAL_ERROR", "", "LIMIT_REACHED"]),
            "status": st.sampled_from(["error", "success"]),
        },
    ),
)
object_bodies = bodies.filter(lambda b: b is None or isinstance(b, dict))
raw_bodies = st.one_of(
    bodies.map(lambda b: json.dumps(b, allow_nan=True).encode()),
    bodies.map(lambda b: json.dumps(b, allow_nan=True).encode()[:-3]),  # cut short
    st.binary(max_size=200),
    st.just(b""),
)
page_bodies = st.one_of(st.none(), raw_bodies, object_bodies.map(lambda b: json.dumps(b).encode()))
statuses = st.sampled_from([200, 201, 202, 204, 207, 304, 400, 401, 403, 404, 415, 429, 500, 503])


def _bounded(answers: Callable[[], Any], limit: int = 12) -> Callable[..., Any]:
    """A fake client method giving fuzzed answers ``limit`` times, then "no content" (None)."""
    calls = {"n": 0}

    def method(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return answers() if calls["n"] <= limit else None

    return method


def _ends_well(run: Callable[[], Any]) -> None:
    """``run`` returns, or raises a ConnectorError with a message; nothing else."""
    try:
        run()
    except ConnectorError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"


# --- connection strings through the CLI ---------------------------------------------------------

CONNECTION_KEYS = [
    "Region",
    "InstanceType",
    "InitiateOAuth",
    "OAuthClientId",
    "OAuthClientSecret",
    "OAuthRefreshToken",
    "OAuthAccessToken",
    "Scope",
    "UseCOQL",
    "APIType",
    "AccountsServer",
    "APIDomain",
    "APIVersion",
    "OAuthSettingsLocation",
    "Bogus",
]
pair_text = st.text(alphabet=string.printable + "é😀\x00\u202e", max_size=20)
connection_strings = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.tuples(st.sampled_from(CONNECTION_KEYS), pair_text).map(lambda kv: f"{kv[0]}={kv[1]}"),
        max_size=8,
    ).map("; ".join),
    st.lists(st.sampled_from([";", "=", " ", '"', "'", "{", "}", "\\", "\n"]), max_size=20).map(
        "".join
    ),
)


@pytest.mark.timeout(120)
@FUZZ
@given(text=connection_strings)
def test_connection_string_fuzz_through_the_cli(
    text: str, monkeypatch_session: pytest.MonkeyPatch
) -> None:
    from connector.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["check", "--connection", text], env={"ZOHO_CRM_CONNECTION": None})
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output
    if result.exit_code == 99:  # a valid configuration: it reached run_check (never the network)
        load_settings(text, environ={})
        return
    assert result.exit_code == 2, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture(scope="module")
def monkeypatch_session() -> Any:
    """Stop a configuration that happens to be valid before it calls the network (exit 99)."""
    import typer

    import connector.run.check

    patch = pytest.MonkeyPatch()

    def refuse(*_: Any, **__: Any) -> Any:
        raise typer.Exit(99)

    patch.setattr(connector.run.check, "run_check", refuse)
    yield patch
    patch.undo()


# --- the HTTP client ----------------------------------------------------------------------------


def _client(handler: Callable[[requests.PreparedRequest], requests.Response]) -> ZohoClient:
    text = (
        "Region=US; OAuthClientId=1000.FUZZ; OAuthClientSecret=fuzz-secret-value; "
        "OAuthRefreshToken=1000.fuzz.refresh; AccountsServer=http://accounts.invalid; "
        "APIDomain=http://api.invalid;"
    )
    settings_ = load_settings(text, environ={}).settings.model_copy(update={"tuning": TINY})
    session, _ = fake_session(handler=handler)
    return ZohoClient(settings_, session=session, sleep=lambda _: None)


@pytest.mark.timeout(120)
@FUZZ
@given(
    status=statuses,
    body=raw_bodies,
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "X-API-CREDITS-REMAINING", "Content-Type", "Date"]),
        st.text(alphabet=string.printable, max_size=12),
        max_size=3,
    ),
)
def test_client_answers_fuzz(status: int, body: bytes, headers: dict[str, str]) -> None:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        if "/oauth/" in (request.url or ""):
            return token_ok("1000.fuzz.access", expires_in=3600)
        return response(status, body=body, headers=headers)

    client = _client(handler)
    for call in (
        lambda: client.get_json("Leads", params={"fields": "id"}),
        lambda: client.post_json("coql", {"select_query": "select id from Leads"}),
        lambda: client.download("/crm/bulk/v8/read/1/result", io.BytesIO()),
    ):
        _ends_well(call)


@pytest.mark.timeout(120)
@FUZZ
@given(status=statuses, body=raw_bodies)
def test_token_endpoint_answers_fuzz(status: int, body: bytes) -> None:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        if "/oauth/" in (request.url or ""):
            return response(status, body=body)
        return response(200, {"data": []})

    _ends_well(lambda: _client(handler).get_json("org"))


# --- readers ------------------------------------------------------------------------------------


class FuzzClient:
    """A ``ZohoClient`` stand-in whose answers come from hypothesis."""

    def __init__(self, draw: Callable[[Any], Any], limit: int = 12) -> None:
        self.settings = None
        # Like ZohoClient: a JSON object or None (a non-object body is its DataError already).
        self.get_json = _bounded(lambda: draw(object_bodies), limit)
        self.post_json = _bounded(lambda: draw(object_bodies), limit)
        # Record pages come as raw bytes: anything at all, cut short, or no body (204/304).
        self.get_body = _bounded(lambda: draw(page_bodies), limit)
        self.post_body = _bounded(lambda: draw(page_bodies), limit)
        self._download = _bounded(lambda: draw(zip_files), limit)

    def download(self, path: str, dest: BinaryIO) -> int:
        data = self._download() or b""
        dest.write(data)
        return len(data)


def _zip_of(csv_text: str, *, cut: int | None = None, members: int = 1) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            archive.writestr(f"job{index}.csv", csv_text)
    data = buffer.getvalue()
    return data[:cut] if cut is not None else data


csv_cells = st.one_of(
    st.text(alphabet=string.printable + "é😀", max_size=15),
    st.sampled_from(["", "true", "2026-07-01T12:00:00+05:30", "12.5", "1e999", '"', '""', "a;b"]),
)
csv_texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.lists(csv_cells, min_size=1, max_size=12), max_size=6).map(
        lambda grid: "\n".join(",".join(row) for row in grid)
    ),
    st.lists(st.lists(csv_cells, min_size=len(KEYS), max_size=len(KEYS)), max_size=5).map(
        lambda grid: "\n".join(",".join(row) for row in [KEYS, *grid])
    ),
)
zip_files = st.one_of(
    st.binary(max_size=300),
    csv_texts.map(_zip_of),
    st.tuples(csv_texts, st.integers(min_value=0, max_value=200)).map(
        lambda t: _zip_of(t[0], cut=t[1])
    ),
    csv_texts.map(lambda text: _zip_of(text, members=2)),
)


@pytest.mark.timeout(180)
@FUZZ
@given(data=st.data())
def test_coql_reader_fuzz(data: st.DataObject) -> None:
    client = FuzzClient(data.draw)
    reader = CoqlReader(client, TINY, sleep=lambda _: None)  # type: ignore[arg-type]
    _ends_well(lambda: list(reader.read(MODULE, SCHEMA, None)))


@pytest.mark.timeout(180)
@FUZZ
@given(data=st.data())
def test_records_reader_fuzz(data: st.DataObject) -> None:
    client = FuzzClient(data.draw)
    reader = RecordsReader(client, TINY, sleep=lambda _: None)  # type: ignore[arg-type]
    _ends_well(lambda: list(reader.read(MODULE, SCHEMA, None)))


def _job_answers(draw: Callable[[Any], Any]) -> FuzzClient:
    """Plausible Bulk answers (a job id, COMPLETED with a download URL) mixed with fuzz, and
    fuzzed files: the reader gets as far as the download and the CSV."""
    client = FuzzClient(draw)
    created = {"data": [{"details": {"id": "111"}, "status": "success"}]}
    completed = {
        "data": [
            {
                "state": "COMPLETED",
                "result": {
                    "count": draw(st.one_of(st.integers(0, 5), json_values)),
                    "download_url": "/crm/bulk/v8/read/111/result",
                    "more_records": draw(st.booleans()),
                    "next_page_token": draw(st.one_of(st.none(), st.text(max_size=5))),
                },
            }
        ]
    }
    plausible = draw(st.booleans())
    if plausible:
        client.post_json = _bounded(lambda: created, 6)
        client.get_json = _bounded(lambda: completed, 6)
    return client


@pytest.mark.timeout(180)
@FUZZ
@given(data=st.data())
def test_bulk_reader_fuzz(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    client = _job_answers(data.draw)
    scratch = tmp_path_factory.mktemp("bulk")
    reader = BulkReader(client, TINY, sleep=lambda _: None, scratch_dir=scratch)  # type: ignore[arg-type]
    _ends_well(lambda: list(reader.read(MODULE, SCHEMA, None)))
    assert not list(scratch.iterdir()), "the reader left scratch files behind"


# --- normalisation ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@FUZZ
@given(batch=st.lists(st.one_of(rows, plausible_row), max_size=6))
def test_json_rows_with_wrong_types(batch: list[dict[str, Any]]) -> None:
    _ends_well(lambda: batch_from_records(batch, SCHEMA))


@FUZZ
@given(rows=st.lists(json_values | rows, max_size=5))
def test_tombstones_from_any_json_rows(rows: list[Any]) -> None:
    """Whatever the deleted-records API returns, a batch or a DataError: never another exception."""
    with contextlib.suppress(DataError):
        tombstones_from_json(rows)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_bulk_csv_from_any_bytes(data: bytes) -> None:
    """Any Bulk CSV content reads as batches or fails with a DataError naming the module."""
    schema = module_schema("Leads", [FieldMeta("id", "bigint"), FieldMeta("Last_Name", "text")])
    try:
        list(batches_from_csv(io.BytesIO(data), schema))
    except DataError as exc:
        assert "Leads" in str(exc)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:30", "x"])
def test_parse_zoho_datetime_out_of_range_is_a_data_error(text: str) -> None:
    with pytest.raises(DataError):
        parse_zoho_datetime(text)
