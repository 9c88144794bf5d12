"""A fake Zoho at the ``ZohoClient`` seam for the reader unit tests (no sockets), and the reading helpers the reader tests share.

``FakeZoho`` holds records in memory and answers ``get_json``/``post_json``/``download`` the way
the client does: bodies as dicts, 204/304 as None, error answers as ``connector.errors`` classes.
It serves the Records list API (``page``, ``page_token``, ``ids``, ``If-Modified-Since``), COQL (the
queries the readers write, evaluated in Python), Bulk Read jobs (CSV in a ZIP) and deleted records,
logs every call with its credits, and lets a test change records in the middle of a read
(``on_call``) and inject faults.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, BinaryIO

import pyarrow as pa

from connector.errors import FatalAPIError, ModuleUnavailable
from connector.lake.schema import ModuleSchema, batch_from_records, module_schema
from connector.zoho.metadata import FieldMeta, ModuleMeta

ORG_OFFSET = timezone(timedelta(hours=5, minutes=30))
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
FIRST_ID = 5_725_767_000_000_000_000


def zid(n: int) -> str:
    """A 19-digit Zoho-like id."""
    return str(FIRST_ID + n)


def render_time(value: datetime) -> str:
    """A datetime as Zoho writes it: the org's offset, whole seconds."""
    return value.astimezone(ORG_OFFSET).isoformat()


def utc_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def make_schema(extra_fields: int = 0, module: str = "Deals") -> ModuleSchema:
    """Modified_Time, Name (text), Amount (integer), Tags (multiselect) and ``extra_fields`` texts."""
    fields = [
        FieldMeta("Name", "text"),
        FieldMeta("Modified_Time", "datetime"),
        FieldMeta("Amount", "integer"),
        FieldMeta("Tags", "multiselectpicklist"),
        *(FieldMeta(f"X{i:03d}", "text") for i in range(extra_fields)),
    ]
    return module_schema(module, fields)


def make_records(
    n: int, *, per_second: int = 3, extra_fields: int = 0, start: datetime = BASE
) -> list[dict[str, Any]]:
    """``n`` records, ``per_second`` sharing each Modified_Time second (ties are normal)."""
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "id": zid(i),
            "Name": f'name, "{i}"\nline',
            "Modified_Time": start + timedelta(seconds=i // per_second),
            "Amount": i,
            "Tags": ["a", "b"] if i % 2 else None,
        }
        for j in range(extra_fields):
            row[f"X{j:03d}"] = f"x{j}-{i}"
        rows.append(row)
    return rows


@dataclass
class Call:
    kind: str
    path: str
    params: dict[str, Any] | None
    body: Any
    credits: int


@dataclass
class BulkJob:
    id: str
    module: str
    fields: list[str]
    criteria: dict | None
    offset: int
    rows: list[dict[str, Any]]
    more: bool
    polls: int = 0
    fail: bool = False


def _coql_credits(limit: int) -> int:
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


_SELECT = re.compile(
    r"^select (?P<cols>.+?) from (?P<module>\w+) where (?P<where>.+?)"
    r"(?: order by Modified_Time asc, id asc limit (?P<limit>\d+))?$"
)


_EVERY_LEAD = "(Converted__s = true or Converted__s = false)"


def _time_criterion(criteria: dict | None) -> dict | None:
    """The Modified_Time criterion of a job's criteria; a Leads job also names Converted__s both
    ways (every lead), which the fake's records (none converted) all pass."""
    if criteria is None or "group" not in criteria:
        return criteria
    parts = criteria["group"] if criteria["group_operator"] == "and" else [criteria]
    times = [c for c in parts if "group" not in c]
    flags = [c for c in parts if "group" in c]
    assert len(flags) == 1 and flags[0]["group_operator"] == "or"
    assert {c["field"]["api_name"] for c in flags[0]["group"]} == {"Converted__s"}
    assert {c["value"] for c in flags[0]["group"]} == {True, False}
    return times[0] if times else None


def coql_predicate(where: str) -> Callable[[str, str], bool]:
    """Turn the readers' COQL conditions into a Python predicate of (utc time text, id)."""
    # A Leads read names Converted__s both ways (every lead); the fake's records are none converted.
    text = where.replace(_EVERY_LEAD, "(True)")
    text = text.replace("Modified_Time", "mt").replace("is not null", "is not None")
    text = re.sub(r"\bid\b", "rid", text)
    text = re.sub(r"(?<![<>!=])=(?!=)", "==", text)
    code = compile(text, "<coql>", "eval")

    def predicate(mt: str, rid: str) -> bool:
        return bool(eval(code, {}, {"mt": mt, "rid": rid}))

    return predicate


