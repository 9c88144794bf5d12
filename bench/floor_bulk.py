"""The physical floor of a Bulk extraction: the least a client must do, and nothing more.

Refresh a token, read the field list, then per page: create a Bulk Read job for the same fields,
poll it on the connector's schedule, download the ZIP and parse its CSV with ``pyarrow.csv``
(types inferred). Once every page is read, write the rows as **one Parquet file per partition**
at the connector's granularity (``--partition-by``, month by default, as the connector writes a
new dataset): one ``pq.write_to_dataset`` call (Arrow's multi-threaded C++ dataset writer, zstd,
like the connector), or one ``pq.write_table`` with ``--partition-by none``. No type mapping, no
sorting, no state, no fsync, no checks. Prints one JSON line with the rows, files and times.

``python -m bench.floor_bulk --url URL --client-id … --client-secret … --refresh-token …
--out DIR --module Shipments [--partition-by day|month|year|none]``
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import requests

# Field types no list or bulk read returns (the connector leaves them out too).
SKIPPED = {"subform", "multiselectlookup", "multiuserlookup", "fileupload", "imageupload"}
# The connector's folder key and value format per granularity (connector/lake/layout.py).
FOLDERS = {
    "day": ("modified_date", "%Y-%m-%d"),
    "month": ("modified_month", "%Y-%m"),
    "year": ("modified_year", "%Y"),
}


def token(session: requests.Session, url: str, args: argparse.Namespace) -> str:
    """A fresh access token by the refresh grant."""
    resp = session.post(
        f"{url}/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": args.client_id,
            "client_secret": args.client_secret,
            "refresh_token": args.refresh_token,
        },
        timeout=60,
    )
    return str(resp.json()["access_token"])


def open_session(args: argparse.Namespace) -> tuple[requests.Session, list[dict]]:
    """A session holding a fresh token, and the module's fields (``settings/fields``)."""
    session = requests.Session()
    session.headers["Authorization"] = "Zoho-oauthtoken " + token(session, args.url, args)
    fields = session.get(
        f"{args.url}/crm/v8/settings/fields", params={"module": args.module}, timeout=60
    ).json()["fields"]
    return session, list(fields)


def common_args(parser: argparse.ArgumentParser) -> None:
    """The options every floor takes: the simulator, its credentials, the output, the layout."""
    for name in ("--url", "--client-id", "--client-secret", "--refresh-token", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument(
        "--partition-by", choices=(*FOLDERS, "none"), default="month", help="as the connector's"
    )


def write_partitioned(tables: list[pa.Table], out: Path, partition_by: str) -> int:
    """Write ``tables`` as one Parquet file per partition of ``Modified_Time`` at
    ``partition_by``; return the number of files. Column types that the pages inferred
    differently (a column all null on one page) are unified first, as any script must."""
    out.mkdir(parents=True, exist_ok=True)
    if not tables:
        return 0
    table = pa.concat_tables(tables, promote_options="permissive")
    if partition_by == "none":
        pq.write_table(table, out / "part-0.parquet", compression="zstd")
        return 1
    key, fmt = FOLDERS[partition_by]
    stamps = table.column("Modified_Time")
    if not pa.types.is_timestamp(stamps.type):
        # JSON pages keep Zoho's text; Arrow's cast reads the offset (+05:30) into UTC.
        stamps = stamps.cast(pa.timestamp("s", tz="UTC"))
    pq.write_to_dataset(
        table.append_column(key, pc.strftime(stamps, fmt)),
        out,
        partition_cols=[key],
        basename_template="part-{i}.parquet",
        max_partitions=1 << 16,
        max_open_files=1 << 16,
        compression="zstd",
    )
    return sum(1 for _ in out.rglob("*.parquet"))


def read_pages(session: requests.Session, url: str, module: str, names: list[str], poll: float):
    """Every page of one Bulk export as an Arrow table: create, poll, download, parse."""
    query: dict = {"module": {"api_name": module}, "fields": names}
    while True:
        created = session.post(
            f"{url}/crm/bulk/v8/read", json={"query": query, "file_type": "csv"}, timeout=60
        ).json()
        job_id = created["data"][0]["details"]["id"]
        wait = poll
        while True:
            time.sleep(wait)
            job = session.get(f"{url}/crm/bulk/v8/read/{job_id}", timeout=600).json()["data"][0]
            if job["state"] == "COMPLETED":
                break
            if job["state"] == "FAILURE":
                raise SystemExit(f"job {job_id} failed")
            wait = min(wait * 2, 1.0)
        result = job["result"]
        body = session.get(url + result["download_url"], timeout=600).content
        with zipfile.ZipFile(io.BytesIO(body)) as archive, archive.open(archive.namelist()[0]) as f:
            yield pacsv.read_csv(f, parse_options=pacsv.ParseOptions(newlines_in_values=True))
        if not result.get("more_records"):
            return
        query = {"page_token": result["next_page_token"]}


def main() -> None:
    """Extract one module through Bulk Read as plainly as possible."""
    parser = argparse.ArgumentParser()
    common_args(parser)
    parser.add_argument("--poll-initial", type=float, default=0.01)
    args = parser.parse_args()
    started = time.perf_counter()
    session, fields = open_session(args)
    names = [
        f["api_name"] for f in fields if f["data_type"] not in SKIPPED and f["api_name"] != "id"
    ]
    tables = list(read_pages(session, args.url, args.module, names, args.poll_initial))
    read_s = time.perf_counter() - started
    files = write_partitioned(tables, Path(args.out), args.partition_by)
    rows = sum(t.num_rows for t in tables)
    total_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": rows,
                "pages": len(tables),
                "files": files,
                "read_s": read_s,
                "total_s": total_s,
            }
        )
    )


if __name__ == "__main__":
    main()
