"""Commands that start the embedded simulator: simulate, demo."""

from __future__ import annotations

from typing import Annotated

import typer

from connector.cli.app import app, run_command


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

    run_command(action)


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

    run_command(action)
