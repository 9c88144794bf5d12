"""Memory: peak RSS of ``zoho-crm extract`` (its own process) as the module grows.

Targets: flat in module size (the larger at most 1.2 times the smaller) and under 300 MB.

    python -m bench.memory                 # Bulk 100k and 1M; COQL and Records 20k and 100k
    python -m bench.memory --quick         # Bulk 10k and 100k; COQL and Records 5k and 20k
"""

from __future__ import annotations

import argparse

from bench.common import (
    BIG_MODULE,
    PYTHON,
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
    parser.add_argument("--dir")
    args = parser.parse_args()
    root = scratch_root(args.dir)
    sizes = {
        "bulk": [10_000, 100_000] if args.quick else [100_000, 1_000_000],
        "coql": [5_000, 20_000] if args.quick else [20_000, 100_000],
        "records": [5_000, 20_000] if args.quick else [20_000, 100_000],
    }
    baseline = measure(
        [PYTHON, "-c", "import connector.cli, connector.run.sync, connector.readers.bulk"]
    ).max_rss_mb
    rows = []
    for reader in args.readers.split(","):
        small, large = sizes[reader]
        peaks = []
        for size in (small, large):
            with simulator(records_for(BIG_MODULE, size)) as sim:
                m = extract(sim, fresh_dir(root, f"mem-{reader}"), [BIG_MODULE], reader=reader)
            peaks.append(m.max_rss_mb)
            print(f"done: {reader} {size:,}: {m.max_rss_mb:.0f} MB", flush=True)
        ratio = peaks[1] / peaks[0]
        verdict = "ok" if ratio <= 1.2 and max(peaks) < 300 else "MISSED"
        rows.append([reader, small, peaks[0], large, peaks[1], f"{ratio:.2f}x", verdict])
    print()
    print(
        table(
            ["reader", "rows", "peak RSS MB", "rows", "peak RSS MB", "ratio", "target"],
            rows,
            title=f"Peak RSS of zoho-crm extract, {BIG_MODULE} (imports alone: {baseline:.0f} MB)",
        )
    )


if __name__ == "__main__":
    main()
