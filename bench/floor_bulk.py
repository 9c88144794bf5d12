"""The physical floor of a Bulk extraction: the least a client must do, and nothing more.

Refresh a token, read the field list, then per page: create a Bulk Read job for the same fields,
poll it on the connector's schedule, download the ZIP, parse its CSV with ``pyarrow.csv`` (types
inferred) and write it with ``pyarrow.parquet`` (zstd, like the connector).

``--layout hive`` (the default) writes what the connector must write: a dataset partitioned by the
UTC day of ``Modified_Time`` (``modified_date=YYYY-MM-DD/``), one ``pq.write_to_dataset`` call per
page (Arrow's multi-threaded dataset writer, one file per partition per page). ``--layout single``
writes one file per page, the plain lower bound, reported for transparency. No type mapping, no
state, no fsync, no checks. Prints one JSON line with the rows, files and times.

``python -m bench.floor_bulk --url URL --client-id … --client-secret … --refresh-token …
--out DIR --module Shipments [--layout hive|single]``
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


def main() -> None:
    """Extract one module through Bulk Read as plainly as possible."""
    parser = argparse.ArgumentParser()
    for name in ("--url", "--client-id", "--client-secret", "--refresh-token", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--poll-initial", type=float, default=0.01)
    parser.add_argument("--layout", choices=("hive", "single"), default="hive")
    args = parser.parse_args()
    started = time.perf_counter()
    session = requests.Session()
    session.headers["Authorization"] = "Zoho-oauthtoken " + token(session, args.url, args)
    fields = session.get(
        f"{args.url}/crm/v8/settings/fields", params={"module": args.module}, timeout=60
    ).json()["fields"]
    names = [
        f["api_name"] for f in fields if f["data_type"] not in SKIPPED and f["api_name"] != "id"
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    query: dict = {"module": {"api_name": args.module}, "fields": names}
    rows = pages = 0
    job_s = 0.0
    while True:
        t0 = time.perf_counter()
        created = session.post(
            f"{args.url}/crm/bulk/v8/read",
            json={"query": query, "file_type": "csv"},
            timeout=60,
        ).json()
        job_id = created["data"][0]["details"]["id"]
        wait = args.poll_initial
        while True:
            time.sleep(wait)
            job = session.get(f"{args.url}/crm/bulk/v8/read/{job_id}", timeout=600).json()["data"][
                0
            ]
            if job["state"] == "COMPLETED":
                break
            if job["state"] == "FAILURE":
                raise SystemExit(f"job {job_id} failed")
            wait = min(wait * 2, 1.0)
        job_s += time.perf_counter() - t0
        result = job["result"]
        body = session.get(args.url + result["download_url"], timeout=600).content
        with zipfile.ZipFile(io.BytesIO(body)) as archive, archive.open(archive.namelist()[0]) as f:
            table = pacsv.read_csv(f, parse_options=pacsv.ParseOptions(newlines_in_values=True))
        if args.layout == "single":
            pq.write_table(table, out / f"page-{pages:05d}.parquet", compression="zstd")
        else:
            # CSV inference reads the ISO times with offsets as UTC timestamps.
            day = pc.cast(table.column("Modified_Time"), pa.date32())
            pq.write_to_dataset(
                table.append_column("modified_date", day),
                out,
                partition_cols=["modified_date"],
                basename_template=f"page-{pages:05d}-{{i}}.parquet",
                max_partitions=1 << 16,
                compression="zstd",
            )
        rows += table.num_rows
        pages += 1
        if not result.get("more_records"):
            break
        query = {"page_token": result["next_page_token"]}
    total_s = time.perf_counter() - started
    files = sum(1 for _ in out.rglob("*.parquet"))
    print(
        json.dumps(
            {"rows": rows, "pages": pages, "files": files, "job_s": job_s, "total_s": total_s}
        )
    )


if __name__ == "__main__":
    main()
