"""The command line's shared pieces: the Typer app, global options, and one error line per failure.

Every command turns a :class:`~connector.errors.ConnectorError` into one line on stderr and the
error's exit code (:data:`EXIT_CODES`); a JSON object with ``--log-format json``. A traceback is
shown only with ``--debug``. The global options ``--debug`` and ``--log-format`` may come before or
after the command's name. ``extract`` handles SIGINT and SIGTERM itself (see ``zoho_commands.py``);
for the other commands Ctrl-C is one line and exit 130.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from connector.errors import ConfigError, ConnectorError
from connector.logging_setup import FACTS, json_line
from connector.redact import redact

try:  # Typer >= 0.25 carries its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click.exceptions import (  # type: ignore[assignment,unused-ignore]
        NoArgsIsHelpError,
        UsageError,
    )

if TYPE_CHECKING:
    from connector.config import Settings

log = logging.getLogger("connector.cli")

# Exit codes, the same in --help, in the README and in every part of the connector.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "ok"),
    (1, "a module failed (the others still ran; see the manifest) or an unexpected error"),
    (2, "configuration or bad input, named in the error line; an unusable output location"),
    (3, "credentials, scopes or region: fix the credential the error names"),
    (4, "Zoho's daily credits or --max-credits reached: stopped cleanly, rerun later to resume"),
    (5, "another extract holds this module's lock in this output"),
    (6, "Zoho unreachable (DNS, connection refused or timed out, TLS): rerun later"),
    (7, "writing the output failed mid-run (no space left, I/O error): fix it, rerun to resume"),
    (130, "interrupted (Ctrl-C)"),
    (143, "stopped by SIGTERM"),
)

# Help conventions: every command and option follows them; apply them to new ones too.
# - Every option has help= text: one short sentence saying what it does. Typer shows a value
#   default as "[default: …]"; when there is none to show (a None default, a plain flag), the
#   sentence ends with the default in words: "(default: all modules)", "(default: off)".
# - An option that takes a value has an upper-case metavar naming what to give (DIR, FILE, N,
#   TEXT, SECONDS, SHARE, …); flags have none. _HelpGroup fills in a missing one from the type,
#   so help never shows Typer's "<str>" or "<bool>".
# - Every command passes epilog=command_epilog("zoho-crm … one real example"): the example, then
#   the exit codes on one line. The root --help lists the exit codes one per line.
# - Counts shown to users are worded with connector.logging_setup.counted: "1 page", "2 pages".
# - Errors are raised as ConnectorError subclasses inside run_command: one line, an exit code
#   from EXIT_CODES, a JSON object with --log-format json.


def command_epilog(example: str) -> str:
    """The end of a command's --help: one example, then the exit codes on one line."""
    codes = ", ".join(f"{code} {_short(meaning)}" for code, meaning in EXIT_CODES)
    return f"Example: {example}\n\nExit codes: {codes}."


def _short(meaning: str) -> str:
    return meaning.split(":")[0].split(" (")[0].split(";")[0]


def _root_epilog() -> str:
    lines = [f"{code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    return (
        'Example: ZOHO_CRM_CONNECTION="$(cat ~/.zoho-crm.conn)" zoho-crm extract -o ./lake\n\n'
        "Global options may also come after the command: zoho-crm extract -o ./lake "
        "--log-format json\n\nExit codes:\n\n" + "\n\n".join(lines)
    )


# Options of the root command that may also be written after the command's name.
_GLOBAL_FLAGS = frozenset({"--debug"})
_GLOBAL_VALUED = frozenset({"--log-format"})


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """``args`` with the global options moved in front of the command's name (order kept).

    Click reads the root's options only before the command's name; a scheduler's command line
    often appends ``--log-format json`` at the end. Nothing after ``--`` is moved.
    """
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg in _GLOBAL_FLAGS or ("=" in arg and arg.split("=", 1)[0] in _GLOBAL_VALUED):
            front.append(arg)
        elif arg in _GLOBAL_VALUED and index + 1 < len(args):
            front += [arg, args[index + 1]]
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


def _requested_log_format(args: Sequence[str]) -> str:
    """The last ``--log-format`` value in ``args`` (text when none or not understood)."""
    found = "text"
    for index, arg in enumerate(args):
        if arg.startswith("--log-format="):
            found = arg.split("=", 1)[1]
        elif arg == "--log-format" and index + 1 < len(args):
            found = args[index + 1]
    return found if found in ("text", "json") else "text"


class _PlainOption(TyperOption):
    """An option whose help shows its metavar (or one derived from its type), never ``<str>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        if self.metavar:
            return self.metavar
        # Typer writes the type as "<int>", "<str>", "<int range>", "<path>".
        typed = self.display_type(ctx).strip("<>").removesuffix(" range")
        return _TYPE_METAVARS.get(typed, typed.upper())


class _PlainArgument(TyperArgument):
    """An argument whose help shows its name (or metavar) only, without Typer's ``<str>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


_TYPE_METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT", "bool": "BOOLEAN"}


def _plain_option(option: Any) -> Any:
    """``option`` (a command's ``--help``, made on demand) with the plain display."""
    if type(option) is TyperOption:
        option.__class__ = _PlainOption
    return option


class _PlainCommand(TyperCommand):
    """A command with plain help (see :func:`_plain_help`)."""

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_option(super().get_help_option(ctx))


class _PlainGroup(TyperGroup):
    """A group of commands (``auth``) with plain help."""

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_option(super().get_help_option(ctx))


