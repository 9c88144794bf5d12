"""Fan-out: one ``extract --modules M`` process per module, side by side, into one output.

Each module has its own state file and lock, so an orchestrator can run a task per module on
separate workers; a second task for the SAME module is refused (exit code 5, one line saying who
holds the lock) instead of writing duplicates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from support.source import source_table

from connector.config import load_settings
from connector.lake.output import Output
from connector.lake.schema import ModuleSchema, module_schema
from connector.lake.state import StateStore
from connector.simulator import Simulator
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import list_fields

MODULES = ("Leads", "Contacts")
TINY_TUNING = {
    "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": "0",
    "ZOHO_CRM_TUNING_BULK_POLL_MAX": "0",
    "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0",
    "ZOHO_CRM_TUNING_RETRY_MAX_WAIT": "0",
    "ZOHO_CRM_TUNING_MAX_ATTEMPTS": "3",
}
REPO = Path(__file__).resolve().parents[2]


def worker_env(sim: Simulator, token_cache: Path) -> dict[str, str]:
    """The environment of one worker: the connection in ZOHO_CRM_CONNECTION, tiny waits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_CRM_")}
    env["ZOHO_CRM_CONNECTION"] = sim.connection_string(OAuthSettingsLocation=str(token_cache))
    env.update(TINY_TUNING)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def extract_cmd(module: str, out: Path) -> list[str]:
    """The command an orchestrator task runs for one module."""
    return [sys.executable, "-m", "connector", "extract", "--modules", module, "--output", str(out)]


def schema_of(sim: Simulator, tmp: Path, module: str) -> ModuleSchema:
    text = sim.connection_string(OAuthSettingsLocation=str(tmp / "test-tokens.json"))
    client = ZohoClient(load_settings(text, environ={}).settings)
    return module_schema(module, list_fields(client, module))


def output_table(out: Path, schema: ModuleSchema) -> pa.Table:
    table = ds.dataset(str(out / schema.module), format="parquet", partitioning="hive").to_table()
    return table.select(schema.arrow.names).cast(schema.arrow).sort_by("id")


def test_two_processes_extract_different_modules_into_one_output(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=21, records=300, bulk_polls=1)
    out = tmp_path / "out"
    # Workers on one host share the settings, token cache included.
    env = worker_env(sim, tmp_path / "tokens.json")
    procs = {
        module: subprocess.Popen(
            extract_cmd(module, out),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in MODULES
    }
    results = {module: (proc, *proc.communicate(timeout=120)) for module, proc in procs.items()}
    for module, (proc, stdout, stderr) in results.items():
        assert proc.returncode == 0, (module, stdout, stderr)
        assert "Traceback" not in stderr
    for module in MODULES:
        schema = schema_of(sim, tmp_path, module)
        got, want = output_table(out, schema), source_table(sim, schema)
        assert got.num_rows == want.num_rows > 0
        assert got.equals(want), module
        state = StateStore(Output.open(out)).load(module)
        assert state.watermark is not None
    # Each task kept to its own module: its own state, its own run manifest, no lock left.
    assert sorted(p.name for p in (out / "_state").iterdir()) == ["Contacts.json", "Leads.json"]
    manifests = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert len(manifests) == 2
    assert sorted(m["exit_code"] for m in manifests) == [0, 0]


def test_a_second_extract_of_a_locked_module_is_refused(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(seed=22, records=100, bulk_polls=1)
    out = tmp_path / "out"
    env = worker_env(sim, tmp_path / "tokens.json")
    # The test itself holds the lock, as a running task would: no race, no waiting.
    with StateStore(Output.open(out)).lock("Leads", "held-by-another-task") as lock:
        refused = subprocess.run(
            extract_cmd("Leads", out), env=env, capture_output=True, text=True, timeout=120
        )
        assert Path(lock.location).exists()
        assert json.loads(Path(lock.location).read_text())["run_id"] == "held-by-another-task"
    assert refused.returncode == 5, (refused.stdout, refused.stderr)
    assert "Traceback" not in refused.stderr
    lines = [line for line in refused.stdout.splitlines() if "is being extracted" in line]
    assert len(lines) == 1, refused.stdout
    line = lines[0]
    assert f"pid {os.getpid()}" in line
    assert "held-by-another-task" in line
    assert str(out / "_state" / "Leads.lock") in line
    assert not (out / "Leads").exists()  # nothing written for the refused module
    assert not Path(lock.location).exists()  # released by its holder, not by the refused task

    # Once the holder is gone, the same task runs.
    done = subprocess.run(
        extract_cmd("Leads", out), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    schema = schema_of(sim, tmp_path, "Leads")
    assert output_table(out, schema).equals(source_table(sim, schema))
