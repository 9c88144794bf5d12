"""The physical floor of a JSON extraction: fetch the same pages and ``json.loads`` them.

``--reader coql``: keyset pages of 2,000 rows ordered by ``(Modified_Time, id)``, one query per
group of at most 50 columns (each group with ``id`` and ``Modified_Time``; the later groups read
the first group's range), exactly as the connector's COQL reader asks.
``--reader records``: ``GET /crm/v8/{module}`` with ``per_page=200`` sorted by ``Modified_Time``,
one page-token chain per group of at most 50 fields, up to Zoho's 100,000 rows per query.

``--decode-only``: nothing is converted or written, the bodies are decoded with ``json.loads``
and counted (the floor of earlier rounds). Otherwise (the ratio's floor) the rows are also written
as the connector must write them, as plainly as Arrow allows: each page's groups are joined row by
row (dict updates), every 10,000 rows become one ``pa.Table.from_pylist`` (Arrow infers the
types), and once every page is read the rows are written as **one Parquet file per partition** of
``Modified_Time`` at the connector's granularity (``--partition-by``, month by default; zstd), as
``bench.floor_bulk`` does. Prints one JSON line with the rows, calls, files and time.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import requests

from bench.floor_bulk import SKIPPED, common_args, open_session, write_partitioned


def groups_of(names: list[str], size: int) -> list[list[str]]:
    """Groups of at most ``size`` names, each with ``id`` and ``Modified_Time`` first."""
    others = [n for n in names if n not in ("id", "Modified_Time")]
    room = size - 2
    return [
        ["id", "Modified_Time", *others[i : i + room]] for i in range(0, len(others), room)
    ] or [["id", "Modified_Time"]]


def utc(text: str) -> str:
    """A Zoho datetime as UTC ISO text (what the connector sends back in a cursor)."""
    return datetime.fromisoformat(text).astimezone(timezone.utc).isoformat()


def _coql_page(
    session: requests.Session, url: str, module: str, cols: list[str], cond: str
) -> tuple[list[dict], bool]:
    text = (
        f"select {', '.join(cols)} from {module} where {cond} "
        "order by Modified_Time asc, id asc limit 2000"
    )
    resp = session.post(f"{url}/crm/v8/coql", json={"select_query": text}, timeout=600)
    if resp.status_code == 204:
        return [], False
    body = json.loads(resp.content)
    return list(body["data"]), bool(body.get("info", {}).get("more_records", False))


Sink = Callable[[list[dict]], None]


class TableSink:
    """Collect decoded rows; turn each 10,000 into one Arrow table (types inferred)."""

    CHUNK_ROWS = 10_000

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.tables: list[pa.Table] = []

    def __call__(self, rows: list[dict]) -> None:
        """Take one page's joined rows."""
        self.rows.extend(rows)
        if len(self.rows) >= self.CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Convert what is collected."""
        if self.rows:
            self.tables.append(pa.Table.from_pylist(self.rows))
            self.rows = []


def _join(first: list[dict], others: list[list[dict]]) -> list[dict]:
    for page in others:
        for row, extra in zip(first, page, strict=False):
            row.update(extra)
    return first


def coql(
    session: requests.Session,
    url: str,
    module: str,
    groups: list[list[str]],
    sink: Sink | None = None,
) -> tuple[int, int]:
    """Read every row by keyset COQL pages; return (rows, calls)."""
    rows = calls = 0
    where = "(id is not null)"
    while True:
        first, more = _coql_page(session, url, module, groups[0], where)
        calls += 1
        if not first:
            break
        last_t, last_id = utc(first[-1]["Modified_Time"]), first[-1]["id"]
        upper = (
            f"((Modified_Time < '{last_t}') or "
            f"((Modified_Time = '{last_t}') and (id <= '{last_id}')))"
        )
        others = []
        for cols in groups[1:]:
            others.append(_coql_page(session, url, module, cols, f"({where} and {upper})")[0])
            calls += 1
        if sink is not None:
            sink(_join(first, others))
        rows += len(first)
        if not more:
            break
        where = (
            f"((Modified_Time > '{last_t}') or "
            f"((Modified_Time = '{last_t}') and (id > '{last_id}')))"
        )
    return rows, calls


def records(
    session: requests.Session,
    url: str,
    module: str,
    groups: list[list[str]],
    sink: Sink | None = None,
) -> tuple[int, int]:
    """Read up to 100,000 rows by page-token chains, one per field group; return (rows, calls)."""
    rows = calls = 0
    tokens: list[str | None] = [None] * len(groups)
    while True:
        infos = []
        pages: list[list[dict]] = []
        count = 0
        for i, cols in enumerate(groups):
            params: dict[str, str | int] = {
                "fields": ",".join(cols),
                "per_page": 200,
                "sort_by": "Modified_Time",
                "sort_order": "asc",
            }
            if tokens[i] is not None:
                params["page_token"] = str(tokens[i])
            resp = session.get(f"{url}/crm/v8/{module}", params=params, timeout=600)
            calls += 1
            if resp.status_code == 204:
                return rows, calls
            body = json.loads(resp.content)
            infos.append(body.get("info", {}))
            pages.append(body["data"])
            if i == 0:
                count = len(body["data"])
        if sink is not None:
            sink(_join(pages[0], pages[1:]))
        rows += count
        if not infos[0].get("more_records"):
            return rows, calls
        tokens = [info.get("next_page_token") for info in infos]


def main() -> None:
    """Fetch one module's pages through COQL or the Records API, decode them, write them."""
    parser = argparse.ArgumentParser()
    common_args(parser)
    parser.add_argument("--reader", choices=("coql", "records"), required=True)
    parser.add_argument("--decode-only", action="store_true", help="write nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    session, fields = open_session(args)
    names = [f["api_name"] for f in fields if f["data_type"] not in SKIPPED]
    groups = groups_of(names, 50)
    read = coql if args.reader == "coql" else records
    sink = None if args.decode_only else TableSink()
    rows, calls = read(session, args.url, args.module, groups, sink)
    files: int | str = "-"
    if sink is not None:
        sink.flush()
        files = write_partitioned(sink.tables, Path(args.out), args.partition_by)
    print(
        json.dumps(
            {"rows": rows, "calls": calls, "files": files, "total_s": time.perf_counter() - started}
        )
    )


if __name__ == "__main__":
    main()
