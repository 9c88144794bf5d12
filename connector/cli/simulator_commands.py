"""Commands that start the embedded simulator: simulate, demo."""

from __future__ import annotations

import errno
from typing import Annotated

import typer

from connector.cli.app import app, command_epilog, run_command
from connector.errors import ConfigError

# FaultConfig's settings -> the options that set them, so that an error names what was typed.
_FAULT_OPTIONS = {
    "seed": "--seed",
    "rate_429": "--rate-429",
    "rate_5xx": "--rate-5xx",
    "concurrency_cap": "--concurrency-cap",
    "latency_ms": "--latency-ms",
    "bulk_fail_next": "--fail-bulk-jobs",
}


@app.command(
    epilog=command_epilog("zoho-crm simulate --port 8765 --records 100000 --rate-429 0.05")
)
def simulate(
    port: Annotated[
        int,
        typer.Option("--port", "-p", metavar="PORT", help="Port on 127.0.0.1 (0 = any free port)."),
    ] = 8765,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Seed of the generated org.")
    ] = 7,
    records: Annotated[
        int, typer.Option("--records", metavar="N", help="Records in the largest module.")
    ] = 1000,
    token_lifetime: Annotated[
        int,
        typer.Option("--token-lifetime", metavar="SECONDS", help="Access token life in seconds."),
    ] = 3600,
    bulk_page_size: Annotated[
        int, typer.Option("--bulk-page-size", metavar="N", help="Rows per Bulk Read page.")
    ] = 200_000,
    daily_credits: Annotated[
        int | None,
        typer.Option(
            "--daily-credits", metavar="N", help="Daily API credit budget (default: no limit)."
        ),
    ] = None,
    rate_429: Annotated[
        float,
        typer.Option("--rate-429", metavar="SHARE", help="Share of calls answered 429, 0 to 1."),
    ] = 0.0,
    rate_5xx: Annotated[
        float,
        typer.Option("--rate-5xx", metavar="SHARE", help="Share of calls answered 5xx, 0 to 1."),
    ] = 0.0,
    concurrency_cap: Annotated[
        int | None,
        typer.Option(
            "--concurrency-cap",
            metavar="N",
            help="Calls in flight before a 429 (default: no cap).",
        ),
    ] = None,
    latency_ms: Annotated[
        int, typer.Option("--latency-ms", metavar="MS", help="Latency added to every call.")
    ] = 0,
    fail_bulk_jobs: Annotated[
        int,
        typer.Option("--fail-bulk-jobs", metavar="N", help="The next N bulk jobs end in FAILURE."),
    ] = 0,
) -> None:
    """Run the local Zoho CRM simulator and print a connection string that works against it.

    To change its data between two runs, as users would, POST a JSON list of operations to
    /_sim/mutate (the command prints the address when it starts): {"op": "insert", "module":
    "Leads", "values": {...}}, or "update" (with "values") and "delete" naming a record's "id",
    as found in the extracted Parquet. POST /_sim/faults changes the faults while it runs. Stop it
    with Ctrl-C or SIGTERM.
    """

    def action() -> None:
        from connector.simulator import serve_forever
        from connector.simulator.faults import FaultConfig

        _check_simulator_inputs(port, records, token_lifetime, bulk_page_size, daily_credits)
        try:
            faults = FaultConfig(
                seed=seed,
                rate_429=rate_429,
                rate_5xx=rate_5xx,
                concurrency_cap=concurrency_cap,
                latency_ms=latency_ms,
                bulk_fail_next=fail_bulk_jobs,
            )
        except ValueError as exc:
            name, _, rest = str(exc).partition(" ")
            raise ConfigError(f"{_FAULT_OPTIONS.get(name, name)} {rest}") from None
        try:
            serve_forever(
                port=port,
                seed=seed,
                records=records,
                token_lifetime=token_lifetime,
                bulk_page_size=bulk_page_size,
                daily_credits=daily_credits,
                faults=faults,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} is in use: choose another with --port, or 0 for any free port"
                ) from None
            if exc.errno == errno.EACCES:
                raise ConfigError(
                    f"port {port} needs privileges: choose another with --port, or 0 for any "
                    "free port"
                ) from None
            raise

    run_command(action)


def _check_simulator_inputs(
    port: int, records: int, token_lifetime: int, bulk_page_size: int, daily_credits: int | None
) -> None:
    """ConfigError naming the first option out of its range."""
    checks = (
        ("--port", port, 0 <= port <= 65535, "from 0 to 65535"),
        ("--records", records, records >= 0, "0 or more"),
        ("--token-lifetime", token_lifetime, token_lifetime >= 1, "at least 1 second"),
        ("--bulk-page-size", bulk_page_size, bulk_page_size >= 1, "at least 1"),
        (
            "--daily-credits",
            daily_credits,
            daily_credits is None or daily_credits >= 0,
            "0 or more",
        ),
    )
    for option, value, fine, allowed in checks:
        if not fine:
            raise ConfigError(f"{option} must be {allowed}, not {value}")


@app.command(epilog=command_epilog("zoho-crm demo -o ./zoho-demo --records 5000"))
def demo(
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="DIR", help="Where the Parquet goes.")
    ] = "./zoho-demo",
    records: Annotated[
        int, typer.Option("--records", metavar="N", help="Records in the largest module.")
    ] = 5000,
    api_type: Annotated[
        str, typer.Option("--api-type", metavar="Bulk|REST", help="Which API reads full loads.")
    ] = "Bulk",
    use_coql: Annotated[
        bool, typer.Option("--coql/--no-coql", help="With REST: COQL or Records API.")
    ] = False,
) -> None:
    """Start the simulator in-process, then run a full and an incremental extraction."""

    def action() -> None:
        from connector.demo import run_demo

        for line in run_demo(output, records=records, api_type=api_type, use_coql=use_coql):
            typer.echo(line)

    run_command(action)
