"""Bad input at the command line: a clear one-line error that names what to fix, the documented exit
code, and no traceback unless ``--debug`` asks for one.

Exit codes: 2 configuration, 3 authentication, 1 anything else. Log lines (INFO/WARNING, such as a
warning about an unknown key) may come before the error on stderr, since they carry useful
context; the error itself is exactly one line starting with ``error:``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.cli import clean_env, run_cli

from connector.simulator import DEFAULT_SCOPES, Simulator

# Small waits and few attempts, so failures that retry still end in well under a second.
FAST_TUNING = {
    "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0",
    "ZOHO_CRM_TUNING_RETRY_MAX_WAIT": "0",
    "ZOHO_CRM_TUNING_MAX_ATTEMPTS": "2",
}


def cli_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no inherited ZOHO_CRM_* settings, a private token cache, tiny waits."""
    return clean_env(tmp_path, FAST_TUNING)


# A text log line: "2026-01-01 12:00:00,123 WARNING connector.cli: …".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) connector\.")
SECRET = "s3cret-value-that-must-never-print"


def one_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Assert the exit code, one ``error:`` line holding every needle, only log lines besides it."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    others = [line for line in lines if not line.startswith("error: ")]
    assert all(LOG_LINE.match(line) for line in others), others
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert SECRET not in proc.stderr + proc.stdout
    return errors[0]


# --- configuration: exit 2 -------------------------------------------------------------------

CREDS = f"OAuthClientId=1000.ABC; OAuthClientSecret={SECRET}; OAuthRefreshToken=1000.r.t"


@pytest.mark.parametrize(
    ("command", "connection", "needles"),
    [
        pytest.param("check", "Region US; " + CREDS, ["has no '='", "Key=Value"], id="no-equals"),
        pytest.param(
            "extract", "Region=Mars; " + CREDS, ["Region='Mars'", "US", "EU"], id="unknown-region"
        ),
        pytest.param(
            "plan", "Region=US; region=EU; " + CREDS, ["Region", "twice"], id="duplicate-key"
        ),
        pytest.param(
            "modules",
            f"Region=US; OAuthClientId=1000.ABC; OAuthClientSecret={SECRET}",
            ["OAuthRefreshToken", "required"],
            id="missing-refresh-token",
        ),
    ],
)
def test_a_broken_connection_string_exits_2_naming_the_key(
    command: str, connection: str, needles: list[str], tmp_path: Path
) -> None:
    args = [command, "--connection", connection]
    if command == "extract":
        args += ["--output", str(tmp_path)]
    one_error(run_cli(*args, env=cli_env(tmp_path)), 2, *needles)


