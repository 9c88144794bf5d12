"""The run manifest: what one ``extract`` run did, written to ``DIR/_runs/<run_id>.json``.

It holds no secret: the connection summary names the region, instance type, API type, COQL setting
and API domain only.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from connector.logging_setup import counted

if TYPE_CHECKING:
    from connector.lake.output import Output

log = logging.getLogger(__name__)

# Exit codes of a run, by status (the CLI exits with the manifest's code).
EXIT_OK = 0
EXIT_MODULE_FAILED = 1
EXIT_CREDITS = 4
EXIT_LOCKED = 5

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"
STATUS_LOCKED = "locked"
STATUS_STOPPED_CREDITS = "stopped: credits"
STATUS_STOPPED_BUDGET = "stopped: budget"
STATUS_STOPPED_SIGNAL = "stopped: signal"
STATUS_UNREACHABLE = "stopped: Zoho unreachable"
STATUS_OUTPUT_FAILED = "stopped: output write failed"
STATUS_NOT_RUN = "not run"


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id: the UTC start time (to the millisecond) and a short random suffix."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
    return stamp + "-" + secrets.token_hex(3)


@dataclass
class FileEntry:
    """A Parquet file the run put in place."""

    path: str
    rows: int
    bytes: int


@dataclass
class ModuleReport:
    """What happened to one module in the run."""

    module: str
    status: str = STATUS_NOT_RUN
    reader: str | None = None
    reason: str | None = None
    # What each reader considered would have cost (credits, estimated), when the run chose.
    reader_prices: dict[str, int] = field(default_factory=dict)
    fallback: str | None = None
    # "full" | "incremental" | "full_refresh" | "full_every_run" (no Modified_Time; Users)
    mode: str | None = None
    rows: int = 0
    # Rows read but modified at or after the cap (the read's start): the next run writes them.
    deferred_rows: int = 0
    tombstones: int = 0
    files: list[FileEntry] = field(default_factory=list)
    tombstone_files: list[FileEntry] = field(default_factory=list)
    watermark_before: str | None = None
    watermark_after: str | None = None
    deleted_watermark_before: str | None = None
    deleted_watermark_after: str | None = None
    read_started_at_server: str | None = None  # Zoho's time when the read began: the cap
    credits: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    pages: int = 0
    jobs: int = 0
    checkpoints: int = 0
    skipped_fields: list[str] = field(default_factory=list)
    unfit_values: dict[str, int] = field(default_factory=dict)
    """Per field, the committed values that did not fit their column: kept in ``$raw_values``."""
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, nothing to fix
    recovered_files: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    error: str | None = None
    duration_s: float | None = None
    """Seconds the module's job took on its worker, from its start to its commit or failure.
    The run's own calls (the modules list, and the fields calls made at once) are not in it."""

    @property
    def credits_total(self) -> int:
        """Credits this module spent, all kinds together."""
        return sum(self.credits.values())


