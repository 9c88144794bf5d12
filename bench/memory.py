"""Memory: peak RSS of ``zoho-crm extract`` (its own process) as the module grows, and for a
wide module.

Targets: under 300 MB at any size and width, for every reader, and flat in module size (the
larger at most 1.2 times the smaller). Each extract is a full load into a new output, one module,
default settings; the simulator serves it cold (nothing cached), as a first run against Zoho is.

    python -m bench.memory                 # every reader at 100k and 1M; the wide module at 100k
    python -m bench.memory --quick         # every reader at 10k and 100k; the wide module at 20k
    python -m bench.memory --readers bulk --sizes 100000,1000000 --wide-fields 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import (
    BIG_MODULE,
    PYTHON,
    WIDE_MODULE,
    extract,
    fresh_dir,
    measure,
    records_for,
    scratch_root,
    simulator,
    table,
)


def main() -> None:
    """Run the memory table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--readers", default="bulk,coql,records")
    parser.add_argument("--sizes", help="two sizes, comma-separated (default 100000,1000000)")
    parser.add_argument("--wide-fields", type=int, default=300, help="0: no wide module")
    parser.add_argument("--wide-size", type=int, help="rows of the wide module (default 100000)")
    parser.add_argument("--dir")
    args = parser.parse_args()
    root = scratch_root(args.dir)
    default = "10000,100000" if args.quick else "100000,1000000"
    small, large = (int(s) for s in (args.sizes or default).split(","))
    wide_size = args.wide_size or (20_000 if args.quick else 100_000)
    baseline = measure(
        [PYTHON, "-c", "import connector.cli, connector.run.sync, connector.readers.bulk"]
    ).max_rss_mb
    rows = []
    for reader in args.readers.split(","):
        peaks = [_peak(root, reader, BIG_MODULE, size, 0) for size in (small, large)]
        ratio = peaks[1] / peaks[0]
        wide = (
            _peak(root, reader, WIDE_MODULE, wide_size, args.wide_fields) if args.wide_fields else 0
        )
        worst = max(*peaks, wide)
        verdict = "ok" if ratio <= 1.2 and worst < 300 else "MISSED"
        rows.append(
            [reader, small, peaks[0], large, peaks[1], f"{ratio:.2f}x", wide or "-", verdict]
        )
    print()
    print(
        table(
            [
                "reader",
                "rows",
                "peak RSS MB",
                "rows",
                "peak RSS MB",
                "ratio",
                f"wide ({args.wide_fields} fields, {wide_size:,} rows) MB",
                "target",
            ],
            rows,
            title=f"Peak RSS of zoho-crm extract, {BIG_MODULE} (imports alone: {baseline:.0f} MB)",
        )
    )


def _peak(root: Path, reader: str, module: str, size: int, wide_fields: int) -> float:
    with simulator(records_for(module, size), wide_fields=wide_fields) as sim:
        m = extract(sim, fresh_dir(root, f"mem-{reader}"), [module], reader=reader)
    rows = m.extra["manifest"]["modules"][0]["rows"]
    print(f"done: {reader} {module} {rows:,} rows: {m.max_rss_mb:.0f} MB", flush=True)
    return m.max_rss_mb


if __name__ == "__main__":
    main()
