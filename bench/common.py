"""Shared plumbing of the benchmarks: the simulator process, measured child processes, tables.

Every measured program (``zoho-crm extract`` or a floor script) runs as its own child process;
``os.wait4`` gives that child's own peak RSS and CPU time, so the simulator (another process) and
the bench script itself are never counted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Bulk status polls: the simulator completes a job on its second poll; the connector's default
# first wait (2 s) would dominate small runs, so both sides poll after 10 ms, doubling.
POLL_INITIAL = 0.01
CONNECTOR_ENV = {
    "ZOHO_CRM_TUNING_BULK_POLL_INITIAL": str(POLL_INITIAL),
    "ZOHO_CRM_TUNING_BULK_POLL_MAX": "1",
}
# Module with ~50+ fields used for throughput and memory: the fixture's big custom module.
BIG_MODULE = "Shipments"


# The memory benchmark's wide module (``bench.simserver --wide-fields``), a copy of BIG_MODULE.
WIDE_MODULE = "Wide_Shipments"


def size_factor(module: str) -> float:
    """The module's size relative to ``--records`` (the largest module), from the fixture."""
    if module == WIDE_MODULE:
        module = BIG_MODULE
    org = json.loads((ROOT / "fixtures" / "org.json").read_text())
    for m in org["modules"]:
        if m["api_name"] == module:
            return float(m.get("sim", {}).get("size_factor", 1.0))
    raise KeyError(module)


def records_for(module: str, rows: int) -> int:
    """The simulator's ``--records`` that gives ``module`` exactly ``rows`` rows (or just over)."""
    factor = size_factor(module)
    records = round(rows / factor)
    while int(records * factor) < rows:
        records += 1
    return records


@dataclass
class Sim:
    """A simulator running in a child process."""

    proc: subprocess.Popen[str]
    url: str
    connection_pairs: dict[str, str]

    def connection(self, **overrides: str) -> str:
        """The connection string with some keys replaced (APIType, UseCOQL, …)."""
        pairs = {**self.connection_pairs, **overrides}
        return " ".join(f"{k}={v};" for k, v in pairs.items())

    def get(self, path: str) -> Any:
        """GET a simulator path and decode its JSON."""
        with urllib.request.urlopen(self.url + path, timeout=600) as resp:
            return json.loads(resp.read() or b"null")

    def post(self, path: str, body: Any) -> Any:
        """POST JSON to a simulator path and decode the answer."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=600) as resp:
            return json.loads(resp.read() or b"null")

    def credits(self) -> dict[str, Any]:
        """The simulator's credit ledger (``GET /_sim/credits``)."""
        return dict(self.get("/_sim/credits"))


@contextmanager
def simulator(
    records: int, *, cache: bool = True, seed: int = 7, wide_fields: int = 0
) -> Iterator[Sim]:
    """Start ``bench.simserver`` in a child process (with ``WIDE_MODULE`` of ``wide_fields``
    fields when not 0); stop it on exit."""
    args = [PYTHON, "-m", "bench.simserver", "--records", str(records), "--seed", str(seed)]
    args.append("--cache" if cache else "--no-cache")
    if wide_fields:
        args += ["--wide-fields", str(wide_fields)]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = ""
        pairs: dict[str, str] = {}
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the simulator exited before it printed its URL")
            if line.startswith("url: "):
                url = line.split(" ", 1)[1].strip()
            elif line.startswith("connection: "):
                text = line.split(" ", 1)[1].strip()
                for part in text.split(";"):
                    if "=" in part:
                        key, value = part.strip().split("=", 1)
                        pairs[key] = value
                break
        yield Sim(proc, url, pairs)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=30)


@dataclass
class Measured:
    """One child process: wall time, CPU time, peak RSS, exit code, output."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)


def measure(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> Measured:
    """Run ``args`` as a child process and measure it alone (``os.wait4``).

    The child may write and reuse Python's bytecode cache even when this process was told not to
    (``PYTHONDONTWRITEBYTECODE``, as some sandboxes and CI images set): an installed connector
    starts from its cached bytecode, and compiling its 67 modules again on every start would add
    about 0.1 s to every measured run.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(args), cwd=ROOT, env=full_env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            # Linux reports ru_maxrss in KiB.
            max_rss_mb=usage.ru_maxrss / 1024,
            returncode=proc.returncode,
            stdout=out.read(),
            stderr=err.read(),
        )


def check(m: Measured, what: str) -> Measured:
    """Fail loudly when a measured run did not succeed."""
    if m.returncode != 0:
        raise RuntimeError(
            f"{what} exited {m.returncode}\n--- stdout\n{m.stdout[-3000:]}\n"
            f"--- stderr\n{m.stderr[-3000:]}"
        )
    return m


def extract(
    sim: Sim,
    output: Path,
    modules: Sequence[str],
    *,
    reader: str = "bulk",
    workers: int | None = None,
    full_refresh: bool = False,
    partition_by: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Measured:
    """Run ``zoho-crm extract`` in a child process; ``extra['manifest']`` is its run manifest."""
    overrides = {
        "bulk": {"APIType": "Bulk", "UseCOQL": "false"},
        "coql": {"APIType": "REST", "UseCOQL": "true"},
        "records": {"APIType": "REST", "UseCOQL": "false"},
    }[reader]
    args = [
        PYTHON,
        "-m",
        "connector",
        "extract",
        "-c",
        sim.connection(**overrides),
        "-o",
        str(output),
        "-m",
        ",".join(modules),
        "--no-progress",
    ]
    if workers is not None:
        args += ["--workers", str(workers)]
    if full_refresh:
        args.append("--full-refresh")
    if partition_by is not None:
        args += ["--partition-by", partition_by]
    before = _runs(output)
    m = check(measure(args, env={**CONNECTOR_ENV, **(extra_env or {})}), "zoho-crm extract")
    new = sorted(_runs(output) - before)
    if new:
        m.extra["manifest"] = json.loads((output / "_runs" / new[-1]).read_text())
    return m


def _runs(output: Path) -> set[str]:
    runs = output / "_runs"
    return {p.name for p in runs.glob("*.json")} if runs.is_dir() else set()


def floor(script: str, sim: Sim, output: Path, *args: str) -> Measured:
    """Run a floor script (``bench.floor_bulk`` / ``bench.floor_json``) as a child process."""
    pairs = sim.connection_pairs
    cmd = [
        PYTHON,
        "-m",
        script,
        "--url",
        sim.url,
        "--client-id",
        pairs["OAuthClientId"],
        "--client-secret",
        pairs["OAuthClientSecret"],
        "--refresh-token",
        pairs["OAuthRefreshToken"],
        "--out",
        str(output),
        *args,
    ]
    m = check(measure(cmd), script)
    for line in m.stdout.splitlines():
        if line.startswith("{"):
            m.extra.update(json.loads(line))
    return m


def fresh_dir(parent: Path, name: str) -> Path:
    """An empty directory ``parent/name``."""
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def module_credits(manifest: Mapping[str, Any] | None, module: str) -> int | None:
    """The credits the run manifest records for one module."""
    if not manifest:
        return None
    for entry in manifest.get("modules", []):
        if entry.get("module") == module:
            value = entry.get("credits")
            return int(value) if value is not None else None
    return None


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain Markdown table (pastes into docs/performance.md as is)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def scratch_root(arg: str | None) -> Path:
    """Where benchmark outputs go (a temporary directory unless given)."""
    path = Path(arg) if arg else Path(tempfile.mkdtemp(prefix="zoho-bench-"))
    path.mkdir(parents=True, exist_ok=True)
    return path
