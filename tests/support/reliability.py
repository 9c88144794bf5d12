"""Helpers of the reliability tests: run the CLI as a subprocess, compare the output with the
simulator's data, and check that an output directory holds nothing a reader should not see."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from connector.config import Settings, Tuning, load_settings
from connector.lake.output import Output
from connector.lake.schema import ModuleSchema
from connector.lake.state import ModuleState, StateStore
from connector.simulator import FaultConfig, Simulator
from connector.zoho.http import ZohoClient
from support.source import (
    TINY,
    assert_output_equals_source,
    noop,
    output_table,
    read_local,
    schema_for,
)

__all__ = [
    "CLI_TIMEOUT",
    "READERS",
    "REPO",
    "TINY",
    "TINY_ENV",
    "CliResult",
    "Gate",
    "assert_clean_and_committed",
    "assert_files_readable",
    "assert_output_equals_source",
    "cli_env",
    "connection_for",
    "extract_args",
    "gated_run",
    "load_state",
    "noop",
    "output_table",
    "run_cli",
    "schema_of",
    "settings_for",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

TINY_ENV = {
    "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0",
    "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0",
    "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0",
    "ZOHO_CRM_TUNING_RETRY_MAX_WAIT": "0",
    # Bulk settings read small orgs by Bulk Read, as these tests mean (see support.source.TINY).
    "ZOHO_CRM_TUNING_PRICE_READERS": "false",
}
READERS: dict[str, dict[str, str]] = {
    "bulk": {"APIType": "Bulk", "UseCOQL": "false"},
    "coql": {"APIType": "REST", "UseCOQL": "true"},
    "records": {"APIType": "REST", "UseCOQL": "false"},
}
CLI_TIMEOUT = 120


def settings_for(sim: Simulator, tmp: Path, tuning: Tuning = TINY, **overrides: str) -> Settings:
    """Settings for ``sim`` with a token cache under ``tmp`` and the given tuning."""
    text = sim.connection_string(OAuthSettingsLocation=str(tmp / "tokens.json"), **overrides)
    settings = load_settings(text, environ={}).settings
    return settings.model_copy(update={"tuning": tuning})


def connection_for(sim: Simulator, tmp: Path, reader: str = "bulk", **overrides: str) -> str:
    """A connection string for the CLI against ``sim`` reading with ``reader``."""
    return sim.connection_string(
        OAuthSettingsLocation=str(tmp / "tokens.json"), **{**READERS[reader], **overrides}
    )


def extract_args(
    sim: Simulator, tmp: Path, out: Path | str, reader: str, modules: str, *extra: str
) -> list[str]:
    """``extract`` into ``out`` with ``reader``, the named modules, no progress bars."""
    return [
        "extract",
        "--output",
        str(out),
        "--connection",
        connection_for(sim, tmp, reader),
        "--modules",
        modules,
        "--no-progress",
        *extra,
    ]


class Gate:
    """A simulator 'sleep' that holds the first call made after ``lock`` appears until released:
    the extract holding the lock is then paused inside it, for as long as the test needs."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.held = threading.Event()
        self.release = threading.Event()
        self._used = False
        self._mutex = threading.Lock()

    def __call__(self, _seconds: float) -> None:
        with self._mutex:
            hold = not self._used and self.lock.exists()
            if hold:
                self._used = True
        if hold:
            self.held.set()
            self.release.wait(timeout=120)


def gated_run(
    make_simulator: Callable[..., Simulator], tmp: Path
) -> tuple[Simulator, Gate, Path, dict[str, str]]:
    """(a simulator whose first call under the Leads lock waits for the test, that gate, the
    output directory, a CLI environment)."""
    out = tmp / "out"
    home = tmp / "home"
    home.mkdir()
    gate = Gate(out / "_state" / "Leads.lock")
    sim = make_simulator(seed=4, records=250, faults=FaultConfig(latency_ms=1), sleep=gate)
    return sim, gate, out, cli_env(home)


@dataclass
class CliResult:
    """What a CLI subprocess did."""

    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """Everything it printed, for assertion messages."""
        return f"rc={self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(
    home: Path, extra: Mapping[str, str] | None = None, *, tiny: bool = True
) -> dict[str, str]:
    """A clean environment for the CLI: no inherited ZOHO_CRM_* variables, HOME in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_CRM_")}
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if tiny:
        env.update(TINY_ENV)
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    checkpoint_rows: int | None = None,
    timeout: float = CLI_TIMEOUT,
) -> CliResult:
    """Run ``python -m connector ARGS`` in a subprocess (checkpointing every N rows if asked)."""
    command = [sys.executable, "-m", "connector", *args]
    env = dict(env)
    if checkpoint_rows is not None:
        env["ZOHO_CRM_TUNING_CHECKPOINT_ROWS"] = str(checkpoint_rows)
    done = subprocess.run(
        command,
        env=env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def schema_of(settings: Settings, module: str, client: ZohoClient | None = None) -> ModuleSchema:
    """The connector's schema of ``module`` (one metadata call, through ``client`` if given)."""
    if client is not None:
        return schema_for(client, module)
    with ZohoClient(settings, sleep=noop) as own:
        return schema_for(own, module)


def load_state(out: Path, module: str) -> ModuleState:
    """The committed state (raises DataError when the state file is corrupt)."""
    return StateStore(Output.open(str(out))).load(module)


def assert_files_readable(out: Path, module: str) -> None:
    """Every file in the module's dataset dirs is a complete Parquet file (what a reader sees)."""
    for rel in (module, f"_deleted/{module}"):
        base = out / rel
        if not base.exists():
            continue
        for path in base.rglob("*"):
            if path.is_dir():
                continue
            assert path.suffix == ".parquet", f"a non-Parquet file is visible: {path}"
            pq.read_metadata(path)  # raises on a partial file
            pq.read_table(path)


def assert_clean_and_committed(out: Path, module: str) -> ModuleState:
    """After a successful run: only committed part files, no scratch left, no lock, a valid state
    whose watermark is set and not past the greatest Modified_Time written."""
    assert_files_readable(out, module)
    state = load_state(out, module)
    for rel in (module, f"_deleted/{module}"):
        base = out / rel
        if not base.exists():
            continue
        for path in base.rglob("*.parquet"):
            relpath = path.relative_to(out).as_posix()
            assert state.covers(relpath), f"an uncommitted file is visible: {relpath}"
    tmp = out / "_tmp"
    if tmp.exists():
        leftovers = [
            p.relative_to(tmp).as_posix()
            for p in tmp.rglob("*")
            if p.is_file() and p.relative_to(tmp).as_posix().startswith(f"{module}/")
        ]
        assert not leftovers, f"scratch files left behind: {leftovers}"
    assert not (out / "_state" / f"{module}.lock").exists(), "the lock was not released"
    data = read_local(out / module)
    if (data is not None and "Modified_Time" not in data.column_names) or module == "Users":
        # Read in full every run (no Modified_Time; Users): no watermark is ever kept.
        assert state.watermark is None, state.watermark
    elif data is not None and data.num_rows:
        # The watermark never passes what was written (it may lag: it is capped at the time the
        # read started, so records changed during the read are read again next time).
        newest = pc.max(data.column("Modified_Time")).as_py()
        assert state.watermark is not None and state.watermark <= newest, (state.watermark, newest)
    return state
