"""The ``zoho-crm`` command line: extract, check, modules, plan, state, snapshot, auth, simulate, demo.

Every command turns a :class:`~connector.errors.ConnectorError` into one line on stderr and the
error's exit code (2 configuration, 3 authentication, 4 credits, 5 lock, 1 anything else). A
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from connector.errors import ConfigError, ConnectorError
from connector.redact import redact
from connector.run.workers import MAX_WORKERS

if TYPE_CHECKING:
    from connector.config import Settings

log = logging.getLogger("connector.cli")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Extract Zoho CRM modules into typed, incremental Parquet.",
)
auth_app = typer.Typer(no_args_is_help=True, help="Obtain OAuth tokens without hand-built URLs.")
app.add_typer(auth_app, name="auth")


@dataclass
class _Globals:
    debug: bool = False
    log_format: str = "text"


_globals = _Globals()
T = TypeVar("T")

ConnectionOpt = Annotated[
    str | None,
    typer.Option(
        "--connection",
        "-c",
        help="Loome-style connection string (or set ZOHO_CRM_CONNECTION).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML settings file (see config.example.toml).", show_default=False
    ),
]
ModulesOpt = Annotated[
    str | None,
    typer.Option(
        "--modules",
        "-m",
        help="Comma-separated module API names (default: all).",
        show_default=False,
    ),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", help="Log format: text or json (one object per line).")
    ] = "text",
) -> None:
    """Extract Zoho CRM modules into typed, incremental Parquet."""
    from connector.logging_setup import configure_logging

    if log_format not in ("text", "json"):
        _fail(ConfigError(f"--log-format must be 'text' or 'json', not {log_format!r}"))
    _globals.debug = debug
    _globals.log_format = log_format
    configure_logging("DEBUG" if debug else "INFO", "json" if log_format == "json" else "text")


def _fail(error: BaseException) -> None:
    """Print one line for ``error`` and exit with its code."""
    if isinstance(error, ConnectorError):
        code = error.exit_code
        message = str(error)
    else:
        code = 1
        message = f"unexpected {type(error).__name__}: {error} (run with --debug for details)"
    if _globals.debug:
        traceback.print_exception(error, file=sys.stderr)
    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn every failure inside a command into one line and an exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as error:
        _fail(error)


def _settings(connection: str | None, config: Path | None) -> Settings:
    from connector.config import load_settings

    loaded = load_settings(connection=connection, config_file=config)
    for warning in loaded.warnings:
        log.warning(warning)
    return loaded.settings


def _split(modules: str | None) -> list[str] | None:
    if not modules:
        return None
    names = [name.strip() for name in modules.split(",") if name.strip()]
    return names or None


def _run(action: Callable[[], T]) -> T:
    with _errors():
        return action()
    raise AssertionError("unreachable")  # pragma: no cover


@app.command()
def check(connection: ConnectionOpt = None, config: ConfigOpt = None) -> None:
    """Validate settings, obtain a token, read the org and compare granted and needed scopes."""

    def action() -> None:
        from connector.run.check import format_check, run_check

        report = run_check(_settings(connection, config))
        typer.echo(format_check(report))

    _run(action)


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
        settings = _settings(connection, config)
        show = sys.stderr.isatty() if progress is None else progress
        manifest = run_extract(
            settings,
            output,
            modules=_split(modules),
            full_refresh=full_refresh,
            workers=workers,
            max_credits=max_credits,
            progress=make_progress(show and _globals.log_format == "text"),
        )
        for line in manifest.summary_lines():
            typer.echo(line)
        return int(manifest.exit_code)

    code = _run(action)
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
) -> None:
    """Dry run: the reader, estimated rows and credits per module, reading no records."""

    def action() -> None:
        from connector.run.plan import build_plan
        from connector.run.planner import format_plan

        result = build_plan(_settings(connection, config), modules=_split(modules), output=output)
        typer.echo(format_plan(result))

    _run(action)


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

        with ZohoClient(_settings(connection, config)) as client:
            rows = build_catalog(client, counts=counts)
            typer.echo(format_catalog(rows))
            typer.echo(f"credits spent: {client.meter.total}")

    _run(action)


@app.command()
def state(
    output: Annotated[str, typer.Argument(help="The extract's output directory or URL.")],
    module: Annotated[str | None, typer.Option("--module", "-m", help="One module only.")] = None,
) -> None:
    """Show each module's watermark and last run as stored in DIR/_state/."""

    def action() -> None:
        from connector.lake.output import Output
        from connector.lake.state import StateStore

        out = Output.open(output)
        store = StateStore(out)
        names = (
            [module]
            if module
            else sorted(Path(name).stem for name in out.list_files("_state", ".json"))
        )
        if not names:
            typer.echo("no state: nothing has been extracted into this output yet")
            return
        for name in names:
            current = store.load(name)
            typer.echo(
                json.dumps(
                    {
                        "module": name,
                        "watermark": _iso(current.watermark),
                        "ids_at_watermark": len(current.ids_at_watermark),
                        "remembered": len(current.remembered),
                        "deleted_watermark": _iso(current.deleted_watermark),
                        "last_run_id": current.last_run_id,
                        "reader": current.reader,
                    }
                )
            )

    _run(action)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@app.command()
