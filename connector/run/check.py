"""``zoho-crm check``: validate settings, obtain a token, read the org, compare scopes."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from connector.config import Settings
from connector.errors import DataError
from connector.zoho.http import ZohoClient
from connector.zoho.scopes import missing_scopes, required_scopes, scope_reason


@dataclass
class CheckReport:
    """What ``check`` found: the org, where it lives, and the scopes granted against needed."""

    org_name: str
    org_id: str
    region: str
    instance_type: str
    api_domain: str
    granted_scopes: list[str] | None
    required_scopes: list[str]
    missing_scopes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no required scope is known to be missing."""
        return not self.missing_scopes


def run_check(
    settings: Settings, *, session: requests.Session | None = None, client: ZohoClient | None = None
) -> CheckReport:
    """Refresh a token, call ``GET org`` (1 credit) and compare granted with required scopes.

    The refresh is made even when a cached token is still valid (one refresh, no more), so a
    wrong client secret or a revoked refresh token fails here and not in the scheduled run.
    """
    own = client is None
    client = client or ZohoClient(settings, session=session)
    try:
        client.tokens.refresh_now()
        body = client.get_json("org")
        orgs = (body or {}).get("org")
        if not isinstance(orgs, list) or not orgs or not isinstance(orgs[0], dict):
            raise DataError(
                "Zoho's org answer holds no org: check that the token belongs to a CRM org"
            )
        org = orgs[0]
        required = required_scopes(settings)
        granted = client.tokens.granted_scopes
        warnings = list(client.tokens.warnings)
        missing: list[str] = []
        if granted is None:
            warnings.append(
                "Zoho did not list the token's scopes, so they could not be verified; "
                f"the chosen APIs need {', '.join(required)}"
            )
        else:
            missing = missing_scopes(granted, required)
            for scope in missing:
                warnings.append(f"scope {scope} is missing: {scope_reason(scope)} needs it")
        org_type = str(org.get("type") or "").lower()
        if org_type and org_type != settings.instance_type.value:
            warnings.append(
                f"the org reports type {org_type!r} but InstanceType={settings.instance_type.value}"
            )
        return CheckReport(
            org_name=str(org.get("company_name") or ""),
            org_id=str(org.get("id") or ""),
            region=settings.region.value,
            instance_type=settings.instance_type.value,
            api_domain=client.api_domain,
            granted_scopes=list(granted) if granted is not None else None,
            required_scopes=required,
            missing_scopes=missing,
            warnings=warnings,
        )
    finally:
        if own:
            client.close()


def format_check(report: CheckReport) -> str:
    """Plain lines for the terminal."""
    granted = (
        ", ".join(report.granted_scopes) if report.granted_scopes is not None else "not reported"
    )
    lines = [
        f"org:             {report.org_name} (id {report.org_id})",
        f"region:          {report.region}",
        f"instance type:   {report.instance_type}",
        f"API host:        {report.api_domain}",
        f"granted scopes:  {granted}",
        f"required scopes: {', '.join(report.required_scopes)}",
        f"missing scopes:  {', '.join(report.missing_scopes) if report.missing_scopes else 'none'}",
    ]
    lines.extend(f"warning: {warning}" for warning in report.warnings)
    return "\n".join(lines)
