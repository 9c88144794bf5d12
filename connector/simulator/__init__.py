"""A local Zoho CRM: accounts server and API domain on one loopback HTTP server.

``Simulator`` starts it in-process (tests, ``zoho-crm demo``); ``serve_forever`` runs it in the
foreground (``zoho-crm simulate``). The heavy imports happen when a simulator is built, so the
data-layer modules can be imported on their own.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from connector.simulator.credits import CreditLedger
from connector.simulator.faults import DEFAULT_THROTTLE_MESSAGE, FaultConfig
from connector.simulator.oauth import OAuthServer

if TYPE_CHECKING:
    from connector.simulator.server import RequestRecord, SimApp, SimHTTPServer
    from connector.simulator.store import Org

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REFRESH_TOKEN",
    "DEFAULT_SCOPES",
    "FaultConfig",
    "Simulator",
    "serve_forever",
]

# Fixed, clearly fake credentials, so a connection string pasted from `zoho-crm simulate` works
# against any simulator started with the defaults.
# What ``zoho-crm simulate`` prints as its example of changing the org between runs.
MUTATE_EXAMPLE = (
    '[{"op": "insert", "module": "Leads", "values": {"Last_Name": "Ng", "Company": "Zylker"}}]'
)
DEFAULT_CLIENT_ID = "1000.SIMULATORCLIENTID0000000000000"
DEFAULT_CLIENT_SECRET = "sim-client-secret-not-a-real-secret"
DEFAULT_REFRESH_TOKEN = "1000.simrefreshtoken0000000000000000.notarealtoken00000000000000000"
DEFAULT_SCOPES: tuple[str, ...] = (
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.users.READ",
    "ZohoCRM.org.READ",
    "ZohoCRM.coql.READ",
    "ZohoCRM.bulk.READ",
)


class Simulator:
    """A running (or ready to run) simulated Zoho CRM.

    Usage::

        with Simulator(records=200) as sim:
            requests.get(sim.url + "/crm/v8/org", headers=...)

    ``org``, ``credits``, ``requests`` and ``faults`` are live views tests can read and change.

    Zoho's limits are on by default: 10 Bulk downloads a minute (``download_limit_per_minute``),
    10 new tokens per refresh token in 10 minutes. Every 429 carries ``throttle_message`` (by
    default one that speaks of credits, whatever the cause) and no ``Retry-After`` unless
    ``retry_after`` (seconds) is given; ``oauth_throttle_status`` is the token throttle's status
    (200 as Kaizen #43 says; Singer's tap sees 400).
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        records: int = 1000,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        token_lifetime: int = 3600,
        bulk_page_size: int = 200_000,
        bulk_polls: int = 2,
        daily_credits: int | None = None,
        download_limit_per_minute: int = 10,
        throttle_message: str = DEFAULT_THROTTLE_MESSAGE,
        retry_after: int | None = None,
        oauth_throttle_status: int = 200,
        faults: FaultConfig | None = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        fixture: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
    ) -> None:
        from connector.simulator.clock import utc_now
        from connector.simulator.store import Org

        self.host = host
        self.port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.scopes = tuple(scopes)
        self.clock: Callable[[], datetime] = clock or utc_now
        self.org: Org = Org.build(seed=seed, records=records, fixture=fixture, clock=self.clock)
        self.faults = faults or FaultConfig()
        self.credits = CreditLedger(clock=self.clock, daily_limit=daily_credits)
        self.oauth = OAuthServer(clock=self.clock, token_lifetime=token_lifetime)
        self.oauth.register_client(client_id, client_secret)
        self.oauth.issue_refresh_token(client_id, self.scopes, token=refresh_token)
        self._settings: dict[str, Any] = {
            "bulk_page_size": bulk_page_size,
            "bulk_polls": bulk_polls,
            "download_limit_per_minute": download_limit_per_minute,
            "throttle_message": throttle_message,
            "retry_after": retry_after,
            "oauth_throttle_status": oauth_throttle_status,
            "sleep": sleep,
        }
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self.app: SimApp | None = None
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Bind the port and serve in a background thread."""
        from connector.simulator.server import SimApp, SimHTTPServer

        if self._server is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="zoho-sim-"))
        self.app = SimApp(
            org=self.org,
            oauth=self.oauth,
            credits=self.credits,
            faults=self.faults,
            workdir=self._workdir,
            **self._settings,
        )
        server = SimHTTPServer((self.host, self.port), self.app)
        self.url = f"http://{self.host}:{server.server_address[1]}"
        self.oauth.api_domain = self.url
        self.oauth.accounts_server = self.url
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="zoho-sim",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the bulk result files."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- views ----------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """Every API and accounts call so far (``/_sim`` control calls excluded)."""
        return self.app.requests if self.app is not None else []

    @property
    def server_errors(self) -> list[str]:
        """Unexpected exceptions the server turned into 500s (should stay empty)."""
        return list(self._server.errors) if self._server is not None else []

    def connection_string(self, **overrides: str) -> str:
        """A connection string that works against this simulator; keys in ``overrides`` win."""
        pairs: dict[str, str] = {
            "Region": "US",
            "InstanceType": "Production",
            "InitiateOAuth": "REFRESH",
            "OAuthClientId": self.client_id,
            "OAuthClientSecret": self.client_secret,
            "OAuthRefreshToken": self.refresh_token,
            "Scope": ",".join(self.scopes),
            "UseCOQL": "false",
            "APIType": "Bulk",
            "AccountsServer": self.url,
            "APIDomain": self.url,
        }
        pairs.update(overrides)
        return " ".join(f"{k}={v};" for k, v in pairs.items())

    def issue_refresh_token(self, scopes: Sequence[str]) -> str:
        """Another refresh token of the default client, granting ``scopes``."""
        return self.oauth.issue_refresh_token(self.client_id, scopes)

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token (its access tokens die with it)."""
        self.oauth.revoke(refresh_token)


def serve_forever(
    *,
    port: int = 8765,
    host: str = "127.0.0.1",
    seed: int = 7,
    records: int = 1000,
    faults: FaultConfig | None = None,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    **kwargs: Any,
) -> None:
    """Run a simulator in the foreground until Ctrl-C or SIGTERM (``zoho-crm simulate``).

    Prints the base URL, then a line beginning ``connection: `` with a ready-to-paste connection
    string, then how to change the org's data between runs (``POST /_sim/mutate``). ``stop`` (set it to end the loop) is for callers that run it in a thread.
    """
    stop_event = stop or threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_signal) if in_main else None
    sim = Simulator(port=port, host=host, seed=seed, records=records, faults=faults, **kwargs)
    try:
        sim.start()
        echo(f"Zoho CRM simulator listening on {sim.url}")
        echo(f"connection: {sim.connection_string()}")
        echo(f"change data: POST a JSON list of operations to {sim.url}/_sim/mutate, e.g.")
        echo(f"  curl -s -X POST {sim.url}/_sim/mutate -d '{MUTATE_EXAMPLE}'")
        echo('  (ops: insert; update with "values" and delete name a record\'s "id")')
        try:
            while not stop_event.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        sim.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
