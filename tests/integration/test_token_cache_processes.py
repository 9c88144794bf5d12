"""The token cache across processes: scheduled runs reuse a live access token instead of minting one.

Zoho allows 10 new access tokens per 10 minutes and 15 live ones per refresh token, so two runs in
a row must cost one refresh between them, and the file holding the token must be owner-only.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connector.simulator import Simulator

REPO = Path(__file__).resolve().parents[2]
TOKEN_PATH = "/oauth/v2/token"


def cli_env(cache_dir: Path) -> dict[str, str]:
    """A clean environment whose token cache lives in ``cache_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_CRM_")}
    env["ZOHO_CRM_TOKEN_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run(command: str, connection: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``zoho-crm COMMAND --connection …`` in a fresh process; asserts it succeeded."""
    proc = subprocess.run(
        [sys.executable, "-m", "connector", command, "--connection", connection],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc


def check(connection: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``zoho-crm check`` in a fresh process (it always proves the refresh path)."""
    proc = run("check", connection, env)
    assert "missing scopes:  none" in proc.stdout
    return proc


def token_calls(sim: Simulator) -> int:
    return sum(1 for r in sim.requests if r.path == TOKEN_PATH)


def test_two_processes_share_one_refresh_through_an_owner_only_cache(
    simulator: Simulator, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    env = cli_env(cache_dir)
    connection = simulator.connection_string()

    # check mints a token on purpose; the scheduled command after it reuses that token.
    first = check(connection, env)
    second = run("modules", connection, env)

    assert token_calls(simulator) == 1
    assert "obtained a new access token" in first.stderr
    assert "obtained a new access token" not in second.stderr
    org_calls = [r for r in simulator.requests if r.path == "/crm/v8/org"]
    assert [r.status for r in org_calls] == [200]
    assert any(r.path == "/crm/v8/settings/modules" and r.status == 200 for r in simulator.requests)
    files = list(cache_dir.iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    text = files[0].read_text()
    # The cache holds the access token, never the long-lived credentials.
    assert simulator.refresh_token not in text
    assert simulator.client_secret not in text


def test_another_refresh_token_gets_its_own_cache_entry(
    simulator: Simulator, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    env = cli_env(cache_dir)
    other = simulator.issue_refresh_token(simulator.scopes)

    check(simulator.connection_string(), env)
    check(simulator.connection_string(OAuthRefreshToken=other), env)

    # A token minted for one refresh token is never handed to a run configured with another.
    assert token_calls(simulator) == 2
    assert len(list(cache_dir.iterdir())) == 2


def test_initiate_oauth_off_uses_the_given_token_and_caches_nothing(
    make_simulator: Callable[..., Simulator],
    make_client: Callable[..., Any],
    tmp_path: Path,
) -> None:
    sim = make_simulator()
    access_token = make_client(sim).new_token()
    assert token_calls(sim) == 1
    cache_dir = tmp_path / "cache"
    env = cli_env(cache_dir)
    connection = sim.connection_string(InitiateOAuth="OFF", OAuthAccessToken=access_token)

    check(connection, env)
    check(connection, env)

    assert token_calls(sim) == 1
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    assert len([r for r in sim.requests if r.path == "/crm/v8/org"]) == 2
