"""Fixtures for the simulator data-layer tests: a settable clock and small orgs."""

from __future__ import annotations

import pytest
from simdata_support import START, StepClock

from connector.simulator.store import Org


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def org(clock: StepClock) -> Org:
    """A fresh, small org (300 Leads) per test, so mutations never leak between tests."""
    return Org.build(seed=11, records=300, clock=clock)


@pytest.fixture(scope="module")
def shared_org() -> Org:
    """A read-only org shared by a test module (never mutate it)."""
    return Org.build(seed=7, records=2000, clock=lambda: START)
