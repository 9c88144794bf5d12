"""Commands that talk to Zoho: check, extract, plan, modules."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from connector.cli.app import (
    ConfigOpt,
    ConnectionOpt,
    ModulesOpt,
    app,
    cli_globals,
    load_cli_settings,
    run_command,
    split_modules,
)
from connector.errors import ConfigError
from connector.run.workers import MAX_WORKERS


@app.command()
def check(connection: ConnectionOpt = None, config: ConfigOpt = None) -> None:
    """Validate settings, obtain a token, read the org and compare granted and needed scopes."""

    def action() -> None:
        from connector.run.check import format_check, run_check

        report = run_check(load_cli_settings(connection, config))
        typer.echo(format_check(report))

    run_command(action)


@app.command()
def extract(
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output directory or URL (s3://…).")
    ],
    connection: ConnectionOpt = None,
    config: ConfigOpt = None,
    modules: ModulesOpt = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Ignore saved watermarks and read everything.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            help=f"Modules read at once: 1 to {MAX_WORKERS} (Zoho's limit of concurrent calls).",
            show_default=False,
        ),
    ] = None,
    max_credits: Annotated[
        int | None,
        typer.Option("--max-credits", min=1, help="Stop cleanly before spending more API credits."),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bars (default: on a terminal only)."
        ),
    ] = None,
) -> None:
    """Extract modules into DIR/<Module>/ as typed, incremental Parquet."""

    def action() -> int:
        from connector.run.progress import make_progress
        from connector.run.sync import run_extract

        _check_workers(workers)
        settings = load_cli_settings(connection, config)
        show = sys.stderr.isatty() if progress is None else progress
        manifest = run_extract(
            settings,
            output,
            modules=split_modules(modules),
            full_refresh=full_refresh,
            workers=workers,
            max_credits=max_credits,
            progress=make_progress(show and cli_globals.log_format == "text"),
        )
        for line in manifest.summary_lines():
            typer.echo(line)
        return int(manifest.exit_code)

    code = run_command(action)
    if code:
        raise typer.Exit(code)


def _check_workers(workers: int | None) -> None:
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(
            f"--workers must be from 1 to {MAX_WORKERS} (Zoho allows {MAX_WORKERS} concurrent "
            f"calls per org), not {workers}"
        )


@app.command()
def plan(
    connection: ConnectionOpt = None,
    config: ConfigOpt = None,
    modules: ModulesOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Output whose watermarks make this an incremental plan."
        ),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option("--full-refresh", help="Price full loads, as extract --full-refresh reads."),
    ] = False,
) -> None:
    """Dry run: the reader, estimated rows and credits per module, and what the other readers
    would cost, reading no records."""

    def action() -> None:
        from connector.run.plan import build_plan
        from connector.run.planner import format_plan

        result = build_plan(
            load_cli_settings(connection, config),
            modules=split_modules(modules),
            output=output,
            full_refresh=full_refresh,
        )
        typer.echo(format_plan(result))

    run_command(action)


@app.command("modules")
def modules_command(
    connection: ConnectionOpt = None,
    config: ConfigOpt = None,
    counts: Annotated[
        bool, typer.Option("--counts/--no-counts", help="Count records (1 credit per module).")
    ] = False,
) -> None:
    """List modules with field counts, record counts (with --counts) and the readers that serve each."""

    def action() -> None:
        from connector.run.catalog import build_catalog, format_catalog
        from connector.zoho.http import ZohoClient

        with ZohoClient(load_cli_settings(connection, config)) as client:
            rows = build_catalog(client, counts=counts)
            typer.echo(format_catalog(rows))
            typer.echo(f"credits spent: {client.meter.total}")

    run_command(action)
