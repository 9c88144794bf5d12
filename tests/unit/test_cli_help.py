"""The command line's conventions, checked on every command in-process (the subprocess tests in
tests/integration/test_cli_first_contact.py cover one case of each): help text and a default on
every option, an example and the exit codes on every command, no Typer type placeholders, global
options anywhere, one error line for no connection and for bad simulator values, counts in
agreement, and the README's exit codes the same as --help's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from connector.cli import app
from connector.cli.app import EXIT_CODES, hoist_global_options
from connector.lake.manifest import FileEntry, ModuleReport, RunManifest
from connector.logging_setup import counted
from connector.simulator.faults import FaultConfig

README = Path(__file__).resolve().parents[2] / "README.md"
NO_CONNECTION = "no connection: use --connection, ZOHO_CRM_CONNECTION or --config"


def _leaf_commands(
    command: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _leaf_commands(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = dict(_leaf_commands(ROOT))


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def _shows_default(option: Any) -> bool:
    """Whether help shows the option's default: Typer's "[default: …]", or the help's words."""
    if option.required or "(default:" in (option.help or "") or "; default:" in (option.help or ""):
        return True
    plain_flag_off = option.is_flag and not option.secondary_opts and not option.default
    return option.default is not None and option.show_default is not False and not plain_flag_off


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_option_has_help_and_shows_its_default(path: tuple[str, ...]) -> None:
    for option in _options(COMMANDS[path]):
        assert (option.help or "").strip(), (path, option.opts)
        assert _shows_default(option), (path, option.opts, option.help)


def test_the_root_options_have_help_and_show_their_defaults() -> None:
    for option in _options(ROOT):
        assert (option.help or "").strip(), option.opts
        assert _shows_default(option), (option.opts, option.help)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_help_has_an_example_the_exit_codes_and_plain_metavars(
    path: tuple[str, ...],
) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Example: zoho-crm {' '.join(path)}" in out or (
        path == ("check",) and "zoho-crm check" in out
    ), out
    assert "Exit codes: 0 ok, 1 a module failed" in out
    assert "130 interrupted" in out and "143 stopped by SIGTERM" in out
    assert not re.search(r"<(bool|str|int|float|path|int range)>", out), out


