"""The simulator as the benchmarks run it: its own process, optional response caches.

``python -m bench.simserver --records N [--no-cache]`` prints ``url: …`` and ``connection: …`` and
serves until SIGTERM or until its standard input closes (so it never outlives the bench script).

Why a wrapper rather than ``zoho-crm simulate``: the benchmarks need two knobs the CLI does not
expose. The Bulk download limit (10 a minute, like Zoho) is raised, because the floor scripts
download the same pages again. And with ``--cache`` (the default) the server-side cost of
producing an answer is paid once: a Bulk job whose query was exported before reuses that result
file, and a JSON answer (COQL, Records) to a request seen before is served from memory. That takes
the simulator's own generation time (Python rendering 72 columns) out of the comparison, so the
connector and the floor are timed on what the client does. A cached answer is neither logged nor
charged, so the credit benchmark runs with ``--no-cache``.

``--wide-fields N`` adds a module ``Wide_Shipments`` to the org (a copy of the fixture written to a
temporary file): ``Shipments`` with its plain custom fields repeated until the module has about N
fields, the same size factor, for the memory benchmark's wide case.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "org.json"
WIDE_MODULE = "Wide_Shipments"
# Field types a copy can take as they are (no autonumber, lookups or system fields).
_COPYABLE = {
    "text",
    "textarea",
    "picklist",
    "multiselectpicklist",
    "integer",
    "double",
    "percent",
    "currency",
    "boolean",
    "date",
    "email",
    "phone",
    "website",
}


def wide_fixture(fields: int) -> Path:
    """The fixture with ``WIDE_MODULE`` added: ``Shipments`` with its plain custom fields copied
    (``<name>_c2``, ``<name>_c3``, …, new ids) until the module has about ``fields`` fields."""
    org = json.loads(FIXTURE.read_text())
    base = next(m for m in org["modules"] if m["api_name"] == "Shipments")
    wide = copy.deepcopy(base)
    wide.update(
        api_name=WIDE_MODULE,
        module_name=WIDE_MODULE,
        plural_label="Wide Shipments",
        singular_label="Wide Shipment",
        id="5725767000000990001",
        sequence_number=max(m.get("sequence_number", 0) for m in org["modules"]) + 1,
    )
    plain = [f for f in base["fields"] if f.get("custom_field") and f["data_type"] in _COPYABLE]
    copy_no = 2
    while len(wide["fields"]) < fields:
        for field in plain[: fields - len(wide["fields"])]:
            clone = copy.deepcopy(field)
            clone["api_name"] = f"{field['api_name']}_c{copy_no}"
            clone["field_label"] = clone["display_label"] = f"{field['field_label']} {copy_no}"
            wide["fields"].append(clone)
        copy_no += 1
    for number, field in enumerate(wide["fields"]):
        field["id"] = str(5725767000000991000 + number)
    org["modules"].append(wide)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(org, handle)
    return Path(handle.name)


def _install_bulk_cache(bulk: Any) -> None:
    """Reuse the result file of an identical Bulk query (same module, columns, criteria, start)."""
    original = bulk._write_result
    cache: dict[tuple[Any, ...], tuple[Any, int, bool, str | None]] = {}
    lock = threading.Lock()

    def write_result(job: Any) -> None:
        q = job.query
        key = (q.module, tuple(q.columns), repr(q.criteria), q.after_id, q.skip_rows)
        with lock:
            hit = cache.get(key)
        if hit is None:
            original(job)
            with lock:
                cache[key] = (job.result_path, job.count, job.more_records, job.last_id)
            return
        path, count, more, last_id = hit
        job.result_path, job.count, job.more_records, job.last_id = path, count, more, last_id
        if more and last_id is not None:
            from connector.simulator.bulk import PAGE_TOKEN_LIFETIME, PageToken

            token = hashlib.sha1(repr((key, "next")).encode()).hexdigest()
            with bulk._lock:
                bulk.tokens[token] = PageToken(
                    query=q,
                    page=q.page + 1,
                    after_id=last_id,
                    expires_at=bulk.clock() + PAGE_TOKEN_LIFETIME,
                )
            job.next_page_token = token

    bulk._write_result = write_result


def _install_json_cache(app: Any) -> None:
    """Serve a repeated COQL or Records request from memory.

    Records page tokens are random, so a replayed chain would never match: each real token is
    swapped for a stable one derived from the request that produced it.
    """
    from connector.simulator.server import Response

    original = app.handle
    answers: dict[tuple[Any, ...], Any] = {}
    real_token: dict[str, str] = {}
    lock = threading.Lock()

    def handle(call: Any) -> Any:
        if (
            call.path.startswith("/_sim/")
            or call.path.startswith("/oauth/")
            or call.path.startswith("/crm/bulk/")
        ):
            return original(call)
        key = (
            call.method,
            call.path,
            tuple(sorted(call.query.items())),
            call.body,
            call.header("If-Modified-Since"),
        )
        with lock:
            hit = answers.get(key)
        if hit is not None:
            # A cached answer still takes as long as Zoho would (the latency fault, if set).
            app._latency()
            return hit
        token = call.query.get("page_token")
        if token is not None and token in real_token:
            call.query = {**call.query, "page_token": real_token[token]}
        resp = original(call)
        if resp.status != 200 or not resp.body or resp.file is not None:
            return resp
        try:
            body = json.loads(resp.body)
        except ValueError:
            return resp
        info = body.get("info") if isinstance(body, dict) else None
        if isinstance(info, dict) and info.get("next_page_token"):
            stable = hashlib.sha1(repr(key).encode()).hexdigest()
            with lock:
                real_token[stable] = str(info["next_page_token"])
            info["next_page_token"] = stable
            resp = Response.json(200, body, code=resp.code)
        with lock:
            answers[key] = resp
        return resp

    app.handle = handle


def main(argv: list[str] | None = None) -> None:
    """Start a simulator, print its URL and connection string, serve until stdin closes."""
    from connector.simulator import Simulator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bulk-page-size", type=int, default=200_000)
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--wide-fields", type=int, default=0, help="add Wide_Shipments")
    args = parser.parse_args(argv)

    fixture = wide_fixture(args.wide_fields) if args.wide_fields else None
    sim = Simulator(
        fixture=fixture,
        records=args.records,
        seed=args.seed,
        bulk_page_size=args.bulk_page_size,
        download_limit_per_minute=1_000_000,
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    sim.start()
    assert sim.app is not None
    if args.cache:
        _install_bulk_cache(sim.app.bulk)
        _install_json_cache(sim.app)
    print(f"url: {sim.url}", flush=True)
    print(f"connection: {sim.connection_string()}", flush=True)
    try:
        # The parent holds our stdin open; EOF means it is gone (or done with us).
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if fixture is not None:
            fixture.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
