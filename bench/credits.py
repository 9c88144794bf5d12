"""Credits: what a full load and an incremental run cost, against the least Zoho's rules allow.

Counted by the simulator's ledger (``GET /_sim/credits``, no response cache); the run manifest says
which reader ran. The minimum is computed from Zoho's price rules for the module's shape:

- Bulk: per page of 200,000 rows and per group of 200 fields, 50 (create) + 1 (one status
  call) + 1 (download); plus 1 for the field metadata.
- COQL: 3 per 2,000 rows per group of 50 columns; plus 1 for metadata.
- Records: 1 per 200 rows per group of 50 fields; plus 1 for metadata.
- An incremental run adds the deleted-records call (2); with 100 changes the cheapest read is one
  LIMIT-200 COQL call (1) or one Records page (1) per column group.

An incremental run starts from a Bulk full load's state (so a 1M module need not be read through
the JSON APIs first), then 100 records are changed and ``zoho-crm extract`` runs again with the
reader's settings. Targets: full loads within 5 % of the minimum, module by module (the module's
own credits in the run manifest; the run's own calls — the modules list a first run of a named
module makes to check its name, once per run whatever the number of modules — are shown beside
it); an incremental run with 100 changes in a 1M module at most 5 credits in all (ledger).

    python -m bench.credits             # full loads: Bulk 10k/100k/1M, COQL and Records 10k/100k
                                        # incremental: every reader at 10k/100k/1M
    python -m bench.credits --quick     # 10k and 100k (Bulk), 10k (COQL, Records)
    python -m bench.credits --json-1m   # also full COQL and Records loads of 1M (slow)

The settings: ``bulk`` is ``APIType=Bulk`` (the default), which reads each module the cheapest
way (a COQL count, 1 credit, prices Bulk Read, COQL and the Records API), so its minimum is the
least of the three; ``coql`` and ``records`` are ``APIType=REST`` with ``UseCOQL`` true and false.
The demo (``zoho-crm demo``: a full load of the simulated org, then changes and an incremental
run) is measured too, from the credits its two runs report.

    python -m bench.credits --demo-only # the demo's two runs only
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from bench.common import (
    BIG_MODULE,
    CONNECTOR_ENV,
    PYTHON,
    Sim,
    extract,
    fresh_dir,
    records_for,
    scratch_root,
    simulator,
    table,
)

CHANGES = 100
# Status polls cost a credit each: use the connector's default schedule (2 s, doubling), not the
# 10 ms the timing benchmarks use.
DEFAULT_POLLS = {"ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "2", "ZOHO_CRM_TUNING_BULK_POLL_MAX": "60"}


def field_count(module: str) -> int:
    """Readable fields of the module (its Arrow columns, ``id`` included)."""
    import json

    from bench.common import ROOT
    from bench.floor_bulk import SKIPPED

    org = json.loads((ROOT / "fixtures" / "org.json").read_text())
    meta = next(m for m in org["modules"] if m["api_name"] == module)
    names = {f["api_name"] for f in meta["fields"] if f["data_type"] not in SKIPPED}
    names.add("id")
    return len(names)


def groups(fields: int, size: int) -> int:
    """Column groups of at most ``size`` with ``id`` and ``Modified_Time`` in each."""
    return max(1, math.ceil((fields - 2) / (size - 2)))


def minimum_full(reader: str, rows: int, fields: int) -> int:
    """The least a full load can cost under Zoho's rules."""
    if reader == "bulk":
        # id is added by Zoho and does not count towards the 200 fields.
        return 1 + max(1, math.ceil(rows / 200_000)) * groups(fields + 1, 201) * 52
    if reader == "coql":
        return 1 + max(1, math.ceil(rows / 2000)) * 3 * groups(fields, 50)
    return 1 + max(1, math.ceil(rows / 200)) * groups(fields, 50)


def minimum_for(settings: str, rows: int, fields: int) -> int:
    """The least a full load with ``settings`` can cost: with APIType=Bulk, the cheapest reader."""
    if settings == "bulk":
        return min(minimum_full(reader, rows, fields) for reader in ("bulk", "coql", "records"))
    return minimum_full(settings, rows, fields)


_RUN_LINE = re.compile(
    r"run \S+: (?P<status>[^(]+) \(exit \d+\), (?P<rows>[\d,]+) rows, (?P<credits>[\d,]+) credits"
)


