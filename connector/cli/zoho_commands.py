"""Commands that talk to Zoho: check, extract, plan, modules."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from connector.cli.app import (
    ConfigOpt,
    ConnectionOpt,
    ModulesOpt,
    PartitionByOpt,
    app,
    cli_globals,
    command_epilog,
    load_cli_settings,
    log_events,
    run_command,
    split_modules,
    with_partition_by,
)
from connector.errors import ConfigError
from connector.run.workers import MAX_WORKERS, StopSignal

_STOPPING = "stopping: finishing calls in flight (send the signal again to stop at once)"
_STOPPING_NOW = "stopping now: abandoning calls in flight, releasing locks"

if TYPE_CHECKING:
    from connector.run.planner import Plan


@app.command(epilog=command_epilog('ZOHO_CRM_CONNECTION="$(cat ~/.zoho-crm.conn)" zoho-crm check'))
def check(connection: ConnectionOpt = None, config: ConfigOpt = None) -> None:
    """Validate settings, obtain a token, read the org and compare granted and needed scopes."""

    def action() -> None:
        from connector.run.check import format_check, run_check

        report = run_check(load_cli_settings(connection, config))
        typer.echo(format_check(report))

    run_command(action)


@app.command(epilog=command_epilog("zoho-crm extract -o ./lake --modules Leads,Deals"))
def extract(
    output: Annotated[
        str,
        typer.Option("--output", "-o", metavar="DIR", help="Output directory or URL (s3://…)."),
    ],
    connection: ConnectionOpt = None,
    config: ConfigOpt = None,
    modules: ModulesOpt = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh", help="Ignore saved watermarks and read everything (default: off)."
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            metavar="N",
            help=f"Modules read at once: 1 to {MAX_WORKERS} (Zoho's limit of concurrent calls; "
            "default: the config file's tuning.workers, else 4).",
            show_default=False,
        ),
    ] = None,
    max_credits: Annotated[
        int | None,
        typer.Option(
            "--max-credits",
            min=1,
            metavar="N",
            help="Stop cleanly before spending more API credits (default: no limit).",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bars (default: on a terminal only)."
        ),
    ] = None,
    partition_by: PartitionByOpt = None,
) -> None:
    """Extract modules into DIR/<Module>/ as typed, incremental Parquet."""

    def action() -> int:
        from connector.run.progress import make_progress
        from connector.run.sync import run_extract

        _check_workers(workers)
        names = split_modules(modules)
        settings = with_partition_by(load_cli_settings(connection, config), partition_by)
        if settings.partition_by is not None and not full_refresh:
            # Before any credit is spent: an existing dataset keeps its layout.
            from connector.lake.layout import refuse_mixed_layouts
            from connector.lake.output import Output

            refuse_mixed_layouts(Output.open(output), names, settings.partition_by)
        show = sys.stderr.isatty() if progress is None else progress
        stop = StopSignal()
        with _stop_on_signals(stop):
            manifest = run_extract(
                settings,
                output,
                modules=names,
                full_refresh=full_refresh,
                workers=workers,
                max_credits=max_credits,
                progress=make_progress(show and cli_globals.log_format == "text"),
                stop=stop,
            )
        if cli_globals.log_format == "json":
            # JSON logs: the summary is events on stderr, and stdout carries nothing else.
            log_events(manifest.summary_events())
        else:
            for line in manifest.summary_lines():
                typer.echo(line)
        if stop.abandon:
            # The abandoned threads are still inside their calls, and the interpreter would
            # wait for them on its way out: their locks are released and the manifest is
            # written, so leave now.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(manifest.exit_code)
        return int(manifest.exit_code)

    code = run_command(action)
    if code:
        raise typer.Exit(code)


def _say(message: str, signum: int) -> None:
    """One line on stderr from a signal handler: ``os.write``, which takes no Python lock (the
    interrupted code may be inside ``sys.stderr.write``)."""
    if cli_globals.log_format == "json":
        name = signal.Signals(signum).name
        line = json.dumps(
            {"event": "stopping", "level": "WARNING", "signal": name, "message": message}
        )
    else:
        line = message
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode("utf-8"))


@contextlib.contextmanager
def _stop_on_signals(stop: StopSignal) -> Iterator[None]:
    """SIGINT and SIGTERM ask ``stop`` to stop the run (the first at the next call, the second
    at once) instead of killing the process mid-write; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers (an embedding caller's thread)
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        count = stop.request(signum)
        _say(_STOPPING if count == 1 else _STOPPING_NOW, signum)
        stop.interrupt()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_workers(workers: int | None) -> None:
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(
            f"--workers must be from 1 to {MAX_WORKERS} (Zoho allows {MAX_WORKERS} concurrent "
            f"calls per org), not {workers}"
        )


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the same facts as one JSON document on stdout (default: a table)."
    ),
]


@app.command(epilog=command_epilog("zoho-crm plan -o ./lake --modules Leads"))
def plan(
    connection: ConnectionOpt = None,
    config: ConfigOpt = None,
    modules: ModulesOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Output whose watermarks make this an incremental plan (default: none, a full "
            "load).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Price full loads, as extract --full-refresh reads them (default: off).",
        ),
    ] = False,
) -> None:
    """Dry run, reading no records: each module's reader, rows, credits and other readers' prices."""

    def action() -> None:
        from connector.run.plan import build_plan
        from connector.run.planner import format_plan

        result = build_plan(
            load_cli_settings(connection, config),
            modules=split_modules(modules),
            output=output,
            full_refresh=full_refresh,
        )
        typer.echo(_json(_plan_doc(result)) if as_json else format_plan(result))

    run_command(action)


@app.command("modules", epilog=command_epilog("zoho-crm modules --counts"))
def modules_command(
    connection: ConnectionOpt = None,
    config: ConfigOpt = None,
    counts: Annotated[
        bool, typer.Option("--counts/--no-counts", help="Count records (1 credit per module).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List modules with field counts, record counts (with --counts) and the readers that serve each."""

    def action() -> None:
        from connector.run.catalog import build_catalog, format_catalog
        from connector.zoho.http import ZohoClient

        with ZohoClient(load_cli_settings(connection, config)) as client:
            rows = build_catalog(client, counts=counts)
            if as_json:
                doc = {
                    "modules": [asdict(row) for row in rows],
                    "readable": sum(1 for row in rows if row.readers),
                    "credits_spent": client.meter.total,
                }
                typer.echo(_json(doc))
                return
            typer.echo(format_catalog(rows))
            typer.echo(f"credits spent: {client.meter.total}")

    run_command(action)


def _json(doc: object) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _plan_doc(result: Plan) -> dict[str, Any]:
    """The plan's facts as ``format_plan`` prints them, as JSON (rows null where unknown)."""
    return {
        "api_type": result.api_type,
        "use_coql": result.use_coql,
        "modules": [asdict(m) for m in result.modules],
        "discovery_credits": result.discovery_credits,
        "estimated_total_credits": result.total_credits,
        "rows_unknown": any(m.estimated_rows is None and m.error is None for m in result.modules),
        "spent_credits": result.spent_credits,
        "warnings": list(result.warnings),
    }