def test_a_misspelled_optional_key_is_a_warning_naming_the_right_key(
    simulator: Simulator, tmp_path: Path
) -> None:
    connection = simulator.connection_string() + " UseCOQ=true;"
    proc = run_cli("check", "--connection", connection, env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, proc.stderr
    assert "unknown key 'UseCOQ'" in warnings[0]
    assert "did you mean UseCOQL?" in warnings[0]
    assert "missing scopes:  none" in proc.stdout


def test_a_misspelled_required_key_fails_naming_the_key_to_set(tmp_path: Path) -> None:
    connection = (
        f"Region=US; OAuthClientId=1000.ABC; OAuthClientSecret={SECRET}; OAuthRefeshToken=1000.r.t"
    )
    proc = run_cli("check", "--connection", connection, env=cli_env(tmp_path))
    one_error(proc, 2, "OAuthRefreshToken is required")
    assert "1000.r.t" not in proc.stderr


def test_an_unknown_module_exits_2_suggesting_the_close_match(
    simulator: Simulator, tmp_path: Path
) -> None:
    proc = run_cli(
        "extract",
        "--connection",
        simulator.connection_string(),
        "--output",
        str(tmp_path),
        "--modules",
        "Leds",
        env=cli_env(tmp_path),
    )
    one_error(proc, 2, "'Leds'", "Leads")
    assert not (tmp_path / "Leds").exists()


@pytest.mark.parametrize("workers", ["0", "11", "25", "-1"])
def test_workers_outside_1_to_10_exit_2_naming_the_range(tmp_path: Path, workers: str) -> None:
    # Zoho allows 10 concurrent calls per org: more workers were once silently cut to 10.
    proc = run_cli(
        "extract", "--output", str(tmp_path / "out"), "--workers", workers, env=cli_env(tmp_path)
    )
    one_error(proc, 2, "--workers", "from 1 to 10", f"not {workers}")
    assert not (tmp_path / "out").exists()


def test_extract_help_names_the_workers_range(tmp_path: Path) -> None:
    proc = run_cli("extract", "--help", env={**cli_env(tmp_path), "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "--workers" in line)
    assert "1 to 10" in line


def test_a_bad_log_format_exits_2(tmp_path: Path) -> None:
    proc = run_cli("--log-format", "xml", "check", env=cli_env(tmp_path))
    one_error(proc, 2, "--log-format", "json")


# --- authentication: exit 3 ------------------------------------------------------------------


def test_a_wrong_client_secret_exits_3_naming_the_secret_and_region(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(client_secret="the-real-secret")
    proc = run_cli(
        "check",
        "--connection",
        sim.connection_string(OAuthClientSecret=SECRET),
        env=cli_env(tmp_path),
    )
    one_error(proc, 3, "OAuthClientSecret", "Region")
    assert proc.stdout == ""
    token_calls = [r for r in sim.requests if r.path == "/oauth/v2/token"]
    assert [r.code for r in token_calls] == ["invalid_client"]


def test_a_changed_client_secret_exits_3_although_a_cached_token_is_valid(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(client_secret="the-real-secret")
    env = cli_env(tmp_path)
    good = run_cli("check", "--connection", sim.connection_string(), env=env)
    assert good.returncode == 0, good.stderr
    # check proves the refresh path every time: one refresh each, never more.
    assert [r.code for r in sim.requests if r.path == "/oauth/v2/token"] == [None]
    proc = run_cli(
        "check", "--connection", sim.connection_string(OAuthClientSecret=SECRET), env=env
    )
    one_error(proc, 3, "OAuthClientSecret")
    token_calls = [r for r in sim.requests if r.path == "/oauth/v2/token"]
    assert [r.code for r in token_calls] == [None, "invalid_client"]


def test_the_wrong_regions_accounts_server_exits_3(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    # The client is registered in one data centre; the token call goes to another one, which has
    # never heard of it and answers invalid_client.
    home = make_simulator()
    elsewhere = make_simulator(client_id="1000.ANOTHERDATACENTRECLIENT000000", seed=8)
    proc = run_cli(
        "check",
        "--connection",
        home.connection_string(AccountsServer=elsewhere.url),
        env=cli_env(tmp_path),
    )
    line = one_error(proc, 3, "Region")
    assert elsewhere.url.removeprefix("http://") in line
    assert [r.code for r in elsewhere.requests] == ["invalid_client"]
    assert home.requests == []


def test_a_revoked_refresh_token_exits_3_asking_for_a_new_one(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.revoke(simulator.refresh_token)
    proc = run_cli("plan", "--connection", simulator.connection_string(), env=cli_env(tmp_path))
    one_error(proc, 3, "OAuthRefreshToken", "revoked")
    assert simulator.refresh_token not in proc.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_connection(port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    return f"Region=US; {CREDS}; AccountsServer={url}; APIDomain={url}"


def test_an_unreachable_accounts_server_exits_6_naming_the_host(
    tmp_path: Path,
) -> None:
    # A network failure, not a credential one: exit 6 (Zoho unreachable), never 3.
    port = _closed_port()
    proc = run_cli("check", "--connection", _unreachable_connection(port), env=cli_env(tmp_path))
    one_error(proc, 6, f"127.0.0.1:{port}", "connection refused", "Region")


def test_debug_shows_the_traceback_of_the_same_failure(tmp_path: Path) -> None:
    port = _closed_port()
    proc = run_cli(
        "--debug",
        "check",
        "--connection",
        _unreachable_connection(port),
        env=cli_env(tmp_path),
    )
    assert proc.returncode == 6
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ZohoUnreachable" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]
    assert SECRET not in proc.stderr


def test_an_invalid_access_token_with_initiate_oauth_off_exits_3(
    simulator: Simulator, tmp_path: Path
) -> None:
    connection = simulator.connection_string(
        InitiateOAuth="OFF", OAuthAccessToken="1000.not.a.live.token"
    )
    proc = run_cli("check", "--connection", connection, env=cli_env(tmp_path))
    one_error(proc, 3, "OAuthAccessToken")
    assert [r.path for r in simulator.requests if r.path.startswith("/oauth")] == []


# --- a token without the Bulk scope ----------------------------------------------------------


def test_missing_bulk_scope_check_warns_and_extract_falls_back_to_coql_or_records(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(records=60)
    scopes = [s for s in DEFAULT_SCOPES if s != "ZohoCRM.bulk.READ"]
    token = sim.issue_refresh_token(scopes)
    connection = sim.connection_string(OAuthRefreshToken=token, Scope=",".join(scopes))
    env = cli_env(tmp_path)

    check = run_cli("check", "--connection", connection, env=env)
    assert check.returncode == 0, check.stderr
    assert "missing scopes:  ZohoCRM.bulk.READ" in check.stdout
    assert "warning: scope ZohoCRM.bulk.READ is missing: APIType=Bulk needs it" in check.stdout

    extract = run_cli(
        "extract",
        "--connection",
        connection,
        "--output",
        str(tmp_path / "out"),
        "--modules",
        "Leads,Notes",
        "--no-progress",
        env=env,
    )
    assert extract.returncode == 0, extract.stderr
    assert "Traceback" not in extract.stderr + extract.stdout
    # The cheapest plan that reads everything: COQL is granted, so Leads needs no Bulk scope;
    # Notes (Parent_Id, a polymorphic lookup) costs least by the Records API, which names
    # $se_module itself.
    assert re.search(r"^Notes\s+ok\s+records", extract.stdout, re.M), extract.stdout
    assert re.search(r"^Leads\s+ok\s+coql", extract.stdout, re.M), extract.stdout
    assert "Leads: the token lacks ZohoCRM.bulk.READ; COQL instead" in extract.stdout
    assert not [r for r in sim.requests if r.path.startswith("/crm/bulk/")]


# --- malformed answers from Zoho: exit 1 -----------------------------------------------------

MALFORMED = {
    "html": ("text/html", "<html><body>Down for maintenance</body></html>"),
    "truncated": ("application/json", '{"org": [{"company_name": "Zyl'),
    "list": ("application/json", "[1, 2, 3]"),
    "shape": ("application/json", '{"org": "not a list"}'),
    "modules_shape": ("application/json", '{"modules": "not a list"}'),
}


class _Garbage(BaseHTTPRequestHandler):
    """Hands out a token like Zoho's accounts server, then answers every API call with garbage."""

    kind = "html"
    url = ""

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def _send(self, status: int, ctype: str, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """The token endpoint works; anything else is garbage."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/oauth/v2/token"):
            token = {
                "access_token": "1000.garbage.token",
                "expires_in": 3600,
                "api_domain": self.url,
                "token_type": "Bearer",
                "scope": " ".join(DEFAULT_SCOPES),
            }
            self._send(200, "application/json", json.dumps(token))
            return
        self.do_GET()

    def do_GET(self) -> None:
        """A 200 whose body is not what Zoho sends."""
        self._send(200, *MALFORMED[self.kind])


@pytest.fixture
def garbage_url(request: pytest.FixtureRequest) -> Iterator[str]:
    class Handler(_Garbage):
        kind = request.param

    handler = Handler
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield handler.url
    server.shutdown()
    server.server_close()
    thread.join()


NOT_JSON = "but the body is not JSON"
NOT_OBJECT = "but the body is a JSON list, not an object"


@pytest.mark.parametrize(
    ("garbage_url", "command", "needles"),
    [
        ("html", "check", ["GET {url}/crm/v8/org with HTTP 200", NOT_JSON, "maintenance"]),
        ("html", "modules", ["GET {url}/crm/v8/settings/modules with HTTP 200", NOT_JSON]),
        ("html", "extract", ["GET {url}/crm/v8/settings/modules with HTTP 200", NOT_JSON]),
        ("truncated", "check", ["GET {url}/crm/v8/org with HTTP 200", NOT_JSON]),
        ("truncated", "plan", ["GET {url}/crm/v8/settings/modules with HTTP 200", NOT_JSON]),
        ("list", "check", ["GET {url}/crm/v8/org with HTTP 200", NOT_OBJECT]),
        ("list", "modules", ["GET {url}/crm/v8/settings/modules with HTTP 200", NOT_OBJECT]),
        ("shape", "check", ["org answer holds no org", "token belongs to a CRM org"]),
        ("modules_shape", "modules", ["settings/modules is not a list of modules"]),
        ("modules_shape", "extract", ["settings/modules is not a list of modules"]),
    ],
    indirect=["garbage_url"],
)
def test_a_malformed_answer_exits_1_with_one_line_naming_the_call(
    garbage_url: str, command: str, needles: list[str], tmp_path: Path
) -> None:
    connection = f"Region=US; {CREDS}; AccountsServer={garbage_url}; APIDomain={garbage_url}"
    args = [command, "--connection", connection]
    if command == "extract":
        args += ["--output", str(tmp_path / "out")]
    proc = run_cli(*args, env=cli_env(tmp_path))
    line = one_error(proc, 1, *(needle.format(url=garbage_url) for needle in needles))
    assert "unexpected" not in line
    assert proc.stdout == ""
