"""Settings: a Loome-style connection string, a TOML file and the environment -> one ``Settings``.

Sources, highest precedence first (each key is taken from the first source that has it):

1. the explicit connection string (``--connection``);
2. one environment variable per key, ``ZOHO_CRM_<KEY>`` (``ZOHO_CRM_REGION``,
   ``ZOHO_CRM_OAUTHREFRESHTOKEN``; case-insensitive, underscores inside the key ignored);
3. the whole connection string in ``ZOHO_CRM_CONNECTION``;
4. the TOML file (``--config``): a ``[connection]`` table or a ``connection = "..."`` string;
5. the defaults.

Tuning knobs come from the TOML ``[tuning]`` table and ``ZOHO_CRM_TUNING_<NAME>`` variables, output
settings (``partition_by``) from the ``[output]`` table and ``ZOHO_CRM_OUTPUT_<NAME>`` variables (the
environment wins).

:func:`load_settings` reads the sources (:mod:`connector.config_sources`, which accept every key
through :mod:`connector.config_keys`), merges them by that precedence and validates the result
with :func:`build_settings`: one rule per key in :data:`_VALUE_RULES`, then pydantic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connector.config_keys import KNOWN_KEYS as KNOWN_KEYS
from connector.config_keys import SECRET_KEYS, split_scopes, squash
from connector.config_keys import parse_connection_string as parse_connection_string
from connector.config_sources import (
    RawLayer,
    connection_layer,
    merge_layers,
    read_environment,
    read_toml,
)
from connector.errors import ConfigError
from connector.redact import redact, register_secret


class Region(str, Enum):
    """A Zoho data centre."""

    US = "US"
    EU = "EU"
    IN = "IN"
    AU = "AU"
    JP = "JP"
    CN = "CN"
    CA = "CA"
    SA = "SA"
    UK = "UK"


class InstanceType(str, Enum):
    """Which environment of the org: production, sandbox or developer."""

    PRODUCTION = "production"
    SANDBOX = "sandbox"
    DEVELOPER = "developer"


class InitiateOAuth(str, Enum):
    """How tokens are obtained: refresh them, or use the given access token as is."""

    REFRESH = "REFRESH"
    OFF = "OFF"
    GETANDREFRESH = "GETANDREFRESH"


class APIType(str, Enum):
    """Which API reads full loads: Bulk Read or the Records/COQL REST APIs."""

    BULK = "Bulk"
    REST = "REST"


# Canonical connection keys, in documentation order.


_REGION_NAMES: dict[str, Region] = {
    "us": Region.US,
    "unitedstates": Region.US,
    "eu": Region.EU,
    "europe": Region.EU,
    "in": Region.IN,
    "india": Region.IN,
    "au": Region.AU,
    "australia": Region.AU,
    "jp": Region.JP,
    "japan": Region.JP,
    "cn": Region.CN,
    "china": Region.CN,
    "ca": Region.CA,
    "canada": Region.CA,
    "sa": Region.SA,
    "saudiarabia": Region.SA,
    "uk": Region.UK,
    "unitedkingdom": Region.UK,
}
_INSTANCE_NAMES: dict[str, InstanceType] = {
    "production": InstanceType.PRODUCTION,
    "sandbox": InstanceType.SANDBOX,
    "development": InstanceType.DEVELOPER,
    "developer": InstanceType.DEVELOPER,
}
_OAUTH_NAMES: dict[str, InitiateOAuth] = {m.value.lower(): m for m in InitiateOAuth}
_API_TYPE_NAMES: dict[str, APIType] = {m.value.lower(): m for m in APIType}
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


# ----------------------------------------------------------------------------------------------
# The settings models


class Tuning(BaseModel):
    """Knobs users rarely touch and tests shrink (times in seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    http_connect_timeout: float = Field(default=10.0, gt=0)
    http_read_timeout: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    retry_initial_wait: float = Field(default=1.0, ge=0)
    retry_max_wait: float = Field(default=60.0, ge=0)
    bulk_poll_initial: float = Field(default=2.0, ge=0)
    bulk_poll_max: float = Field(default=60.0, ge=0)
    bulk_poll_timeout: float = Field(default=3 * 3600.0, gt=0)
    token_expiry_margin: float = Field(default=300.0, ge=0)
    # At most 10: Zoho serves 10 concurrent heavy calls per org (run.workers.MAX_WORKERS).
    workers: int = Field(default=4, ge=1, le=10)
    group_calls: int = Field(default=1, ge=1)
    checkpoint_rows: int = Field(default=200_000, ge=1)
    # APIType=Bulk: each read by the cheapest reader the settings allow (a full load's priced
    # with a COQL count), or (false) Bulk Read for full loads wherever it can export the module
    # and COQL otherwise.
    price_readers: bool = True
    # Zoho's 429s (see connector.zoho.retry): seconds of waiting per call before 429s that
    # persist are taken as spent credits, and the first wait (it doubles, up to a minute).
    rate_limit_budget: float = Field(default=300.0, ge=0)
    rate_limit_initial_wait: float = Field(default=2.0, gt=0)
    # Bulk result downloads per minute for this run (Zoho allows 10 per org), and how long a
    # refused download keeps being tried again before its module fails.
    downloads_per_minute: int = Field(default=10, ge=1)
    download_wait_budget: float = Field(default=3600.0, ge=0)
    # A module's lock is a lease of this many seconds, renewed every third of it while the
    # extract runs; a lock not renewed for that long (its holder died) is taken over.
    lock_lease_seconds: float = Field(default=300.0, ge=1)


TUNING_NAMES: tuple[str, ...] = tuple(Tuning.model_fields)
# How extract groups a dataset's files into folders (connector.lake.layout): the values of the
# [output] partition_by setting, ZOHO_CRM_OUTPUT_PARTITION_BY and extract --partition-by.
PARTITION_BY_CHOICES = ("day", "month", "year", "none")
OUTPUT_NAMES: tuple[str, ...] = ("partition_by",)


class Settings(BaseModel):
    """The validated connector settings (frozen; secrets are ``SecretStr`` and never shown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: Region
    instance_type: InstanceType = InstanceType.PRODUCTION
    initiate_oauth: InitiateOAuth = InitiateOAuth.REFRESH
    client_id: str | None = None
    client_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    scopes: tuple[str, ...] = ()
    use_coql: bool = False
    api_type: APIType = APIType.BULK
    accounts_server: str | None = None
    api_domain: str | None = None
    api_version: str = "v8"
    token_cache_path: Path | None = None
    tuning: Tuning = Field(default_factory=Tuning)
    partition_by: str | None = None
    """The partition granularity asked for (``PARTITION_BY_CHOICES``); None: a new dataset gets
    month, an existing one keeps its own."""

    @property
    def refreshes_tokens(self) -> bool:
        """Whether tokens are minted with the refresh token (REFRESH and GETANDREFRESH)."""
        return self.initiate_oauth is not InitiateOAuth.OFF


@dataclass(frozen=True)
class LoadedSettings:
    """Validated settings and the warnings met while loading them (unknown keys, …)."""

    settings: Settings
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Value rules: one per key, each turning the raw text into the field's value or a ConfigError
# that names the key and what it accepts (and never shows a secret)

_REGION_CHOICES = (
    "US, EU (Europe), IN (India), AU (Australia), JP (Japan), CN (China), CA (Canada), SA, UK"
)


def parse_region(value: str) -> Region:
    """A Region from a code or the Loome guide's name (``EU``, ``Europe``, ``eu``); else ConfigError."""
    allowed = ", ".join(r.value for r in Region)
    region: Region = _choice("Region", value, _REGION_NAMES, allowed)
    return region


def _choice(key: str, value: str, names: Mapping[str, Any], allowed: str) -> Any:
    found = names.get(squash(value))
    if found is None:
        raise ConfigError(f"{key}={_show(key, value)} is not valid: use one of {allowed}")
    return found


def _show(key: str, value: str) -> str:
    if key in SECRET_KEYS:
        return "***"
    shown = redact(value)
    return repr(shown[:40] + "..." if len(shown) > 40 else shown)


def _bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{key}={_show(key, value)} is not valid: use true or false")


def _url(key: str, value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ConfigError(
            f"{key}={_show(key, value)} is not valid: give a base URL such as https://host"
        )
    return value.rstrip("/")


def _path(key: str, value: str) -> Path:
    if not value.strip() or "\x00" in value:
        raise ConfigError(f"{key} is not a valid file path")
    path = Path(value.strip())
    try:
        return path.expanduser()
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{key}: cannot expand '~' in the path ({exc})") from None


def _api_version(key: str, value: str) -> str:
    if not re.fullmatch(r"v\d+(\.\d+)?", value, flags=re.IGNORECASE):
        raise ConfigError(f"{key}={_show(key, value)} is not valid: use v8 (or v7, …)")
    return value.lower()


def _as_is(key: str, value: str) -> str:
    # Pydantic makes the secrets SecretStr.
    return value


def _scopes(key: str, value: str) -> tuple[str, ...]:
    return split_scopes(value)


# Canonical key -> (Settings field, rule), in the order the keys are checked: with several bad
# values, the first one here is the one reported. AccountsServer and APIDomain come before Region
# because, given together, they stand in for it.
_VALUE_RULES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "AccountsServer": ("accounts_server", _url),
    "APIDomain": ("api_domain", _url),
    "Region": ("region", partial(_choice, names=_REGION_NAMES, allowed=_REGION_CHOICES)),
    "InstanceType": (
        "instance_type",
        partial(
            _choice, names=_INSTANCE_NAMES, allowed="Production, Sandbox, Development (Developer)"
        ),
    ),
    "InitiateOAuth": (
        "initiate_oauth",
        partial(_choice, names=_OAUTH_NAMES, allowed="REFRESH, OFF, GETANDREFRESH"),
    ),
    "APIType": ("api_type", partial(_choice, names=_API_TYPE_NAMES, allowed="Bulk, REST")),
    "UseCOQL": ("use_coql", _bool),
    "APIVersion": ("api_version", _api_version),
    "Scope": ("scopes", _scopes),
    "OAuthSettingsLocation": ("token_cache_path", _path),
    "OAuthClientId": ("client_id", _as_is),
    "OAuthClientSecret": ("client_secret", _as_is),
    "OAuthAccessToken": ("access_token", _as_is),
    "OAuthRefreshToken": ("refresh_token", _as_is),
}
# The keys InitiateOAuth=REFRESH (and GETANDREFRESH) needs, with their Settings fields.
_REFRESH_KEYS = (
    ("OAuthClientId", "client_id"),
    ("OAuthClientSecret", "client_secret"),
    ("OAuthRefreshToken", "refresh_token"),
)


# config.example.toml's credentials (and the README's "1000.XXXX; xxxx"): a copy of the example
# that was never filled in is refused before any call, naming the keys, rather than sent to Zoho.
_PLACEHOLDERS = frozenset(
    {
        "1000.your_client_id",
        "your-client-secret",
        "1000.your-refresh-token",
        "1000.your-access-token",
        "1000.xxxx",
        "xxxx",
    }
)
_CREDENTIAL_KEYS = ("OAuthClientId", "OAuthClientSecret", "OAuthRefreshToken", "OAuthAccessToken")
NO_CONNECTION = "no connection: use --connection, ZOHO_CRM_CONNECTION or --config"


def _check_placeholders(values: Mapping[str, str]) -> None:
    """ConfigError naming the credentials that still hold the example's placeholder values."""
    left = [
        key for key in _CREDENTIAL_KEYS if (values.get(key) or "").strip().lower() in _PLACEHOLDERS
    ]
    if left:
        raise ConfigError(
            f"{', '.join(left)} still "
            + (
                "holds the example's placeholder value"
                if len(left) == 1
                else "hold the example's placeholder values"
            )
            + ": fill in the credentials from the Zoho API console (zoho-crm auth url, then "
            "auth exchange)"
        )


def build_settings(
    values: Mapping[str, str],
    tuning: Mapping[str, Any] | None = None,
    output: Mapping[str, Any] | None = None,
) -> Settings:
    """Validate canonical key -> raw value (and tuning knobs, ``[output]`` settings) into
    ``Settings``, or ConfigError."""
    for key in SECRET_KEYS:
        register_secret(values.get(key))
    _check_placeholders(values)
    fields: dict[str, Any] = {}
    for key, (name, rule) in _VALUE_RULES.items():
        raw = (values.get(key) or "").strip()
        if raw:
            fields[name] = rule(key, raw)
        elif key == "Region":
            fields[name] = _region_without_key(fields)
    _check_credentials(fields)
    fields["tuning"] = build_tuning(tuning or {})
    if (output or {}).get("partition_by") is not None:
        fields["partition_by"] = parse_partition_by(str((output or {})["partition_by"]))
    try:
        return Settings(**fields)
    except ValidationError as exc:  # pragma: no cover - every field is checked above
        raise ConfigError(f"invalid settings: {redact(str(exc.errors()[0].get('msg')))}") from None


def _region_without_key(fields: Mapping[str, Any]) -> Region:
    """No Region given: US when both endpoints are overridden, else ConfigError."""
    if "accounts_server" in fields and "api_domain" in fields:
        return Region.US
    raise ConfigError(
        f"Region is required: set Region= one of {_REGION_CHOICES} "
        "(or give both AccountsServer and APIDomain)"
    )


def _check_credentials(fields: Mapping[str, Any]) -> None:
    """ConfigError unless the keys the InitiateOAuth mode needs are given."""
    mode = fields.get("initiate_oauth", InitiateOAuth.REFRESH)
    if mode is InitiateOAuth.OFF:
        if "access_token" not in fields:
            raise ConfigError(
                "OAuthAccessToken is required when InitiateOAuth=OFF "
                "(or set InitiateOAuth=REFRESH with OAuthClientId, OAuthClientSecret and "
                "OAuthRefreshToken)"
            )
        return
    missing = [key for key, name in _REFRESH_KEYS if name not in fields]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required when "
            f"InitiateOAuth={mode.value} (or set InitiateOAuth=OFF with OAuthAccessToken)"
        )


