"""Every command, run with known secrets (and with ``--debug`` and ``--log-format json``), never
shows a secret: not on stdout or stderr, not in manifests, state or any other file it writes, not
in error text. The token cache holds the access token, owner-only (0600)."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support.reliability import CliResult, cli_env, run_cli

from connector.simulator import DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, Simulator

CLIENT_SECRET = "reliability-client-secret-7f3a9c2e51d04b86"
REFRESH_TOKEN = "1000.reliabilityrefresh7f3a9c2e51d04b86.b1e5d7a3c9f2e8d4a6b0c3e7f1a5d9b2"
SUPPLIED_ACCESS = "1000.suppliedaccesstoken7f3a9c2e51d0.4b86a1c3e5d7f9b2d4e6a8c0e2f4a6b8"
WRONG_SECRET = "wrong-client-secret-1e9d7c5b3a2f4e6d"
REDIRECT = "http://localhost:8765/callback"
# Any token the simulator mints (access, refresh): "1000." + 32 hex + "." + 32 hex.
MINTED = re.compile(rb"1000\.[0-9a-f]{32}\.[0-9a-f]{32}")
VARIANTS = {"text": [], "debug": ["--debug"], "json": ["--log-format", "json"]}


def _grant_code(sim: Simulator) -> str:
    answer = requests.get(
        sim.url + "/oauth/v2/auth",
        params={
            "response_type": "code",
            "client_id": sim.client_id,
            "scope": "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL",
            "redirect_uri": REDIRECT,
            "access_type": "offline",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.timeout(240)
def test_no_command_shows_a_secret(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(
        seed=9,
        download_limit_per_minute=10_000,
        records=120,
        bulk_page_size=50,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
    )
    home = tmp_path / "home"
    home.mkdir()

    def conn(variant: str, **extra: str) -> str:
        return sim.connection_string(
            OAuthSettingsLocation=str(tmp_path / variant / "tokens.json"),
            OAuthAccessToken=SUPPLIED_ACCESS,
            **extra,
        )

    results: dict[str, CliResult] = {}

    def run(label: str, args: list[str], env_extra: dict[str, str] | None = None) -> None:
        results[label] = run_cli(args, cli_env(home, env_extra))

    # Phase 1: an extract per variant (the later commands read its output).
    with ThreadPoolExecutor(3) as pool:
        for variant, flags in VARIANTS.items():
            out = tmp_path / variant / "out"
            out.parent.mkdir()  # an output's parent must exist (the output itself is created)
            pool.submit(
                run,
                f"{variant}:extract",
                [*flags, "extract", "-o", str(out), "-c", conn(variant), "-m", "Leads,Notes"],
            )
    # A live access token with InitiateOAuth=OFF: it travels in every request header.
    live = requests.post(
        sim.url + "/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": sim.client_id,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
        },
        timeout=10,
    ).json()["access_token"]

    # Phase 2: every other command, per variant, plus error paths.
    jobs: list[tuple[str, list[str], dict[str, str] | None]] = []
    for variant, flags in VARIANTS.items():
        out = str(tmp_path / variant / "out")
        c = conn(variant)
        jobs += [
            (f"{variant}:check", [*flags, "check", "-c", c], None),
            (f"{variant}:modules", [*flags, "modules", "-c", c, "--counts"], None),
            (f"{variant}:plan", [*flags, "plan", "-c", c, "-m", "Leads", "-o", out], None),
            (
                f"{variant}:incremental",
                [*flags, "extract", "-o", out, "-c", c, "-m", "Leads"],
                None,
            ),
            (f"{variant}:state", [*flags, "state", out], None),
            (
                f"{variant}:snapshot",
                [
                    *flags,
                    "snapshot",
                    out,
                    "-m",
                    "Leads",
                    "--out",
                    str(tmp_path / variant / "s.parquet"),
                ],
                None,
            ),
            (
                f"{variant}:auth-url",
                [*flags, "auth", "url", "--client-id", sim.client_id, "--accounts-server", sim.url],
                None,
            ),
            (
                f"{variant}:auth-exchange",
                [
                    *flags,
                    "auth",
                    "exchange",
                    "--code",
                    _grant_code(sim),
                    "--client-id",
                    sim.client_id,
                    "--accounts-server",
                    sim.url,
                    "--redirect-uri",
                    REDIRECT,
                ],
                {"ZOHO_CRM_OAUTHCLIENTSECRET": CLIENT_SECRET},
            ),
            (
                f"{variant}:auth-exchange-argument",
                [
                    *flags,
                    "auth",
                    "exchange",
                    "--code",
                    _grant_code(sim),
                    "--client-id",
                    sim.client_id,
                    "--client-secret",
                    CLIENT_SECRET,
                    "--accounts-server",
                    sim.url,
                    "--redirect-uri",
                    REDIRECT,
                ],
                None,
            ),
            (
                f"{variant}:demo",
                [*flags, "demo", "-o", str(tmp_path / variant / "demo"), "--records", "60"],
                None,
            ),
            (
                f"{variant}:access-token-off",
                [
                    *flags,
                    "extract",
                    "-o",
                    str(tmp_path / variant / "off"),
                    "-m",
                    "Accounts",
                    "-c",
                    sim.connection_string(
                        InitiateOAuth="OFF",
                        OAuthAccessToken=live,
                        OAuthSettingsLocation=str(tmp_path / variant / "off-tokens.json"),
                    ),
                ],
                None,
            ),
            # Error paths: a wrong client secret, a refused access token, a bad value next to
            # secrets in the connection string, a mistyped refresh token.
            (
                f"{variant}:wrong-secret",
                [
                    *flags,
                    "check",
                    "-c",
                    conn(f"{variant}-wrong", OAuthClientSecret=WRONG_SECRET),
                ],
                None,
            ),
            (
                f"{variant}:refused-access",
                [
                    *flags,
                    "modules",
                    "-c",
                    sim.connection_string(InitiateOAuth="OFF", OAuthAccessToken=SUPPLIED_ACCESS),
                ],
                None,
            ),
            (
                f"{variant}:bad-config",
                [
                    *flags,
                    "check",
                    "-c",
                    conn(variant, Region="Mars", OAuthRefreshTokn=REFRESH_TOKEN),
                ],
                None,
            ),
            (
                f"{variant}:bad-refresh",
                [
                    *flags,
                    "extract",
                    "-o",
                    str(tmp_path / variant / "bad"),
                    "-c",
                    conn(f"{variant}-bad", OAuthRefreshToken=REFRESH_TOKEN + "x"),
                ],
                None,
            ),
        ]
    with ThreadPoolExecutor(4) as pool:
        for label, args, env_extra in jobs:
            pool.submit(run, label, args, env_extra)

    secrets = [
        CLIENT_SECRET,
        REFRESH_TOKEN,
        REFRESH_TOKEN + "x",
        SUPPLIED_ACCESS,
        WRONG_SECRET,
        live,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_REFRESH_TOKEN,
        *sim.oauth.access_tokens,
        *sim.oauth.refresh_tokens,
    ]
    assert len(results) == 3 + len(jobs)

    _assert_exit_codes(results)
    _assert_no_secret_shown(results, secrets)
    _assert_no_secret_stored(tmp_path, secrets, sim)


def _assert_exit_codes(results: dict[str, CliResult]) -> None:
    """The commands did what they should (so the test saw their real output, errors included)."""
    for variant in VARIANTS:
        for ok in ("extract", "check", "modules", "plan", "incremental", "state", "snapshot"):
            assert results[f"{variant}:{ok}"].returncode == 0, results[f"{variant}:{ok}"].describe()
        for ok in (
            "auth-url",
            "auth-exchange",
            "auth-exchange-argument",
            "demo",
            "access-token-off",
        ):
            assert results[f"{variant}:{ok}"].returncode == 0, results[f"{variant}:{ok}"].describe()
        assert results[f"{variant}:wrong-secret"].returncode == 3
        assert results[f"{variant}:refused-access"].returncode == 3
        assert results[f"{variant}:bad-config"].returncode == 2
        assert results[f"{variant}:bad-refresh"].returncode == 3
        assert "OAuthRefreshToken=" in results[f"{variant}:auth-exchange"].stdout


def _assert_no_secret_shown(results: dict[str, CliResult], secrets: list[str]) -> None:
    """No command's output shows a secret or a minted token, tracebacks included."""
    for label, result in results.items():
        text = (result.stdout + result.stderr).encode()
        for secret in secrets:
            assert secret.encode() not in text, f"{label} shows a secret\n{result.describe()}"
        assert not MINTED.search(text), f"{label} shows a token\n{result.describe()}"
    # With --debug, the error paths print a traceback: it is masked too (checked above).
    assert "Traceback" in results["debug:bad-refresh"].stderr
    for variant in ("text", "json"):
        assert "Traceback" not in results[f"{variant}:bad-refresh"].stderr


def _assert_no_secret_stored(tmp_path: Path, secrets: list[str], sim: Simulator) -> None:
    """Manifests, state, data, snapshots and demo output hold no secret; caches only the token."""
    caches = [p for p in _files(tmp_path) if p.name.endswith("tokens.json")]
    for path in _files(tmp_path):
        if path in caches:
            continue
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{path} holds a secret"
        assert not MINTED.search(data), f"{path} holds a token"
    assert caches, "a token cache was written"
    for cache in caches:
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600, cache
        doc = json.loads(cache.read_text())
        assert doc["access_token"] in sim.oauth.access_tokens
        body = cache.read_bytes()
        for secret in (CLIENT_SECRET, REFRESH_TOKEN, SUPPLIED_ACCESS, WRONG_SECRET):
            assert secret.encode() not in body, f"{cache} holds more than the access token"
    manifests = list(tmp_path.rglob("_runs/*.json"))
    assert len(manifests) >= 6
