"""``check``: token, org, scopes granted against needed, and its printout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from support.fakehttp import fake_session, path_of, response, token_ok

from connector.config import APIType, Region, Settings, Tuning
from connector.errors import AuthError, DataError
from connector.run.check import CheckReport, format_check, run_check

ORG = {"org": [{"id": "4150868000000225013", "company_name": "Zylker", "type": "production"}]}


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "region": Region.EU,
        "client_id": "1000.CLIENT",
        "client_secret": "client-secret-abcdef",
        "refresh_token": "1000.refresh.zzzzzz",
        "token_cache_path": tmp_path / "tokens.json",
        "tuning": Tuning(retry_initial_wait=0.0, max_attempts=2),
    }
    values.update(overrides)
    return Settings(**values)


def session_for(
    token_reply: requests.Response, org_reply: requests.Response
) -> tuple[requests.Session, Any]:
    def handler(req: requests.PreparedRequest) -> requests.Response:
        if path_of(req) == "/oauth/v2/token":
            return token_reply
        assert path_of(req) == "/crm/v8/org"
        return org_reply

    return fake_session(handler=handler)


def test_check_all_scopes_granted(tmp_path: Path) -> None:
    scope = "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.org.READ ZohoCRM.bulk.READ ZohoCRM.coql.READ"
    session, adapter = session_for(
        token_ok(scope=scope, api_domain="https://www.zohoapis.eu"), response(200, ORG)
    )
    report = run_check(settings_for(tmp_path), session=session)
    assert report.org_name == "Zylker"
    assert report.org_id == "4150868000000225013"
    assert report.region == "EU"
    assert report.instance_type == "production"
    assert report.api_domain == "https://www.zohoapis.eu"
    assert report.missing_scopes == []
    assert report.ok
    assert report.warnings == []
    assert "ZohoCRM.bulk.READ" in report.required_scopes
    assert [path_of(r) for r in adapter.requests] == ["/oauth/v2/token", "/crm/v8/org"]
    text = format_check(report)
    assert (
        "Zylker" in text and "https://www.zohoapis.eu" in text and "missing scopes:  none" in text
    )


def test_check_warns_when_bulk_scope_missing(tmp_path: Path) -> None:
    session, _ = session_for(
        token_ok(scope="ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.org.ALL"),
        response(200, ORG),
    )
    report = run_check(settings_for(tmp_path), session=session)
    assert report.missing_scopes == ["ZohoCRM.bulk.READ", "ZohoCRM.coql.READ"]
    assert not report.ok
    assert any("ZohoCRM.bulk.READ is missing: APIType=Bulk needs it" in w for w in report.warnings)
    assert "warning: scope ZohoCRM.bulk.READ is missing" in format_check(report)


def test_check_rest_needs_no_bulk(tmp_path: Path) -> None:
    session, _ = session_for(
        token_ok(scope="ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.org.ALL"),
        response(200, ORG),
    )
    report = run_check(settings_for(tmp_path, api_type=APIType.REST), session=session)
    assert report.missing_scopes == []


def test_check_without_scope_list_warns_not_fails(tmp_path: Path) -> None:
    session, _ = session_for(token_ok(), response(200, ORG))
    report = run_check(settings_for(tmp_path), session=session)
    assert report.granted_scopes is None
    assert report.missing_scopes == []
    assert any("could not be verified" in w for w in report.warnings)
    assert "granted scopes:  not reported" in format_check(report)


def test_check_reports_region_mismatch_and_org_type(tmp_path: Path) -> None:
    org = {"org": [{"id": "1", "company_name": "Acme", "type": "sandbox"}]}
    session, _ = session_for(token_ok(api_domain="https://www.zohoapis.com"), response(200, org))
    report = run_check(settings_for(tmp_path), session=session)
    assert report.api_domain == "https://www.zohoapis.com"
    text = " ".join(report.warnings)
    assert "set Region=US" in text
    assert "'sandbox'" in text


def test_check_empty_org_is_data_error(tmp_path: Path) -> None:
    session, _ = session_for(token_ok(), response(200, {"org": []}))
    with pytest.raises(DataError, match="no org"):
        run_check(settings_for(tmp_path), session=session)


def test_check_auth_failure_propagates(tmp_path: Path) -> None:
    session, _ = session_for(response(200, {"error": "invalid_client"}), response(200, ORG))
    with pytest.raises(AuthError, match=r"accounts\.zoho\.eu"):
        run_check(settings_for(tmp_path), session=session)


def test_format_check_lines() -> None:
    report = CheckReport(
        org_name="Zylker",
        org_id="1",
        region="US",
        instance_type="production",
        api_domain="https://www.zohoapis.com",
        granted_scopes=["ZohoCRM.org.READ"],
        required_scopes=["ZohoCRM.org.READ", "ZohoCRM.bulk.READ"],
        missing_scopes=["ZohoCRM.bulk.READ"],
        warnings=["scope ZohoCRM.bulk.READ is missing"],
    )
    lines = format_check(report).splitlines()
    assert lines[0].startswith("org:") and "Zylker (id 1)" in lines[0]
    assert "missing scopes:  ZohoCRM.bulk.READ" in lines
    assert lines[-1] == "warning: scope ZohoCRM.bulk.READ is missing"


def test_check_refreshes_once_even_with_a_live_cached_token(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first, _ = session_for(token_ok(), response(200, ORG))
    run_check(settings, session=first)
    session, adapter = session_for(token_ok(), response(200, ORG))
    run_check(settings, session=session)
    assert [path_of(r) for r in adapter.requests] == ["/oauth/v2/token", "/crm/v8/org"]


def test_check_with_a_wrong_secret_fails_although_a_token_is_cached(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first, _ = session_for(token_ok(), response(200, ORG))
    run_check(settings, session=first)
    wrong = settings_for(tmp_path, client_secret="mistyped-secret-012345")
    session, adapter = session_for(response(200, {"error": "invalid_client"}), response(200, ORG))
    with pytest.raises(AuthError, match="invalid_client"):
        run_check(wrong, session=session)
    assert [path_of(r) for r in adapter.requests] == ["/oauth/v2/token"]