def build_tuning(values: Mapping[str, Any]) -> Tuning:
    """Validate tuning knobs (unknown names must be filtered out before) into ``Tuning``."""
    try:
        return Tuning(**dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error.get("loc", ())) or "tuning"
        raise ConfigError(f"tuning setting {name} is not valid: {error.get('msg')}") from None


def parse_partition_by(value: str) -> str:
    """A partition granularity (case-insensitive), else ConfigError naming the choices."""
    lowered = value.strip().lower()
    if lowered not in PARTITION_BY_CHOICES:
        raise ConfigError(
            f"partition_by={_show('partition_by', value)} is not valid: use one of "
            f"{', '.join(PARTITION_BY_CHOICES)}"
        )
    return lowered


# ----------------------------------------------------------------------------------------------
# Precedence


def load_settings(
    connection: str | None = None,
    config_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Load settings from every source by precedence and validate them; ConfigError if invalid."""
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    layers: list[RawLayer] = []  # highest precedence first, as the module docstring lists them
    if connection is not None:
        layers.append(connection_layer(connection, "the connection string", warnings))
    # ZOHO_CRM_<KEY> variables, then ZOHO_CRM_CONNECTION.
    layers.extend(read_environment(environ, TUNING_NAMES, warnings, OUTPUT_NAMES))
    if config_file is not None:
        layers.append(read_toml(Path(config_file), TUNING_NAMES, warnings, OUTPUT_NAMES))
    merged = merge_layers(layers)
    if not any(value.strip() for value in merged.connection.values()):
        # Nothing was given at all: say where settings come from, not which key is missing first.
        raise ConfigError(NO_CONNECTION)
    try:
        settings = build_settings(merged.connection, merged.tuning, merged.output)
    except ConfigError as error:
        if not warnings:
            raise
        # The warnings often explain the error ("OAuthRefeshToken … did you mean OAuthRefreshToken?"),
        # and the error is the one line the user sees: carry them in it.
        raise ConfigError(f"{error} ({'; '.join(warnings)})") from None
    return LoadedSettings(settings, warnings)
