"""The ``zoho-crm`` command line: extract, check, modules, plan, state, snapshot, compact, unlock,
auth, simulate, demo.

``app.py`` holds the Typer app and what every command shares; each ``*_commands`` module adds a
family of commands to it when imported.
"""

from __future__ import annotations

# The order of these imports is the order of the commands in --help: work first, tools after.
# isort: off
from connector.cli import zoho_commands  # noqa: F401  (importing a module registers its commands)
from connector.cli import inspect_commands  # noqa: F401
from connector.cli import lock_commands  # noqa: F401
from connector.cli import maintenance_commands  # noqa: F401
from connector.cli import auth_commands  # noqa: F401
from connector.cli import simulator_commands  # noqa: F401

# isort: on
from connector.cli.app import app
from connector.run.process import prepare_process

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``zoho-crm`` console script."""
    # Before anything imports Arrow: it chooses its allocator once, when imported.
    prepare_process()
    app()
