"""``zoho-crm unlock``: remove a module's lock whose run is gone, after saying who held it.

A lock is a lease that the next run takes over once it expires (see
:mod:`connector.lake.locks`); this is for whoever cannot wait that long, and for lock files
written by versions without a lease.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from connector.cli.app import DirArg, OutputOpt, app, command_epilog, output_dir, run_command
from connector.errors import ConfigError, LockError

if TYPE_CHECKING:
    from connector.lake.output import Output


def _lock_of(out: Output, module: str) -> tuple[str, str]:
    """(the module's name as the lock file spells it, the lock's path in ``out``).

    ``leads`` finds ``Leads.lock``: Zoho's spelling names the file, the user's may differ in case.
    """
    from connector.lake.state import STATE_DIR, StateStore

    wanted = StateStore.lock_path(module)
    for rel in out.list_files(STATE_DIR, ".lock"):
        if rel.lower() == wanted.lower():
            return rel[len(STATE_DIR) + 1 : -len(".lock")], rel
    name = StateStore(out).stored_name(module)  # no lock: still Zoho's spelling, from the state
    return name, StateStore.lock_path(name)


@app.command(epilog=command_epilog("zoho-crm unlock ./lake --module Leads"))
def unlock(
    module: Annotated[
        str,
        typer.Option("--module", "-m", metavar="MODULE", help="The module whose lock to remove."),
    ],
    directory: DirArg = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Remove it without asking (required without a terminal; default: ask first).",
        ),
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Remove MODULE's lock in DIR after showing who holds it; only once that run is gone."""

    def action() -> None:
        from connector.lake.locks import break_lock, describe_holder, read_lock
        from connector.lake.output import Output

        out = Output.open(output_dir(directory, output))
        name, rel = _lock_of(out, module)
        held = read_lock(out, rel)
        if held is None:
            raise ConfigError(f"{name} has no lock in {out.describe('')}: nothing to unlock")
        typer.echo(f"{name} is locked by {describe_holder(held)}; lock file {out.describe(rel)}")
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError(
                    "not removing a lock without confirmation: run this on a terminal, or add "
                    "--yes once you know that run is gone"
                )
            if not typer.confirm("Remove it? Only if that run is gone", default=False):
                typer.echo("left in place")
                raise typer.Exit(1)
        if not break_lock(out, rel, held):
            raise LockError(
                f"the lock of {name} changed meanwhile (its run renewed it, or another took it "
                "over): left in place; run unlock again to see who holds it now"
            )
        typer.echo(f"{name}: lock removed")

    run_command(action)
