"""Token lifecycle: refresh grant, expiry margin, 401 invalidation, threads, throttle, cache."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from support.fakehttp import fake_session, form_of, path_of, response, token_ok

from connector.config import InitiateOAuth, InstanceType, Region, Settings, Tuning
from connector.errors import AuthError, ZohoUnreachable
from connector.zoho.auth import TokenManager, default_cache_path
from connector.zoho.endpoints import Endpoints, resolve_endpoints

SECRET = "client-secret-abcdef123"
REFRESH = "1000.refresh.zzzzzz"


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "region": Region.US,
        "client_id": "1000.CLIENT",
        "client_secret": SECRET,
        "refresh_token": REFRESH,
        "access_token": "1000.supplied.token",
        "token_cache_path": tmp_path / "cache" / "tokens.json",
        "tuning": Tuning(retry_initial_wait=1.0, retry_max_wait=8.0, max_attempts=4),
    }
    values.update(overrides)
    return Settings(**values)


def manager(
    settings: Settings, script: list[Any], clock: Clock | None = None
) -> tuple[TokenManager, Any, list[float]]:
    session, adapter = fake_session(script)
    waits: list[float] = []
    tm = TokenManager(
        settings,
        resolve_endpoints(settings),
        session,
        clock=clock or Clock(),
        sleep=waits.append,
    )
    return tm, adapter, waits


def test_first_use_refreshes_with_form_body(tmp_path: Path) -> None:
    tm, adapter, _ = manager(make_settings(tmp_path), [token_ok("1000.new.aaa")])
    assert tm.access_token() == "1000.new.aaa"
    (req,) = adapter.requests
    assert req.method == "POST"
    assert req.url == "https://accounts.zoho.com/oauth/v2/token"
    assert form_of(req) == {
        "grant_type": "refresh_token",
        "client_id": "1000.CLIENT",
        "client_secret": SECRET,
        "refresh_token": REFRESH,
    }
    assert tm.refresh_count == 1


def test_expiry_margin_and_expired_token(tmp_path: Path) -> None:
    clock = Clock()
    tm, adapter, _ = manager(
        make_settings(tmp_path), [token_ok("1000.one.aaa"), token_ok("1000.two.bbb")], clock
    )
    assert tm.access_token() == "1000.one.aaa"
    clock.now += 3600 - 301  # still outside the 300 s margin
    assert tm.access_token() == "1000.one.aaa"
    clock.now += 2  # inside the margin: refresh ahead of expiry
    assert tm.access_token() == "1000.two.bbb"
    assert len(adapter.requests) == 2


def test_expires_in_milliseconds_with_expires_in_sec(tmp_path: Path) -> None:
    clock = Clock()
    tm, _, _ = manager(
        make_settings(tmp_path),
        [
            response(
                200, {"access_token": "1000.ms.aaa", "expires_in": 3600000, "expires_in_sec": 3600}
            ),
            token_ok("1000.next.bbb"),
        ],
        clock,
    )
    tm.access_token()
    clock.now += 3200  # within an hour minus margin: still live
    assert tm.access_token() == "1000.ms.aaa"
    clock.now += 200
    assert tm.access_token() == "1000.next.bbb"


def test_short_lived_token_is_not_refreshed_on_every_call(tmp_path: Path) -> None:
    clock = Clock()
    tm, adapter, _ = manager(
        make_settings(tmp_path), [token_ok("1000.short.aaa", expires_in=60)], clock
    )
    tm.access_token()
    clock.now += 20
    assert tm.access_token() == "1000.short.aaa"
    assert len(adapter.requests) == 1


def test_invalidate_refreshes_once(tmp_path: Path) -> None:
    tm, adapter, _ = manager(
        make_settings(tmp_path), [token_ok("1000.one.aaa"), token_ok("1000.two.bbb")]
    )
    first = tm.access_token()
    tm.invalidate(first)
    assert tm.access_token() == "1000.two.bbb"
    # A second thread reporting the same old token must not cause another refresh.
    tm.invalidate(first)
    assert tm.access_token() == "1000.two.bbb"
    assert len(adapter.requests) == 2


def test_eight_threads_one_refresh(tmp_path: Path) -> None:
    calls: list[str] = []
    entered = threading.Event()

    def handler(req: requests.PreparedRequest) -> requests.Response:
        calls.append(path_of(req))
        entered.set()
        return token_ok(f"1000.t{len(calls)}.aaa")

    session, _ = fake_session(handler=handler)
    clock = Clock()
    settings = make_settings(tmp_path)
    tm = TokenManager(
        settings, resolve_endpoints(settings), session, clock=clock, sleep=lambda s: None
    )
    tm.access_token()
    clock.now += 7200  # the token has expired
    barrier = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(timeout=10)
        token = tm.access_token()
        with lock:
            results.append(token)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(calls) == 2  # the initial refresh + exactly one for the expired token
    assert results == ["1000.t2.aaa"] * 8


THROTTLE = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}


@pytest.mark.parametrize("status", [200, 400])
def test_throttle_waits_for_the_window_then_succeeds(tmp_path: Path, status: int) -> None:
    tm, adapter, waits = manager(
        make_settings(tmp_path),
        [response(status, THROTTLE), response(status, THROTTLE), token_ok("1000.ok.aaa")],
    )
    assert tm.access_token() == "1000.ok.aaa"
    # Never again within seconds: each wait covers Zoho's whole 10-minute window.
    assert waits == [610.0, 610.0]
    assert len(adapter.requests) == 3


def test_throttle_gives_up_with_clear_message(tmp_path: Path) -> None:
    tm, adapter, waits = manager(make_settings(tmp_path), [response(200, THROTTLE)] * 4)
    with pytest.raises(AuthError, match=r"throttling token refreshes \(10 per 10 minutes") as info:
        tm.access_token()
    assert "after waiting 20 minutes" in str(info.value)
    assert waits == [610.0, 610.0]
    assert len(adapter.requests) == 3


def test_throttle_wait_picks_up_a_token_another_process_cached(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    other, _, _ = manager(settings, [token_ok("1000.other.aaa")], clock=clock)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        assert other.access_token() == "1000.other.aaa"  # meanwhile, another run refreshed

    session, adapter = fake_session([response(200, THROTTLE)])
    tm = TokenManager(settings, resolve_endpoints(settings), session, clock=clock, sleep=sleep)
    assert tm.access_token() == "1000.other.aaa"
    assert waits == [610.0]
    assert len(adapter.requests) == 1  # no second ask: the cached token was live


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"error": "invalid_client"}, "rejected the client id/secret at accounts.zoho.com"),
        ({"error": "invalid_client_secret"}, "Region matches the data centre"),
        ({"error": "invalid_code"}, "generate a new OAuthRefreshToken"),
        ({"error": "unsupported_grant_type"}, "unsupported_grant_type"),
        ({"status": "failure"}, "Zoho refused the token refresh"),
    ],
)
def test_token_errors_are_actionable_and_secret_free(
    tmp_path: Path, body: dict[str, str], needle: str
) -> None:
    tm, _, _ = manager(make_settings(tmp_path), [response(200, body)])
    with pytest.raises(AuthError, match=needle) as info:
        tm.access_token()
    assert SECRET not in str(info.value) and REFRESH not in str(info.value)
    assert AuthError.exit_code == 3


def test_unreachable_accounts_server_is_retried_then_exit_6_naming_host(tmp_path: Path) -> None:
    # A network failure is not a credential problem: retried like a 5xx, then exit 6, not 3.
    settings = make_settings(tmp_path, region=Region.EU)
    attempts = settings.tuning.max_attempts
    refused = requests.ConnectionError("[Errno 111] Connection refused")
    tm, _, waits = manager(settings, [refused] * attempts)
    with pytest.raises(ZohoUnreachable, match=r"accounts.zoho.eu.*connection refused.*Region"):
        tm.access_token()
    assert len(waits) == attempts - 1
    assert ZohoUnreachable.exit_code == 6 and not issubclass(ZohoUnreachable, AuthError)


def test_a_connection_error_then_a_token_is_a_token(tmp_path: Path) -> None:
    tm, _, waits = manager(
        make_settings(tmp_path), [requests.ConnectionError("reset"), token_ok("1000.ok.bbb")]
    )
    assert tm.access_token() == "1000.ok.bbb"
    assert waits == [1.0]


def test_non_json_body(tmp_path: Path) -> None:
    tm, _, _ = manager(make_settings(tmp_path), [response(200, body="<html>hello</html>")])
    with pytest.raises(AuthError, match="without a JSON token response"):
        tm.access_token()


def test_server_error_is_retried(tmp_path: Path) -> None:
    tm, _, waits = manager(
        make_settings(tmp_path), [response(503, body="busy"), token_ok("1000.ok.aaa")]
    )
    assert tm.access_token() == "1000.ok.aaa"
    assert waits == [1.0]


# -- persisted cache --------------------------------------------------------------------------


def test_cache_written_owner_only_and_reused_by_second_manager(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    tm, _, _ = manager(settings, [token_ok("1000.cached.aaa", scope="ZohoCRM.org.READ")], clock)
    tm.access_token()
    path = settings.token_cache_path
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["access_token"] == "1000.cached.aaa"
    assert data["expires_at"] == clock.now + 3600
    assert data["scope"] == "ZohoCRM.org.READ"
    assert "api_domain" in data
    assert SECRET not in path.read_text() and REFRESH not in path.read_text()
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind

    clock.now += 600
    second, adapter2, _ = manager(settings, [], clock)  # any request would fail the test
    assert second.access_token() == "1000.cached.aaa"
    assert second.granted_scopes == ("ZohoCRM.org.READ",)
    assert adapter2.requests == []


def test_expired_cache_is_refreshed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    tm, _, _ = manager(settings, [token_ok("1000.old.aaa")], clock)
    tm.access_token()
    clock.now += 3600
    second, adapter2, _ = manager(settings, [token_ok("1000.new.bbb")], clock)
    assert second.access_token() == "1000.new.bbb"
    assert len(adapter2.requests) == 1
    assert (
        json.loads(Path(str(settings.token_cache_path)).read_text())["access_token"]
        == "1000.new.bbb"
    )


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", '{"access_token": 5, "expires_at": 1}', ""]
)
def test_corrupt_cache_is_ignored_with_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    path = Path(str(settings.token_cache_path))
    path.parent.mkdir(parents=True)
    path.write_text(content)
    tm, adapter, _ = manager(settings, [token_ok("1000.fresh.aaa")])
    with caplog.at_level("WARNING", logger="connector.zoho.auth"):
        assert tm.access_token() == "1000.fresh.aaa"
    assert any("unreadable token cache" in w for w in tm.warnings)
    assert "unreadable token cache" in caplog.text
    assert len(adapter.requests) == 1


def test_cache_of_another_client_is_not_used(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    tm, _, _ = manager(settings, [token_ok("1000.mine.aaa")])
    tm.access_token()
    other = make_settings(tmp_path, refresh_token="1000.other.refresh")
    tm2, adapter2, _ = manager(other, [token_ok("1000.theirs.bbb")])
    assert tm2.access_token() == "1000.theirs.bbb"
    assert len(adapter2.requests) == 1


def test_cache_minted_with_another_client_secret_is_not_used(tmp_path: Path) -> None:
    # A mistyped secret must fail now, not when the old secret's token expires hours later.
    settings = make_settings(tmp_path)
    tm, _, _ = manager(settings, [token_ok("1000.mine.aaa")])
    tm.access_token()
    changed = make_settings(tmp_path, client_secret="another-secret-0123456789")
    tm2, adapter2, _ = manager(changed, [response(200, {"error": "invalid_client"})])
    with pytest.raises(AuthError, match="invalid_client"):
        tm2.access_token()
    assert len(adapter2.requests) == 1


def test_cache_without_its_client_fingerprint_is_not_used(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = Path(str(settings.token_cache_path))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"access_token": "1000.legacy.aaa", "expires_at": 4e9}))
    tm, adapter, _ = manager(settings, [token_ok("1000.fresh.bbb")])
    assert tm.access_token() == "1000.fresh.bbb"
    assert len(adapter.requests) == 1


def test_refresh_now_refreshes_once_despite_a_live_cached_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    tm, _, _ = manager(settings, [token_ok("1000.cached.aaa")])
    tm.access_token()
    tm2, adapter2, _ = manager(settings, [token_ok("1000.proof.bbb")])
    assert tm2.refresh_now() == "1000.proof.bbb"
    assert tm2.access_token() == "1000.proof.bbb"
    assert len(adapter2.requests) == 1


def test_default_cache_path(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, token_cache_path=None)
    path = default_cache_path(settings, {"ZOHO_CRM_TOKEN_CACHE_DIR": str(tmp_path / "d")})
    assert path.parent == tmp_path / "d"
    assert path.name.startswith("tokens-") and path.suffix == ".json"
    assert REFRESH not in path.name
    other = make_settings(tmp_path, token_cache_path=None, refresh_token="1000.other.refresh")
    assert default_cache_path(other, {"ZOHO_CRM_TOKEN_CACHE_DIR": str(tmp_path / "d")}) != path
    session, _ = fake_session([token_ok()])
    tm = TokenManager(
        settings,
        resolve_endpoints(settings),
        session,
        environ={"ZOHO_CRM_TOKEN_CACHE_DIR": str(tmp_path / "d")},
    )
    tm.access_token()
    assert path.exists()


# -- OFF mode -----------------------------------------------------------------------------------


def test_off_mode_uses_given_token_and_never_refreshes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, initiate_oauth=InitiateOAuth.OFF)
    tm, adapter, _ = manager(settings, [])
    assert tm.access_token() == "1000.supplied.token"
    tm.invalidate("1000.supplied.token")
    with pytest.raises(
        AuthError, match="supply a new OAuthAccessToken or set InitiateOAuth=REFRESH"
    ):
        tm.access_token()
    assert adapter.requests == []
    assert not Path(str(settings.token_cache_path)).exists()
    assert tm.cache_path is None


# -- api_domain and scopes ------------------------------------------------------------------


def test_api_domain_honoured_for_production(tmp_path: Path) -> None:
    tm, _, _ = manager(make_settings(tmp_path), [token_ok(api_domain="https://www.zohoapis.com")])
    tm.access_token()
    assert tm.api_domain == "https://www.zohoapis.com"
    assert tm.warnings == []


def test_api_domain_contradicting_region_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tm, _, _ = manager(make_settings(tmp_path), [token_ok(api_domain="https://www.zohoapis.eu")])
    with caplog.at_level("WARNING", logger="connector.zoho.auth"):
        tm.access_token()
    assert tm.api_domain == "https://www.zohoapis.eu"
    assert "set Region=EU" in caplog.text


@pytest.mark.parametrize(
    "overrides",
    [{"api_domain": "http://127.0.0.1:5"}, {"instance_type": InstanceType.SANDBOX}],
)
def test_api_domain_ignored(tmp_path: Path, overrides: dict[str, Any]) -> None:
    settings = make_settings(tmp_path, **overrides)
    tm, _, _ = manager(settings, [token_ok(api_domain="https://www.zohoapis.com")])
    tm.access_token()
    assert tm.api_domain is None


@pytest.mark.parametrize(
    ("extra", "scopes"),
    [
        (
            {"scope": "ZohoCRM.modules.ALL ZohoCRM.org.READ"},
            ("ZohoCRM.modules.ALL", "ZohoCRM.org.READ"),
        ),
        (
            {"scope": "ZohoCRM.modules.ALL,ZohoCRM.org.READ"},
            ("ZohoCRM.modules.ALL", "ZohoCRM.org.READ"),
        ),
        ({}, None),
    ],
)
def test_granted_scopes(
    tmp_path: Path, extra: dict[str, str], scopes: tuple[str, ...] | None
) -> None:
    tm, _, _ = manager(make_settings(tmp_path), [token_ok(**extra)])
    tm.access_token()
    assert tm.granted_scopes == scopes


def test_refresh_listener_counts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    session, _ = fake_session([token_ok()])
    tm = TokenManager(settings, Endpoints("http://127.0.0.1:1", "http://127.0.0.1:1"), session)
    seen: list[int] = []
    tm.add_refresh_listener(lambda: seen.append(1))
    tm.access_token()
    assert seen == [1]