def demo_credits() -> list[list[object]]:
    """``zoho-crm demo`` in a scratch directory: (run, rows, credits) of its two runs."""
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as cwd:
        proc = subprocess.run(
            [PYTHON, "-m", "connector", "demo"],
            cwd=cwd,
            env={**os.environ, **CONNECTOR_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
    runs = [m for line in proc.stdout.splitlines() if (m := _RUN_LINE.search(line))]
    return [
        [name, m["status"].strip(), m["rows"], m["credits"]]
        for name, m in zip(("full load", "incremental"), runs, strict=True)
    ]


def minimum_incremental(fields: int) -> int:
    """Metadata, deleted records, and one cheapest page per column group."""
    return 1 + 2 + groups(fields, 50)


# More than the connector's server-time margin (1 s) plus the second the changes were made in.
LIVE_EDGE_WAIT_S = 2.5


def spent(sim: Sim, before: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """Credits and credits by kind since ``before``."""
    now = sim.credits()
    kinds = {
        k: v - before.get("by_kind", {}).get(k, 0)
        for k, v in now.get("by_kind", {}).items()
        if v - before.get("by_kind", {}).get(k, 0)
    }
    return int(now["total"]) - int(before["total"]), kinds


def change_records(sim: Sim, output: Path, module: str, n: int) -> None:
    """Update ``n`` records spread over the module (their Modified_Time moves to now)."""
    ids = ds.dataset(output / module, partitioning="hive").to_table(columns=["id"]).column("id")
    step = max(1, len(ids) // n)
    chosen = [ids[i].as_py() for i in range(0, len(ids), step)][:n]
    ops = [
        {"module": module, "op": "update", "id": rid, "values": {"Name": f"bench {i}"}}
        for i, rid in enumerate(chosen)
    ]
    sim.post("/_sim/mutate", ops)


def main() -> None:
    """Run the credit tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json-1m", action="store_true", help="Full COQL/Records loads of 1M.")
    parser.add_argument("--dir")
    parser.add_argument("--demo-only", action="store_true", help="Only the demo's two runs.")
    args = parser.parse_args()
    demo = demo_credits()
    print(table(["demo run", "status", "rows", "credits"], demo, title="zoho-crm demo"))
    if args.demo_only:
        return
    root = scratch_root(args.dir)
    module = BIG_MODULE
    fields = field_count(module)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    full_rows: list[list[object]] = []
    inc_rows: list[list[object]] = []
    for size in sizes:
        with simulator(records_for(module, size), cache=False) as sim:
            for reader in ("bulk", "coql", "records"):
                if reader != "bulk" and (
                    (size > 100_000 and not args.json_1m) or (args.quick and size > 10_000)
                ):
                    continue
                before = sim.credits()
                m = extract(
                    sim,
                    fresh_dir(root, f"cr-{reader}"),
                    [module],
                    reader=reader,
                    extra_env=DEFAULT_POLLS,
                )
                total, kinds = spent(sim, before)
                low = minimum_for(reader, size, fields)
                entry = m.extra["manifest"]["modules"][0]
                own = int(entry["credits_total"])
                over = own / low - 1
                full_rows.append(
                    [
                        reader,
                        size,
                        entry.get("reader"),
                        total,
                        total - own,
                        own,
                        low,
                        f"{over * 100:+.1f}%",
                        "ok" if over <= 0.05 else "MISSED",
                        _kinds(kinds),
                    ]
                )
                print(f"done: full {reader} {size:,}: {total}", flush=True)
            # Incremental: a Bulk full load gives the state, then 100 changes, then each reader.
            base = fresh_dir(root, "cr-inc-base")
            extract(sim, base, [module], reader="bulk", extra_env=DEFAULT_POLLS)
            change_records(sim, base, module, CHANGES)
            # A run defers rows modified within its last second or so (the live edge: their
            # second may not be over) to the next run; wait so all 100 changes are read now.
            time.sleep(LIVE_EDGE_WAIT_S)
            for reader in ("bulk", "coql", "records"):
                out = fresh_dir(root, f"cr-inc-{reader}")
                _copy_tree(base, out)
                before = sim.credits()
                m = extract(sim, out, [module], reader=reader, extra_env=DEFAULT_POLLS)
                total, kinds = spent(sim, before)
                entry = m.extra["manifest"]["modules"][0]
                own = int(entry["credits_total"])
                low = minimum_incremental(fields)
                inc_rows.append(
                    [
                        reader,
                        size,
                        entry.get("reader"),
                        entry.get("rows"),
                        entry.get("deferred_rows", 0),
                        total,
                        own,
                        low,
                        "ok" if total <= 5 else "MISSED",
                        _kinds(kinds),
                    ]
                )
                print(f"done: incremental {reader} {size:,}: {total}", flush=True)
    print()
    print(
        table(
            [
                "settings",
                "rows",
                "reader used",
                "credits (ledger)",
                "run's own",
                "module's",
                "minimum",
                "module over",
                "target",
                "by kind",
            ],
            full_rows,
            title=f"Full load credits, {module} ({fields} columns)",
        )
    )
    print(
        table(
            [
                "settings",
                "module rows",
                "reader used",
                "rows written",
                "deferred",
                "credits (ledger)",
                "module's",
                "minimum",
                "target <= 5",
                "by kind",
            ],
            inc_rows,
            title=f"Incremental run after {CHANGES} changes",
        )
    )


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))


def _copy_tree(src: Path, dest: Path) -> None:
    import shutil

    shutil.copytree(src, dest, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