@dataclass
class RunManifest:
    """One run of ``extract``: per-module reports, totals, final status and exit code."""

    run_id: str
    started_at: datetime
    output: str
    connection: dict[str, Any] = field(default_factory=dict)
    modules: list[ModuleReport] = field(default_factory=list)
    finished_at: datetime | None = None
    status: str = STATUS_OK
    exit_code: int = EXIT_OK
    message: str | None = None
    max_credits: int | None = None
    discovery_credits: dict[str, int] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    token_refreshes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish, once finished."""
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def rows(self) -> int:
        """Rows written by every module."""
        return sum(m.rows for m in self.modules)

    @property
    def credits_total(self) -> int:
        """Credits the whole run spent (metadata included)."""
        return sum(self.credits.values())

    def module(self, name: str) -> ModuleReport:
        """The report of module ``name`` (KeyError if the run did not include it)."""
        for report in self.modules:
            if report.module == name:
                return report
        raise KeyError(name)

    def finish(self, finished_at: datetime | None = None) -> None:
        """Stamp the end time and settle the status and exit code from the module reports.

        Credits or budget stops win (exit 4), then locks (5), then failed modules (1).
        """
        self.finished_at = finished_at or datetime.now(timezone.utc)
        statuses = {m.status for m in self.modules}
        if self.status in (STATUS_STOPPED_CREDITS, STATUS_STOPPED_BUDGET):
            self.exit_code = EXIT_CREDITS
        elif STATUS_STOPPED_CREDITS in statuses:
            self.status, self.exit_code = STATUS_STOPPED_CREDITS, EXIT_CREDITS
        elif STATUS_STOPPED_BUDGET in statuses:
            self.status, self.exit_code = STATUS_STOPPED_BUDGET, EXIT_CREDITS
        elif STATUS_LOCKED in statuses:
            self.status, self.exit_code = STATUS_LOCKED, EXIT_LOCKED
        elif STATUS_FAILED in statuses:
            self.status, self.exit_code = STATUS_FAILED, EXIT_MODULE_FAILED
        else:
            self.status, self.exit_code = STATUS_OK, EXIT_OK
        if self.exit_code == EXIT_CREDITS and self.message is None:
            self.message = (
                "stopped before spending more credits than allowed; committed data and state "
                "are kept, and a rerun resumes from them"
                if self.status == STATUS_STOPPED_BUDGET
                else "Zoho says the daily API credits are spent; committed data and state are "
                "kept, and a rerun resumes from them once credits are available"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 UTC)."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.astimezone(timezone.utc).isoformat()

        return {
            "run_id": self.run_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_s": self.duration_s,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "output": self.output,
            "connection": dict(self.connection),
            "max_credits": self.max_credits,
            "modules": [{**asdict(m), "credits_total": m.credits_total} for m in self.modules],
            "totals": {
                "rows": self.rows,
                "deferred_rows": sum(m.deferred_rows for m in self.modules),
                "tombstones": sum(m.tombstones for m in self.modules),
                "files": sum(len(m.files) + len(m.tombstone_files) for m in self.modules),
                "credits": self.credits_total,
                "credits_by_kind": dict(self.credits),
                "discovery_credits": dict(self.discovery_credits),
                "calls": self.calls,
                "token_refreshes": self.token_refreshes,
            },
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        """The manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    def write(self, output: Output) -> str:
        """Write ``_runs/<run_id>.json`` atomically into ``output``; return its relative path."""
        rel = f"_runs/{self.run_id}.json"
        output.write_bytes_atomic(rel, self.to_json().encode("utf-8"))
        return rel

    def summary_lines(self) -> list[str]:
        """A short table for humans: one line per module, then the totals and the status."""
        header = ("module", "status", "reader", "mode", "rows", "deleted", "credits")
        rows = [
            (
                m.module,
                m.status,
                m.reader or "-",
                m.mode or "-",
                f"{m.rows:,}",
                f"{m.tombstones:,}",
                f"{m.credits_total:,}",
            )
            for m in self.modules
        ]
        own = sum(self.discovery_credits.values())
        if own:
            # The run's own calls (the modules list): with it, the column adds up to the total.
            rows.append(("(run)", "-", "-", "-", "", "", f"{own:,}"))
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = []
        for r in [header, *rows]:
            cells = [r[i].ljust(widths[i]) if i < 4 else r[i].rjust(widths[i]) for i in range(7)]
            lines.append("  ".join(cells).rstrip())
        for m in self.modules:
            if m.error:
                lines.append(f"{m.module}: {m.error}")
            if m.fallback:
                lines.append(f"{m.module}: {m.reason}")
            lines.extend(f"{m.module}: {note}" for note in m.notes)
        lines.append(self._run_line())
        if self.message:
            lines.append(self.message)
        return lines

    def _run_line(self) -> str:
        duration = self.duration_s
        return (
            f"run {self.run_id}: {self.status} (exit {self.exit_code}), "
            f"{counted(self.rows, 'row')}, {counted(self.credits_total, 'credit')}, "
            f"{counted(self.calls, 'call')}"
            + (f", {duration:.1f} s" if duration is not None else "")
        )

    def summary_events(self) -> list[dict[str, Any]]:
        """The summary as events for JSON logs: one per module, then the run's.

        Each holds ``event`` ("module" or "run"), ``level``, ``message`` (one line of text) and the
        facts as fields (``run_id``, ``module``, ``status``, ``rows``, ``credits``, ``exit_code``…).
        """
        events = [self._module_event(m) for m in self.modules]
        events.append(
            {
                "event": "run",
                "level": "INFO" if self.exit_code == EXIT_OK else "ERROR",
                "message": self._run_line() + (f": {self.message}" if self.message else ""),
                "run_id": self.run_id,
                "status": self.status,
                "exit_code": self.exit_code,
                "output": self.output,
                "modules": len(self.modules),
                "rows": self.rows,
                "deleted": sum(m.tombstones for m in self.modules),
                "credits": self.credits_total,
                "calls": self.calls,
                "duration_s": self.duration_s,
                "reason": self.message,
            }
        )
        return events

    def _module_event(self, m: ModuleReport) -> dict[str, Any]:
        level = {STATUS_OK: "INFO", STATUS_SKIPPED: "INFO", STATUS_FAILED: "ERROR"}
        details = [m.error] if m.error else []
        if m.fallback and m.reason:
            details.append(m.reason)
        details.extend(m.notes)
        return {
            "event": "module",
            "level": level.get(m.status, "WARNING"),
            "message": f"{m.module}: {m.status}, {counted(m.rows, 'row')}, "
            f"{counted(m.credits_total, 'credit')}" + "".join(f"; {detail}" for detail in details),
            "run_id": self.run_id,
            "module": m.module,
            "status": m.status,
            "reader": m.reader,
            "mode": m.mode,
            "rows": m.rows,
            "deleted": m.tombstones,
            "credits": m.credits_total,
            "duration_s": m.duration_s,
            "error": m.error,
            "reason": m.reason,
            "notes": list(m.notes),
        }


