"""The physical floor of a JSON extraction: fetch the same pages and ``json.loads`` them.

``--reader coql``: keyset pages of 2,000 rows ordered by ``(Modified_Time, id)``, one query per
group of at most 50 columns (each group with ``id`` and ``Modified_Time``; the later groups read
the first group's range), exactly as the connector's COQL reader asks.
``--reader records``: ``GET /crm/v8/{module}`` with ``per_page=200`` sorted by ``Modified_Time``,
one page-token chain per group of at most 50 fields, up to Zoho's 100,000 rows per query.

``--layout none`` (the default, the issue's floor): nothing is converted or written, the bodies are
decoded with ``json.loads`` and counted. ``--layout hive`` also writes what the connector must
write, as plainly as Arrow allows: each page's groups are joined row by row (dict updates), every
100,000 rows become one ``pa.Table.from_pylist`` (Arrow infers the types) and one
``pq.write_to_dataset`` partitioned by the UTC day of ``Modified_Time`` (zstd). Prints one JSON
line with the rows, calls, files and time.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import requests

from bench.floor_bulk import SKIPPED, token


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


class HiveSink:
    """Collect decoded rows; write each 100,000 as one hive-partitioned ``write_to_dataset``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[dict] = []
        self.writes = 0

    def __call__(self, rows: list[dict]) -> None:
        """Take one page's joined rows."""
        self.rows.extend(rows)
        if len(self.rows) >= 100_000:
            self.flush()

    def flush(self) -> None:
        """Write what is collected."""
        if not self.rows:
            return
        days = [
            datetime.fromisoformat(r["Modified_Time"]).astimezone(timezone.utc).date()
            for r in self.rows
        ]
        table = pa.Table.from_pylist(self.rows).append_column(
            "modified_date", pa.array(days, pa.date32())
        )
        self.rows = []
        pq.write_to_dataset(
            table,
            self.out,
            partition_cols=["modified_date"],
            basename_template=f"chunk-{self.writes:05d}-{{i}}.parquet",
            max_partitions=1 << 16,
            compression="zstd",
        )
        self.writes += 1


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
    """Fetch one module's pages through COQL or the Records API and decode them."""
    parser = argparse.ArgumentParser()
    for name in ("--url", "--client-id", "--client-secret", "--refresh-token", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--reader", choices=("coql", "records"), required=True)
    parser.add_argument("--layout", choices=("none", "hive"), default="none")
    args = parser.parse_args()
    started = time.perf_counter()
    session = requests.Session()
    session.headers["Authorization"] = "Zoho-oauthtoken " + token(session, args.url, args)
    fields = session.get(
        f"{args.url}/crm/v8/settings/fields", params={"module": args.module}, timeout=60
    ).json()["fields"]
    names = [f["api_name"] for f in fields if f["data_type"] not in SKIPPED]
    groups = groups_of(names, 50)
    read = coql if args.reader == "coql" else records
    out = Path(args.out)
    sink = HiveSink(out) if args.layout == "hive" else None
    rows, calls = read(session, args.url, args.module, groups, sink)
    if sink is not None:
        sink.flush()
    files = sum(1 for _ in out.rglob("*.parquet")) if sink is not None else "-"
    print(
        json.dumps(
            {"rows": rows, "calls": calls, "files": files, "total_s": time.perf_counter() - started}
        )
    )


if __name__ == "__main__":
    main()
