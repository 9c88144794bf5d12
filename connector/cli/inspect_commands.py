"""Commands that read what an output DIR holds: state, snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.cli.app import app, run_command


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

    run_command(action)


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

    run_command(action)
