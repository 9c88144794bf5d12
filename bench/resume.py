"""Credits of a rerun after a Bulk full load was killed with jobs already paid for.

Each case runs ``zoho-crm extract`` (``APIType=Bulk``, reader pricing off so Bulk reads every
size) against a simulator, kills it with ``ZOHO_CRM_CRASH_AT`` after the N-th status poll (N
jobs paid for), runs it again and reads the rerun's credits from the simulator's ledger
(``GET /_sim/credits``, by kind). Without the record of paid jobs the rerun pays for every job
again; with it, a paid job costs its status call and its download.

    python -m bench.resume
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from connector.simulator import Simulator

# (Leads, rows a Bulk page holds, the crash point): a 5-page load killed after 3 jobs, and a
# one-page load killed after its job.
CASES = [(500, 100, "bulk_polled:3"), (300, 100_000, "bulk_polled:1")]


def _ledger(sim: Simulator) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(sim.url + "/_sim/credits", timeout=30).json()
    return answer


def run_case(records: int, page_size: int, crash_at: str) -> dict[str, Any]:
    """The killed run's credits and the rerun's, by kind."""
    with (
        tempfile.TemporaryDirectory() as tmp_text,
        Simulator(seed=5, records=records, bulk_page_size=page_size, bulk_polls=1) as sim,
    ):
        tmp = Path(tmp_text)
        connection = sim.connection_string(
            OAuthSettingsLocation=str(tmp / "tokens.json"), APIType="Bulk", UseCOQL="false"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_CRM_")}
        env |= {
            "HOME": str(tmp),
            "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0",
            "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0",
            "ZOHO_CRM_TUNING_PRICE_READERS": "false",
        }
        args = [sys.executable, "-m", "connector", "extract", "-o", str(tmp / "out")]
        args += ["--connection", connection, "--modules", "Leads", "--no-progress"]
        crash_env = {**env, "ZOHO_CRM_CRASH_AT": crash_at}
        killed = subprocess.run(args, env=crash_env, capture_output=True, check=False)
        before = _ledger(sim)
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if rerun.returncode != 0:
            raise SystemExit(rerun.stderr)
        after = _ledger(sim)
        kinds = {
            kind: after["by_kind"][kind] - before["by_kind"].get(kind, 0)
            for kind in after["by_kind"]
        }
        return {
            "killed_rc": killed.returncode,
            "killed": before["total"],
            "rerun": after["total"] - before["total"],
            "by_kind": kinds,
        }


def main() -> None:
    """Print each case's credits."""
    for records, page_size, crash_at in CASES:
        got = run_case(records, page_size, crash_at)
        print(
            f"{records} Leads, pages of {page_size:,}, killed at {crash_at} "
            f"(rc {got['killed_rc']}, {got['killed']} credits): rerun {got['rerun']} credits "
            f"{got['by_kind']}"
        )


if __name__ == "__main__":
    main()
