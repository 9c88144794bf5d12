"""Commands that maintain what an output DIR holds, without calling Zoho: compact."""

from __future__ import annotations

from typing import Annotated

import typer

from connector.cli.app import (
    DirArg,
    OutputOpt,
    PartitionByOpt,
    app,
    command_epilog,
    output_dir,
    run_command,
)


@app.command(
    epilog=command_epilog("zoho-crm compact ./zoho-out --module Leads --partition-by month")
)
def compact(
    module: Annotated[
        str, typer.Option("--module", "-m", metavar="MODULE", help="Module to compact.")
    ],
    directory: DirArg = None,
    partition_by: PartitionByOpt = None,
    output: OutputOpt = None,
) -> None:
    """Merge a module's small files into few large ones, every row version kept; no credits.

    With --partition-by, rewrite them at another granularity instead.
    """

    def action() -> None:
        from connector.config import parse_partition_by
        from connector.lake.compact import compact_module

        wanted = parse_partition_by(partition_by) if partition_by is not None else None
        result = compact_module(output_dir(directory, output), module, partition_by=wanted)
        typer.echo(result.summary())

    run_command(action)
