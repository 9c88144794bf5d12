"""Bulk Read: ``POST /crm/bulk/v8/read`` (create a job), ``GET …/read/{id}`` (its status; each
poll moves it one step) and ``GET …/read/{id}/result`` (the ZIP). The jobs themselves, their
files and the download limit are ``bulk.py``'s; this module speaks the HTTP side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.simulator import criteria as criteria_mod
from connector.simulator import render
from connector.simulator.bulk import COMPLETED, FAILURE, BulkJob, BulkQuery
from connector.simulator.credits import PRICES
from connector.simulator.orgdef import format_zoho_datetime
from connector.simulator.replies import (
    ApiError,
    Call,
    Response,
    invalid_data,
    missing_param,
    refuse_data_call,
    require_scope,
)

if TYPE_CHECKING:
    from connector.simulator.server import SimApp
    from connector.simulator.store import Org

BULK_MAX_FIELDS = 200


def bulk_create(app: SimApp, call: Call) -> Response:
    """``POST /crm/bulk/v8/read``."""
    require_scope(call, "ZohoCRM.bulk.READ")
    ctype = (call.header("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "MEDIA_TYPE_NOT_SUPPORTED", "the given media type is not supported", {})
    body = call.json()
    if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
        raise missing_param({"api_name": "query"})
    if body.get("file_type", "csv") != "csv":
        raise invalid_data({"api_name": "file_type"})
    query = _bulk_query(app, body["query"])
    require_scope(call, f"ZohoCRM.modules.{query.module}.READ")
    app.charge(call, "bulk_create", PRICES["bulk_create"])
    user = app.org.users[0]
    job = app.bulk.create(query, {"id": user.id, "name": user.full_name})
    details = {
        "id": job.id,
        "operation": "read",
        "state": "ADDED",
        "created_by": job.created_by,
        "created_time": format_zoho_datetime(job.created_time, app.org.offset),
    }
    payload = {
        "data": [
            {
                "status": "success",
                "code": "ADDED_SUCCESSFULLY",
                "message": "Added successfully.",
                "details": details,
            }
        ],
        "info": {},
    }
    return Response.json(201, payload)


def _bulk_query(app: SimApp, raw: dict[str, Any]) -> BulkQuery:
    token = raw.get("page_token")
    if token:
        state = app.bulk.resolve_token(str(token))
        base = state.query
        return BulkQuery(
            module=base.module,
            columns=base.columns,
            fields_echo=base.fields_echo,
            criteria=base.criteria,
            where=base.where,
            page=state.page,
            after_id=state.after_id,
        )
    module_obj = raw.get("module")
    name = module_obj.get("api_name") if isinstance(module_obj, dict) else module_obj
    if not name:
        raise missing_param({"api_name": "module"})
    meta = app.store(str(name)).meta
    refuse_data_call(meta, "bulk")
    if not meta.bulk_supported or not meta.api_supported:
        raise ApiError(
            400,
            "MODULE_NOT_SUPPORTED",
            "the module is not supported for bulk read",
            {"api_name": "module"},
        )
    if raw.get("cvid"):
        # The simulated org has no custom views.
        raise invalid_data({"api_name": "cvid"})
    names = raw.get("fields") or []
    if not isinstance(names, list):
        raise invalid_data({"api_name": "fields"})
    columns = _bulk_columns(meta, names)
    criteria = raw.get("criteria")
    where = parse_criteria(meta, criteria) if criteria else None
    page = raw.get("page", 1)
    if not isinstance(page, int) or page < 1:
        raise invalid_data({"api_name": "page"})
    return BulkQuery(
        module=meta.api_name,
        columns=columns,
        fields_echo=[str(n) for n in names],
        criteria=criteria,
        where=where,
        page=page,
        skip_rows=(page - 1) * app.bulk.page_size,
    )


def _bulk_columns(meta: Any, names: list[Any]) -> list[str]:
    """The job's columns: ``id`` first, then the fields asked for (once each)."""
    if not names or len(names) > BULK_MAX_FIELDS:
        # Zoho: an empty list, or more than 200 fields, exports every field.
        columns = [f.api_name for f in meta.fields if f.list_readable]
    else:
        columns = []
        for i, n in enumerate(names):
            if "." in str(n):
                raise _field_not_supported(n)
            f = meta.find_field(str(n))
            if f is None:
                raise invalid_data({"api_name": n, "json_path": f"$.query.fields[{i}]"})
            if not f.list_readable:
                raise _field_not_supported(n)
            columns.append(f.api_name)
    return ["id"] + [c for c in dict.fromkeys(columns) if c != "id"]


