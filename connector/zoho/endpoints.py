"""Region x InstanceType -> the accounts server and the API host (one table); API path shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from connector.config import InstanceType, Region, Settings
from connector.errors import ConfigError

# Accounts servers per data centre; production, sandbox and developer share one.
ACCOUNTS_SERVERS: dict[Region, str] = {
    Region.US: "https://accounts.zoho.com",
    Region.EU: "https://accounts.zoho.eu",
    Region.IN: "https://accounts.zoho.in",
    Region.AU: "https://accounts.zoho.com.au",
    Region.JP: "https://accounts.zoho.jp",
    Region.CN: "https://accounts.zoho.com.cn",
    # Zoho's SDK uses zohocloud.ca; some setup guides write accounts.zoho.ca (AccountsServer overrides).
    Region.CA: "https://accounts.zohocloud.ca",
    Region.SA: "https://accounts.zoho.sa",
    # UK comes from third-party clients and a truncated row of Zoho's multi-DC page, not Zoho's SDK.
    Region.UK: "https://accounts.zoho.uk",
}

# The API domain's top-level part per data centre: https://{www|sandbox|developer}.zohoapis.{tld}
_API_TLDS: dict[Region, str] = {
    Region.US: "com",
    Region.EU: "eu",
    Region.IN: "in",
    Region.AU: "com.au",
    Region.JP: "jp",
    Region.CN: "com.cn",
    Region.CA: "ca",
    Region.SA: "sa",
    Region.UK: "uk",
}
_HOST_PREFIX: dict[InstanceType, str] = {
    InstanceType.PRODUCTION: "www",
    InstanceType.SANDBOX: "sandbox",
    InstanceType.DEVELOPER: "developer",
}


# Bulk Read puts ``bulk`` before the version: /crm/bulk/{v}/read[/{job_id}[/result]].
BULK_PATH = re.compile(r"^/?crm/bulk/[^/]+/read(?:/(?P<job>[^/]+)(?P<result>/result)?)?/?$")
_VERSIONED_PATH = re.compile(r"^/?crm/v\d+(?:\.\d+)?/(?P<rest>.*)$")


def _api_domain(region: Region, instance: InstanceType) -> str | None:
    # UK: only the production host is known (third-party sources); sandbox/developer are unknown.
    if region is Region.UK and instance is not InstanceType.PRODUCTION:
        return None
    return f"https://{_HOST_PREFIX[instance]}.zohoapis.{_API_TLDS[region]}"


API_DOMAINS: dict[tuple[Region, InstanceType], str | None] = {
    (region, instance): _api_domain(region, instance)
    for region in Region
    for instance in InstanceType
}


@dataclass(frozen=True)
class Endpoints:
    """Where tokens come from (``accounts_url``) and where the API lives (``api_domain``)."""

    accounts_url: str
    api_domain: str


def resolve_endpoints(settings: Settings) -> Endpoints:
    """Return the endpoints for the settings' Region and InstanceType, or their overrides."""
    accounts = settings.accounts_server or ACCOUNTS_SERVERS[settings.region]
    api_domain = settings.api_domain or API_DOMAINS[(settings.region, settings.instance_type)]
    if api_domain is None:
        raise ConfigError(
            f"the API host of a {settings.region.value} {settings.instance_type.value} "
            "environment is not known: set APIDomain= to its base URL "
            "(for example https://sandbox.zohoapis.uk)"
        )
    return Endpoints(accounts_url=accounts.rstrip("/"), api_domain=api_domain.rstrip("/"))


def region_for_api_domain(url: str) -> Region | None:
    """The data centre a Zoho API domain belongs to (``https://www.zohoapis.eu`` -> EU), or None."""
    try:
        host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower()
    except ValueError:
        return None
    for prefix in ("www.", "sandbox.", "developer."):
        if host.startswith(prefix):
            host = host[len(prefix) :]
            break
    for region, tld in _API_TLDS.items():
        if host == f"zohoapis.{tld}":
            return region
    return None


def relative_path(path: str) -> tuple[str, bool]:
    """Return (path below /crm/{version}/ without query, is_bulk) of a path or URL.

    A Bulk Read path keeps its ``crm/bulk/{v}/read…`` form, which :data:`BULK_PATH` matches.
    """
    if "://" in path:
        path = urlsplit(path).path
    path = path.split("?", 1)[0]
    if BULK_PATH.match(path):
        return path.lstrip("/"), True
    match = _VERSIONED_PATH.match(path)
    if match:
        return match.group("rest").strip("/"), False
    return path.strip("/"), False
