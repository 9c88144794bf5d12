"""Shared pytest fixtures: an in-process Zoho CRM simulator and a controllable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connector.simulator import Simulator
from connector.simulator.clock import FakeClock

__all__ = ["FakeClock"]


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Simulator]]:
    """A factory of started simulators (``Simulator`` kwargs); all are stopped at teardown."""
    started: list[Simulator] = []

    def factory(**kwargs: Any) -> Simulator:
        kwargs.setdefault("seed", 7)
        kwargs.setdefault("records", 200)
        sim = Simulator(**kwargs).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def simulator(make_simulator: Callable[..., Simulator]) -> Simulator:
    """A small simulated org (seed 7, 200 records), started for one test."""
    return make_simulator()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock at 2026-07-01 12:00:00 UTC that moves only when told to."""
    return FakeClock()


class SimClient:
    """A tiny ``requests`` client for a simulator: fetches a token, sends Zoho's auth header."""

    def __init__(self, sim: Simulator, refresh_token: str | None = None) -> None:
        import requests

        self.sim = sim
        self.http = requests.Session()
        self.refresh_token = refresh_token or sim.refresh_token
        self._token: str | None = None

    def new_token(self) -> str:
        """Refresh and return a new access token."""
        resp = self.http.post(
            self.sim.url + "/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": self.sim.client_id,
                "client_secret": self.sim.client_secret,
                "refresh_token": self.refresh_token,
            },
        )
        body = resp.json()
        assert "access_token" in body, body
        self._token = str(body["access_token"])
        return self._token

    @property
    def token(self) -> str:
        """The current access token (refreshed on first use)."""
        return self._token or self.new_token()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send an authenticated request to ``sim.url + path``."""
        headers = {"Authorization": f"Zoho-oauthtoken {self.token}", **kwargs.pop("headers", {})}
        return self.http.request(method, self.sim.url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET with auth."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST with auth."""
        return self.request("POST", path, **kwargs)


@pytest.fixture
def client(simulator: Simulator) -> SimClient:
    """An authenticated client of the ``simulator`` fixture."""
    return SimClient(simulator)


@pytest.fixture
def make_client() -> Callable[..., SimClient]:
    """Build a ``SimClient`` for any simulator (and optionally another refresh token)."""
    return SimClient