def _encoded(answer: dict[str, Any] | None) -> bytes | None:
    """An answer as the bytes Zoho would send (None stays None: 204 and 304 have no body)."""
    return None if answer is None else json.dumps(answer).encode("utf-8")


@dataclass
class FakeZoho:
    """An in-memory Zoho for one module, at the client seam."""

    records: list[dict[str, Any]]
    module: str = "Deals"
    bulk_page_size: int = 200_000
    polls_to_complete: int = 2
    records_cap: int = 100_000
    calls: list[Call] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    on_call: Callable[[FakeZoho, int], None] | None = None
    bulk_fail_next: int = 0
    truncate_next: int = 0
    csv_short_next: int = 0
    expire_bulk_token_next: bool = False
    expire_records_token_next: bool = False
    unsupported_bulk: bool = False
    now: datetime = BASE + timedelta(days=30)

    def __post_init__(self) -> None:
        self.settings = SimpleNamespace(api_version="v8")
        self.by_id = {r["id"]: r for r in self.records}
        self.jobs: dict[str, BulkJob] = {}
        self.tokens: dict[str, tuple[str, int]] = {}
        self.bulk_tokens: dict[str, BulkJob] = {}

    # --- test controls -----------------------------------------------------------------------

    def touch(self, rid: str, *, at: datetime | None = None, **values: Any) -> None:
        """Modify a record now (or ``at``), as a user would."""
        row = self.by_id[rid]
        row.update(values)
        row["Modified_Time"] = at or self.now
        self.now += timedelta(seconds=1)

    def credits(self, kind: str | None = None) -> int:
        return sum(c.credits for c in self.calls if kind is None or c.kind == kind)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c.kind == kind)

    def _log(self, kind: str, path: str, params: Any, body: Any, credits: int) -> None:
        self.calls.append(Call(kind, path, params, body, credits))

    def _answered(self, result: Any) -> Any:
        # The hook runs once the answer is computed: a change "between two calls".
        if self.on_call is not None:
            self.on_call(self, len(self.calls))
        return result

    def _sorted(self) -> list[dict[str, Any]]:
        return sorted(self.records, key=lambda r: (r["Modified_Time"], r["id"]))

    def _listed(self, sort_by: str) -> list[dict[str, Any]]:
        """The Records API's order: by id, or by Modified_Time with its ties in a new order on
        every call (seeded by the call count), as Zoho promises no order among them."""
        if sort_by == "id":
            return sorted(self.records, key=lambda r: int(r["id"]))
        shuffle = random.Random(len(self.calls))
        ranks = {r["id"]: shuffle.random() for r in self.records}
        return sorted(self.records, key=lambda r: (r["Modified_Time"], ranks[r["id"]]))

    @staticmethod
    def _json(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": row["id"]}
        for f in fields:
            value = row.get(f)
            out[f] = render_time(value) if isinstance(value, datetime) else value
        return out

    # --- the client seam ---------------------------------------------------------------------

    def server_time(self) -> datetime | None:
        """The fake sends no ``Date`` header, as the client would report: None."""
        return None

    def get_json(self, path: str, **kwargs: Any) -> dict[str, Any] | None:
        return self._answered(self._get_json(path, **kwargs))  # type: ignore[no-any-return]

    def post_json(self, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        return self._answered(self._post_json(path, body, **kwargs))  # type: ignore[no-any-return]

    def get_body(self, path: str, **kwargs: Any) -> bytes | None:
        return _encoded(self.get_json(path, **kwargs))

    def post_body(self, path: str, body: dict[str, Any], **kwargs: Any) -> bytes | None:
        return _encoded(self.post_json(path, body, **kwargs))

    def download(self, path: str, dest: BinaryIO) -> int:
        return self._answered(self._download(path, dest))  # type: ignore[no-any-return]

    def _get_json(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        if path.startswith("/crm/bulk/v8/read/"):
            return self._bulk_status(path.rsplit("/", 1)[1])
        if path.endswith("/deleted"):
            self._log("deleted", path, params, None, 2)
            return self._deleted(params or {}, headers or {})
        self._log("records", path, params, None, 1)
        return self._list(params or {}, headers or {})

    def _post_json(
        self, path: str, body: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        if path == "coql":
            return self._coql(body["select_query"])
        if path == "/crm/bulk/v8/read":
            return self._bulk_create(body)
        raise AssertionError(f"unexpected POST {path}")

    def _download(self, path: str, dest: BinaryIO) -> int:
        self._log("bulk_download", path, None, None, 1)
        job = self.jobs[path.split("/")[-2]]
        data = self._zip(job)
        if self.truncate_next:
            self.truncate_next -= 1
            data = data[: len(data) // 2]
        dest.write(data)
        return len(data)

    # --- Records API ---------------------------------------------------------------------------

    def _list(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        fields = params["fields"].split(",")
        assert len(fields) <= 50, "Zoho allows at most 50 fields"
        assert int(params.get("per_page", 200)) <= 200
        if "ids" in params:
            wanted = params["ids"].split(",")
            assert len(wanted) <= 100
            rows = [self._json(self.by_id[i], fields) for i in wanted if i in self.by_id]
            return (
                {"data": rows, "info": {"count": len(rows), "more_records": False}}
                if rows
                else None
            )
        assert params.get("sort_by") in ("Modified_Time", "id")
        assert params.get("sort_order") == "asc"
        rows_all = self._listed(params["sort_by"])
        since = headers.get("If-Modified-Since")
        if since is not None:
            bound = datetime.fromisoformat(since)
            rows_all = [r for r in rows_all if r["Modified_Time"] >= bound]
            if not rows_all:
                return None  # 304
        if not rows_all:
            return None  # 204
        key = f"{params['fields']}|{since}|{params['sort_by']}"
        if "page_token" in params:
            assert "page" not in params
            if self.expire_records_token_next:
                self.expire_records_token_next = False
                raise FatalAPIError("token expired", status=400, code="EXPIRED_VALUE")
            bound_key, offset = self.tokens[params["page_token"]]
            if bound_key != key:
                raise FatalAPIError("token bound", status=400, code="TOKEN_BOUND_DATA_MISMATCH")
        else:
            page = int(params.get("page", 1))
            offset = (page - 1) * 200
            if offset >= 2000:
                raise FatalAPIError(
                    "page past 2000", status=400, code="DISCRETE_PAGINATION_LIMIT_EXCEEDED"
                )
        if offset >= self.records_cap:
            raise FatalAPIError("past the cap", status=400, code="PAGINATION_LIMIT_EXCEEDED")
        chunk = rows_all[offset : offset + 200]
        more = offset + 200 < len(rows_all)
        token = None
        if more:
            token = f"tok{len(self.tokens)}"
            self.tokens[token] = (key, offset + 200)
        return {
            "data": [self._json(r, fields) for r in chunk],
            "info": {"count": len(chunk), "more_records": more, "next_page_token": token},
        }

    # --- COQL --------------------------------------------------------------------------------

    def _coql(self, query: str) -> dict[str, Any] | None:
        count = re.match(r"^select COUNT\(id\) from (\w+) where (.+)$", query)
        if count:
            self._log("coql", "coql", None, query, 1)
            pred = coql_predicate(count.group(2))
            n = sum(1 for r in self.records if pred(utc_text(r["Modified_Time"]), r["id"]))
            return {"data": [{"COUNT(id)": n}], "info": {"count": 1, "more_records": False}}
        match = _SELECT.match(query)
        assert match, query
        limit = int(match.group("limit") or 200)
        assert limit <= 2000
        self._log("coql", "coql", None, query, _coql_credits(limit))
        cols = [c.strip() for c in match.group("cols").split(",")]
        assert len(cols) <= 50, "COQL selects at most 50 columns"
        pred = coql_predicate(match.group("where"))
        rows = [r for r in self._sorted() if pred(utc_text(r["Modified_Time"]), r["id"])]
        if not rows:
            return None  # 204
        page = rows[:limit]
        return {
            "data": [self._json(r, [c for c in cols if c != "id"]) for r in page],
            "info": {"count": len(page), "more_records": len(rows) > limit},
        }

    # --- Bulk Read -----------------------------------------------------------------------------

    def _bulk_create(self, body: dict[str, Any]) -> dict[str, Any]:
        query = body["query"]
        assert body.get("file_type") == "csv"
        if self.unsupported_bulk:
            raise ModuleUnavailable("not supported", status=400, code="MODULE_NOT_SUPPORTED")
        self._log("bulk_create", "/crm/bulk/v8/read", None, body, 50)
        if "page_token" in query:
            if self.expire_bulk_token_next:
                self.expire_bulk_token_next = False
                raise FatalAPIError("invalid page token", status=400, code="INVALID_DATA")
            previous = self.bulk_tokens[query["page_token"]]
            module, fields, criteria = previous.module, previous.fields, previous.criteria
            offset = previous.offset + self.bulk_page_size
        else:
            module, fields = query["module"]["api_name"], query["fields"]
            criteria, offset = query.get("criteria"), 0
            assert len(fields) <= 200
        rows = sorted(self.records, key=lambda r: r["id"])
        criteria = _time_criterion(criteria)
        if criteria is not None:
            assert criteria["field"]["api_name"] == "Modified_Time"
            assert criteria["comparator"] == "greater_equal"
            assert "." not in criteria["value"], "Zoho refuses milliseconds"
            bound = datetime.fromisoformat(criteria["value"])
            rows = [r for r in rows if r["Modified_Time"] >= bound]
        chunk = [dict(r) for r in rows[offset : offset + self.bulk_page_size]]
        job = BulkJob(
            id=str(900 + len(self.jobs)),
            module=module,
            fields=fields,
            criteria=criteria,
            offset=offset,
            rows=chunk,
            more=offset + self.bulk_page_size < len(rows),
        )
        if self.bulk_fail_next:
            self.bulk_fail_next -= 1
            job.fail = True
        self.jobs[job.id] = job
        return {"data": [{"status": "success", "details": {"id": job.id, "state": "ADDED"}}]}

    def _bulk_status(self, job_id: str) -> dict[str, Any]:
        self._log("bulk_status", job_id, None, None, 1)
        job = self.jobs[job_id]
        job.polls += 1
        if job.polls < self.polls_to_complete:
            return {"data": [{"id": job_id, "state": "IN PROGRESS"}]}
        if job.fail:
            return {
                "data": [
                    {
                        "id": job_id,
                        "state": "FAILURE",
                        "result": {"error_message": {"code": "INTERNAL_SERVER_ERROR"}},
                    }
                ]
            }
        result: dict[str, Any] = {
            "page": 1,
            "count": len(job.rows),
            "download_url": f"/crm/bulk/v8/read/{job_id}/result",
            "more_records": job.more,
        }
        if job.more:
            token = f"btok{job_id}"
            self.bulk_tokens[token] = job
            result["next_page_token"] = token
        return {"data": [{"id": job_id, "state": "COMPLETED", "result": result}]}

    def _zip(self, job: BulkJob) -> bytes:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        columns = ["id", *[f for f in job.fields if f != "id"]]
        writer.writerow(columns)
        rows = job.rows
        if self.csv_short_next:
            self.csv_short_next -= 1
            rows = rows[: len(rows) // 2]
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in columns])
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{job.id}.csv", text.getvalue())
        return out.getvalue()

    # --- deleted records -----------------------------------------------------------------------

    def _deleted(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        rows = sorted(self.deleted, key=lambda r: r["deleted_time"], reverse=True)
        since = headers.get("If-Modified-Since")
        if since is not None:
            bound = datetime.fromisoformat(since)
            rows = [r for r in rows if r["deleted_time"] >= bound]
        per_page, page = int(params["per_page"]), int(params["page"])
        chunk = rows[(page - 1) * per_page : page * per_page]
        if not chunk:
            return None
        return {
            "data": [{**r, "deleted_time": render_time(r["deleted_time"])} for r in chunk],
            "info": {"count": len(chunk), "more_records": page * per_page < len(rows)},
        }


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return render_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


MODULE = ModuleMeta(api_name="Deals", module_name="Deals")


class Tuning(SimpleNamespace):
    """Stand-in for ``connector.config.Tuning`` with tiny waits."""


def tuning(**overrides: Any) -> Any:
    # One group call at a time: the fake's change hooks count calls, so their order must be fixed.
    values = {
        "bulk_poll_initial": 1.0,
        "bulk_poll_max": 4.0,
        "bulk_poll_timeout": 100.0,
        "group_calls": 1,
    }
    values.update(overrides)
    return Tuning(**values)


# --- reading helpers shared by the reader tests ----------------------------------------


def expected(fake: FakeZoho, schema: ModuleSchema) -> pa.Table:
    """The fake's records as the table a reader must produce, in id order."""
    names = [n for n in schema.names if n != "id"]
    rows = [fake._json(r, names) for r in sorted(fake.records, key=lambda r: r["id"])]
    return pa.Table.from_batches([batch_from_records(rows, schema)])


def read_all(reader: Any, schema: ModuleSchema, since: Any = None) -> pa.Table:
    """Everything a reader yields for ``MODULE``, each batch checked against the schema."""
    batches = list(reader.read(MODULE, schema, since))
    for batch in batches:
        assert batch.schema == schema.arrow
    table = pa.Table.from_batches(batches, schema=schema.arrow)
    return table


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


def limits(fake: FakeZoho) -> list[int]:
    return [int(str(c.body).rsplit(" ", 1)[1]) for c in fake.calls if c.kind == "coql"]


def assert_ascending(table: pa.Table) -> None:
    keys = list(zip(table["Modified_Time"].to_pylist(), table["id"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
