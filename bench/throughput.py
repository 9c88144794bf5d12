"""Throughput: the connector against the physical floor, side by side in one run.

For each reader and size, one simulator (its own process, ``bench.simserver``) serves both sides.
Each side runs once cold (the simulator builds its answers) and then ``--repeat`` times warm (the
simulator serves repeated requests from its cache, so only client-side work differs); the table
gives the best warm wall time of each side and their ratio (the target is at most 1.3), the cold
times for reference, and the peak RSS of each side's process.

Every floor in the ratio writes the connector's layout: one Parquet file per partition at the
same granularity (``--partition-by``, month by default, the connector's for a new dataset), so the
ratio compares the same output. The warm runs alternate connector and floor, and the ratio of
each pair is shown too (the machine's load moves both alike). A second floor is timed as well and
shown in its own columns, for transparency: for Bulk the same rows in one file (no partitions);
for COQL and Records the bare fetch and ``json.loads`` of the same pages, nothing written.

    python -m bench.throughput                  # Bulk 100k and 1M, COQL and Records 100k
    python -m bench.throughput --quick          # Bulk, COQL and Records at 20k, one warm run
    python -m bench.throughput --readers bulk --sizes 100000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import (
    BIG_MODULE,
    Measured,
    extract,
    floor,
    fresh_dir,
    records_for,
    scratch_root,
    simulator,
    table,
)


def run_case(root: Path, reader: str, rows: int, repeat: int, partition_by: str) -> list[object]:
    """Time one reader at one size; return a table row."""
    module = BIG_MODULE
    script, *floor_args = (
        ("bench.floor_bulk", "--module", module)
        if reader == "bulk"
        else ("bench.floor_json", "--module", module, "--reader", reader)
    )
    # Bulk: the same rows in one file (no partitions); COQL/Records: fetch and decode only.
    other_args = ["--partition-by", "none"] if reader == "bulk" else ["--decode-only"]
    with simulator(records_for(module, rows)) as sim:

        def conn() -> Measured:
            return extract(
                sim,
                fresh_dir(root, f"{reader}-conn"),
                [module],
                reader=reader,
                partition_by=partition_by,
            )

        def flo() -> Measured:
            out = fresh_dir(root, f"{reader}-floor")
            return floor(script, sim, out, *floor_args, "--partition-by", partition_by)

        def other() -> Measured:
            return floor(script, sim, fresh_dir(root, f"{reader}-floor1"), *floor_args, *other_args)

        cold_c, cold_f = conn(), flo()
        # Alternate the sides, so that a change in the machine's load hits both alike.
        warm_c: list[Measured] = []
        warm_f: list[Measured] = []
        for _ in range(repeat):
            warm_c.append(conn())
            warm_f.append(flo())
        warm_o = [other() for _ in range(repeat)]
    best_c = min(warm_c, key=lambda m: m.wall_s)
    best_f = min(warm_f, key=lambda m: m.wall_s)
    best_o = min(warm_o, key=lambda m: m.wall_s)
    entry = best_c.extra.get("manifest", {}).get("modules", [{}])[0]
    got = entry.get("rows")
    floor_rows = best_f.extra.get("rows")
    if got != floor_rows:
        print(f"warning: {reader} {rows}: connector read {got} rows, the floor {floor_rows}")
    return [
        reader,
        got,
        best_c.wall_s,
        best_f.wall_s,
        f"{best_c.wall_s / best_f.wall_s:.2f}x",
        " / ".join(f"{c.wall_s / f.wall_s:.2f}" for c, f in zip(warm_c, warm_f, strict=True)),
        cold_c.wall_s,
        cold_f.wall_s,
        best_c.cpu_s,
        best_f.cpu_s,
        max(m.max_rss_mb for m in [cold_c, *warm_c]),
        max(m.max_rss_mb for m in [cold_f, *warm_f]),
        len(entry.get("files", [])),
        best_f.extra.get("files", "-"),
        best_o.wall_s,
        f"{best_c.wall_s / best_o.wall_s:.2f}x",
    ]


def main() -> None:
    """Run the throughput table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes, one warm run.")
    parser.add_argument("--readers", default="bulk,coql,records")
    parser.add_argument("--sizes", help="Bulk sizes, comma-separated (default 100000,1000000).")
    parser.add_argument("--json-size", type=int, help="COQL/Records size (default 100000).")
    parser.add_argument("--repeat", type=int, help="Warm runs per side (default 2; 1M: 1).")
    parser.add_argument("--dir", help="Scratch directory (default: a new temporary one).")
    parser.add_argument(
        "--partition-by",
        choices=("day", "month", "year", "none"),
        default="month",
        help="granularity of both sides (default month, the connector's for a new dataset)",
    )
    args = parser.parse_args()
    root = scratch_root(args.dir)
    if args.quick:
        sizes, json_size, repeat = [20_000], 20_000, 1
    else:
        sizes = [int(s) for s in (args.sizes or "100000,1000000").split(",")]
        json_size, repeat = args.json_size or 100_000, args.repeat or 2
    rows = []
    for reader in args.readers.split(","):
        for size in sizes if reader == "bulk" else [json_size]:
            reps = repeat if size < 1_000_000 or args.repeat else 1
            rows.append(run_case(root, reader, size, reps, args.partition_by))
            print(f"done: {reader} {size:,}", flush=True)
    print()
    print(
        table(
            [
                "reader",
                "rows",
                "connector s",
                "floor s",
                "ratio",
                "ratio per pair",
                "connector cold s",
                "floor cold s",
                "connector CPU s",
                "floor CPU s",
                "connector RSS MB",
                "floor RSS MB",
                "files",
                "floor files",
                "other floor s (Bulk: one file; JSON: decode only)",
                "ratio to it",
            ],
            rows,
            title=(
                f"Throughput: {BIG_MODULE} (72 fields), by {args.partition_by}, warm best of runs"
            ),
        )
    )


if __name__ == "__main__":
    main()