def snapshot(
    output: Annotated[str, typer.Argument(help="The extract's output directory.")],
    module: Annotated[str, typer.Option("--module", "-m", help="Module to materialise.")],
    out: Annotated[str, typer.Option("--out", help="A .parquet file or a directory.")],
) -> None:
    """Write a module as it is now: latest version per id, minus deleted records."""

    def action() -> None:
        from connector.lake.snapshot import materialise_snapshot

        result = materialise_snapshot(output, module, out)
        typer.echo(f"{result.rows} rows -> {result.path}")

    _run(action)


@auth_app.command("url")
def auth_url(
    client_id: Annotated[
        str, typer.Option("--client-id", help="OAuth client id from api-console.zoho.com.")
    ],
    region: Annotated[
        str, typer.Option("--region", help="Data centre: US, EU, IN, AU, JP, CN, CA, SA, UK.")
    ] = "US",
    redirect_uri: Annotated[
        str | None, typer.Option("--redirect-uri", help="The client's registered redirect URI.")
    ] = None,
    api_type: Annotated[
        str, typer.Option("--api-type", help="Bulk or REST: decides the scopes.")
    ] = "Bulk",
    accounts_server: Annotated[
        str | None, typer.Option("--accounts-server", help="Override the accounts server URL.")
    ] = None,
) -> None:
    """Print the authorization URL to open in a browser, with the scopes the connector needs."""

    def action() -> None:
        from connector.zoho import oauth_setup

        kwargs: dict[str, Any] = {"accounts_server": accounts_server}
        if redirect_uri:
            kwargs["redirect_uri"] = redirect_uri
        url = oauth_setup.authorization_url(
            client_id, region, scopes=oauth_setup.scopes_for(api_type), **kwargs
        )
        typer.echo(url)

    _run(action)


