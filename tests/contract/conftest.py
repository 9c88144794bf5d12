"""Contract tests: Zoho's official Python SDK (``zohocrmsdk8-0``) drives the simulator.

The SDK is pointed at the simulator through a custom ``DataCenter.Environment`` (API URL, full
token URL, file-upload URL). Where the SDK trips, the simulator is wrong.

The SDK keeps global state (``Initializer``, ``Utility`` caches of module metadata); the
``make_sdk`` fixture initialises it for one test and resets it afterwards, so tests stay
independent. The SDK calls ``requests`` directly: every request it makes is checked to go to
loopback. The SDK also swallows some errors (an API call that fails to parse returns ``None`` and
only logs), so its log is captured and tests assert it holds no exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.util.api_response import APIResponse
from zohocrmsdk.src.com.zoho.crm.api.util.choice import Choice
from zohocrmsdk.src.com.zoho.crm.api.util.utility import Utility

from connector.simulator import Simulator

SDK_LOGGER = "SDKLogger"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class _LogCapture(logging.Handler):
    """Keeps every record the SDK logs during one test."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class SdkSession:
    """One SDK initialisation against one simulator."""

    sim: Simulator
    token: OAuthToken
    resource_path: Path
    environment: DataCenter.Environment
    log: _LogCapture
    store_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """SDK log lines that report an exception or an error (should be none)."""
        out = []
        for rec in self.log.records:
            text = rec.getMessage()
            if rec.levelno >= logging.ERROR or "exception" in text.lower():
                out.append(f"{rec.levelname}: {text}")
        return out

    def assert_clean(self) -> None:
        """Fail if the SDK logged an exception (it swallows some and returns None)."""
        assert self.problems() == []

    def result(self, response: APIResponse | None, status: int = 200) -> Any:
        """The parsed object of an SDK response, after checking the status and the log."""
        assert response is not None, self.problems()
        assert response.get_status_code() == status, response.get_status_code()
        obj = response.get_object()
        assert obj is not None, self.problems()
        self.assert_clean()
        return obj

    @staticmethod
    def plain(value: Any) -> Any:
        """An SDK value with its ``Choice`` wrappers (picklists, codes, messages) unwrapped."""
        if isinstance(value, Choice):
            return value.get_value()
        if isinstance(value, list):
            return [SdkSession.plain(v) for v in value]
        if isinstance(value, dict):
            return {k: SdkSession.plain(v) for k, v in value.items()}
        return value

    def paths(self, method: str | None = None) -> list[str]:
        """The paths of the simulator's request log, optionally for one method."""
        return [r.path for r in self.sim.requests if method is None or r.method == method]

    def new_token(self, **kwargs: Any) -> OAuthToken:
        """A fresh ``OAuthToken`` for the simulator's client (refresh grant)."""
        return OAuthToken(
            client_id=kwargs.pop("client_id", self.sim.client_id),
            client_secret=kwargs.pop("client_secret", self.sim.client_secret),
            refresh_token=kwargs.pop("refresh_token", self.sim.refresh_token),
            **kwargs,
        )


def reset_sdk_state() -> None:
    """Forget the SDK's process-wide state (initializer, per-user thread-local, metadata caches)."""
    Initializer.initializer = None
    Initializer.LOCAL.init = None
    Utility.api_supported_modules = {}
    Utility.new_file = False
    Utility.get_modified_modules = False
    Utility.force_refresh = False
    Utility.module_api_name = None


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every ``requests`` call made during a contract test must go to loopback."""
    offenders: list[str] = []
    original = requests.sessions.Session.request

    def guarded(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        host = urlsplit(str(url)).hostname or ""
        if host not in LOOPBACK_HOSTS:
            offenders.append(f"{method} {url}")
            raise requests.exceptions.ConnectionError(f"contract tests stay on loopback: {url}")
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.sessions.Session, "request", guarded)
    yield offenders
    assert offenders == []


@pytest.fixture
def make_sdk(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> Iterator[Callable[..., SdkSession]]:
    """Start a simulator (``Simulator`` kwargs) and initialise the SDK against it.

    ``sdk_config`` (an ``SDKConfig``) and ``token`` (an ``OAuthToken``) may be given; by default
    the SDK refreshes with the simulator's default client and refresh token.
    """
    capture = _LogCapture()
    sdk_logger = logging.getLogger(SDK_LOGGER)
    sdk_logger.addHandler(capture)
    counter = iter(range(1_000))
    sessions: list[SdkSession] = []

    def factory(
        *,
        sdk_config: SDKConfig | None = None,
        token: OAuthToken | None = None,
        **sim_kwargs: Any,
    ) -> SdkSession:
        sim = make_simulator(**sim_kwargs)
        resource = tmp_path / f"sdk-{next(counter)}"
        resource.mkdir()
        # The SDK's accounts_url is the full token URL, not the accounts host.
        environment = DataCenter.Environment(sim.url, sim.url + "/oauth/v2/token", sim.url)
        oauth = token or OAuthToken(
            client_id=sim.client_id,
            client_secret=sim.client_secret,
            refresh_token=sim.refresh_token,
        )
        store_path = resource / "sdk_tokens.txt"
        reset_sdk_state()
        Initializer.initialize(
            environment=environment,
            token=oauth,
            store=FileStore(str(store_path)),
            sdk_config=sdk_config or SDKConfig(),
            resource_path=str(resource),
            logger=Logger.get_instance(Logger.Levels.INFO, None),
        )
        session = SdkSession(
            sim=sim,
            token=oauth,
            resource_path=resource,
            environment=environment,
            log=capture,
            store_path=store_path,
        )
        sessions.append(session)
        return session

    try:
        yield factory
    finally:
        sdk_logger.removeHandler(capture)
        reset_sdk_state()
    for session in sessions:
        # Whatever the SDK sent, the simulator must answer it without crashing.
        assert session.sim.server_errors == []


@pytest.fixture
def sdk(make_sdk: Callable[..., SdkSession]) -> SdkSession:
    """The SDK initialised against a small simulated org (seed 7, 300 records)."""
    return make_sdk(records=300)
