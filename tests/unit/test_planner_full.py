"""The planner's full loads: which reader is cheapest, when a count is worth its credit, and what
the settings promise (APIType=REST never reads by Bulk; UseCOQL=false with REST never by COQL)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.readers.base import BULK, COQL, RECORDS
from connector.run.planner import (
    ReaderChoice,
    Shape,
    allowed_readers,
    estimate_module,
    extra_credits,
    full_choice,
    full_read_credits,
    least_credits,
    static_choice,
)
from connector.zoho.limits import coql_fitted_credits
from connector.zoho.limits import coql_fitted_limit as fitted_limit
from connector.zoho.metadata import ModuleMeta

LEADS = ModuleMeta(api_name="Leads", module_name="Leads")
NOTES = ModuleMeta(api_name="Notes", module_name="Notes")
PLAIN = Shape(40)
LINKED = Shape(20, polymorphic=True)
WIDE = Shape(72)  # the benchmarks' module: 1 Bulk field group, 2 COQL/Records column groups


def choose(
    module: ModuleMeta, shape: Shape, rows: int, *, api_type: str = "Bulk", use_coql: bool = False
) -> tuple[ReaderChoice, list[int]]:
    """The full-load choice with a count of ``rows``, and how many times it counted."""
    options: dict[str, Any] = {"api_type": api_type, "use_coql": use_coql, "coql_ok": True}
    counted: list[int] = []

    def count() -> int:
        counted.append(rows)
        return rows

    static = static_choice(module, incremental=False, **options)
    readers = allowed_readers(module, **options)
    return full_choice(static, readers, shape, count=count), counted


@pytest.mark.parametrize(
    ("rows", "reader"), [(150, COQL), (1_500, COQL), (30_000, COQL), (40_000, BULK), (10**6, BULK)]
)
def test_bulk_settings_read_a_full_load_the_cheapest_way(rows: int, reader: str) -> None:
    choice, counted = choose(LEADS, PLAIN, rows)
    assert counted == [rows]  # one count (1 credit) priced it
    prices = dict(choice.prices)
    assert choice.reader == reader and prices[reader] == min(prices.values())
    assert set(prices) == {BULK, COQL, RECORDS}
    # The manifest's reason says how many rows and what the others would cost.
    assert f"{rows:,} rows" in choice.reason and "vs" in choice.reason


def test_a_module_that_fits_one_coql_page_asks_for_the_cheapest_limit() -> None:
    assert [fitted_limit(n) for n in (0, 200, 201, 1_000, 1_001, 2_000, 5_000)] == [
        200,
        200,
        1_000,
        1_000,
        2_000,
        2_000,
        2_000,
    ]
    choice, _ = choose(LEADS, PLAIN, 900)
    assert (choice.reader, choice.fitted_rows) == (COQL, 900)
    assert dict(choice.prices)[COQL] == 2


@pytest.mark.parametrize(
    ("rows", "credits"),
    [(0, 1), (200, 1), (2_000, 3), (2_001, 4), (4_000, 6), (5_000, 8), (2_500, 5), (3_100, 6)],
)
def test_a_counted_coql_read_fits_its_last_page_to_what_is_left(rows: int, credits: int) -> None:
    # Full pages of 2,000 (3 credits), then the rest at the cheapest LIMIT holding it.
    assert coql_fitted_credits(rows) == credits
    assert full_read_credits(COQL, rows, Shape(8), fitted=True) == credits


def test_polymorphic_lookups_make_the_records_api_cheapest_without_a_count() -> None:
    # COQL and Bulk read $se_module by id (1 credit per 100 linked rows); Records names it.
    assert extra_credits(COQL, 1_000, LINKED) == 10 and extra_credits(RECORDS, 1_000, LINKED) == 0
    choice, counted = choose(NOTES, LINKED, 1_000)
    assert choice.reader == RECORDS and counted == []  # no Bulk Read: no count needed
    assert choice.fallback == "Bulk Read cannot export Notes"
    assert "the Records API instead, the cheapest per row" in choice.reason
    small, _ = choose(LEADS, LINKED, 1_500)
    assert small.reader == RECORDS


@pytest.mark.parametrize("rows", [100, 1_500, 300_000, 5_000_000])
def test_a_module_whose_cheapest_reader_is_the_same_at_any_size_is_not_counted(rows: int) -> None:
    # Bulk Read can export it, but its polymorphic lookups cost Bulk and COQL a look-up per
    # linked row: the Records API is the cheapest whatever the count says.
    choice, counted = choose(LEADS, LINKED, rows)
    assert (choice.reader, counted) == (RECORDS, [])
    assert "cheapest at any size (no count)" in choice.reason
    _, counted = choose(LEADS, PLAIN, rows)
    assert counted == [rows]  # here the size decides


def test_a_module_known_to_be_large_is_not_counted() -> None:
    static = static_choice(LEADS, api_type="Bulk", use_coql=False, coql_ok=True, incremental=False)
    readers = allowed_readers(LEADS, api_type="Bulk", use_coql=False, coql_ok=True)

    def no_count() -> int:
        raise AssertionError("counted a module known to be large")

    choice = full_choice(static, readers, PLAIN, count=no_count, known_rows=500_000)
    assert choice.reader == BULK and "known large" in choice.reason
    # Known, but small enough that COQL may be cheaper: counted.
    calls: list[int] = []

    def count() -> int:
        calls.append(50_000)
        return 50_000

    full_choice(static, readers, PLAIN, count=count, known_rows=50_000)
    assert calls == [50_000]


@pytest.mark.parametrize(
    ("api_type", "use_coql", "readers"),
    [("REST", True, (COQL,)), ("REST", False, (RECORDS,)), ("Bulk", False, (BULK, COQL, RECORDS))],
)
def test_the_settings_promises(api_type: str, use_coql: bool, readers: tuple[str, ...]) -> None:
    options: dict[str, Any] = {"api_type": api_type, "use_coql": use_coql, "coql_ok": True}
    assert allowed_readers(LEADS, **options) == readers
    # Whatever the settings, a field COQL refuses means the Records API.
    assert allowed_readers(LEADS, coql_refused=["Participants"], **options) == (RECORDS,)
    choice, counted = choose(LEADS, PLAIN, 1_000_000, api_type=api_type, use_coql=use_coql)
    assert choice.reader in readers
    if api_type == "REST":
        assert counted == []  # nothing to choose: no count


def test_without_the_coql_scope_bulk_settings_read_by_bulk_without_a_count() -> None:
    options: dict[str, Any] = {"api_type": "Bulk", "use_coql": False, "coql_ok": False}
    readers = allowed_readers(LEADS, **options)
    assert readers == (BULK, RECORDS)
    static = static_choice(LEADS, incremental=False, **options)
    assert full_choice(static, readers, PLAIN, count=None).reader == BULK


@pytest.mark.parametrize("rows", [10_000, 100_000, 1_000_000])
def test_full_loads_of_the_benchmark_module_within_5_percent_of_the_cheapest(rows: int) -> None:
    """Fields call + count + the chosen read, against the cheapest read Zoho's prices allow
    (fields call included, no count): within 5 %."""
    choice, credits = estimate_module(
        LEADS,
        n_columns=WIDE.columns,
        shape=WIDE,
        rows=rows,
        incremental=False,
        api_type="Bulk",
        use_coql=False,
        coql_ok=True,
    )
    cheapest = 1 + min(full_read_credits(r, rows, WIDE, fitted=True) for r in (BULK, COQL, RECORDS))
    assert credits <= 1.05 * cheapest, (choice.reader, credits, cheapest)


def test_100_changes_in_a_1m_row_module_cost_at_most_5_credits() -> None:
    """fields 1 + the COQL probe that holds the changes (2 column groups: 2) + deleted 2."""
    choice, credits = estimate_module(
        LEADS,
        n_columns=WIDE.columns,
        shape=WIDE,
        rows=100,
        incremental=True,
        api_type="Bulk",
        use_coql=False,
        coql_ok=True,
        known_rows=1_000_000,
    )
    assert choice.reader == COQL and credits == 5


def test_least_credits_a_bulk_read_all_of_it_an_ordered_read_one_page() -> None:
    assert least_credits(BULK, 1_000_000, PLAIN) == full_read_credits(BULK, 1_000_000, PLAIN)
    assert least_credits(COQL, 1_000_000, PLAIN) == 3
    assert least_credits(RECORDS, 1_000_000, PLAIN) == 1
