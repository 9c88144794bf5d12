"""Zoho's limits and prices: the COQL price tiers and the figures the readers and planner share."""

from __future__ import annotations

import pytest

from connector.zoho import limits


@pytest.mark.parametrize(
    ("limit", "credits"),
    [(1, 1), (200, 1), (201, 2), (1_000, 2), (1_001, 3), (2_000, 3), (4_000, 3)],
)
def test_coql_limit_credits(limit: int, credits: int) -> None:
    assert limits.coql_limit_credits(limit) == credits


def test_coql_first_limit_is_the_largest_one_credit_limit() -> None:
    assert limits.coql_limit_credits(limits.COQL_FIRST_LIMIT) == 1
    assert limits.coql_limit_credits(limits.COQL_FIRST_LIMIT + 1) > 1
    assert limits.COQL_FIRST_LIMIT == limits.COQL_DEFAULT_LIMIT == 200
    assert limits.COQL_MAX_LIMIT == 2_000
