"""Commands that read what an output DIR holds: state, snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.cli.app import app, command_epilog, run_command


@app.command(epilog=command_epilog("zoho-crm state ./lake --module Leads"))
def state(
    output: Annotated[
        str, typer.Argument(metavar="DIR", help="The extract's output directory or URL.")
    ],
    module: Annotated[
        str | None,
        typer.Option(
            "--module", "-m", metavar="MODULE", help="One module only (default: every module)."
        ),
    ] = None,
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

    run_command(action)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@app.command(
    epilog=command_epilog("zoho-crm snapshot ./lake --module Leads --out leads_now.parquet")
)
def snapshot(
    output: Annotated[str, typer.Argument(metavar="DIR", help="The extract's output directory.")],
    module: Annotated[
        str, typer.Option("--module", "-m", metavar="MODULE", help="Module to materialise.")
    ],
    out: Annotated[
        str,
        typer.Option("--out", metavar="FILE_OR_DIR", help="A .parquet file or a directory."),
    ],
) -> None:
    """Write a module as it is now: latest version per id, minus deleted records."""

    def action() -> None:
        from connector.lake.snapshot import materialise_snapshot

        result = materialise_snapshot(output, module, out)
        typer.echo(f"{result.rows} rows -> {result.path}")

    run_command(action)
