"""The planner: reader choice per settings and module, and credit estimates by Zoho's rules."""

from __future__ import annotations

import pytest

from connector.readers.base import BULK, COQL, RECORDS
from connector.run.planner import (
    ModulePlan,
    Plan,
    Shape,
    bulk_credits,
    cheapest_incremental,
    coql_read_credits,
    deleted_credits,
    estimate_module,
    format_plan,
    group_count,
    priced_choice,
    records_credits,
    static_choice,
)
from connector.zoho.metadata import ModuleMeta

LEADS = ModuleMeta(api_name="Leads", module_name="Leads")
NOTES = ModuleMeta(api_name="Notes", module_name="Notes")


@pytest.mark.parametrize(
    ("reader", "columns", "groups"),
    [
        (BULK, 2, 1),
        (BULK, 201, 1),  # id + 200 fields: one job
        (BULK, 202, 2),
        (BULK, 400, 2),
        (COQL, 2, 1),
        (COQL, 50, 1),
        (COQL, 51, 2),
        (COQL, 66, 2),
        (RECORDS, 50, 1),
        (RECORDS, 99, 3),
    ],
)
def test_group_count(reader: str, columns: int, groups: int) -> None:
    assert group_count(reader, columns) == groups


@pytest.mark.parametrize(
    ("rows", "groups", "credits"),
    [(0, 1, 54), (1, 1, 54), (200_000, 1, 54), (200_001, 1, 108), (1_000_000, 2, 540)],
)
def test_bulk_credits(rows: int, groups: int, credits: int) -> None:
    assert bulk_credits(rows, groups) == credits


@pytest.mark.parametrize(
    ("rows", "groups", "credits"),
    [(0, 1, 1), (100, 1, 1), (200, 1, 1), (201, 1, 4), (2_200, 1, 4), (2_201, 1, 7), (100, 2, 2)],
)
def test_coql_read_credits(rows: int, groups: int, credits: int) -> None:
    assert coql_read_credits(rows, groups) == credits


@pytest.mark.parametrize(("rows", "credits"), [(0, 1), (200, 1), (201, 2), (2_000, 10)])
def test_records_credits(rows: int, credits: int) -> None:
    assert records_credits(rows) == credits


@pytest.mark.parametrize(("n", "credits"), [(None, 2), (0, 2), (200, 2), (201, 4)])
def test_deleted_credits(n: int | None, credits: int) -> None:
    assert deleted_credits(n) == credits


@pytest.mark.parametrize(
    ("api_type", "use_coql", "coql_ok", "module", "incremental", "reader", "probe", "fallback"),
    [
        ("REST", True, True, LEADS, False, COQL, False, False),
        ("REST", False, True, LEADS, True, RECORDS, False, False),
        ("REST", False, True, NOTES, False, RECORDS, False, False),
        ("Bulk", False, True, LEADS, False, BULK, False, False),
        ("Bulk", False, True, LEADS, True, BULK, True, False),
        ("Bulk", False, False, LEADS, True, BULK, False, False),
        ("Bulk", False, True, NOTES, False, COQL, False, True),
        ("Bulk", False, False, NOTES, False, RECORDS, False, True),
        ("Bulk", True, False, NOTES, True, COQL, False, True),
    ],
)
def test_static_choice(
    api_type: str,
    use_coql: bool,
    coql_ok: bool,
    module: ModuleMeta,
    incremental: bool,
    reader: str,
    probe: bool,
    fallback: bool,
) -> None:
    choice = static_choice(
        module, api_type=api_type, use_coql=use_coql, coql_ok=coql_ok, incremental=incremental
    )
    assert (choice.reader, choice.probe, choice.fallback is not None) == (reader, probe, fallback)
    assert choice.reason
    if fallback:
        assert "Notes" in choice.reason


@pytest.mark.parametrize(
    ("coql_ok", "incremental", "reader"),
    [(True, False, COQL), (True, True, COQL), (False, False, RECORDS), (False, True, RECORDS)],
)
def test_bulk_scope_missing_falls_back_without_bulk(
    coql_ok: bool, incremental: bool, reader: str
) -> None:
    choice = static_choice(
        LEADS,
        api_type="Bulk",
        use_coql=False,
        coql_ok=coql_ok,
        incremental=incremental,
        bulk_ok=False,
    )
    assert (choice.reader, choice.probe) == (reader, False)
    assert "ZohoCRM.bulk.READ" in choice.reason


