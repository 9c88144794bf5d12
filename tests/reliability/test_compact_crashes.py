"""``zoho-crm compact`` from the command line: it merges, refuses what it should, and a SIGKILL
at any of its steps leaves a dataset that the next run (compact or extract, both ``recover``
first) reads with every row exactly once.

Also the extract's refusal to mix layouts: ``--partition-by`` that differs from what an existing
dataset holds stops with one line and exit 2, before any call to Zoho.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import clean_env, run_cli
from support.lake import extract_like, parquet_files, versions

from connector.crashpoints import ENV_VAR
from connector.lake.output import Output
from connector.lake.state import DELETED_DIR, StateStore


def test_compact_merges_and_the_extract_refuses_another_granularity(tmp_path: Path) -> None:
    out = Output.open(tmp_path / "out")
    extract_like(out, range(10))  # daily, as written before the granularity was recorded
    env = clean_env(tmp_path, {})
    # Any well-formed connection: the refusal comes before any call to Zoho.
    refused = run_cli(
        "extract",
        "-o",
        str(tmp_path / "out"),
        "--partition-by",
        "month",
        "--connection",
        "Region=US;InitiateOAuth=OFF;OAuthAccessToken=1000.x;APIDomain=http://127.0.0.1:9",
        env=env,
    )
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr
    assert "compact DIR --module Leads --partition-by month" in lines[0]

    nothing = run_cli("compact", str(tmp_path / "out"), "--module", "Leads", env=env)
    assert nothing.stdout.strip() == "Leads: nothing to compact (day partitions)"
    done = run_cli(
        "compact", str(tmp_path / "out"), "--module", "Leads", "--partition-by", "month", env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Leads: 20 files") and "day -> month" in done.stdout
    assert len(parquet_files(tmp_path / "out")) == 1

    bad = run_cli(
        "compact", str(tmp_path / "out"), "--module", "Leads", "--partition-by", "week", env=env
    )
    assert bad.returncode == 2 and "use one of day, month, year, none" in bad.stderr


POINTS = [
    "writer_row_group_written:2",
    "writer_before_rename:1",
    "writer_after_rename:1",
    "compact_files_written:1",
    "compact_state_committed:1",
    "compact_old_deleted:5",
]


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_compact_then_a_rerun_sees_every_row_exactly_once(
    tmp_path: Path, point: str
) -> None:
    root = tmp_path / "out"
    out = Output.open(root)
    extract_like(out, range(14))
    before = versions(root)
    dead_before = versions(root, f"{DELETED_DIR}/Leads")
    env = clean_env(tmp_path, {})
    args = ("compact", str(root), "--module", "Leads", "--partition-by", "month")
    killed = run_cli(*args, env={**env, ENV_VAR: point})
    assert killed.returncode == -9, killed.stderr
    # The next extract's recover (here alone), then a compact that finishes the conversion.
    StateStore(out).recover("Leads")
    assert versions(root) == before
    assert versions(root, f"{DELETED_DIR}/Leads") == dead_before
    rerun = run_cli(*args, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert versions(root) == before
    assert versions(root, f"{DELETED_DIR}/Leads") == dead_before
    assert StateStore(out).load("Leads").partition_by == "month"
    assert [p.split("/")[1] for p in parquet_files(root)] == ["modified_month=2024-01"]
    assert not [p for p in (root / "_tmp").rglob("*") if p.is_file()]