def _field_not_supported(name: Any) -> ApiError:
    return ApiError(400, "FIELD_NOT_SUPPORTED", "the field is not supported", {"api_name": name})


def parse_criteria(meta: Any, criteria: Any) -> Any:
    """Bulk Read criteria JSON -> the filter AST."""
    if not isinstance(criteria, Mapping):
        raise ApiError(400, "INVALID_CRITERIA", "invalid criteria", {"api_name": "criteria"})
    return criteria_mod.criteria_to_expr(criteria, meta.field_map)


def bulk_status(app: SimApp, call: Call, job_id: str) -> Response:
    """``GET /crm/bulk/v8/read/{id}``: each call moves the job one step."""
    require_scope(call, "ZohoCRM.bulk.READ")
    app.bulk.get(job_id)
    app.charge(call, "bulk_status", PRICES["bulk_status"])
    job = app.bulk.poll(job_id)
    return Response.json(200, {"data": [_job_json(app, job)]})


def _job_json(app: SimApp, job: BulkJob) -> dict[str, Any]:
    store = app.org.module(job.query.module)
    query: dict[str, Any] = {
        "module": {"id": store.meta.id, "api_name": job.query.module},
        "page": job.query.page,
    }
    if job.query.fields_echo:
        query["fields"] = job.query.fields_echo
    if job.query.criteria:
        query["criteria"] = job.query.criteria
    out: dict[str, Any] = {
        "id": job.id,
        "operation": "read",
        "state": job.state,
        "query": query,
        "created_by": job.created_by,
        "created_time": format_zoho_datetime(job.created_time, app.org.offset),
        "file_type": "csv",
    }
    if job.state == COMPLETED:
        result: dict[str, Any] = {
            "page": job.query.page,
            "per_page": app.bulk.page_size,
            "count": job.count,
            "download_url": f"/crm/bulk/v8/read/{job.id}/result",
            "more_records": job.more_records,
        }
        if job.more_records:
            result["next_page_token"] = job.next_page_token
        out["result"] = result
    elif job.state == FAILURE:
        out["result"] = {
            "error_message": {
                "status": "error",
                "code": "INTERNAL_SERVER_ERROR",
                "message": "Internal server error occurred while processing the request",
                "details": {},
            }
        }
    return out


def bulk_download(app: SimApp, call: Call, job_id: str) -> Response:
    """``GET /crm/bulk/v8/read/{id}/result``: the ZIP, streamed from disk."""
    require_scope(call, "ZohoCRM.bulk.READ")
    path = app.bulk.result_file(job_id)
    wait = app.bulk.take_download_slot()
    if wait is not None:
        # Zoho documents 429 after 10 downloads a minute and no Retry-After header: none is
        # sent unless the simulator is told to (then the seconds until downloads resume).
        raise app.too_many_requests(retry_after=wait)
    app.charge(call, "bulk_download", PRICES["bulk_download"])
    return Response(
        200,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.zip"'},
        file=path,
        truncate=app.injector.take_truncate(),
        corrupt=app.injector.take_corrupt(),
    )


def csv_writer(org: Org) -> Callable[[str, pa.Table, bool], bytes]:
    """How the job manager writes a module's rows as Bulk Read CSV."""

    def write(module: str, table: pa.Table, header: bool) -> bytes:
        fields = org.module(module).meta.field_map
        return render.csv_bytes(table, fields, org.offset, header=header)

    return write