# Rich reads "[word]" in a help text as a style tag and prints nothing for it ("[tuning]" vanished
# from --workers' help this way).
_MARKUP_TAG = re.compile(r"\[/?[A-Za-z_][\w .=-]*\]")


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_no_help_text_holds_what_rich_would_take_for_markup(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    texts = [command.help, command.epilog, *(o.help for o in _options(command))]
    for text in filter(None, texts):
        assert not _MARKUP_TAG.search(text), (path, text)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_summary_is_one_line(path: tuple[str, ...]) -> None:
    # The command list prints the help's first paragraph with its line breaks kept.
    summary = (COMMANDS[path].help or "").strip().split("\n\n")[0]
    assert summary and "\n" not in summary, (path, summary)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["extract", "-o", "d", "--log-format", "json"],
            ["--log-format", "json", "extract", "-o", "d"],
        ),
        (["extract", "--debug", "-o", "d"], ["--debug", "extract", "-o", "d"]),
        (["check", "--log-format=json"], ["--log-format=json", "check"]),
        (["--debug", "check"], ["--debug", "check"]),
        (["extract", "--", "--debug"], ["extract", "--", "--debug"]),
        (["check", "--log-format"], ["check", "--log-format"]),  # no value: click says so
    ],
)
def test_global_options_are_moved_in_front_of_the_command(
    args: list[str], expected: list[str]
) -> None:
    assert hoist_global_options(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["extract", "-o", "out"],
        ["plan"],
        ["modules"],
        ["plan", "--log-format", "text"],
    ],
    ids=lambda a: " ".join(a),
)
def test_no_settings_at_all_is_no_connection_for_every_command(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in __import__("os").environ if k.upper().startswith("ZOHO_CRM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {NO_CONNECTION}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate-5xx", "-0.1"], "--rate-5xx must be a share of calls from 0 to 1, not -0.1"),
        (["--rate-429", "1.5"], "--rate-429 must be a share of calls from 0 to 1, not 1.5"),
        (["--latency-ms", "-1"], "--latency-ms must be 0 or more, not -1"),
        (["--concurrency-cap", "0"], "--concurrency-cap must be at least 1, not 0"),
        (["--fail-bulk-jobs", "-2"], "--fail-bulk-jobs must be 0 or more, not -2"),
        (["--token-lifetime", "0"], "--token-lifetime must be at least 1 second, not 0"),
        (["--records", "-5"], "--records must be 0 or more, not -5"),
        (["--port", "65536"], "--port must be from 0 to 65535, not 65536"),
        (["--daily-credits", "-1"], "--daily-credits must be 0 or more, not -1"),
    ],
)
def test_simulate_rejects_values_out_of_range_in_one_line(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {needle}"]


def test_simulate_help_says_how_to_change_its_data() -> None:
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert "/_sim/mutate" in result.output and "insert" in result.output


@pytest.mark.parametrize(
    "values",
    [
        {"rate_429": 1.01},
        {"rate_5xx": -0.5},
        {"latency_ms": -1},
        {"concurrency_cap": 0},
        {"bulk_fail_next": -1},
        {"truncate_download_next": 1.5},
        {"token_lifetime": 0},
        {"expire_page_token_next": "yes"},
        {"rate_429": "0.1"},
    ],
    ids=str,
)
def test_fault_values_that_cannot_happen_are_refused_and_change_nothing(
    values: dict[str, Any],
) -> None:
    (name,) = values
    with pytest.raises(ValueError, match=name):
        FaultConfig(**values)
    faults = FaultConfig(rate_429=0.25)
    with pytest.raises(ValueError, match=name):
        faults.update({"rate_429": 0.5, **values} if name != "rate_429" else values)
    assert faults.rate_429 == 0.25


def test_fault_values_at_their_bounds_are_accepted() -> None:
    faults = FaultConfig(rate_429=1.0, rate_5xx=0.0, concurrency_cap=1, token_lifetime=1)
    faults.update({"latency_ms": 0, "concurrency_cap": None, "expire_page_token_next": True})
    assert faults.concurrency_cap is None and faults.rate_429 == 1.0


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (0, "row", "0 rows"),
        (1, "row", "1 row"),
        (2, "page", "2 pages"),
        (1_234, "credit", "1,234 credits"),
    ],
)
def test_counts_agree_with_their_nouns(count: int, noun: str, expected: str) -> None:
    assert counted(count, noun) == expected


def _manifest(rows: int, credits: int) -> RunManifest:
    from datetime import datetime, timezone

    report = ModuleReport("Leads", status="ok", reader="coql", mode="incremental", rows=rows)
    report.credits = {"coql": credits}
    report.files = [FileEntry("Leads/x.parquet", rows, 10)]
    manifest = RunManifest("run-1", datetime(2026, 1, 1, tzinfo=timezone.utc), "out")
    manifest.modules = [report]
    manifest.credits = {"coql": credits}
    manifest.calls = 1
    manifest.finish(datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc))
    return manifest


def test_the_run_line_says_1_row_1_credit_1_call() -> None:
    line = _manifest(1, 1).summary_lines()[-1]
    assert line == "run run-1: ok (exit 0), 1 row, 1 credit, 1 call, 1.0 s"
    assert "2 rows, 2 credits" in _manifest(2, 2).summary_lines()[-1]


def test_summary_events_carry_the_facts_of_each_module_and_the_run() -> None:
    module, run = _manifest(1, 3).summary_events()
    assert module["event"] == "module" and module["message"] == "Leads: ok, 1 row, 3 credits"
    assert (module["module"], module["rows"], module["credits"], module["run_id"]) == (
        "Leads",
        1,
        3,
        "run-1",
    )
    assert (run["event"], run["exit_code"], run["rows"], run["credits"]) == ("run", 0, 1, 3)
    assert run["level"] == "INFO"


def test_the_readme_lists_the_same_exit_codes_as_help() -> None:
    text = README.read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|", text, re.MULTILINE))
    assert sorted(int(code) for code in table) == sorted(code for code, _ in EXIT_CODES)
