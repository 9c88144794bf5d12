"""Commands that read what an output DIR holds: state, runs, snapshot.

Each takes the output DIR as ``-o/--output``, like ``extract``, or as its first argument.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from connector.cli.app import DirArg, OutputOpt, app, command_epilog, output_dir, run_command
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.lake.inventory import ModuleSummary
    from connector.lake.manifest import RunRecord

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the same facts as one JSON document on stdout (default: a table)."
    ),
]


def _existing_output(url: str) -> Any:
    """The :class:`Output` at ``url``; a ConfigError when nothing is there."""
    from connector.lake.output import Output

    out = Output.open(url)
    if not out.exists(""):
        raise ConfigError(f"{url} does not exist: give the directory extract wrote (-o/--output)")
    return out


def _json(doc: object) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


@app.command(epilog=command_epilog("zoho-crm state -o ./lake --module Leads"))
def state(
    directory: DirArg = None,
    output: OutputOpt = None,
    module: Annotated[
        str | None,
        typer.Option(
            "--module",
            "-m",
            metavar="MODULE",
            help="One module only (default: every module).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per module: rows, files, bytes, tombstones, watermark, last run and its status, reader."""

    def action() -> None:
        from connector.lake.inventory import Inventory, pick_module, state_modules

        url = output_dir(directory, output)
        out = _existing_output(url)
        names = state_modules(out)
        if not names:
            raise ConfigError(f"{url} holds no state: nothing has been extracted into it yet")
        if module is not None:
            names = [pick_module(module, names, url)]
        inventory = Inventory(url)
        summaries = [inventory.summary(name) for name in names]
        if as_json:
            typer.echo(_json({"output": url, "modules": [s.to_dict() for s in summaries]}))
        else:
            typer.echo(format_state(summaries))

    run_command(action)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _when(iso: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` UTC (the tables say UTC once, in the header)."""
    if iso is None:
        return "-"
    from datetime import datetime, timezone

    value = datetime.fromisoformat(iso).astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], numeric: set[int]
) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(r)
        ).rstrip()
        for r in [header, *rows]
    ]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def format_state(summaries: list[ModuleSummary]) -> str:
    """``zoho-crm state`` as a table: one line per module, then the totals."""
    header = (
        "module",
        "rows",
        "files",
        "size",
        "deleted",
        "watermark (UTC)",
        "last run",
        "status",
        "reader",
    )
    rows = [
        (
            s.module,
            f"{s.records.rows:,}",
            f"{s.records.files:,}",
            _size(s.records.bytes),
            f"{s.tombstones.rows:,}",
            _when(s.watermark),
            s.last_run_id or "-",
            s.last_run_status or "-",
            s.reader or "-",
        )
        for s in summaries
    ]
    lines = _table(header, rows, {1, 2, 3, 4})
    lines.extend(
        f"{s.module}: {s.last_run_error}"
        for s in summaries
        if s.last_run_error and s.last_run_status != "ok"
    )
    total_bytes = sum(s.records.bytes + s.tombstones.bytes for s in summaries)
    lines.append(
        f"{_plural(len(summaries), 'module')}, "
        f"{_plural(sum(s.records.rows for s in summaries), 'row')}, "
        f"{_plural(sum(s.records.files + s.tombstones.files for s in summaries), 'file')}, "
        f"{_size(total_bytes)}"
    )
    return "\n".join(lines)


@app.command(epilog=command_epilog("zoho-crm runs -o ./lake --last 10"))
def runs(
    directory: DirArg = None,
    output: OutputOpt = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--last", min=1, help="Only the newest N runs (default: every run).", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The runs recorded in DIR/_runs/, newest first: when, modules, rows, credits, exit status."""

    def action() -> None:
        from connector.lake.manifest import read_runs

        url = output_dir(directory, output)
        records = read_runs(_existing_output(url))
        if not records:
            raise ConfigError(f"{url} holds no run manifests (_runs/): no extract has run there")
        records = records[:last] if last is not None else records
        if as_json:
            typer.echo(_json({"output": url, "runs": [_run_doc(r) for r in records]}))
        else:
            typer.echo(format_runs(records))

    run_command(action)


def _run_doc(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": run.duration_s,
        "status": run.status,
        "exit_code": run.exit_code,
        "rows": run.rows,
        "credits": run.credits,
        "message": run.message,
        "modules": [
            {
                "module": m.module,
                "status": m.status,
                "reader": m.reader,
                "rows": m.rows,
                "tombstones": m.tombstones,
                "credits": m.credits,
                "error": m.error,
            }
            for m in run.modules
        ],
    }


def _modules_cell(run: RunRecord) -> str:
    names = [m.module for m in run.modules]
    if len(names) <= 3:
        return ",".join(names) or "-"
    return f"{len(names)} modules"


def format_runs(records: list[RunRecord]) -> str:
    """``zoho-crm runs`` as a table, newest first."""
    header = ("run", "started (UTC)", "status", "exit", "modules", "rows", "credits")
    rows = [
        (
            r.run_id,
            _when(r.started_at),
            r.status,
            "-" if r.exit_code is None else str(r.exit_code),
            _modules_cell(r),
            f"{r.rows:,}",
            f"{r.credits:,}",
        )
        for r in records
    ]
    lines = _table(header, rows, {3, 5, 6})
    lines.append(_plural(len(records), "run"))
    return "\n".join(lines)


@app.command(
    epilog=command_epilog("zoho-crm snapshot -o ./lake --module Leads --out leads_now.parquet")
)
def snapshot(
    module: Annotated[
        str, typer.Option("--module", "-m", metavar="MODULE", help="Module to materialise.")
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            metavar="FILE_OR_DIR",
            help="Where to write: FILE.parquet (one file) or a directory (a dataset), outside DIR.",
        ),
    ],
    directory: DirArg = None,
    output: OutputOpt = None,
) -> None:
    """Write a module as it is now: latest version per id, minus deleted records."""

    def action() -> None:
        from connector.lake.snapshot import materialise_snapshot

        url = output_dir(directory, output)
        if not module:
            raise ConfigError("snapshot needs --module M: the module to materialise")
        if not out:
            raise ConfigError("snapshot needs --out FILE.parquet or --out DIRECTORY")
        result = materialise_snapshot(url, module, out)
        typer.echo(f"{result.rows} rows -> {result.path}")

    run_command(action)
