"""Bulk Read criteria JSON -> filter AST."""

from __future__ import annotations

from typing import Any

import pytest

from connector.simulator.criteria import criteria_to_expr
from connector.simulator.query import And, Comparison, Or, QueryError
from connector.simulator.store import Org

FIELDS = Org.build(records=1).module("Deals").meta.field_map


def c(field: str, comparator: str, value: Any) -> dict[str, Any]:
    return {"field": {"api_name": field}, "comparator": comparator, "value": value}


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (c("Stage", "equal", "Closed Won"), Comparison("Stage", "=", "Closed Won")),
        (c("Stage", "not_equal", "x"), Comparison("Stage", "!=", "x")),
        (c("Stage", "in", ["a", "b"]), Comparison("Stage", "in", ("a", "b"))),
        (c("Stage", "not_in", ["a"]), Comparison("Stage", "not in", ("a",))),
        (c("Deal_Name", "contains", "Air"), Comparison("Deal_Name", "like", "%Air%")),
        (c("Deal_Name", "not_contains", "Air"), Comparison("Deal_Name", "not like", "%Air%")),
        (c("Deal_Name", "starts_with", "Acme"), Comparison("Deal_Name", "like", "Acme%")),
        (c("Deal_Name", "ends_with", "cargo"), Comparison("Deal_Name", "like", "%cargo")),
        (c("Amount", "greater_than", 10), Comparison("Amount", ">", "10")),
        (c("Amount", "greater_equal", 10.5), Comparison("Amount", ">=", "10.5")),
        (c("Amount", "less_than", "7"), Comparison("Amount", "<", "7")),
        (c("Probability", "less_equal", 50), Comparison("Probability", "<=", "50")),
        (
            c(
                "Modified_Time",
                "between",
                ["2021-02-22T15:39:26+05:30", "2021-07-20T09:00:00+05:30"],
            ),
            Comparison(
                "Modified_Time",
                "between",
                ("2021-02-22T15:39:26+05:30", "2021-07-20T09:00:00+05:30"),
            ),
        ),
        (
            c("Closing_Date", "not_between", ["2024-01-01", "2024-12-31"]),
            Comparison("Closing_Date", "not between", ("2024-01-01", "2024-12-31")),
        ),
        (
            c("Account_Name", "equal", "5725797000001000709"),
            Comparison("Account_Name", "=", "5725797000001000709"),
        ),
        (c("Account_Name", "equal", "${EMPTY}"), Comparison("Account_Name", "is null")),
        (c("Next_Step", "not_equal", "${EMPTY}"), Comparison("Next_Step", "is not null")),
        (
            {
                "group_operator": "and",
                "group": [
                    c("Modified_Time", "greater_equal", "2026-01-01T00:00:00+05:30"),
                    {
                        "group_operator": "OR",
                        "group": [c("Stage", "equal", "a"), c("Amount", "less_than", 5)],
                    },
                ],
            },
            And(
                (
                    Comparison("Modified_Time", ">=", "2026-01-01T00:00:00+05:30"),
                    Or((Comparison("Stage", "=", "a"), Comparison("Amount", "<", "5"))),
                )
            ),
        ),
    ],
)
def test_conversion(criteria: dict[str, Any], expected: Any) -> None:
    assert criteria_to_expr(criteria, FIELDS) == expected


@pytest.mark.parametrize(
    ("criteria", "code"),
    [
        (c("Modified_Time", "greater_than", "2026-01-01T00:00:00.000+05:30"), "INVALID_CRITERIA"),
        (
            c("Modified_Time", "between", ["2026-01-01T00:00:00+05:30", "2026-01-02T00:00:00.5Z"]),
            "INVALID_CRITERIA",
        ),
        (c("Modified_Time", "greater_than", "yesterday"), "INVALID_CRITERIA"),
        (c("Amount", "contains", "1"), "INVALID_CRITERIA"),
        (c("Amount", "between", [1, 2]), "INVALID_CRITERIA"),
        (c("Deal_Name", "greater_than", "a"), "INVALID_CRITERIA"),
        (c("Account_Name", "starts_with", "Zy"), "INVALID_CRITERIA"),
        (c("Description", "contains", "x"), "INVALID_CRITERIA"),
        (c("Nope", "equal", "x"), "INVALID_CRITERIA"),
        (c("Stage", "like", "x"), "INVALID_CRITERIA"),
        (c("Stage", "equal", "x" * 256), "INVALID_CRITERIA"),
        (c("Amount", "equal", "ten"), "INVALID_CRITERIA"),
        (c("Line_Items", "equal", "x"), "INVALID_CRITERIA"),
        ({"field": {"api_name": "Stage"}, "comparator": "equal"}, "INVALID_CRITERIA"),
        ({"group_operator": "xor", "group": [c("Stage", "equal", "a")]}, "INVALID_CRITERIA"),
        ({"group_operator": "and", "group": []}, "INVALID_CRITERIA"),
        (
            {"group_operator": "and", "group": [c("Amount", "equal", i) for i in range(26)]},
            "CRITERIA_LIMIT_EXCEEDED",
        ),
    ],
)
def test_refusals(criteria: dict[str, Any], code: str) -> None:
    with pytest.raises(QueryError) as err:
        criteria_to_expr(criteria, FIELDS)
    assert err.value.code == code


def test_twenty_five_criteria_are_fine_and_filter_the_store() -> None:
    org = Org.build(records=400)
    deals = org.module("Deals")
    stages = ["Closed Won", "Closed Lost"]
    criteria = {
        "group_operator": "and",
        "group": [c("Stage", "in", stages)] + [c("Amount", "not_equal", i) for i in range(24)],
    }
    expr = criteria_to_expr(criteria, deals.meta.field_map)
    got = deals.select(["id", "Stage"], where=expr)
    rows = deals.current_table(["id", "Stage", "Amount"]).to_pylist()
    # A null never satisfies not_equal, so records without an Amount are left out too.
    expected = [
        r["id"]
        for r in rows
        if r["Stage"] in stages and r["Amount"] is not None and float(r["Amount"]) not in range(24)
    ]
    assert got.column("id").to_pylist() == expected
    assert got.num_rows > 0