@pytest.mark.parametrize(
    ("rows", "reader"),
    [(201, COQL), (10_000, COQL), (34_000, COQL), (40_000, BULK), (1_000_000, BULK)],
)
def test_cheapest_incremental(rows: int, reader: str) -> None:
    choice = cheapest_incremental(rows, 30)
    assert choice.reader == reader
    other = BULK if reader == COQL else COQL
    from connector.run.planner import reader_credits

    assert reader_credits(reader, rows, 30) <= reader_credits(other, rows, 30)


def test_incremental_target_100_changes_costs_at_most_5_credits() -> None:
    """Issue 5: 100 changes in a 1M-record module: fields 1 + COQL probe 1 + deleted 2 = 4."""
    choice, credits = estimate_module(
        LEADS,
        n_columns=40,
        rows=100,
        incremental=True,
        api_type="Bulk",
        use_coql=False,
        coql_ok=True,
    )
    assert choice.reader == COQL
    assert credits == 4


def test_full_load_estimate_includes_metadata_and_no_deleted() -> None:
    choice, credits = estimate_module(
        LEADS,
        n_columns=40,
        rows=1_000_000,
        incremental=False,
        api_type="Bulk",
        use_coql=False,
        coql_ok=True,
    )
    assert choice.reader == BULK
    # fields 1 + the COQL count that priced it 1 + five jobs.
    assert credits == 1 + 1 + 5 * 54


def test_big_incremental_estimate_counts_probe_and_count() -> None:
    choice, credits = estimate_module(
        LEADS,
        n_columns=40,
        rows=500_000,
        incremental=True,
        api_type="Bulk",
        use_coql=False,
        coql_ok=True,
    )
    assert choice.reader == BULK
    assert credits == 1 + 2 + 3 * 54 + 2


def test_format_plan_lists_every_module_and_the_total() -> None:
    plan = Plan(
        api_type="Bulk",
        use_coql=False,
        discovery_credits=3,
        spent_credits=4,
        modules=[
            ModulePlan("Leads", BULK, "APIType=Bulk, full load", "full", 40, 1_000, 55, 1),
            ModulePlan("Notes", COQL, "Bulk Read cannot export Notes", "full", 8, None, 2),
            ModulePlan("Visits", "-", "", "full", 0, None, 0, error="not available: NO_PERMISSION"),
        ],
    )
    text = format_plan(plan)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["module", "mode", "reader", "rows", "credits"]
    assert "Leads" in lines[1] and "1,000" in lines[1] and "55" in lines[1]
    assert "unknown" in lines[2] and "2+" in lines[2]
    assert "NO_PERMISSION" in lines[3]
    assert plan.total_credits == 3 + 55 + 2
    assert "estimated total: 60 credits or more" in text
    assert "making this plan spent 4" in text


@pytest.mark.parametrize(
    ("rows", "groups", "credits"),
    [(0, 1, 3), (150, 1, 3), (2_000, 1, 3), (2_001, 1, 6), (10_000, 2, 30), (1_000_000, 1, 1_500)],
)
def test_coql_read_credits_full_load_starts_at_limit_2000(
    rows: int, groups: int, credits: int
) -> None:
    assert coql_read_credits(rows, groups, full=True) == credits


@pytest.mark.parametrize(
    ("api_type", "use_coql", "incremental"),
    [("Bulk", False, False), ("Bulk", False, True), ("REST", True, False), ("REST", False, True)],
)
def test_a_module_with_fields_coql_refuses_is_read_by_records(
    api_type: str, use_coql: bool, incremental: bool
) -> None:
    choice = static_choice(
        ModuleMeta("Events", "Meetings"),
        api_type=api_type,
        use_coql=use_coql,
        coql_ok=True,
        incremental=incremental,
        coql_refused=["Participants"],
    )
    assert (choice.reader, choice.probe) == (RECORDS, False)
    assert choice.fallback == "COQL refuses Participants"


def test_a_module_read_in_full_every_run_takes_the_cheaper_of_coql_and_bulk() -> None:
    assert priced_choice([BULK, COQL], 200, Shape(8), fitted=False, what="").reader == COQL
    assert priced_choice([BULK, COQL], 2_000_000, Shape(8), fitted=False, what="").reader == BULK
    choice, credits = estimate_module(
        ModuleMeta("Actions_Performed", "Actions_Performed"),
        n_columns=8,
        rows=200,
        incremental=False,
        api_type="Bulk",
        use_coql=False,
        coql_ok=True,
        full_each_run=True,
    )
    # fields 1 + count 1 + one page of 200 (1): its id scan by COQL fits its LIMIT to the count
    # (200: 1 credit), as cheap as a Records page and preferred at equal price; a 50-credit Bulk
    # job is not.
    assert (choice.reader, credits) == (COQL, 3)
    assert choice.fitted_rows == 200
    assert dict(choice.prices) == {BULK: 54, COQL: 1, RECORDS: 1}
