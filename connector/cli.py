"""The ``zoho-crm`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _root() -> None:
    """Extract Zoho CRM modules into typed, incremental Parquet."""


def main() -> None:
    """Entry point of the ``zoho-crm`` console script."""
    app()
