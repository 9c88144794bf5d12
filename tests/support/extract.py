"""Running ``run_extract`` against a simulator in-process, and comparing its output with the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from connector.config import Settings, load_settings
from connector.lake.manifest import RunManifest
from connector.lake.schema import ModuleSchema, module_schema
from connector.run.sync import run_extract
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import list_fields
from support import source as sourcecheck
from support.source import TINY, noop

READERS = {
    "bulk": {"APIType": "Bulk", "UseCOQL": "false"},
    "coql": {"APIType": "REST", "UseCOQL": "true"},
    "records": {"APIType": "REST", "UseCOQL": "false"},
}
MODULES = ["Leads", "Shipments", "Notes"]


def settings_for(sim: Simulator, tmp: Path, **overrides: str) -> Settings:
    text = sim.connection_string(OAuthSettingsLocation=str(tmp / "tokens.json"), **overrides)
    settings = load_settings(text, environ={}).settings
    return settings.model_copy(update={"tuning": TINY})


def client_for(settings: Settings) -> ZohoClient:
    return ZohoClient(settings, sleep=noop)


def extract(settings: Settings, client: ZohoClient, out: Path, **kwargs: Any) -> RunManifest:
    kwargs.setdefault("modules", MODULES)
    return run_extract(settings, str(out), client=client, sleep=noop, **kwargs)


def schema_of(client: ZohoClient, module: str) -> ModuleSchema:
    return module_schema(module, list_fields(client, module))


def output_table(out: Path, schema: ModuleSchema) -> pa.Table:
    """Latest version per id, minus tombstones; the module must have been written."""
    return sourcecheck.output_table(out, schema, required=True)


def assert_output_equals_source(sim: Simulator, out: Path, schema: ModuleSchema) -> None:
    """The output, read as a change log, is the simulator's current module (which was written)."""
    sourcecheck.assert_output_equals_source(sim, out, schema, required=True)


def faked(clock: FakeClock) -> dict[str, Any]:
    """The connector's clock and sleep, both on the simulator's fake clock."""
    return {"sleep": clock.advance, "clock": lambda: clock().timestamp()}