@auth_app.command("exchange")
def auth_exchange(
    code: Annotated[str, typer.Option("--code", help="The grant code from the redirect.")],
    client_id: Annotated[str, typer.Option("--client-id")],
    client_secret: Annotated[
        str, typer.Option("--client-secret", envvar="ZOHO_CRM_OAUTHCLIENTSECRET")
    ],
    region: Annotated[str, typer.Option("--region")] = "US",
    redirect_uri: Annotated[str | None, typer.Option("--redirect-uri")] = None,
    accounts_server: Annotated[
        str | None,
        typer.Option(
            "--accounts-server", help="The accounts-server value given back with the code."
        ),
    ] = None,
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets", help="Print the secret and tokens in the connection string."
        ),
    ] = False,
    write: Annotated[
        Path | None,
        typer.Option(
            "--write",
            help="Also write the full connection string, secrets included, to this file (0600).",
        ),
    ] = None,
) -> None:
    """Trade a grant code for tokens and print a ready connection string."""

    def action() -> None:
        from connector.redact import register_secret
        from connector.zoho import oauth_setup

        register_secret(client_secret)
        kwargs: dict[str, Any] = {"accounts_server": accounts_server}
        if redirect_uri:
            kwargs["redirect_uri"] = redirect_uri
        result = oauth_setup.exchange_code(code, client_id, client_secret, region, **kwargs)
        line = oauth_setup.connection_string_for(
            result,
            client_id=client_id,
            client_secret=client_secret,
            region=region,
            include_secrets=show_secrets,
        )
        if write is not None:
            # The grant code is spent now: keep the full string where only the owner can read it.
            full = oauth_setup.connection_string_for(
                result,
                client_id=client_id,
                client_secret=client_secret,
                region=region,
                include_secrets=True,
            )
            fd = os.open(write, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(full + "\n")
            os.chmod(write, 0o600)
            typer.echo(f"connection string with secrets written to {write} (mode 0600)", err=True)
        # With --show-secrets the user asked for them: printed verbatim, bypassing redaction.
        typer.echo(line)

    _run(action)


@app.command()
def simulate(
    port: Annotated[
        int, typer.Option("--port", "-p", help="Port on 127.0.0.1 (0 = any free port).")
    ] = 8765,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated org.")] = 7,
    records: Annotated[
        int, typer.Option("--records", help="Records in the largest module.")
    ] = 1000,
    token_lifetime: Annotated[
        int, typer.Option("--token-lifetime", help="Access token life, seconds.")
    ] = 3600,
    bulk_page_size: Annotated[
        int, typer.Option("--bulk-page-size", help="Rows per Bulk Read page.")
    ] = 200_000,
    daily_credits: Annotated[
        int | None, typer.Option("--daily-credits", help="Daily API credit budget (default: none).")
    ] = None,
    rate_429: Annotated[
        float, typer.Option("--rate-429", help="Share of calls answered 429.")
    ] = 0.0,
    rate_5xx: Annotated[
        float, typer.Option("--rate-5xx", help="Share of calls answered 5xx.")
    ] = 0.0,
    concurrency_cap: Annotated[
        int | None, typer.Option("--concurrency-cap", help="Calls in flight before 429.")
    ] = None,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Added latency per call.")] = 0,
    fail_bulk_jobs: Annotated[
        int, typer.Option("--fail-bulk-jobs", help="The next N bulk jobs end in FAILURE.")
    ] = 0,
) -> None:
    """Run the local Zoho CRM simulator and print a connection string that works against it."""

    def action() -> None:
        from connector.simulator import serve_forever
        from connector.simulator.faults import FaultConfig

        faults = FaultConfig(
            seed=seed,
            rate_429=rate_429,
            rate_5xx=rate_5xx,
            concurrency_cap=concurrency_cap,
            latency_ms=latency_ms,
            bulk_fail_next=fail_bulk_jobs,
        )
        serve_forever(
            port=port,
            seed=seed,
            records=records,
            token_lifetime=token_lifetime,
            bulk_page_size=bulk_page_size,
            daily_credits=daily_credits,
            faults=faults,
        )

    _run(action)


@app.command()
def demo(
    output: Annotated[
        str, typer.Option("--output", "-o", help="Where the Parquet goes.")
    ] = "./zoho-demo",
    records: Annotated[
        int, typer.Option("--records", help="Records in the largest module.")
    ] = 5000,
    api_type: Annotated[str, typer.Option("--api-type", help="Bulk or REST.")] = "Bulk",
    use_coql: Annotated[
        bool, typer.Option("--coql/--no-coql", help="With REST: COQL or Records API.")
    ] = False,
) -> None:
    """Start the simulator in-process, then run a full and an incremental extraction."""

    def action() -> None:
        from connector.demo import run_demo

        for line in run_demo(output, records=records, api_type=api_type, use_coql=use_coql):
            typer.echo(line)

    _run(action)


def main() -> None:
    """Entry point of the ``zoho-crm`` console script."""
    app()