def _plain_help(command: Any) -> None:
    """Give ``command``, its parameters and its subcommands the plain help display.

    Typer builds the commands when the CLI starts; the classes are swapped for subclasses that only
    change how help shows a parameter's type, so every command gets it, including the ones other
    modules add, without each option repeating a metavar.
    """
    swaps: dict[type, type] = {
        TyperOption: _PlainOption,
        TyperArgument: _PlainArgument,
        TyperCommand: _PlainCommand,
        TyperGroup: _PlainGroup,
    }
    for item in [command, *getattr(command, "params", [])]:
        plain = swaps.get(type(item))
        if plain is not None:
            item.__class__ = plain
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


class _HelpGroup(TyperGroup):
    """The root command: plain metavars in help, global options anywhere, JSON usage errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self)

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_option(super().get_help_option(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = hoist_global_options(args)
        # Known before parsing, so that a usage error is already written in the asked format.
        cli_globals.debug = "--debug" in args
        cli_globals.log_format = _requested_log_format(args)
        with _usage_errors():
            return list(super().parse_args(ctx, args))
        raise AssertionError("unreachable")  # pragma: no cover

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors():
            return super().invoke(ctx)
        raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _usage_errors() -> Iterator[None]:
    """With JSON logs, a usage error (unknown option, missing value) is one JSON object too."""
    try:
        yield
    except UsageError as error:
        if cli_globals.log_format != "json" or isinstance(error, NoArgsIsHelpError):
            raise
        _say_error(error.format_message(), error.exit_code, "UsageError")
        raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=_HelpGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Extract Zoho CRM modules into typed, incremental Parquet.",
    epilog=_root_epilog(),
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
        metavar="TEXT",
        help="Loome-style connection string; visible to ps, so prefer ZOHO_CRM_CONNECTION or "
        "--config (default: from the environment or --config).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="TOML settings file, owner-only (0600) if it holds secrets; see config.example.toml "
        "(default: none).",
        show_default=False,
    ),
]
ModulesOpt = Annotated[
    str | None,
    typer.Option(
        "--modules",
        "-m",
        metavar="A,B",
        help="Comma-separated module API names (default: all API-supported modules and Users).",
        show_default=False,
    ),
]
PartitionByOpt = Annotated[
    str | None,
    typer.Option(
        "--partition-by",
        help="Partition folders: day, month, year or none (default: month for a new dataset, "
        "an existing one keeps its own; config file: output.partition_by).",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoho-crm {_installed_version()}")
        raise typer.Exit(0)


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zoho-crm-connector")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        from connector import __version__

        return __version__


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show tracebacks and debug logs, before or after the command (default: off).",
        ),
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="text|json",
            help="Log lines on stderr: text, or json (one object per line: logs, the run summary "
            "and errors); before or after the command.",
        ),
    ] = "text",
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit (default: off).",
        ),
    ] = False,
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
    if cli_globals.debug and cli_globals.log_format != "json":
        traceback.print_exception(error, file=sys.stderr)
    _say_error(message, code, type(error).__name__, error if cli_globals.debug else None)
    raise typer.Exit(code)


def _say_error(message: str, code: int, kind: str, error: BaseException | None = None) -> None:
    """The one error line on stderr: ``error: …``, or a JSON object with ``--log-format json``."""
    if cli_globals.log_format != "json":
        typer.echo(f"error: {redact(message)}", err=True)
        return
    fields: dict[str, Any] = {"event": "error", "exit_code": code, "error": kind}
    if error is not None:
        fields["exception"] = "".join(traceback.format_exception(error))
    typer.echo(json_line(redact(message), level="ERROR", **fields), err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn every failure inside a command into one line and an exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        _say_error("interrupted", 130, "KeyboardInterrupt")
        raise typer.Exit(130) from None
    except Exception as error:
        _fail(error)


def load_cli_settings(connection: str | None, config: Path | None) -> Settings:
    from connector.config import load_settings

    loaded = load_settings(connection=connection, config_file=config)
    for warning in loaded.warnings:
        log.warning(warning)
    return loaded.settings


def with_partition_by(settings: Settings, partition_by: str | None) -> Settings:
    """``settings`` with ``--partition-by`` (validated) over the configured granularity."""
    if partition_by is None:
        return settings
    from connector.config import parse_partition_by

    return settings.model_copy(update={"partition_by": parse_partition_by(partition_by)})


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


def log_events(events: Sequence[dict[str, Any]]) -> None:
    """Log each event (``level``, ``message`` and fields) as one record: one JSON object each."""
    for event in events:
        fields = dict(event)
        level = logging.getLevelName(str(fields.pop("level", "INFO")))
        log.log(
            level if isinstance(level, int) else logging.INFO,
            fields.pop("message", ""),
            extra={FACTS: fields},
        )


def run_command(action: Callable[[], T]) -> T:
    with _errors():
        return action()
    raise AssertionError("unreachable")  # pragma: no cover


# The output DIR: `-o/--output` on every command, or (for commands that only read or maintain a
# DIR) the first argument, as extract's users type it.
DirArg = Annotated[
    str | None,
    typer.Argument(
        metavar="DIR",
        help="The extract's output directory or URL (the same as -o/--output).",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="The extract's output directory or URL (s3://…), as given to extract (default: the "
        "DIR argument).",
        show_default=False,
    ),
]


def output_dir(positional: str | None, option: str | None) -> str:
    """The output DIR, given as ``-o/--output`` or as the first argument (not two different)."""
    if positional is not None and option is not None and positional != option:
        raise ConfigError(f"two output directories given ({positional} and {option}): give one")
    chosen = option if option is not None else positional
    if not chosen:
        raise ConfigError("no output directory: give it with -o/--output DIR")
    return chosen
