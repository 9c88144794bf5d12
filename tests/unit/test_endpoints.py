"""The Region x InstanceType table, its overrides, and API-domain -> region."""

from __future__ import annotations

import pytest

from connector.config import InstanceType, Region, Settings
from connector.errors import ConfigError
from connector.zoho.endpoints import Endpoints, region_for_api_domain, resolve_endpoints

ACCOUNTS = {
    Region.US: "https://accounts.zoho.com",
    Region.EU: "https://accounts.zoho.eu",
    Region.IN: "https://accounts.zoho.in",
    Region.AU: "https://accounts.zoho.com.au",
    Region.JP: "https://accounts.zoho.jp",
    Region.CN: "https://accounts.zoho.com.cn",
    Region.CA: "https://accounts.zohocloud.ca",
    Region.SA: "https://accounts.zoho.sa",
    Region.UK: "https://accounts.zoho.uk",
}
TLD = {
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
PREFIX = {
    InstanceType.PRODUCTION: "www",
    InstanceType.SANDBOX: "sandbox",
    InstanceType.DEVELOPER: "developer",
}
CASES = [
    (region, instance)
    for region in Region
    for instance in InstanceType
    if not (region is Region.UK and instance is not InstanceType.PRODUCTION)
]


def make(region: Region, instance: InstanceType, **extra: str) -> Settings:
    return Settings(region=region, instance_type=instance, **extra)  # type: ignore[arg-type]


def test_every_region_is_in_the_table() -> None:
    assert set(ACCOUNTS) == set(Region)


@pytest.mark.parametrize(("region", "instance"), CASES)
def test_table(region: Region, instance: InstanceType) -> None:
    expected = Endpoints(ACCOUNTS[region], f"https://{PREFIX[instance]}.zohoapis.{TLD[region]}")
    assert resolve_endpoints(make(region, instance)) == expected


@pytest.mark.parametrize("instance", [InstanceType.SANDBOX, InstanceType.DEVELOPER])
def test_uk_non_production_needs_api_domain(instance: InstanceType) -> None:
    with pytest.raises(ConfigError, match="APIDomain"):
        resolve_endpoints(make(Region.UK, instance))
    got = resolve_endpoints(make(Region.UK, instance, api_domain="https://sandbox.example.uk"))
    assert got == Endpoints("https://accounts.zoho.uk", "https://sandbox.example.uk")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"accounts_server": "http://127.0.0.1:8"},
            Endpoints("http://127.0.0.1:8", "https://www.zohoapis.eu"),
        ),
        (
            {"api_domain": "http://127.0.0.1:9/"},
            Endpoints("https://accounts.zoho.eu", "http://127.0.0.1:9"),
        ),
        (
            {"accounts_server": "https://accounts.zoho.ca", "api_domain": "http://h"},
            Endpoints("https://accounts.zoho.ca", "http://h"),
        ),
    ],
)
def test_overrides(overrides: dict[str, str], expected: Endpoints) -> None:
    assert resolve_endpoints(make(Region.EU, InstanceType.PRODUCTION, **overrides)) == expected


@pytest.mark.parametrize(("region", "instance"), CASES)
def test_region_for_api_domain_round_trip(region: Region, instance: InstanceType) -> None:
    assert region_for_api_domain(resolve_endpoints(make(region, instance)).api_domain) is region


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://zohoapis.com.au", Region.AU),  # Airbyte's www-less host
        ("https://www.zohoapis.com/", Region.US),
        ("www.zohoapis.eu", Region.EU),
        ("http://127.0.0.1:8080", None),
        ("https://www.zohoapis.com.evil.example", None),
        ("", None),
        ("http://[::1", None),
    ],
)
def test_region_for_api_domain(url: str, region: Region | None) -> None:
    assert region_for_api_domain(url) is region