# --- reading: the runs an output holds (zoho-crm runs, zoho-crm state) ---------------------------

RUNS_DIR = "_runs"


@dataclass(frozen=True)
class ModuleOutcome:
    """One module of a past run, as its manifest tells it."""

    module: str
    status: str
    reader: str | None
    rows: int
    tombstones: int
    credits: int
    error: str | None
    files: dict[str, int]
    """Rows of each file the run put in place (data and tombstones), by path in the output."""


@dataclass(frozen=True)
class RunRecord:
    """One past run, as its manifest (``_runs/<run_id>.json``) tells it."""

    run_id: str
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    status: str
    exit_code: int | None
    rows: int
    credits: int
    modules: tuple[ModuleOutcome, ...]
    message: str | None = None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _file_rows(entries: Any) -> dict[str, int]:
    rows: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            rows[entry["path"]] = _int(entry.get("rows"))
    return rows


def _outcome(doc: Any) -> ModuleOutcome:
    if not isinstance(doc, dict) or not isinstance(doc.get("module"), str):
        raise TypeError("a module entry has no module name")
    credits = doc.get("credits_total")
    if credits is None and isinstance(doc.get("credits"), dict):
        credits = sum(_int(v) for v in doc["credits"].values())
    return ModuleOutcome(
        module=doc["module"],
        status=_text(doc.get("status")) or STATUS_NOT_RUN,
        reader=_text(doc.get("reader")),
        rows=_int(doc.get("rows")),
        tombstones=_int(doc.get("tombstones")),
        credits=_int(credits),
        error=_text(doc.get("error")),
        files={**_file_rows(doc.get("files")), **_file_rows(doc.get("tombstone_files"))},
    )


def parse_run(doc: Any) -> RunRecord:
    """A manifest's JSON document as a :class:`RunRecord` (``TypeError`` when it is not one)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("run_id"), str):
        raise TypeError("not a run manifest (no run_id)")
    modules = doc.get("modules")
    if not isinstance(modules, list):
        raise TypeError("modules is not a list")
    totals = doc.get("totals")
    if not isinstance(totals, dict):
        totals = {}
    duration = doc.get("duration_s")
    exit_code = doc.get("exit_code")
    return RunRecord(
        run_id=doc["run_id"],
        started_at=_text(doc.get("started_at")),
        finished_at=_text(doc.get("finished_at")),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        status=_text(doc.get("status")) or "unknown",
        exit_code=exit_code if isinstance(exit_code, int) else None,
        rows=_int(totals.get("rows")),
        credits=_int(totals.get("credits")),
        modules=tuple(_outcome(m) for m in modules),
        message=_text(doc.get("message")),
    )


def read_runs(output: Output) -> list[RunRecord]:
    """Every run whose manifest ``output`` holds, newest first (run ids sort by start time).

    A manifest that cannot be read is left out with a warning in the log, never guessed at.
    """
    runs: list[RunRecord] = []
    for rel in sorted(output.list_files(RUNS_DIR, ".json"), reverse=True):
        data = output.read_bytes(rel)
        if data is None:
            continue
        try:
            runs.append(parse_run(json.loads(data.decode("utf-8"))))
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            log.warning("%s is not a readable run manifest (%s): left out", rel, exc)
    return runs
