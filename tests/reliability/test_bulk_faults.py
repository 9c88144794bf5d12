"""Bulk Read faults end to end: a job that ends in FAILURE, an expired page token, a truncated or
corrupt ZIP, a CSV shorter than the job says. Each is retried or restarted from the last committed
watermark, and no partial data is ever written."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from support.reliability import (
    assert_clean_and_committed,
    assert_files_readable,
    assert_output_equals_source,
    load_state,
    schema_of,
    settings_for,
)

from connector.run.sync import run_extract
from connector.simulator import Simulator
from connector.simulator.clock import FakeClock
from connector.zoho.http import ZohoClient

MODULE = "Leads"


class HookedClient(ZohoClient):
    """A client that calls ``after_download(n, dest)`` after its n-th download (1-based)."""

    def __init__(self, *args: Any, after_download: Callable[[int, BinaryIO], None], **kw: Any):
        super().__init__(*args, **kw)
        self.after_download = after_download
        self.downloads = 0

    def download(self, path: str, dest: BinaryIO) -> int:
        written = super().download(path, dest)
        self.downloads += 1
        self.after_download(self.downloads, dest)
        return written


def _nothing(_: int, __: BinaryIO) -> None:
    return None


def _extract(settings: Any, client: ZohoClient, out: Path) -> Any:
    return run_extract(settings, str(out), modules=[MODULE], client=client, sleep=client._sleep)


def _setup(
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
    hook: Callable[[int, BinaryIO], None] = _nothing,
    **sim_kwargs: Any,
) -> tuple[Simulator, Any, HookedClient]:
    sim_kwargs.setdefault("bulk_page_size", 100)
    clock = sim_kwargs.setdefault(
        "clock", FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc))
    )
    sim = make_simulator(seed=3, records=350, bulk_polls=1, **sim_kwargs)
    settings = settings_for(sim, tmp_path, APIType="Bulk")
    # Waiting (for the 10-downloads-a-minute limit, say) moves the simulator's clock instead.
    client = HookedClient(settings, sleep=clock.advance, after_download=hook)
    return sim, settings, client


def _assert_nothing_written(out: Path) -> None:
    """No data file, no watermark: what a failed unordered read must leave."""
    assert_files_readable(out, MODULE)
    assert not list((out / MODULE).rglob("*.parquet")) if (out / MODULE).exists() else True
    assert load_state(out, MODULE).watermark is None


def _downloads(sim: Simulator) -> int:
    return sum(1 for r in sim.requests if r.path.endswith("/result"))


def _jobs_created(sim: Simulator) -> int:
    return sum(
        1
        for r in sim.requests
        if r.method == "POST" and r.path == "/crm/bulk/v8/read" and r.status == 201
    )


@pytest.mark.parametrize(
    ("fault", "count"),
    [
        ("bulk_fail_next", 1),
        ("bulk_fail_next", 2),
        ("truncate_download_next", 1),
        ("truncate_download_next", 2),
        ("corrupt_download_next", 1),
    ],
)
def test_recoverable_fault_is_retried(
    make_simulator: Callable[..., Simulator], tmp_path: Path, fault: str, count: int
) -> None:
    sim, settings, client = _setup(make_simulator, tmp_path)
    setattr(sim.faults, fault, count)
    out = tmp_path / "out"
    run = _extract(settings, client, out)
    assert run.exit_code == 0, run.summary_lines()
    assert getattr(sim.faults, fault) == 0  # every injected fault was met
    assert run.module(MODULE).pages == 4  # 350 rows in pages of 100
    if fault == "bulk_fail_next":
        assert _jobs_created(sim) == 4 + count
        assert any("failed" in w for w in run.module(MODULE).warnings)
    else:
        assert _downloads(sim) == 4 + count
    assert_output_equals_source(sim, out, schema_of(settings, MODULE, client))
    assert_clean_and_committed(out, MODULE)


@pytest.mark.parametrize(
    ("fault", "count"),
    [("bulk_fail_next", 3), ("truncate_download_next", 6), ("corrupt_download_next", 9)],
)
def test_persistent_fault_on_a_later_page_writes_nothing(
    make_simulator: Callable[..., Simulator], tmp_path: Path, fault: str, count: int
) -> None:
    # The first page is read (and written to scratch), then page 2 keeps failing: the run gives
    # up on the module without putting any of page 1 in place, and a rerun reads everything.
    holder: dict[str, Simulator] = {}

    def arm(n: int, _: BinaryIO) -> None:
        if n == 1:
            setattr(holder["sim"].faults, fault, count)

    sim, settings, client = _setup(make_simulator, tmp_path, arm)
    holder["sim"] = sim
    out = tmp_path / "out"
    run = _extract(settings, client, out)
    assert run.exit_code == 1, run.summary_lines()
    assert run.module(MODULE).status == "failed"
    error = run.module(MODULE).error or ""
    assert "Bulk Read failed 3 times" in error or "broke off" in error, error
    assert getattr(sim.faults, fault) == 0
    _assert_nothing_written(out)
    assert not (out / "_state" / f"{MODULE}.lock").exists()

    rerun = _extract(settings, client, out)
    assert rerun.exit_code == 0, rerun.summary_lines()
    assert rerun.module(MODULE).mode == "full"
    assert_output_equals_source(sim, out, schema_of(settings, MODULE, client))
    assert_clean_and_committed(out, MODULE)


def test_expired_page_token_restarts_from_the_last_commit(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    # A day passes between page 1 and page 2 (Bulk page tokens live 24 h): Zoho refuses the
    # token, the read restarts from the last committed watermark (none: a full load again).
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc))

    def a_day_later(n: int, _: BinaryIO) -> None:
        if n == 1:
            clock.advance(25 * 3600)

    sim, settings, client = _setup(make_simulator, tmp_path, a_day_later, clock=clock)
    out = tmp_path / "out"
    run = _extract(settings, client, out)
    assert run.exit_code == 0, run.summary_lines()
    refused = [r for r in sim.requests if r.code == "EXPIRED_VALUE"]
    assert len(refused) == 1 and refused[0].path == "/crm/bulk/v8/read"
    assert any("restarted" in w for w in run.module(MODULE).warnings)
    assert client.downloads == 1 + 4  # page 1, then all four pages again
    assert_output_equals_source(sim, out, schema_of(settings, MODULE, client))
    assert_clean_and_committed(out, MODULE)


def _drop_csv_rows(dest: BinaryIO, rows: int) -> None:
    """Rewrite the downloaded ZIP in place: a valid ZIP whose CSV lacks its last ``rows`` rows."""
    dest.flush()
    with open(dest.name, "rb") as handle:
        original = handle.read()
    with zipfile.ZipFile(io.BytesIO(original)) as archive:
        (name,) = archive.namelist()
        text = archive.read(name).decode("utf-8")
    # Records end with a newline; values with newlines are quoted, so cut at record ends with
    # the csv module's help.
    import csv

    records = list(csv.reader(io.StringIO(text, newline="")))
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerows(records[: len(records) - rows])
    rebuilt = io.BytesIO()
    with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, buffer.getvalue())
    dest.seek(0)
    dest.truncate()
    dest.write(rebuilt.getvalue())
    dest.flush()


@pytest.mark.parametrize("page", [1, 3])
def test_csv_shorter_than_the_job_count_is_never_committed(
    make_simulator: Callable[..., Simulator], tmp_path: Path, page: int
) -> None:
    def shorten(n: int, dest: BinaryIO) -> None:
        if n == page:
            _drop_csv_rows(dest, 7)

    sim, settings, client = _setup(make_simulator, tmp_path, shorten)
    out = tmp_path / "out"
    run = _extract(settings, client, out)
    assert run.exit_code == 0, run.summary_lines()
    assert any("restarted" in w for w in run.module(MODULE).warnings)
    # The pages up to the short one, then all four again; and perhaps one more: the next page's
    # file, downloaded in the background while the short page was parsed, if it got that far
    # before the read was closed (its job is paid for; the restart's new chain of page tokens
    # cannot take it).
    assert client.downloads in (page + 4, page + 4 + 1)
    assert run.rows == sim.org.module(MODULE).count()
    assert_output_equals_source(sim, out, schema_of(settings, MODULE, client))
    assert_clean_and_committed(out, MODULE)


def test_csv_short_every_time_fails_cleanly(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    # Every page 2 is short: the restarts run out, the module fails, nothing is committed.
    def shorten(n: int, dest: BinaryIO) -> None:
        if n % 2 == 0:
            _drop_csv_rows(dest, 1)

    sim, settings, client = _setup(make_simulator, tmp_path, shorten)
    out = tmp_path / "out"
    run = _extract(settings, client, out)
    assert run.exit_code == 1, run.summary_lines()
    assert "holds" in (run.module(MODULE).error or "")
    _assert_nothing_written(out)
    client.after_download = _nothing
    rerun = _extract(settings, client, out)
    assert rerun.exit_code == 0
    assert_output_equals_source(sim, out, schema_of(settings, MODULE, client))
    assert_clean_and_committed(out, MODULE)
