"""Shared test helpers: run the ``zoho-crm`` command line as a subprocess, as a user does.

Importable from every test directory (``from support.cli import …``), as the root conftest puts this
directory on the import path.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Small waits, so bulk polls and retries cost milliseconds instead of seconds.
FAST_TUNING = {
    "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0.01",
    "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0.05",
    "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0",
    "ZOHO_CRM_TUNING_RETRY_MAX_WAIT": "0",
    "ZOHO_CRM_TUNING_MAX_ATTEMPTS": "2",
}


def clean_env(tmp_path: Path, tuning: Mapping[str, str]) -> dict[str, str]:
    """A clean environment: no inherited ZOHO_CRM_* settings, a private token cache under
    ``tmp_path``, the given ``ZOHO_CRM_TUNING_*`` values, and this checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_CRM_")}
    env.update(tuning)
    env["ZOHO_CRM_TOKEN_CACHE_DIR"] = str(tmp_path / "tokens")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m connector ARGS`` to completion, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


def first_line_starting(server: subprocess.Popen[str], prefix: str) -> str:
    """The first stdout line of ``server`` that starts with ``prefix``, stripped ("" when the
    process ends, or 60 s pass, without one)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            return ""
        if not line:
            return ""
        if line.strip().startswith(prefix):
            return line.strip()
