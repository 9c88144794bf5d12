"""The command line's shared pieces: the Typer app, global options, and one error line per failure.

Every command turns a :class:`~connector.errors.ConnectorError` into one line on stderr and the
error's exit code (2 configuration, 3 authentication, 4 credits, 5 lock, 1 anything else). A
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from connector.errors import ConfigError, ConnectorError
from connector.redact import redact

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
class CliGlobals:
    debug: bool = False
    log_format: str = "text"


cli_globals = CliGlobals()
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
    cli_globals.debug = debug
    cli_globals.log_format = log_format
    configure_logging("DEBUG" if debug else "INFO", "json" if log_format == "json" else "text")


def _fail(error: BaseException) -> None:
    """Print one line for ``error`` and exit with its code."""
    if isinstance(error, ConnectorError):
        code = error.exit_code
        message = str(error)
    else:
        code = 1
        message = f"unexpected {type(error).__name__}: {error} (run with --debug for details)"
    if cli_globals.debug:
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


def load_cli_settings(connection: str | None, config: Path | None) -> Settings:
    from connector.config import load_settings

    loaded = load_settings(connection=connection, config_file=config)
    for warning in loaded.warnings:
        log.warning(warning)
    return loaded.settings


def split_modules(modules: str | None) -> list[str] | None:
    """The names given to ``--modules``; None when the option is absent (every module).

    An empty value (``--modules ''``, or only commas and spaces) is an error, not "everything":
    a scheduler that fills the option from an empty variable must not extract the whole org.
    """
    if modules is None:
        return None
    names = [name.strip() for name in modules.split(",") if name.strip()]
    if not names:
        raise ConfigError(
            "--modules names no module: give API names such as --modules Leads,Contacts, "
            "or leave the option out to extract every module"
        )
    return names


def run_command(action: Callable[[], T]) -> T:
    with _errors():
        return action()
    raise AssertionError("unreachable")  # pragma: no cover
