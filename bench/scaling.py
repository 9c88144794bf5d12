"""Scaling: Bulk extraction time against module size, and four modules with 1 or 4 workers.

Warm runs (the simulator's answers cached after a first cold run; see ``bench.simserver``), so the
figures are the connector's own. Linear means seconds per 100k rows stays about constant.

    python -m bench.scaling              # 10k, 100k, 1M; four modules at --records 100k
    python -m bench.scaling --quick      # 10k, 50k; four modules at --records 20k

The four-module table runs each reader setting (``--workers-readers``: Bulk, COQL, Records) with
``--latency-ms`` (default 200) added by the simulator to every call, as Zoho's own answer time is,
where the workers' waits overlap (target: ``--workers 4`` in at most 0.4 times the wall time of
``--workers 1``); and Bulk once more on loopback as it is, where every call answers at once and
the work is all CPU (2 cores). Each row also shows the modules' own seconds (from the run
manifest's ``duration_s``) added up, and the longest module's: the rest of the wall time is the
process start and the run's own calls, which four workers do not shorten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import (
    BIG_MODULE,
    extract,
    fresh_dir,
    records_for,
    scratch_root,
    simulator,
    table,
)

FOUR = ["Leads", "Contacts", "Deals", BIG_MODULE]


def main() -> None:
    """Run the scaling tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir")
    parser.add_argument(
        "--part",
        choices=["all", "size", "workers", "groups"],
        default="all",
        help="run only the size table, the --workers tables or the group_calls table",
    )
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=200,
        help="per-call latency of the --workers tables (0: loopback only)",
    )
    parser.add_argument(
        "--workers-readers", default="bulk,coql,records", help="reader settings of --part workers"
    )
    parser.add_argument(
        "--workers-records", type=int, help="--records of --part workers (default 20000)"
    )
    args = parser.parse_args()
    root = scratch_root(args.dir)
    sizes = [10_000, 50_000] if args.quick else [10_000, 100_000, 1_000_000]
    size_rows: list[list[object]] = []
    if args.part in ("all", "size"):
        _sizes(root, sizes, size_rows)
    if args.part in ("all", "workers"):
        records = args.workers_records or (5_000 if args.quick else 20_000)
        rows: list[list[object]] = []
        if args.latency_ms:
            for reader in args.workers_readers.split(","):
                rows += _workers(root, records, args.latency_ms, reader)
        rows += _workers(root, records, 0, "bulk")
        _print_workers(rows, records)
    if args.part in ("all", "groups") and args.latency_ms:
        _group_calls(root, 2_000 if args.quick else 10_000, args.latency_ms)


def _sizes(root: Path, sizes: list[int], size_rows: list[list[object]]) -> None:
    for size in sizes:
        with simulator(records_for(BIG_MODULE, size)) as sim:
            extract(sim, fresh_dir(root, "sc"), [BIG_MODULE])  # cold: builds the answers
            m = extract(sim, fresh_dir(root, "sc"), [BIG_MODULE])
        rows = m.extra["manifest"]["modules"][0]["rows"]
        size_rows.append([rows, m.wall_s, m.wall_s / rows * 100_000, rows / m.wall_s, m.max_rss_mb])
        print(f"done: {size:,}", flush=True)
    print()
    print(
        table(
            ["rows", "wall s", "s per 100k rows", "rows/s", "peak RSS MB"],
            size_rows,
            title=f"Bulk extraction of {BIG_MODULE} against size (warm)",
        )
    )


def _add_speed_up(rows: list[list[object]], *, wall_column: int) -> None:
    """Append to each row its speed-up against the first row's wall time."""
    base = float(rows[0][wall_column])  # type: ignore[arg-type]
    for row in rows:
        row.append(f"{base / float(row[wall_column]):.2f}x")  # type: ignore[arg-type]


def _workers(root: Path, records: int, latency_ms: int, reader: str) -> list[list[object]]:
    """Four modules with one worker, then four, on one warm simulator; two table rows."""
    worker_rows: list[list[object]] = []
    with simulator(records) as sim:
        extract(sim, fresh_dir(root, "sw"), FOUR, workers=4, reader=reader)  # cold
        if latency_ms:
            sim.post("/_sim/faults", {"latency_ms": latency_ms})
        for workers in (1, 4):
            m = extract(sim, fresh_dir(root, "sw"), FOUR, workers=workers, reader=reader)
            manifest = m.extra["manifest"]
            total = sum(e["rows"] for e in manifest["modules"])
            calls = manifest["totals"]["calls"]
            # Each module's own time: with one worker they add up; with four, the longest one
            # is the least the run can take beside its own calls and start.
            durations = {e["module"]: e["duration_s"] or 0.0 for e in manifest["modules"]}
            longest = max(durations, key=durations.__getitem__)
            worker_rows.append(
                [
                    reader,
                    latency_ms,
                    workers,
                    total,
                    calls,
                    m.wall_s,
                    m.cpu_s,
                    m.max_rss_mb,
                    f"{sum(durations.values()):.2f}",
                    f"{longest} {durations[longest]:.2f}",
                ]
            )
            print(f"done: {reader}, {latency_ms} ms a call, workers {workers}", flush=True)
    base = float(worker_rows[0][5])  # type: ignore[arg-type]
    for row in worker_rows:
        row.append(f"{float(row[5]) / base:.2f}x")  # type: ignore[arg-type]
    return worker_rows


def _print_workers(rows: list[list[object]], records: int) -> None:
    print()
    print(
        table(
            [
                "reader",
                "ms a call",
                "workers",
                "rows",
                "calls",
                "wall s",
                "CPU s",
                "peak RSS MB",
                "modules' own s",
                "longest module s",
                "time vs 1 worker",
            ],
            rows,
            title=f"Four modules ({', '.join(FOUR)}), --records {records:,}, 2 cores",
        )
    )


def _group_calls(root: Path, rows: int, latency_ms: int) -> None:
    """COQL and Records reads of the 72-field module (two field groups) with one or two group
    calls at once, every call taking ``latency_ms`` more."""
    group_rows: list[list[object]] = []
    with simulator(records_for(BIG_MODULE, rows)) as sim:
        for reader in ("coql", "records"):
            extract(sim, fresh_dir(root, "sg"), [BIG_MODULE], reader=reader)  # cold
        sim.post("/_sim/faults", {"latency_ms": latency_ms})
        for reader in ("coql", "records"):
            reader_rows: list[list[object]] = []
            for at_once in (1, 2):
                m = extract(
                    sim,
                    fresh_dir(root, "sg"),
                    [BIG_MODULE],
                    reader=reader,
                    extra_env={"ZOHO_CRM_TUNING_GROUP_CALLS": str(at_once)},
                )
                manifest = m.extra["manifest"]
                read = manifest["modules"][0]["rows"]
                totals = manifest["totals"]
                reader_rows.append(
                    [reader, at_once, read, totals["calls"], totals["credits"], m.wall_s]
                )
                print(f"done: {reader}, group_calls {at_once}", flush=True)
            _add_speed_up(reader_rows, wall_column=5)
            group_rows += reader_rows
    print()
    print(
        table(
            ["reader", "group_calls", "rows", "calls", "credits", "wall s", "speed-up"],
            group_rows,
            title=f"A read of {BIG_MODULE} (72 fields: two groups), {latency_ms} ms a call",
        )
    )


if __name__ == "__main__":
    main()
